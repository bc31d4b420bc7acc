//! Newline-delimited JSON streams: the channel between a task that produces events and the HTTP
//! response that carries them (answered once the task is set up), and how session changes show
//! up on a stream. A stream's task notices the app going away (the response body dropped, i.e.
//! the connection closed) through [`EventSink::closed`]; that is what binds a hold to the app's
//! connection. A hold bound to a lease instead reports into a latest-state sink
//! ([`EventSink::latest`]) that the requests about it read: it keeps the hold's latest event,
//! with a suspension (and its deadline) on top while the session is suspended. What the events
//! say is each task's business.

use std::convert::Infallible;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::session::{SessionState, SessionStatus};

/// Events buffered between a task and a slow reader before the task waits.
const BUFFER: usize = 64;

/// The producing side of a stream, or of a hold's latest state when the hold is bound to a
/// lease rather than to a connection.
#[derive(Debug, Clone)]
pub enum EventSink {
    /// Every event, in order, to the app's open connection.
    Stream(mpsc::Sender<Value>),
    /// Only the latest event that says where the hold stands. A `suspended` event is kept on
    /// top of it (`{"type": "suspended", ..., "hold": EVENT}`) until `reconnected` puts the
    /// hold's event back; a final event (`lost`, `released`, `error`) replaces both. Requests
    /// of a lease-bound hold read it.
    Latest {
        /// The latest event.
        tx: watch::Sender<Value>,
        /// Kept by a detached sink so that it never counts as gone.
        keep: Option<watch::Receiver<Value>>,
    },
}

/// Events after which a hold is over.
pub const FINAL_EVENTS: [&str; 3] = ["released", "lost", "error"];

/// What a latest-state sink holds after `event`, given what it held (`was`).
fn latest_after(was: &Value, event: Value) -> Value {
    let suspended = was["type"] == "suspended";
    let hold = if suspended { &was["hold"] } else { was };
    match event["type"].as_str().unwrap_or_default() {
        "suspended" => {
            let mut event = event;
            event["hold"] = hold.clone();
            event
        }
        "reconnected" => hold.clone(),
        kind if FINAL_EVENTS.contains(&kind) => event,
        // A hold's own news while suspended stays under the suspension.
        _ if suspended => {
            let mut was = was.clone();
            was["hold"] = event;
            was
        }
        _ => event,
    }
}

impl EventSink {
    /// A latest-state sink and the receiver of the request waiting on it. The sink counts as
    /// gone once every receiver is dropped (the request gave up), until it is [detached].
    ///
    /// [detached]: EventSink::detach
    pub fn latest() -> (EventSink, watch::Receiver<Value>) {
        let (tx, rx) = watch::channel(Value::Null);
        (EventSink::Latest { tx, keep: None }, rx)
    }

    /// From now on the sink never counts as gone: the hold no longer depends on any request.
    /// A stream sink is left as it is.
    pub fn detach(&mut self) {
        if let EventSink::Latest { tx, keep } = self {
            if keep.is_none() {
                *keep = Some(tx.subscribe());
            }
        }
    }

    /// Sends one event; false once the app has gone.
    pub async fn send(&self, event: Value) -> bool {
        match self {
            EventSink::Stream(tx) => tx.send(event).await.is_ok(),
            EventSink::Latest { tx, .. } => {
                tx.send_modify(|latest| *latest = latest_after(latest, event));
                true
            }
        }
    }

    /// Resolves when the app has gone (its connection closed or the response was never sent;
    /// for a latest-state sink, every request waiting on it gave up).
    pub async fn closed(&self) {
        match self {
            EventSink::Stream(tx) => tx.closed().await,
            EventSink::Latest { tx, .. } => tx.closed().await,
        }
    }

    /// Whether the app has gone already.
    pub fn is_closed(&self) -> bool {
        match self {
            EventSink::Stream(tx) => tx.is_closed(),
            EventSink::Latest { tx, .. } => tx.is_closed(),
        }
    }
}

/// The consuming side: turned into the HTTP response once the stream is set up.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Value>,
}

/// A new stream.
pub fn channel() -> (EventSink, EventStream) {
    let (tx, rx) = mpsc::channel(BUFFER);
    (EventSink::Stream(tx), EventStream { rx })
}

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        let lines = futures::stream::unfold(self.rx, |mut rx| async move {
            let event = rx.recv().await?;
            let mut line = serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec());
            line.push(b'\n');
            Some((Ok::<_, Infallible>(Bytes::from(line)), rx))
        });
        let mut response = Response::new(Body::from_stream(lines));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Answers a streaming request: the stream once its task said it is set up, else the error.
pub async fn stream_response(ready: oneshot::Receiver<Result<()>>, stream: EventStream) -> Response {
    match ready.await {
        Ok(Ok(())) => stream.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => Error::NoSession("the stream ended before it started; retry".to_owned()).into_response(),
    }
}

