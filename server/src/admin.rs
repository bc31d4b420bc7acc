//! The admin HTTP API on the admin port: `/metrics`, `/healthz`, `/readyz`, and the cluster API
//! the operator drives membership with (DESIGN.md, "Admin API"). Membership changes are made on
//! the leader; a follower answers them with 421 and the leader's admin address.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openraft::impls::BasicNode;
use openraft::{ChangeMembers, ServerState};
use paddock_contract::admin::{
    self as api, AddLearner, ChangeVoters, ClusterView, ErrorBody, Isolate, MemberView, Role, TransferLeader,
};

use crate::metrics;
use crate::server::Server;
use paddock_tls::listener::Peer as TlsPeer;

/// The admin routes. With admin TLS the cluster API (`/v1/...`) answers only clients that showed
/// a certificate of the admin CA (the operator); `/metrics`, `/healthz` and `/readyz` stay open
/// to kubelets and Prometheus.
pub fn router(server: Arc<Server>) -> Router<()> {
    let mut cluster_api = Router::new()
        .route(api::CLUSTER, get(cluster))
        .route(api::LEARNERS, post(add_learner))
        .route(api::VOTERS, post(change_voters))
        .route(&format!("{}/{{id}}", api::MEMBERS), delete(remove_member))
        .route(api::LEADER, post(transfer_leader));
    if server.config.enable_fault_injection {
        cluster_api = cluster_api.route(api::ISOLATE, post(isolate));
    }
    if server.tls.admin.is_some() {
        cluster_api = cluster_api.route_layer(middleware::from_fn(require_client_certificate));
    }
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(cluster_api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(server)
}

/// Serves the admin port until `shutdown`: over TLS when the server has admin TLS.
pub async fn serve(server: Arc<Server>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let shutdown = server.shutdown.clone();
    let stopped = async move { shutdown.cancelled().await };
    match server.tls.admin.clone() {
        None => axum::serve(listener, router(server)).with_graceful_shutdown(stopped).await,
        Some(tls) => {
            let listener = paddock_tls::listener::TlsListener::new(listener, tls)?;
            let app = router(server).into_make_service_with_connect_info::<TlsPeer>();
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        }
    }
}

/// Lets a request through only from a client that showed a certificate of the admin CA (the
/// TLS layer verified it against the CA; a client that showed none has no certificate here).
async fn require_client_certificate(request: Request, next: Next) -> Response {
    let verified = request.extensions().get::<ConnectInfo<TlsPeer>>().is_some_and(|peer| peer.0.certificate.is_some());
    if !verified {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the cluster API needs a client certificate of the admin CA",
        );
    }
    next.run(request).await
}

/// `{ "error": { "code", "message" } }`, as DESIGN.md specifies for admin errors.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

async fn render_metrics(State(server): State<Arc<Server>>) -> impl IntoResponse {
    server.refresh_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render())
}

async fn ready(State(server): State<Arc<Server>>) -> Response {
    if server.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no leader, not caught up, or out of touch with the cluster",
        )
    }
}

async fn cluster(State(server): State<Arc<Server>>) -> Json<ClusterView> {
    let m = server.raft_metrics();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(&id, node)| MemberView {
            id,
            addr: node.addr.clone(),
            role: if Some(id) == m.current_leader {
                Role::Leader
            } else if voters.contains(&id) {
                Role::Follower
            } else {
                Role::Learner
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
        // The store's figure moves the moment an entry is applied (openraft's metrics a little
        // later), so it never trails what clients have already seen.
        applied: (server.store.applied_zxid().max(0) as u64).max(m.last_applied.as_ref().map(|l| l.index).unwrap_or(0)),
        members,
    })
}

