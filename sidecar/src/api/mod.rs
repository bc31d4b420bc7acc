//! The HTTP API: the router on the Unix socket (the app's API plus health), the router on the TCP
//! port (health and metrics only) and the request counter. Each route's handler is in its own
//! module; what they share is in `state` (the registries), `request` (extractors) and `hold_request`
//! (answering lease-bound hold requests).

mod elections;
mod groups;
mod hold_request;
mod leases;
mod locks;
mod nodes;
mod queues;
mod request;
mod state;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::error::Error;
use crate::session::SessionState;
use request::MAX_BODY_BYTES;
pub use state::{AppState, Shared};

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