/// A session change as a stream reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    /// Connection lost (or silent); holds are valid until the deadline, at the latest.
    Suspended(Instant),
    /// Connection back, same session: holds are intact.
    Reconnected,
    /// The session (and every hold of it) is gone.
    Lost,
    /// The sidecar closed the session.
    Closed,
}

impl SessionChange {
    /// The event line for this change.
    pub fn event(self) -> Value {
        match self {
            SessionChange::Suspended(valid_until) => {
                let (valid_until_ms, valid_for_ms) =
                    crate::deadline::as_seen(valid_until, Instant::now(), SystemTime::now());
                json!({"type": "suspended", "valid_until_ms": valid_until_ms, "valid_for_ms": valid_for_ms})
            }
            SessionChange::Reconnected => json!({"type": "reconnected"}),
            SessionChange::Lost => json!({"type": "lost", "reason": "session expired"}),
            SessionChange::Closed => json!({"type": "lost", "reason": "session closed"}),
        }
    }
}

/// Follows the session of one generation and reports what a stream should say about it.
#[derive(Debug)]
pub struct SessionFollower {
    status: watch::Receiver<SessionStatus>,
    generation: u64,
    suspended: bool,
}

impl SessionFollower {
    /// Follows `generation` (the session the stream's znodes belong to).
    pub fn new(mut status: watch::Receiver<SessionStatus>, generation: u64) -> SessionFollower {
        status.mark_unchanged();
        SessionFollower { status, generation, suspended: false }
    }

    /// The session's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The receiver, to wait for a reconnect.
    pub fn status_mut(&mut self) -> &mut watch::Receiver<SessionStatus> {
        &mut self.status
    }

    /// Waits for the next change worth reporting. `Lost` and `Closed` are final.
    pub async fn next(&mut self) -> SessionChange {
        loop {
            if self.status.changed().await.is_err() {
                return SessionChange::Closed;
            }
            let (state, generation, valid_until) = {
                let now = self.status.borrow_and_update();
                (now.state, now.generation, now.valid_until)
            };
            if generation != self.generation {
                return SessionChange::Lost;
            }
            match state {
                SessionState::Suspended if !self.suspended => {
                    self.suspended = true;
                    // Published with every suspension; without one, the hold is over now.
                    return SessionChange::Suspended(valid_until.unwrap_or_else(Instant::now));
                }
                SessionState::Connected if self.suspended => {
                    self.suspended = false;
                    return SessionChange::Reconnected;
                }
                SessionState::Lost => return SessionChange::Lost,
                SessionState::Closed => return SessionChange::Closed,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_latest_sink_keeps_the_last_hold_event_and_a_suspension_on_top() {
        let (sink, status) = EventSink::latest();
        assert!(sink.send(json!({"type": "waiting"})).await);
        assert!(sink.send(json!({"type": "acquired", "token": 7})).await);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        assert!(sink.send(SessionChange::Suspended(deadline).event()).await);
        let suspended = status.borrow().clone();
        assert_eq!(suspended["type"], json!("suspended"), "a suspension is never dropped: {suspended}");
        assert!(suspended["valid_for_ms"].as_u64().is_some_and(|left| left <= 5000));
        assert!(suspended["valid_until_ms"].as_u64().is_some());
        assert_eq!(suspended["hold"], json!({"type": "acquired", "token": 7}));
        assert!(sink.send(SessionChange::Reconnected.event()).await);
        assert_eq!(*status.borrow(), json!({"type": "acquired", "token": 7}));

        assert!(sink.send(SessionChange::Suspended(deadline).event()).await);
        assert!(sink.send(SessionChange::Lost.event()).await);
        assert_eq!(*status.borrow(), json!({"type": "lost", "reason": "session expired"}), "nor is a loss");
    }

    #[tokio::test]
    async fn a_hold_event_while_suspended_stays_under_the_suspension() {
        let (sink, status) = EventSink::latest();
        assert!(sink.send(json!({"type": "waiting"})).await);
        assert!(sink.send(SessionChange::Suspended(Instant::now()).event()).await);
        assert!(sink.send(json!({"type": "acquired", "token": 9})).await);
        assert_eq!(status.borrow()["type"], json!("suspended"));
        assert!(sink.send(SessionChange::Reconnected.event()).await);
        assert_eq!(*status.borrow(), json!({"type": "acquired", "token": 9}));
    }

    #[tokio::test]
    async fn a_latest_sink_is_gone_with_its_request_until_detached() {
        let (sink, status) = EventSink::latest();
        assert!(!sink.is_closed());
        drop(status);
        assert!(sink.is_closed());
        sink.closed().await;

        let (mut sink, status) = EventSink::latest();
        sink.detach();
        drop(status);
        assert!(!sink.is_closed(), "a detached sink never counts as gone");
    }
}
