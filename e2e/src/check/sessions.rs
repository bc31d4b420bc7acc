//! Session liveness: no session expires while its pings are being answered.
//!
//! The promise: the leader may expire a session only once its timeout has passed without the
//! session being touched, and a ping the session's server answered touched it. The touch
//! happened somewhere between the ping's sending and its answer's arrival, so the earliest the
//! touch can have been is when the ping was *sent*: the expiry cannot come before
//! `sent + timeout`. (The arrival time of the answer would not do: an answer that took a while
//! would push the bound past a touch that happened early, and flag an expiry that was fine.)
//! The expiry itself is not seen; an independent observer (another session) sees the deletion
//! of the session's ephemeral node, which comes after the expiry. So for the last answered
//! ping, with `observed` the time the observer saw the deletion:
//!
//! `observed >= sent + timeout × (1 − CLOCK_DRIFT)`
//!
//! must hold, or the session expired early. [`CLOCK_DRIFT`] allows the leader's timer to run
//! that much faster than the workload's clock. Only pings answered before the expiry was
//! observed count: an answer after it proves nothing about the time before.
//!
//! What it cannot see: expiries nobody observed, and sessions that expired late (a later
//! expiry is allowed: servers round deadlines up to their tick, and a new leader restarts
//! them). This is strict about one case: a server that had not yet learnt of the expiry and
//! answered a ping sent after it counts as a touch, because the client was told its session was
//! alive when it no longer was.

use serde::{Deserialize, Serialize};

/// How much faster than the workload's clock the leader's timer may run: 10 %.
pub const CLOCK_DRIFT: f64 = 0.1;

/// One ping the session's client sent and got an answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// When the ping was sent (ns since the run's start).
    pub sent: u64,
    /// When its answer arrived.
    pub answered: u64,
}

/// What the workload saw of one session's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLife {
    /// The session id.
    pub session: i64,
    /// The timeout the server negotiated, in ms.
    pub timeout_ms: u64,
    /// The pings that were answered, in any order.
    pub pings: Vec<Ping>,
    /// When another session saw the deletion of this session's ephemeral node, if it expired.
    pub expiry_observed: Option<u64>,
}

/// What [`check_sessions`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sessions checked.
    pub sessions: usize,
    /// Of those, the ones whose expiry was observed.
    pub expired: usize,
}

/// The earliest time `life` may be observed expired, from its last answered ping before
/// `observed`; `None` when no ping was answered before then.
fn earliest_expiry(life: &SessionLife, observed: u64) -> Option<(Ping, u64)> {
    let ping = life.pings.iter().filter(|p| p.answered <= observed).max_by_key(|p| p.sent)?;
    let timeout_ns = life.timeout_ms as f64 * 1e6 * (1.0 - CLOCK_DRIFT);
    Some((*ping, ping.sent.saturating_add(timeout_ns as u64)))
}

/// Checks that no session in `lives` was observed expired before its timeout had passed since
/// the last ping it had answered.
pub fn check_sessions(lives: &[SessionLife]) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    let mut summary = Summary { sessions: lives.len(), expired: 0 };
    for life in lives {
        let Some(observed) = life.expiry_observed else { continue };
        summary.expired += 1;
        if let Some(bad) = life.pings.iter().find(|p| p.answered < p.sent) {
            problems.push(format!(
                "session 0x{:x} has a ping answered at {} ns, before it was sent at {} ns",
                life.session, bad.answered, bad.sent
            ));
            continue;
        }
        if let Some((ping, earliest)) = earliest_expiry(life, observed).filter(|(_, earliest)| observed < *earliest) {
            problems.push(format!(
                "session 0x{:x} expired early: its expiry was seen at {:.3} s, but a ping sent at {:.3} s was \
                 answered at {:.3} s and its timeout is {} ms, so it could not expire before {:.3} s",
                life.session,
                seconds(observed),
                seconds(ping.sent),
                seconds(ping.answered),
                life.timeout_ms,
                seconds(earliest)
            ));
        }
    }
    super::verdict(summary, problems)
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn life(pings: &[(u64, u64)], expiry_observed: Option<u64>) -> SessionLife {
        SessionLife {
            session: 0x42,
            timeout_ms: 1000,
            pings: pings.iter().map(|&(sent, answered)| Ping { sent: sent * MS, answered: answered * MS }).collect(),
            expiry_observed: expiry_observed.map(|ms| ms * MS),
        }
    }

    #[test]
    fn timely_expiries_pass() {
        let lives = vec![
            // Expired 1 s after its last ping was sent.
            life(&[(0, 5), (300, 310), (600, 650)], Some(1600)),
            // Within the drift: 0.95 s after.
            life(&[(600, 650)], Some(1550)),
            // A ping answered after the expiry was seen does not count.
            life(&[(0, 5), (1200, 1400)], Some(1300)),
            // Alive to the end.
            life(&[(0, 5)], None),
            // Never answered a ping.
            life(&[], Some(10)),
        ];
        assert_eq!(check_sessions(&lives), Ok(Summary { sessions: 5, expired: 4 }));
    }

    #[test]
    fn an_early_expiry_fails() {
        // A slow answer (sent at 600 ms, answered at 900 ms) still bounds from its sending.
        let problems = check_sessions(&[life(&[(0, 5), (600, 900)], Some(1400))]).expect_err("early");
        assert!(problems[0].starts_with("session 0x42 expired early"), "{problems:?}");
        assert!(problems[0].contains("before 1.500 s"), "{problems:?}");
    }
}
