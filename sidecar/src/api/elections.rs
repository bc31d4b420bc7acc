//! `/v1/elections/{name}`: `POST .../campaign` streams `follower {leader}` then `leader {term}`
//! for as long as the connection lasts (with `?lease=ID`: campaigns for as long as the lease,
//! answering JSON once leading or after `?wait_ms`); `GET` (or `GET ?watch`) observes the
//! leader; `DELETE` resigns this pod's campaigns (`?lease=ID`: that lease's campaign).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::hold_request::{self, await_status, ended_error, Begun, HoldKind, HoldRequest};
use super::request::{Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::lease::hold_key;
use crate::recipes::election::{self, election_dir, LeaderWatch};
use crate::watch_stream;
use crate::znode;

/// Campaigns in election `name` for as long as the connection lasts, or with `?lease=ID` for
/// as long as the lease.
pub async fn campaign(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    RawBody(body): RawBody,
) -> Result<Response> {
    flags.allow(&["lease", "wait_ms"])?;
    let HoldRequest { name, data, lease, wait } = HoldRequest::parse(&state, &flags, &params, "election name", &body)?;
    let metrics = state.metrics.clone();
    let run = |hold, ready| election::campaign(hold, name.clone(), data, metrics, ready);
    let (lease, mut status) =
        match hold_request::begin(&state, lease.as_deref(), HoldKind::Campaign(&name), run).await? {
            Begun::Stream(response) => return Ok(response),
            Begun::Lease { id, status } => (id, status),
        };
    let seen = await_status(&mut status, wait, &["leader"]).await;
    match seen["type"].as_str() {
        Some("leader") => Ok(Json(json!({
            "leading": true, "term": seen["term"], "node": seen["node"], "lease": lease,
        }))
        .into_response()),
        Some("follower") => {
            Ok((StatusCode::ACCEPTED, Json(json!({"leading": false, "leader": seen["leader"], "lease": lease})))
                .into_response())
        }
        _ => Err(ended_error("campaign", &seen)),
    }
}

/// The leader of election `name` (or a stream of leader changes with `?watch`).
pub async fn observe(State(state): State<AppState>, params: Params, flags: Flags) -> Result<Response> {
    flags.allow(&["watch"])?;
    let name = params.name("name", "election name")?;
    let (client, _) = state.session.client()?;
    if flags.flag("watch")? {
        return Ok(watch_stream::respond(&state.holds, &state.session, client, LeaderWatch::new(name)).await);
    }
    let (leader, candidates) =
        election::observe(&client, &election_dir(&name)).await.map_err(|e| Error::from_zk(e, &name))?;
    Ok(Json(json!({"name": name, "leader": leader, "candidates": candidates})).into_response())
}

/// Resigns every campaign this pod runs in election `name` (`?lease=ID`: only that lease's).
pub async fn resign(State(state): State<AppState>, params: Params, flags: Flags) -> Result<StatusCode> {
    flags.allow(&["lease"])?;
    let name = params.name("name", "election name")?;
    if let Some(lease) = flags.value("lease") {
        znode::validate_name("lease id", lease)?;
        let hold = state
            .leases
            .hold(lease, &hold_key("election", &name))?
            .ok_or_else(|| Error::NotFound(format!("lease {lease} has no campaign in election {name}")))?;
        hold_request::resign(hold).await;
        return Ok(StatusCode::NO_CONTENT);
    }
    if state.holds.resign(&name, Duration::from_secs(5)).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound(format!("this pod has no campaign in election {name}")))
    }
}
