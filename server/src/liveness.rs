//! Sessions' liveness: on the leader, when each session was last heard from and which have
//! expired; on a follower, the sessions heard from since its last batch of touches to the
//! leader. Not replicated: a new leader starts every session with a fresh full timeout
//! (DESIGN.md, "Sessions are replicated state"); only the resulting closeSession goes through
//! the log. The session table itself is the data tree's.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Sessions a follower's clients were heard from since its last batch to the leader.
#[derive(Default)]
pub struct Touches {
    sessions: Mutex<HashSet<i64>>,
}

impl Touches {
    /// A client of `session_id` was heard from.
    pub fn add(&self, session_id: i64) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(session_id);
    }

    /// Puts back a batch taken with [`Touches::take`] that did not reach the leader.
    pub fn restore(&self, batch: Vec<i64>) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).extend(batch);
    }

    /// The sessions heard from since the last call.
    pub fn take(&self) -> Vec<i64> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).drain().collect()
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
    fn touches_are_taken_once() {
        let t = Touches::default();
        t.add(1);
        t.add(1);
        t.add(2);
        let mut taken = t.take();
        taken.sort();
        assert_eq!(taken, vec![1, 2]);
        assert!(t.take().is_empty());
    }
}
