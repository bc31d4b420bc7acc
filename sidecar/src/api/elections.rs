//! `/v1/elections/{name}`: `POST .../campaign` streams `follower {leader}` then `leader {term}`
//! for as long as the connection lasts (with `?lease=ID`: campaigns for as long as the lease,
//! answering JSON once leading or after `?wait_ms`); `GET` (or `GET ?watch`) observes the
//! leader; `DELETE` resigns this pod's campaigns (`?lease=ID`: that lease's campaign).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use zookeeper_client::{AddWatchMode, Client, EventType, SessionState as ZkState};

use super::hold_request::{self, await_status, ended_error, Begun, HoldKind, HoldRequest};
use super::request::{Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::recipes::election::{self, election_dir};
use crate::recipes::lease::hold_key;
use crate::session;
use crate::stream::{self, stream_response, EventSink, SessionChange};
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
        let (sink, events) = stream::channel();
        let (ready, answered) = oneshot::channel();
        let stop = state.holds.streams_closed();
        state.holds.spawn_stream(watch_leader(client, name, sink, ready, stop));
        return Ok(stream_response(answered, events).await);
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

async fn watch_leader(
    client: Client,
    name: String,
    events: EventSink,
    ready: oneshot::Sender<Result<()>>,
    stop: tokio_util::sync::WaitForCancellationFutureOwned,
) {
    tokio::pin!(stop);
    let dir = election_dir(&name);
    let mut watcher = match client.watch(&dir, AddWatchMode::Persistent).await {
        Ok(watcher) => watcher,
        Err(e) => {
            let _ = ready.send(Err(Error::from_zk(e, &name)));
            return;
        }
    };
    let (mut leader, candidates) = match election::observe(&client, &dir).await {
        Ok(seen) => seen,
        Err(e) => {
            let _ = ready.send(Err(Error::from_zk(e, &name)));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let first = json!({"type": "snapshot", "name": name, "leader": leader, "candidates": candidates});
    if !events.send(first).await {
        return;
    }
    loop {
        let event = tokio::select! {
            event = watcher.changed() => event,
            _ = events.closed() => return,
            _ = &mut stop => return,
        };
        let mut lines = Vec::new();
        if event.event_type == EventType::Session {
            match event.session_state {
                ZkState::Disconnected => {
                    lines.push(SessionChange::Suspended.event());
                }
                ZkState::SyncConnected | ZkState::ConnectedReadOnly => {
                    lines.push(SessionChange::Reconnected.event());
                    if let Err(e) = session::rewatch(&client, &dir, AddWatchMode::Persistent, &mut watcher).await {
                        lines.push(json!({"type": "error", "message": format!("cannot watch {name} again: {e}")}));
                    }
                }
                ZkState::Expired => {
                    let _ = events.send(SessionChange::Lost.event()).await;
                    return;
                }
                _ => {
                    let _ = events.send(SessionChange::Closed.event()).await;
                    return;
                }
            }
        }
        if event.session_state != ZkState::Disconnected {
            match election::observe(&client, &dir).await {
                Ok((now, candidates)) if now != leader => {
                    lines.push(leader_event(&now, candidates, event.zxid));
                    leader = now;
                }
                Ok(_) => {}
                Err(e) => lines.push(json!({"type": "error", "message": e.to_string()})),
            }
        }
        for line in lines {
            if !events.send(line).await {
                return;
            }
        }
    }
}

fn leader_event(leader: &Option<Value>, candidates: usize, zxid: i64) -> Value {
    let mut event = json!({"type": "leader", "leader": leader, "candidates": candidates});
    if zxid >= 0 {
        event["zxid"] = json!(zxid);
    }
    event
}
