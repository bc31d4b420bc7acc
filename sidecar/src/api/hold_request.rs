//! How a lease-bound hold request (a lock, campaign or claim with `?lease=ID`) is answered: its
//! `?wait_ms`, waiting for the hold's status to reach the request's goal, and the error a hold
//! that ended answers with. Each handler says which status is its goal and what it answers with.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::request::Flags;
use crate::error::{Error, Result};
use crate::recipes::lease::LeaseHold;

/// The longest a lease-bound request (`?lease=ID`) waits for its hold.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// How long a lease-bound request waits when it does not say (`?wait_ms`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// `?wait_ms=N` of a lease-bound request (400 without `?lease`, or above [`MAX_WAIT`]).
pub fn wait_ms(flags: &Flags) -> Result<Duration> {
    let Some(raw) = flags.value("wait_ms") else { return Ok(DEFAULT_WAIT) };
    if flags.value("lease").is_none() {
        return Err(Error::BadInput(
            "wait_ms only applies with ?lease=ID (a stream waits as long as it is open)".to_owned(),
        ));
    }
    match raw.parse::<u64>() {
        Ok(ms) if Duration::from_millis(ms) <= MAX_WAIT => Ok(Duration::from_millis(ms)),
        _ => Err(Error::BadInput(format!("wait_ms must be a number of milliseconds up to {}", MAX_WAIT.as_millis()))),
    }
}

/// Events after which a hold is over.
const FINAL_EVENTS: [&str; 3] = ["released", "lost", "error"];

/// Waits until a lease-bound hold's latest event is one of `goal` or final, or, once `wait` has
/// passed, until it says anything at all (a hold's first event comes right after it is set up).
/// An ended task without a final event reads as `{"type": "ended"}`.
pub async fn await_status(status: &mut watch::Receiver<Value>, wait: Duration, goal: &[&str]) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let seen = status.borrow_and_update().clone();
        let kind = seen["type"].as_str().unwrap_or_default();
        if goal.contains(&kind) || FINAL_EVENTS.contains(&kind) || (!seen.is_null() && Instant::now() >= deadline) {
            return seen;
        }
        let changed = if seen.is_null() {
            Ok(status.changed().await)
        } else {
            tokio::time::timeout_at(deadline, status.changed()).await
        };
        if let Ok(Err(_)) = changed {
            let last = status.borrow().clone();
            let kind = last["type"].as_str().unwrap_or_default();
            return if FINAL_EVENTS.contains(&kind) || goal.contains(&kind) { last } else { json!({"type": "ended"}) };
        }
    }
}

/// The error a lease-bound request answers when its hold ended (`seen`: the final event).
pub fn ended_error(what: &str, seen: &Value) -> Error {
    let reason = seen["reason"].as_str().unwrap_or("ended");
    match seen["type"].as_str() {
        Some("released") if reason == "shutdown" => Error::Draining,
        Some("released") if reason == "lease ended" => Error::NotFound(format!("the lease ended; so did the {what}")),
        Some("released") if reason == "resigned" => {
            Error::NotFound(format!("the {what} was released while the request waited"))
        }
        Some("released") => Error::NoSession(format!("the {what} was released ({reason})")),
        Some("error") => Error::Zookeeper(zookeeper_client::Error::UnexpectedError(
            seen["message"].as_str().unwrap_or("unknown").to_owned(),
        )),
        _ => Error::NoSession(format!("the {what} was lost ({reason}); retry")),
    }
}

/// Releases a lease-bound hold and waits (bounded) until its task has deleted its znode.
pub async fn resign(hold: LeaseHold) {
    hold.resign.cancel();
    let mut status = hold.status;
    // The status closes when the task ends, after it deleted its znode.
    let ended = async { while status.changed().await.is_ok() {} };
    if tokio::time::timeout(Duration::from_secs(5), ended).await.is_err() {
        tracing::warn!("a lease-bound hold took longer than 5s to release");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_request_waits_for_its_goal_or_the_deadline() {
        let (tx, mut rx) = watch::channel(json!({"type": "acquired", "token": 3}));
        assert_eq!(await_status(&mut rx, DEFAULT_WAIT, &["acquired"]).await["token"], json!(3));

        tx.send_replace(json!({"type": "waiting", "ahead": 1}));
        let seen = await_status(&mut rx, Duration::from_millis(10), &["acquired"]).await;
        assert_eq!(seen["type"], json!("waiting"), "the deadline answers the state so far");

        tx.send_replace(json!({"type": "lost", "reason": "session expired"}));
        assert_eq!(await_status(&mut rx, DEFAULT_WAIT, &["acquired"]).await["type"], json!("lost"));

        let (tx, mut rx) = watch::channel(Value::Null);
        drop(tx);
        assert_eq!(await_status(&mut rx, Duration::ZERO, &["acquired"]).await["type"], json!("ended"));
    }

    #[test]
    fn ended_holds_map_to_errors() {
        let cases = [
            (json!({"type": "released", "reason": "shutdown"}), "draining"),
            (json!({"type": "released", "reason": "lease ended"}), "not_found"),
            (json!({"type": "released", "reason": "app unhealthy"}), "no_session"),
            (json!({"type": "lost", "reason": "znode deleted"}), "no_session"),
            (json!({"type": "error", "message": "boom"}), "zookeeper"),
            (json!({"type": "ended"}), "no_session"),
        ];
        for (seen, code) in cases {
            assert_eq!(ended_error("lock", &seen).code(), code, "{seen}");
        }
    }
}
