//! Latency samples (microseconds, kept whole: a run records at most a few million) and their
//! exact percentiles, plus a small deterministic PRNG for picking keys.

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
}

impl Samples {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        self.micros.push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Sorts them (needed before [`Samples::percentile_ms`]).
    pub fn sort(&mut self) {
        self.micros.sort_unstable();
    }

    /// The `p`-th percentile (0–100) in milliseconds, nearest-rank; `None` when empty. The
    /// samples must be sorted.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.micros.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.micros.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.micros.len()) - 1;
        Some(self.micros[index] as f64 / 1000.0)
    }
}

/// The median of `values` (`None` when empty).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// xorshift64*: fast, deterministic per seed, good enough to spread keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
