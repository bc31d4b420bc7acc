//! How the hold handlers (locks, campaigns, queue claims) begin a hold for a request: what every
//! such request says (`?wait_ms`, the name, the `{"value"}` body, `?lease=ID`), the hold on the
//! request's stream or bound to its lease (where a lock or campaign the lease already has is found
//! rather than begun again), and for a lease-bound request the wait for the hold's status and the
//! error a hold that ended answers with. What the hold does is its recipe's; which status is a
//! request's goal and what it answers then is its handler's.

use std::future::Future;
use std::time::Duration;

use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use zookeeper_client::Client;

use super::request::{value_body, Flags, Params};
use super::state::Shared;
use crate::error::{Error, Result};
use crate::holds::{Hold, LeaseBinding, Release};
use crate::lease::{hold_key, LeaseHold};
use crate::stream::{self, stream_response, EventSink, SessionFollower, FINAL_EVENTS};
use crate::znode;

/// What a lock, campaign or claim request says besides its route's own flags.
#[derive(Debug)]
pub struct HoldRequest {
    /// The lock, election or queue (the route's `{name}`).
    pub name: String,
    /// The holder znode's data: the pod's identity and the app's `value`.
    pub data: Vec<u8>,
    /// The lease to bind the hold to (`?lease=ID`); without one it lives with the stream.
    pub lease: Option<String>,
    /// How long a lease-bound request waits for its goal (`?wait_ms`).
    pub wait: Duration,
}

impl HoldRequest {
    /// Parses the request; `what` names the route's `{name}` in errors (`lock name`).
    pub fn parse(state: &Shared, flags: &Flags, params: &Params, what: &str, body: &[u8]) -> Result<HoldRequest> {
        let wait = wait_ms(flags)?;
        let name = params.name("name", what)?;
        let value = value_body(body)?;
        let data = znode::holder_data(&state.identity, value.as_deref());
        let lease = flags.value("lease").map(str::to_owned);
        if let Some(lease) = &lease {
            znode::validate_name("lease id", lease)?;
        }
        Ok(HoldRequest { name, data, lease, wait })
    }
}

/// Which hold a request begins.
#[derive(Debug, Clone, Copy)]
pub enum HoldKind<'a> {
    /// Lock `name`.
    Lock(&'a str),
    /// A campaign in election `name`.
    Campaign(&'a str),
    /// A claim of a queue's next item.
    Claim,
}

impl<'a> HoldKind<'a> {
    /// The key a lease remembers the hold by, so that a repeated request finds the hold it
    /// already has. Claims are not remembered: every claim request claims another item.
    fn lease_key(self) -> Option<String> {
        match self {
            HoldKind::Lock(name) => Some(hold_key("lock", name)),
            HoldKind::Campaign(name) => Some(hold_key("election", name)),
            HoldKind::Claim => None,
        }
    }

    /// The election whose resign (`DELETE /v1/elections/{name}`) releases the hold.
    fn election(self) -> Option<&'a str> {
        match self {
            HoldKind::Campaign(name) => Some(name),
            HoldKind::Lock(_) | HoldKind::Claim => None,
        }
    }

    /// The hold, as an error about it names it.
    fn shown(self) -> &'static str {
        match self {
            HoldKind::Lock(_) => "lock request",
            HoldKind::Campaign(_) => "campaign",
            HoldKind::Claim => "claim",
        }
    }
}

/// A hold that has begun, as its request goes on.
#[derive(Debug)]
pub enum Begun<'a> {
    /// On the request's stream: the response that carries it.
    Stream(Response),
    /// Bound to lease `id`: the hold's latest status, to wait on.
    Lease {
        /// The lease.
        id: &'a str,
        /// The hold's latest event.
        status: watch::Receiver<Value>,
    },
}

