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
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::hold_request::{await_status, ended_error, wait_ms};
use super::request::{value_body, Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::holds::{Hold, LeaseBinding};
use crate::recipes::queue::{self, ClaimRequest};
use crate::stream::{self, stream_response, EventSink, SessionFollower};
use crate::znode::{self, DataBody};

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
    let wait = wait_ms(&flags)?;
    let name = params.name("name", "queue name")?;
    let value = value_body(&body)?;
    let release = state.holds.begin(None)?;
    let status = state.session.subscribe();
    let (client, generation) = state.session.client()?;
    let follower = SessionFollower::new(status, generation);
    let mut request = ClaimRequest {
        queue: name.clone(),
        data: znode::holder_data(&state.identity, value.as_deref()),
        give_up: None,
        claims: state.claims.clone(),
        metrics: state.metrics.clone(),
    };
    let (ready, answered) = oneshot::channel();
    let Some(lease) = flags.value("lease") else {
        let (sink, events) = stream::channel();
        let hold = Hold::new(client, follower, sink, release);
        state.holds.spawn_hold(queue::claim(hold, request, ready));
        return Ok(stream_response(answered, events).await);
    };
    znode::validate_name("lease id", lease)?;
    let ended = state.leases.ended(lease, generation)?;
    // Not detached: if this request goes before an item is claimed, the claimer gives up.
    let (sink, mut status) = EventSink::latest();
    let binding = LeaseBinding { leases: state.leases.clone(), id: lease.to_owned(), ended, remembered: None };
    let hold = Hold::new(client, follower, sink, release).with_lease(binding);
    request.give_up = Some(Instant::now() + wait);
    state.holds.spawn_hold(queue::claim(hold, request, ready));
    match answered.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(Error::NoSession("the claim ended before it started; retry".to_owned())),
    }
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
