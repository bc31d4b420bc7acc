//! `/v1/leases`: grant (`POST {"ttl_ms"}`), keep alive (`POST .../keepalive`), describe (`GET`)
//! and revoke (`DELETE`) leases; znodes are bound to one with `?lease=ID` on `/v1/nodes`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::request::{Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::znode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    ttl_ms: u64,
}

/// Grants a lease.
pub async fn grant(State(state): State<AppState>, flags: Flags, RawBody(body): RawBody) -> Result<Response> {
    flags.allow(&[])?;
    let GrantBody { ttl_ms } = znode::parse_json(&body)?;
    if state.holds.is_draining() {
        return Err(Error::Draining);
    }
    let id = state.leases.grant(ttl_ms)?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "ttl_ms": ttl_ms}))).into_response())
}

/// Renews a lease for another TTL.
pub async fn keep_alive(State(state): State<AppState>, params: Params, flags: Flags) -> Result<Response> {
    flags.allow(&[])?;
    let id = params.name("id", "lease id")?;
    let ttl_ms = state.leases.keep_alive(&id)?;
    Ok(Json(json!({"id": id, "ttl_ms": ttl_ms})).into_response())
}

/// A lease's TTL, time left and znodes.
pub async fn describe(State(state): State<AppState>, params: Params, flags: Flags) -> Result<Response> {
    flags.allow(&[])?;
    let id = params.name("id", "lease id")?;
    let (ttl_ms, remaining_ms, nodes) = state.leases.describe(&id)?;
    Ok(Json(json!({"id": id, "ttl_ms": ttl_ms, "remaining_ms": remaining_ms, "nodes": nodes})).into_response())
}

/// Ends a lease now, deleting its znodes.
pub async fn revoke(State(state): State<AppState>, params: Params, flags: Flags) -> Result<StatusCode> {
    flags.allow(&[])?;
    let id = params.name("id", "lease id")?;
    state.leases.revoke(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