/// 421 with the leader's admin address when this server does not lead; `None` on the leader.
fn not_leader(server: &Server) -> Option<Response> {
    if server.is_leader() {
        return None;
    }
    let leader = server.raft_metrics().current_leader;
    let admin = leader.and_then(|id| server.peers.admin_addr(id));
    let body = serde_json::json!({
        "error": { "code": "not_leader", "message": "membership changes are made on the leader" },
        "leader": leader,
        "leader_admin": admin,
    });
    let mut response = (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response();
    if let Some(admin) = admin.and_then(|a| header::HeaderValue::from_str(&format!("http://{a}")).ok()) {
        response.headers_mut().insert(header::LOCATION, admin);
    }
    Some(response)
}

fn raft_failure(e: impl std::fmt::Display) -> Response {
    error(StatusCode::CONFLICT, "membership_change_failed", &e.to_string())
}

async fn add_learner(
    State(server): State<Arc<Server>>,
    body: Result<Json<AddLearner>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(AddLearner { id, addr }) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    if id == 0 || !addr.contains(':') {
        return error(StatusCode::BAD_REQUEST, "bad_request", "id must be >= 1 and addr host:port");
    }
    if let Some(r) = not_leader(&server) {
        return r;
    }
    // Blocking: returns once the learner has caught up; after 30 s answer 202 and let the
    // caller poll /v1/cluster (matched index) instead.
    let added =
        tokio::time::timeout(Duration::from_secs(30), server.raft.add_learner(id, BasicNode::new(addr), true)).await;
    match added {
        Ok(Ok(_)) => (StatusCode::OK, Json(serde_json::json!({ "id": id, "caught_up": true }))).into_response(),
        Ok(Err(e)) => raft_failure(e),
        Err(_) => (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id, "caught_up": false }))).into_response(),
    }
}

async fn change_voters(
    State(server): State<Arc<Server>>,
    body: Result<Json<ChangeVoters>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(ChangeVoters { ids }) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    if ids.is_empty() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "the voter set cannot be empty");
    }
    if let Some(r) = not_leader(&server) {
        return r;
    }
    let known: BTreeSet<u64> =
        server.raft_metrics().membership_config.membership().nodes().map(|(id, _)| *id).collect();
    if let Some(unknown) = ids.iter().find(|id| !known.contains(id)) {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown_member",
            &format!("{unknown} is not a member; add it as a learner first"),
        );
    }
    // Joint consensus; voters left out stay as learners until removed.
    match server.raft.change_membership(ChangeMembers::ReplaceAllVoters(ids.clone()), true).await {
        Ok(_) => Json(serde_json::json!({ "voters": ids })).into_response(),
        Err(e) => raft_failure(e),
    }
}

async fn remove_member(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "member id must be a number");
    };
    if let Some(r) = not_leader(&server) {
        return r;
    }
    let m = server.raft_metrics();
    let membership = m.membership_config.membership();
    if membership.get_node(&id).is_none() {
        return error(StatusCode::NOT_FOUND, "unknown_member", &format!("{id} is not a member"));
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    if voters.contains(&id) {
        if voters.len() == 1 {
            return error(StatusCode::CONFLICT, "last_voter", "cannot remove the last voter");
        }
        if let Err(e) = server.raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await {
            return raft_failure(e);
        }
    }
    let still_known = server.raft_metrics().membership_config.membership().get_node(&id).is_some();
    if still_known {
        if let Err(e) = server.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await {
            return raft_failure(e);
        }
    }
    Json(serde_json::json!({ "removed": id })).into_response()
}

async fn transfer_leader(
    State(server): State<Arc<Server>>,
    body: Result<Json<TransferLeader>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(TransferLeader { id }) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    };
    if let Some(r) = not_leader(&server) {
        return r;
    }
    let voters: BTreeSet<u64> = server.raft_metrics().membership_config.membership().voter_ids().collect();
    if !voters.contains(&id) {
        return error(StatusCode::BAD_REQUEST, "not_a_voter", &format!("{id} is not a voter"));
    }
    if id == server.config.id {
        return Json(serde_json::json!({ "leader": id })).into_response();
    }
    server.contact.transferring();
    if let Err(e) = server.raft.trigger().transfer_leader(id).await {
        return raft_failure(e);
    }
    // Wait for the change to be visible, bounded.
    let mut metrics = server.raft.metrics();
    let moved = tokio::time::timeout(
        Duration::from_secs(5),
        openraft::async_runtime::WatchReceiver::wait_until(&mut metrics, |m: &openraft::RaftMetrics<_>| {
            m.current_leader == Some(id)
        }),
    )
    .await;
    match moved {
        Ok(Ok(_)) => Json(serde_json::json!({ "leader": id })).into_response(),
        _ => error(StatusCode::GATEWAY_TIMEOUT, "transfer_pending", "leadership has not moved yet"),
    }
}

async fn isolate(
    State(server): State<Arc<Server>>,
    body: Result<Json<Isolate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(Isolate { isolated })) => {
            server.peers.faults.set_isolated(isolated);
            tracing::warn!(isolated, "peer traffic isolation changed by fault injection");
            Json(serde_json::json!({ "isolated": isolated })).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", &e.body_text()),
    }
}
