//! The optional app health probe: `GET --app-health-url` every interval. After N failures in a
//! row the app counts as unhealthy: every hold is released (locks, campaigns), the pod leaves its
//! groups and new holds are refused. One passing probe makes it healthy again and the groups
//! are rejoined.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client;
use crate::holds::Holds;
use crate::metrics::Metrics;
use crate::recipes::group::Memberships;

/// How the probe runs.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The app's health URL (plain http).
    pub url: String,
    /// Time between probes (also the bound of one probe).
    pub interval: Duration,
    /// Failures in a row that make the app unhealthy.
    pub failures: u32,
}

/// Whether the app is healthy after one more probe result, given the failures so far.
pub fn judge(healthy: bool, failed_in_a_row: u32, threshold: u32) -> bool {
    if failed_in_a_row == 0 {
        true
    } else {
        healthy && failed_in_a_row < threshold.max(1)
    }
}

impl Probe {
    /// Probes until `stop`; flips the holds and memberships on health changes.
    pub async fn run(self, holds: Holds, members: Memberships, metrics: Metrics, stop: CancellationToken) {
        let mut healthy = true;
        let mut failed = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.cancelled() => return,
            }
            let passed = matches!(client::probe(&self.url, self.interval).await, Ok(status) if status.is_success());
            failed = if passed { 0 } else { failed.saturating_add(1) };
            let now = judge(healthy, failed, self.failures);
            if now != healthy {
                if now {
                    tracing::info!(url = %self.url, "app is healthy again; rejoining");
                } else {
                    tracing::warn!(url = %self.url, failed, "app is unhealthy; releasing holds and leaving groups");
                }
                healthy = now;
                holds.set_unhealthy(!healthy);
                members.set_healthy(healthy);
                metrics.app_healthy.set(i64::from(healthy));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::judge;

    #[test]
    fn unhealthy_after_n_failures_in_a_row_and_healthy_after_one_pass() {
        assert!(judge(true, 1, 3));
        assert!(judge(true, 2, 3));
        assert!(!judge(true, 3, 3));
        assert!(!judge(false, 1, 3), "stays unhealthy until a probe passes");
        assert!(judge(false, 0, 3));
        assert!(!judge(true, 1, 0), "a threshold of 0 acts as 1");
    }
}
