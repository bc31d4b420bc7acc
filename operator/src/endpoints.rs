//! The operator's plain-HTTP endpoints for kubelet and Prometheus: `/healthz` (process up),
//! `/readyz` (ready to serve webhook admissions) and `/metrics`. The metrics are `metrics`'s;
//! `main` says when the replica is ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::Registry;

/// Shared by the endpoints.
#[derive(Clone)]
pub struct Endpoints {
    /// The operator's metrics.
    pub registry: Registry,
    /// Set once the replica can serve (webhook listening, or no webhook configured).
    pub ready: Arc<AtomicBool>,
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(e): State<Endpoints>| async move {
                if e.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(e): State<Endpoints>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&e.registry))
                    .into_response()
            }),
        )
        .with_state(endpoints)
}
