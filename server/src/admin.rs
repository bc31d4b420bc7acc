//! The admin HTTP API on the admin port: `/metrics`, `/healthz`, `/readyz`, and the read side
//! of the cluster API (`GET /v1/cluster`). Membership changes arrive with clustering.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openraft::ServerState;
use serde::Serialize;

use crate::metrics;
use crate::server::Server;

/// The admin routes.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/v1/cluster", get(cluster))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(server)
}

/// `{ "error": { "code", "message" } }`, as DESIGN.md specifies for admin errors.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

async fn render_metrics(State(server): State<Arc<Server>>) -> impl IntoResponse {
    server.refresh_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render())
}

async fn ready(State(server): State<Arc<Server>>) -> Response {
    if server.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "no leader yet, or not caught up")
    }
}

/// One member as `/v1/cluster` lists it.
#[derive(Serialize)]
pub struct MemberView {
    /// Raft id.
    pub id: u64,
    /// Peer address.
    pub addr: String,
    /// leader, follower or learner.
    pub role: &'static str,
    /// Highest log index known replicated to it (the leader knows; others report null).
    pub matched: Option<u64>,
}

/// `/v1/cluster`.
#[derive(Serialize)]
pub struct ClusterView {
    /// This server's id.
    pub id: u64,
    /// The leader's id, if one is known.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Committed log index.
    pub committed: u64,
    /// Applied log index.
    pub applied: u64,
    /// Members.
    pub members: Vec<MemberView>,
}

async fn cluster(State(server): State<Arc<Server>>) -> Json<ClusterView> {
    let m = server.raft_metrics();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(&id, node)| MemberView {
            id,
            addr: node.addr.clone(),
            role: if Some(id) == m.current_leader {
                "leader"
            } else if voters.contains(&id) {
                "follower"
            } else {
                "learner"
            },
            matched: match (&m.replication, m.state) {
                (Some(rep), ServerState::Leader) => rep.get(&id).and_then(|l| l.as_ref().map(|l| l.index)),
                _ => None,
            },
        })
        .collect();
    Json(ClusterView {
        id: server.config.id,
        leader: m.current_leader,
        term: m.current_term,
        committed: m.local_committed.as_ref().map(|l| l.index).unwrap_or(0),
        applied: m.last_applied.as_ref().map(|l| l.index).unwrap_or(0),
        members,
    })
}
