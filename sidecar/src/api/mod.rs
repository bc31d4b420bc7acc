//! The HTTP API: the router on the Unix socket (the app's API plus health), the router on the TCP
//! port (health and metrics only), request extractors that turn every malformed input into a
//! 4xx with the JSON error body, and the request counter.

mod elections;
mod groups;
mod leases;
mod locks;
mod nodes;
mod queues;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::holds::Holds;
use crate::identity::PodIdentity;
use crate::metrics::Metrics;
use crate::recipes::group::Memberships;
use crate::recipes::lease::Leases;
use crate::recipes::queue::Claims;
use crate::session::{SessionHandle, SessionState};
use crate::stream::EventStream;

/// Largest request body: a maximal znode payload in base64 plus JSON framing.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug)]
pub struct Shared {
    /// The pod's session.
    pub session: SessionHandle,
    /// Who the pod is.
    pub identity: PodIdentity,
    /// Holds and streams, for the drain.
    pub holds: Holds,
    /// Group memberships.
    pub members: Memberships,
    /// Leases and the znodes bound to them.
    pub leases: Leases,
    /// The queue claims this sidecar holds.
    pub claims: Claims,
    /// Metrics.
    pub metrics: Metrics,
}

/// Router state.
pub type AppState = Arc<Shared>;

/// The app's API on the Unix socket (also answers `/healthz`, `/readyz`, `/metrics`).
pub fn app_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/nodes", get(nodes::get).put(nodes::put).post(nodes::post).delete(nodes::delete))
        .route("/v1/nodes/", get(nodes::get).put(nodes::put).post(nodes::post).delete(nodes::delete))
        .route("/v1/nodes/{*path}", get(nodes::get).put(nodes::put).post(nodes::post).delete(nodes::delete))
        .route("/v1/locks/{name}", post(locks::lock).delete(locks::release))
        .route("/v1/elections/{name}", get(elections::observe).delete(elections::resign))
        .route("/v1/elections/{name}/campaign", post(elections::campaign))
        .route("/v1/groups/{group}", get(groups::get))
        .route("/v1/groups/{group}/members/{id}", put(groups::join).delete(groups::leave))
        .route("/v1/leases", post(leases::grant))
        .route("/v1/leases/{id}", get(leases::describe).delete(leases::revoke))
        .route("/v1/leases/{id}/keepalive", post(leases::keep_alive))
        .route("/v1/queues/{name}", get(queues::length).post(queues::enqueue))
        .route("/v1/queues/{name}/claim", post(queues::claim))
        .route("/v1/queues/{name}/items/{id}", delete(queues::ack))
        .merge(health_routes())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// `/healthz`, `/readyz` and `/metrics` for kubelet and Prometheus on the TCP port.
pub fn health_router(state: AppState) -> Router {
    health_routes()
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

fn health_routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when the session is connected, the pod's memberships are in place (so the app is
/// healthy) and the sidecar is not draining.
async fn readyz(State(state): State<AppState>) -> Response {
    let status = state.session.status();
    let draining = state.holds.is_draining();
    let app_healthy = state.metrics.app_healthy.get() == 1;
    let joined = state.members.in_place(status.generation);
    let body = json!({"session": status.state, "draining": draining, "app_healthy": app_healthy, "joined": joined});
    let ready = status.state == SessionState::Connected && !draining && joined;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn no_route(method: Method, uri: axum::http::Uri) -> Error {
    Error::NoRoute(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "other".to_owned());
    let response = next.run(request).await;
    state.metrics.http_requests.with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()]).inc();
    response
}

/// The query string as name/value pairs (`?watch` is `("watch", "")`), checked against the
/// names a route accepts.
#[derive(Debug, Default)]
pub struct Flags(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Flags {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(pairs)) => Ok(Flags(pairs)),
            Err(e) => Err(Error::BadInput(format!("bad query string: {}", e.body_text()))),
        }
    }
}

impl Flags {
    /// Fails on any name not in `allowed`, or given twice.
    pub fn allow(&self, allowed: &[&str]) -> Result<()> {
        for (i, (name, _)) in self.0.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(Error::BadInput(format!(
                    "unknown query parameter {name:?}; this route takes {}",
                    if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
                )));
            }
            if self.0[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(Error::BadInput(format!("query parameter {name:?} given twice")));
            }
        }
        Ok(())
    }

    /// A boolean flag: absent is false; present with no value, `true` or `1` is true.
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.value(name) {
            None => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(Error::BadInput(format!("query parameter {name}={other:?} is not a boolean"))),
        }
    }

    /// The value of `name`, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The request body, with a too-large or unreadable body answered in the API's error shape.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge(format!("request body is larger than {MAX_BODY_BYTES} bytes")))
            }
            Err(e) => Err(Error::BadInput(format!("unreadable request body: {}", e.body_text()))),
        }
    }
}

/// The route's path parameters by name, percent-decoded, with bad encodings answered 400.
#[derive(Debug)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => {
                let mut params = Vec::new();
                for (name, value) in raw.iter() {
                    params.push((name.to_owned(), value.to_owned()));
                }
                Ok(Params(params))
            }
            // A route without parameters (`/v1/nodes`).
            Err(axum::extract::rejection::RawPathParamsRejection::MissingPathParams(_)) => Ok(Params(Vec::new())),
            Err(e) => Err(Error::BadInput(format!("bad path: {}", e.body_text()))),
        }
    }
}

impl Params {
    /// The parameter `name`; empty when the route has none by that name.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

/// The optional body of a lock, campaign or join: `{"value": "text"}` shown to others.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueBody {
    value: Option<String>,
}

/// Parses an optional `{"value": "text"}` body (empty is no value).
pub fn value_body(body: &[u8]) -> Result<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: ValueBody = crate::znode::parse_json(body)?;
    if let Some(value) = &parsed.value {
        if value.len() > crate::znode::MAX_DATA_BYTES / 2 {
            return Err(Error::TooLarge("value is too large".to_owned()));
        }
    }
    Ok(parsed.value)
}

/// Answers a streaming request: the stream once its task said it is set up, else the error.
pub async fn stream_response(ready: oneshot::Receiver<Result<()>>, stream: EventStream) -> Response {
    match ready.await {
        Ok(Ok(())) => stream.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(_) => Error::NoSession("the stream ended before it started; retry".to_owned()).into_response(),
    }
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
