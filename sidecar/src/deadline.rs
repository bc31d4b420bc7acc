//! Hold deadlines: until when the pod's holds (locks, leadership, queue claims, lease-bound
//! znodes) are certainly still its own, from the last moment the sidecar heard from a serving
//! server. Pure arithmetic on instants; the session ([`crate::session`]) measures the moments
//! and acts on them, streams and the CLI report them.
//!
//! The leader expires a session a full session timeout after it last got a touch of it, and a
//! leader elected later times every session from its election. The sidecar's probe is a `sync`:
//! the leader touches the session when the sync reaches it, and answers only once a quorum has
//! confirmed it still leads, so any later leader is elected after that. A sync *sent* at `s`
//! and answered therefore means that nobody can expire the session before `s + timeout` (by the
//! leader's clock). The sidecar's deadline is that minus
//! [`drift_margin`], so it passes strictly earlier, whatever the two clocks' rates.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The share of the session timeout (in percent) a deadline keeps back from the earliest
/// moment the leader can expire the session. Clock *rates* of two machines differ by well under
/// 0.1% (quartz drifts ~100 ppm, NTP slews at most 500 ppm), so most of the 10% is slack for
/// the sidecar itself: a timer firing late on a throttled pod, the app reading its stream a
/// little late, a `paddock lock` child taking a moment to die after SIGKILL. With the default
/// 10 s timeout that is one second.
pub const DRIFT_MARGIN_PERCENT: u32 = 10;

/// How often the sidecar asks the cluster something cheap (a `sync` of the namespace root) to
/// learn that it is still heard, as a share of the session timeout (1/10). zookeeper-client does not
/// tell when it last got an answer (its pings are its own), so the sidecar measures it with its
/// own probe; ten per timeout keep the deadline fresh to within a tenth of it.
pub const PROBES_PER_TIMEOUT: u32 = 10;

/// After this share of the session timeout without an answer (1/3, as ZooKeeper's own clients
/// give up on a connection after 2/3 of it), the session counts as suspended even if
/// zookeeper-client has not noticed a broken connection yet: a blackholed link shows no error,
/// only silence.
pub const SUSPECT_AFTER_DIVISOR: u32 = 3;

/// The margin kept back from `timeout` (see [`DRIFT_MARGIN_PERCENT`]).
pub fn drift_margin(timeout: Duration) -> Duration {
    timeout * DRIFT_MARGIN_PERCENT / 100
}

/// The time between two probes of a session of `timeout`.
pub fn probe_interval(timeout: Duration) -> Duration {
    (timeout / PROBES_PER_TIMEOUT).max(Duration::from_millis(10))
}

/// The last time a session of `timeout` was heard from, and what follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// When the request whose answer proved the session alive was sent.
    pub at: Instant,
    /// The negotiated session timeout.
    pub timeout: Duration,
}

impl Heard {
    /// Until when every hold of the session is valid: strictly before the leader can expire it.
    pub fn valid_until(self) -> Instant {
        self.at + self.timeout - drift_margin(self.timeout)
    }

    /// From when the silence counts as a suspension.
    pub fn suspect_at(self) -> Instant {
        self.at + self.timeout / SUSPECT_AFTER_DIVISOR
    }

    /// `self` or `other`, whichever proves more (the later send).
    pub fn latest(self, other: Heard) -> Heard {
        if other.at > self.at {
            other
        } else {
            self
        }
    }
}

/// A deadline as an app reads it: `(valid_until_ms, valid_for_ms)`, the Unix time in
/// milliseconds (by the wall clock `wall_now`, read at `now`) and the milliseconds left.
pub fn as_seen(deadline: Instant, now: Instant, wall_now: SystemTime) -> (u64, u64) {
    let left = deadline.saturating_duration_since(now);
    let unix = wall_now.duration_since(UNIX_EPOCH).unwrap_or_default();
    // Rounded down both: an app that rounds never gets a later deadline than the sidecar's.
    ((unix + left).as_millis() as u64, left.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_comes_before_the_earliest_expiry_by_the_margin() {
        let at = Instant::now();
        let heard = Heard { at, timeout: Duration::from_secs(10) };
        assert_eq!(heard.valid_until(), at + Duration::from_secs(9));
        assert!(heard.valid_until() < at + heard.timeout, "strictly before the leader can expire it");
        assert_eq!(heard.suspect_at(), at + Duration::from_secs(10) / 3);
        assert!(heard.suspect_at() < heard.valid_until());
        assert_eq!(probe_interval(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(probe_interval(Duration::from_millis(50)), Duration::from_millis(10));
    }

    #[test]
    fn the_later_send_proves_more() {
        let at = Instant::now();
        let old = Heard { at, timeout: Duration::from_secs(2) };
        let new = Heard { at: at + Duration::from_millis(300), ..old };
        assert_eq!(old.latest(new), new);
        assert_eq!(new.latest(old), new, "a late answer to an old request proves nothing new");
    }

    #[test]
    fn an_app_reads_the_deadline_in_unix_ms_and_ms_left() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_millis(1_000_000);
        assert_eq!(as_seen(now + Duration::from_millis(1500), now, wall), (1_001_500, 1500));
        assert_eq!(as_seen(now, now + Duration::from_secs(1), wall), (1_000_000, 0), "a passed deadline");
    }
}
