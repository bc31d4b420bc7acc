//! How much CPU the rest of the machine took while the benchmark ran: every second, the busy
//! time of all CPUs (`/proc/stat`) minus that of this process and its children (the servers,
//! sidecars). A build running beside the benchmark shows up here, so a skewed run is visible in
//! the report rather than silently wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::proc::cpu_ticks;

/// Busy ticks of all CPUs together.
fn busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some(total.saturating_sub(idle))
}

/// Ticks of this process and of every process whose parent it is, by pid.
fn own_ticks(me: u32) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    if let Some(t) = cpu_ticks("self") {
        out.insert(me, t);
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let ppid: Option<u32> = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(me) {
            if let Some(t) = cpu_ticks(&pid.to_string()) {
                out.insert(pid, t);
            }
        }
    }
    out
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    other_ticks: u64,
    seconds: u64,
    max_other_cores: f64,
}

/// A background sampler; [`Contention::take`] reads and resets what it gathered.
pub struct Contention {
    totals: Arc<Mutex<Totals>>,
    task: tokio::task::JoinHandle<()>,
}

impl Contention {
    /// Starts sampling once a second.
    pub fn start() -> Contention {
        let totals = Arc::new(Mutex::new(Totals::default()));
        let me = std::process::id();
        let task = {
            let totals = totals.clone();
            tokio::spawn(async move {
                let mut last_busy = busy_ticks().unwrap_or(0);
                let mut last_own = own_ticks(me);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let busy = busy_ticks().unwrap_or(last_busy);
                    let own = own_ticks(me);
                    let own_delta: u64 =
                        own.iter().map(|(pid, t)| t.saturating_sub(last_own.get(pid).copied().unwrap_or(0))).sum();
                    let other = busy.saturating_sub(last_busy).saturating_sub(own_delta);
                    let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                    t.other_ticks += other;
                    t.seconds += 1;
                    // USER_HZ is 100 ticks per second.
                    t.max_other_cores = t.max_other_cores.max(other as f64 / 100.0);
                    drop(t);
                    last_busy = busy;
                    last_own = own;
                }
            })
        };
        Contention { totals, task }
    }

    /// `(average cores, largest 1-s cores)` other processes used since the last call.
    pub fn take(&self) -> (f64, f64) {
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let taken = std::mem::take(&mut *t);
        let avg = if taken.seconds == 0 { 0.0 } else { taken.other_ticks as f64 / 100.0 / taken.seconds as f64 };
        (avg, taken.max_other_cores)
    }
}

impl Drop for Contention {
    fn drop(&mut self) {
        self.task.abort();
    }
}
