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
use tokio::sync::oneshot;

use super::hold_request::{self, await_status, ended_error, wait_ms};
use super::request::{value_body, Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::holds::{Hold, LeaseBinding};
use crate::recipes::lease::{hold_key, LeaseHold};
use crate::recipes::lock;
use crate::stream::{self, stream_response, EventSink, SessionFollower};
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
    let wait = wait_ms(&flags)?;
    let name = params.name("name", "lock name")?;
    let value = value_body(&body)?;
    let data = znode::holder_data(&state.identity, value.as_deref());
    if let Some(lease) = flags.value("lease") {
        znode::validate_name("lease id", lease)?;
        return lease_lock(&state, name, lease, data, try_only, wait).await;
    }
    let release = state.holds.begin(None)?;
    let status = state.session.subscribe();
    let (client, generation) = state.session.client()?;
    let (sink, events) = stream::channel();
    let hold = Hold::new(client, SessionFollower::new(status, generation), sink, release);
    let (ready, answered) = oneshot::channel();
    state.holds.spawn_hold(lock::run(hold, name, data, try_only, state.metrics.clone(), ready));
    Ok(stream_response(answered, events).await)
}

/// The lock bound to lease `lease`: a new hold, or the one the lease already has.
async fn lease_lock(
    state: &AppState,
    name: String,
    lease: &str,
    data: Vec<u8>,
    try_only: bool,
    wait: Duration,
) -> Result<Response> {
    let (client, generation) = state.session.client()?;
    let key = hold_key("lock", &name);
    let mut started = None;
    let (hold, _) = state.leases.hold_or_start(lease, generation, &key, |ended| {
        let release = state.holds.begin(None)?;
        let resign = release.resigner();
        let (mut sink, status) = EventSink::latest();
        sink.detach();
        let binding = LeaseBinding {
            leases: state.leases.clone(),
            id: lease.to_owned(),
            ended,
            remembered: Some((key.clone(), status.clone())),
        };
        let follower = SessionFollower::new(state.session.subscribe(), generation);
        let hold = Hold::new(client, follower, sink, release).with_lease(binding);
        let (ready, answered) = oneshot::channel();
        state.holds.spawn_hold(lock::run(hold, name.clone(), data, try_only, state.metrics.clone(), ready));
        started = Some(answered);
        Ok(LeaseHold { status, resign })
    })?;
    if let Some(answered) = started {
        match answered.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::NoSession("the lock request ended before it started; retry".to_owned())),
        }
    }
    let mut status = hold.status.clone();
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
