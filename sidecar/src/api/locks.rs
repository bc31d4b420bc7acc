//! `POST /v1/locks/{name}[?try]`: a stream that says `waiting`, then `acquired {token}`; the lock
//! is held until the app closes the connection. `?try` answers 409 instead of waiting.
//! With `?lease=ID` the lock is bound to the lease instead: the request answers JSON once the
//! lock is held (200) or after `?wait_ms` (202, still in line), and `DELETE ...?lease=ID`
//! releases it.

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
use crate::recipes::lock;
use crate::znode;

/// Takes the lock `name` for as long as the connection lasts, or with `?lease=ID` for as long
/// as the lease.
pub async fn lock(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    RawBody(body): RawBody,
) -> Result<Response> {
    flags.allow(&["try", "lease", "wait_ms"])?;
    let try_only = flags.flag("try")?;
    let HoldRequest { name, data, lease, wait } = HoldRequest::parse(&state, &flags, &params, "lock name", &body)?;
    let metrics = state.metrics.clone();
    let run = |hold, ready| lock::run(hold, name.clone(), data, try_only, metrics, ready);
    let (lease, mut status) = match hold_request::begin(&state, lease.as_deref(), HoldKind::Lock(&name), run).await? {
        Begun::Stream(response) => return Ok(response),
        Begun::Lease { id, status } => (id, status),
    };
    let wait = if try_only { Duration::ZERO } else { wait };
    let seen = await_status(&mut status, wait, &["acquired"]).await;
    match seen["type"].as_str() {
        Some("acquired") => Ok(Json(json!({
            "acquired": true, "token": seen["token"], "node": seen["node"], "lease": lease,
        }))
        .into_response()),
        Some("waiting") if try_only => {
            Err(Error::Held(format!("lock {name} is held; lease {lease} waits in line from an earlier request")))
        }
        Some("waiting") => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"acquired": false, "node": seen["node"], "ahead": seen["ahead"], "lease": lease})),
        )
            .into_response()),
        _ => Err(ended_error("lock", &seen)),
    }
}

/// `DELETE /v1/locks/{name}?lease=ID`: releases (or stops waiting for) the lock the lease has.
pub async fn release(State(state): State<AppState>, params: Params, flags: Flags) -> Result<StatusCode> {
    flags.allow(&["lease"])?;
    let name = params.name("name", "lock name")?;
    let Some(lease) = flags.value("lease") else {
        return Err(Error::BadInput(
            "DELETE needs ?lease=ID; a lock taken on a stream is released by closing the stream".to_owned(),
        ));
    };
    znode::validate_name("lease id", lease)?;
    let hold = state
        .leases
        .hold(lease, &hold_key("lock", &name))?
        .ok_or_else(|| Error::NotFound(format!("lease {lease} has no lock {name}")))?;
    hold_request::resign(hold).await;
    Ok(StatusCode::NO_CONTENT)
}
