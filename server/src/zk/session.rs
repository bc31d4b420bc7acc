//! Leader-side session liveness: when each session was last heard from and which have expired.
//! Not replicated: a new leader starts every session with a fresh full timeout (DESIGN.md,
//! "Sessions are replicated state"); only the resulting closeSession goes through the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

struct Liveness {
    timeout: Duration,
    deadline: Instant,
    /// An expiry has been proposed; do not propose it again.
    expiring: bool,
}

/// See the module docs.
#[derive(Default)]
pub struct SessionTracker {
    sessions: Mutex<HashMap<i64, Liveness>>,
}

impl SessionTracker {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<i64, Liveness>) -> R) -> R {
        f(&mut self.sessions.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Starts tracking a session with a full timeout from now.
    pub fn add(&self, id: i64, timeout: Duration, now: Instant) {
        self.with(|s| {
            s.insert(id, Liveness { timeout, deadline: now + timeout, expiring: false });
        });
    }

    /// The session was heard from: push its deadline out by a full timeout.
    pub fn touch(&self, id: i64, now: Instant) {
        self.with(|s| {
            if let Some(l) = s.get_mut(&id) {
                if !l.expiring {
                    l.deadline = now + l.timeout;
                }
            }
        });
    }

    /// Whether the session is tracked and not being expired.
    pub fn is_live(&self, id: i64) -> bool {
        self.with(|s| s.get(&id).is_some_and(|l| !l.expiring))
    }

    /// Sessions past their deadline, marked so they are returned only once.
    pub fn take_expired(&self, now: Instant) -> Vec<i64> {
        self.with(|s| {
            let mut expired = Vec::new();
            for (&id, l) in s.iter_mut() {
                if !l.expiring && l.deadline <= now {
                    l.expiring = true;
                    expired.push(id);
                }
            }
            expired
        })
    }

    /// Makes an expiry proposal that failed eligible again.
    pub fn retry_expiry(&self, id: i64) {
        self.with(|s| {
            if let Some(l) = s.get_mut(&id) {
                l.expiring = false;
            }
        });
    }

    /// Brings the tracker in line with the replicated session table: sessions it lacks get a
    /// fresh full timeout, sessions that no longer exist are dropped. With `reset`, every
    /// session restarts its timeout (this server just became leader).
    pub fn sync_with(&self, live: impl Iterator<Item = (i64, Duration)>, now: Instant, reset: bool) {
        self.with(|s| {
            let mut next = HashMap::new();
            for (id, timeout) in live {
                let l = match s.remove(&id) {
                    Some(l) if !reset => l,
                    _ => Liveness { timeout, deadline: now + timeout, expiring: false },
                };
                next.insert(id, l);
            }
            *s = next;
        });
    }

    /// Number of tracked sessions.
    pub fn len(&self) -> usize {
        self.with(|s| s.len())
    }

    /// Whether no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes session ids and passwords (on the leader; the txn carries them to every replica).
pub struct SessionIds {
    base: i64,
    counter: std::sync::atomic::AtomicI64,
}

impl SessionIds {
    /// Ids for server `server_id`: the id in the top byte, the start time below, a counter in
    /// the low 16 bits, as ZooKeeper does, so ids from different servers and restarts differ.
    pub fn new(server_id: u64, now_ms: u64) -> Self {
        let base = (((server_id & 0x7f) as i64) << 56) | (((now_ms & 0xff_ffff_ffff) as i64) << 16);
        Self { base, counter: std::sync::atomic::AtomicI64::new(0) }
    }

    /// A fresh session id (never 0).
    pub fn next_id(&self) -> i64 {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The counter carries into the time bits after 65536 sessions, which keeps ids unique.
        (self.base + n + 1).max(1)
    }

    /// A random 16-byte session password.
    pub fn password() -> Vec<u8> {
        let mut pw = vec![0u8; 16];
        rand::rng().fill_bytes(&mut pw);
        pw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_after_timeout_and_touch_extends() {
        let t = SessionTracker::default();
        let now = Instant::now();
        t.add(1, Duration::from_secs(10), now);
        t.add(2, Duration::from_secs(10), now);
        t.touch(2, now + Duration::from_secs(8));
        assert!(t.take_expired(now + Duration::from_secs(9)).is_empty());
        assert_eq!(t.take_expired(now + Duration::from_secs(11)), vec![1]);
        assert!(t.take_expired(now + Duration::from_secs(12)).is_empty(), "reported once");
        assert!(!t.is_live(1));
        t.retry_expiry(1);
        assert_eq!(t.take_expired(now + Duration::from_secs(12)), vec![1]);
    }

    #[test]
    fn sync_gives_fresh_timeouts_on_reset() {
        let t = SessionTracker::default();
        let now = Instant::now();
        t.add(1, Duration::from_secs(1), now);
        t.add(9, Duration::from_secs(1), now);
        let later = now + Duration::from_secs(5);
        t.sync_with([(1, Duration::from_secs(1)), (2, Duration::from_secs(1))].into_iter(), later, true);
        assert_eq!(t.len(), 2);
        assert!(t.take_expired(later).is_empty());
        assert_eq!(t.take_expired(later + Duration::from_secs(2)).len(), 2);
    }

    #[test]
    fn ids_are_unique_and_positive() {
        let ids = SessionIds::new(3, 1_700_000_000_000);
        let a = ids.next_id();
        let b = ids.next_id();
        assert!(a > 0 && b > a);
        assert_eq!(a >> 56, 3);
        assert_eq!(SessionIds::password().len(), 16);
    }
}
