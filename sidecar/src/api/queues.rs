//! `/v1/queues/{name}`: `POST` enqueues an item; `GET` counts items and claims;
//! `POST .../claim` claims the oldest unclaimed item, on a stream (held while the connection is
//! open) or with `?lease=ID` as one JSON answer (held while the lease lives); `DELETE
//! .../items/{id}` acknowledges a claimed item, deleting it.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::hold_request::{self, await_status, ended_error, Begun, HoldKind, HoldRequest};
use super::request::{Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::recipes::queue::{self, ClaimRequest};
use crate::znode::DataBody;

/// Appends an item to the queue (201 with its id).
pub async fn enqueue(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    RawBody(body): RawBody,
) -> Result<Response> {
    flags.allow(&[])?;
    let name = params.name("name", "queue name")?;
    let data = DataBody::parse(&body)?;
    let (client, _) = state.session.client()?;
    let (id, stat) = queue::enqueue(&client, &name, &data).await?;
    state.metrics.enqueued.inc();
    Ok((StatusCode::CREATED, Json(json!({"queue": name, "id": id, "czxid": stat.czxid}))).into_response())
}

/// How many items the queue has, and how many of them are claimed.
pub async fn length(State(state): State<AppState>, params: Params, flags: Flags) -> Result<Response> {
    flags.allow(&[])?;
    let name = params.name("name", "queue name")?;
    let (client, _) = state.session.client()?;
    let (items, claimed) = queue::length(&client, &name).await.map_err(|e| Error::from_zk(e, &name))?;
    Ok(Json(json!({"queue": name, "items": items, "claimed": claimed})).into_response())
}

/// Claims the oldest unclaimed item: a stream (`waiting`, then `claimed`, then `acked` once
/// acknowledged), or with `?lease=ID` one answer (200 with the item; 204 when none came within
/// `?wait_ms`).
pub async fn claim(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    RawBody(body): RawBody,
) -> Result<Response> {
    flags.allow(&["lease", "wait_ms"])?;
    let HoldRequest { name, data, lease, wait } = HoldRequest::parse(&state, &flags, &params, "queue name", &body)?;
    let (claims, metrics) = (state.claims.clone(), state.metrics.clone());
    let leased = lease.is_some();
    let run = move |hold, ready| {
        // A lease claim gives up waiting in line at its deadline; a stream's waits as long as the app.
        let give_up = leased.then(|| Instant::now() + wait);
        queue::claim(hold, ClaimRequest { queue: name, data, give_up, claims, metrics }, ready)
    };
    let (lease, mut status) = match hold_request::begin(&state, lease.as_deref(), HoldKind::Claim, run).await? {
        Begun::Stream(response) => return Ok(response),
        Begun::Lease { id, status } => (id, status),
    };
    // The claimer itself gives up at the deadline and says so (after leaving the line, hence
    // the slack); past that, something holds it up (a suspended session) and the app retries.
    let seen = await_status(&mut status, wait + Duration::from_secs(10), &["claimed", "timeout"]).await;
    match seen["type"].as_str() {
        Some("claimed") => {
            let mut item = seen;
            if let Value::Object(map) = &mut item {
                map.remove("type");
                map.insert("lease".to_owned(), json!(lease));
            }
            Ok(Json(item).into_response())
        }
        Some("timeout") => Ok(StatusCode::NO_CONTENT.into_response()),
        _ => Err(ended_error("claim", &seen)),
    }
}

/// Acknowledges item `id`: deletes it and its claim (204). The claim must be one this sidecar
/// holds; `If-Match: TOKEN` also requires it to be the claim with that token.
pub async fn ack(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    headers: HeaderMap,
) -> Result<StatusCode> {
    flags.allow(&[])?;
    let name = params.name("name", "queue name")?;
    let id = params.name("id", "item id")?;
    let token = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| Error::BadInput("If-Match is not text".to_owned()))?;
            let unquoted = text.trim().trim_matches('"');
            Some(unquoted.parse::<i64>().map_err(|_| {
                Error::BadInput(format!("If-Match {text:?} is not a claim token (the `token` of the claim)"))
            })?)
        }
    };
    let (client, _) = state.session.client()?;
    if let Some(acked) = state.claims.ack(&name, &id, token).await {
        return acked.map(|()| StatusCode::NO_CONTENT);
    }
    match queue::item_exists(&client, &name, &id).await {
        Ok(false) => Err(Error::NotFound(format!("no item {id} in queue {name} (already acknowledged?)"))),
        Ok(true) => Err(Error::NotClaimed(format!(
            "this pod holds no claim on item {id} of queue {name}: claim it first (a claim ends when its \
             connection closes or its lease ends)"
        ))),
        Err(e) => Err(Error::from_zk(e, &id)),
    }
}