/// Begins the hold `kind` on the request's stream, or bound to `lease`. `run` is the recipe's
/// task: it gets the hold and the sender it answers once the hold is set up (in line, say), and
/// the request is answered then.
pub async fn begin<'a, F, Fut>(state: &Shared, lease: Option<&'a str>, kind: HoldKind<'_>, run: F) -> Result<Begun<'a>>
where
    F: FnOnce(Hold, oneshot::Sender<Result<()>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(id) = lease else {
        let release = state.holds.begin(kind.election())?;
        let session = state.session.client()?;
        let (sink, events) = stream::channel();
        let answered = start(state, session, release, sink, None, run);
        return Ok(Begun::Stream(stream_response(answered, events).await));
    };
    let (status, started) = match kind.lease_key() {
        // Looked up before a new hold is begun: a repeated request finds the hold the lease
        // has, even while new holds are refused.
        Some(key) => {
            let (client, generation) = state.session.client()?;
            let mut started = None;
            let hold = state.leases.hold_or_start(id, generation, &key, |ended| {
                let release = state.holds.begin(kind.election())?;
                let resign = release.resigner();
                let (mut sink, status) = EventSink::latest();
                // Later requests find the hold through the lease: it depends on none of them.
                sink.detach();
                let binding = LeaseBinding {
                    leases: state.leases.clone(),
                    id: id.to_owned(),
                    ended,
                    remembered: Some((key.clone(), status.clone())),
                };
                started = Some(start(state, (client, generation), release, sink, Some(binding), run));
                Ok(LeaseHold { status, resign })
            })?;
            (hold.status, started)
        }
        None => {
            let release = state.holds.begin(kind.election())?;
            let (client, generation) = state.session.client()?;
            let ended = state.leases.ended(id, generation)?;
            // Not detached: if this request goes before an item is claimed, the claimer gives up.
            let (sink, status) = EventSink::latest();
            let binding = LeaseBinding { leases: state.leases.clone(), id: id.to_owned(), ended, remembered: None };
            (status, Some(start(state, (client, generation), release, sink, Some(binding), run)))
        }
    };
    if let Some(answered) = started {
        match answered.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::NoSession(format!("the {} ended before it started; retry", kind.shown()))),
        }
    }
    Ok(Begun::Lease { id, status })
}

/// Runs `run` on a new hold of `session` (its client and generation) reporting into `sink`;
/// the receiver gets the hold's answer once it is set up.
fn start<F, Fut>(
    state: &Shared,
    (client, generation): (Client, u64),
    release: Release,
    sink: EventSink,
    lease: Option<LeaseBinding>,
    run: F,
) -> oneshot::Receiver<Result<()>>
where
    F: FnOnce(Hold, oneshot::Sender<Result<()>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let follower = SessionFollower::new(state.session.subscribe(), generation);
    let hold = Hold::new(client, follower, sink, release);
    let hold = match lease {
        Some(binding) => hold.with_lease(binding),
        None => hold,
    };
    let (ready, answered) = oneshot::channel();
    state.holds.spawn_hold(run(hold, ready));
    answered
}

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
        Some("suspended") => {
            // The deadline in Unix ms: `valid_for_ms` was counted when the suspension began.
            let until_ms = seen["valid_until_ms"].as_u64().unwrap_or(0);
            let now_ms = crate::deadline::as_seen(
                std::time::Instant::now(),
                std::time::Instant::now(),
                std::time::SystemTime::now(),
            )
            .0;
            let left = std::time::Duration::from_millis(until_ms.saturating_sub(now_ms));
            Error::Suspended {
                message: format!("the session is suspended; the {what} is valid only until the deadline"),
                valid_until: std::time::Instant::now() + left,
            }
        }
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
            (json!({"type": "suspended", "valid_for_ms": 900, "hold": {"type": "acquired"}}), "suspended"),
        ];
        for (seen, code) in cases {
            assert_eq!(ended_error("lock", &seen).code(), code, "{seen}");
        }
    }
}
