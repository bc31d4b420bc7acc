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

/// Sessions a follower's clients were heard from since its last batch to the leader, in
/// numbered batches: a touch goes into the batch being filled, and once the leader has taken a
/// batch, every touch of it and of the batches before it has reached the leader (a batch the
/// leader did not take goes back into the next one). A ping is answered only then (issue 12
/// hole o: a ping answered at once, whose batch was late, let the leader expire a session
/// the client had just been told was alive).
pub struct Touches {
    pending: Mutex<Pending>,
    /// The newest batch the leader took.
    taken: tokio::sync::watch::Sender<u64>,
    /// Wakes the loop that sends batches: a ping waits for one.
    wake: tokio::sync::Notify,
}

struct Pending {
    sessions: HashSet<i64>,
    /// The number of the batch being filled (from 1: none is taken at first).
    batch: u64,
}

impl Default for Touches {
    fn default() -> Self {
        Touches {
            pending: Mutex::new(Pending { sessions: HashSet::new(), batch: 1 }),
            taken: tokio::sync::watch::channel(0).0,
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl Touches {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client of `session_id` was heard from; the number of the batch the touch is in.
    pub fn add(&self, session_id: i64) -> u64 {
        let mut pending = self.pending();
        pending.sessions.insert(session_id);
        pending.batch
    }

    /// Puts back a batch taken with [`Touches::take`] that did not reach the leader: its
    /// touches go into the batch being filled.
    pub fn restore(&self, batch: Vec<i64>) {
        self.pending().sessions.extend(batch);
    }

    /// The sessions heard from since the last call, and the number of their batch.
    pub fn take(&self) -> (Vec<i64>, u64) {
        let mut pending = self.pending();
        let number = pending.batch;
        pending.batch += 1;
        (pending.sessions.drain().collect(), number)
    }

    /// The leader took batch `number`.
    pub fn taken(&self, number: u64) {
        self.taken.send_if_modified(|taken| {
            let newer = number > *taken;
            if newer {
                *taken = number;
            }
            newer
        });
    }

    /// Waits (at most `limit`) until the leader has taken batch `number`, waking the sender;
    /// false if it was not taken in time.
    pub async fn wait_taken(&self, number: u64, limit: Duration) -> bool {
        let mut taken = self.taken.subscribe();
        self.wake.notify_one();
        tokio::time::timeout(limit, taken.wait_for(|taken| *taken >= number)).await.is_ok_and(|r| r.is_ok())
    }

    /// Resolves when a touch waits for its batch to be sent.
    pub async fn woken(&self) {
        self.wake.notified().await
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
        assert_eq!(t.add(1), 1);
        t.add(1);
        t.add(2);
        let (mut taken, number) = t.take();
        taken.sort();
        assert_eq!((taken, number), (vec![1, 2], 1));
        assert_eq!(t.take(), (vec![], 2));
    }

    /// Hole o: a touch counts as heard by the leader once the leader took its batch, or a later
    /// one (a batch it did not take goes back into the next).
    #[tokio::test]
    async fn a_touch_is_taken_with_its_batch_or_a_later_one() {
        let t = Touches::default();
        let limit = Duration::from_millis(20);
        let first = t.add(7);
        assert!(!t.wait_taken(first, limit).await, "nothing taken yet");
        let (batch, number) = t.take();
        assert_eq!(number, first);
        // The leader did not take it: back into batch 2.
        t.restore(batch);
        assert!(!t.wait_taken(first, limit).await);
        let (batch, number) = t.take();
        assert_eq!((batch, number), (vec![7], 2));
        t.taken(number);
        assert!(t.wait_taken(first, limit).await, "taken with a later batch");
        let next = t.add(8);
        assert!(!t.wait_taken(next, limit).await, "a touch after the taken batch waits for its own");
        t.taken(1);
        assert!(!t.wait_taken(next, limit).await, "an older batch taken late changes nothing");
    }
}
