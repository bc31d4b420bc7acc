//! `/v1/nodes/{path}`: znodes of the namespace. GET reads (or lists with `?children`, or streams
//! with `?watch[&recursive]`), PUT writes (creating the node and its parents when missing), POST
//! creates a sequential child, DELETE deletes; `If-Match` carries versions.

use std::collections::VecDeque;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use zookeeper_client::{AddWatchMode, Client, EventType, Stat, WatchedEvent};

use super::request::{Flags, Params, RawBody};
use super::state::AppState;
use crate::error::{Error, Result};
use crate::session;
use crate::watch_stream::{self, Watched};
use crate::znode::{self, DataBody};

/// The most znodes a recursive watch's snapshot carries.
const MAX_SNAPSHOT_NODES: usize = 10_000;

fn with_etag(status: StatusCode, body: Value, stat: &Stat) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", stat.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn if_match(headers: &HeaderMap) -> Result<Option<i32>> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|_| Error::BadInput("If-Match is not text".to_owned()))?;
            znode::parse_if_match(text).map(Some)
        }
    }
}

fn if_none_match_any(headers: &HeaderMap) -> Result<bool> {
    match headers.get(header::IF_NONE_MATCH) {
        None => Ok(false),
        Some(value) if value.as_bytes() == b"*" => Ok(true),
        Some(_) => Err(Error::BadInput("If-None-Match only takes \"*\" (create only)".to_owned())),
    }
}

/// `GET /v1/nodes/{path}[?children | ?watch[&recursive]]`.
pub async fn get(State(state): State<AppState>, params: Params, flags: Flags) -> Result<Response> {
    flags.allow(&["watch", "recursive", "children"])?;
    let path = znode::node_path(params.get("path"))?;
    let (watch, recursive, children) = (flags.flag("watch")?, flags.flag("recursive")?, flags.flag("children")?);
    if recursive && !watch {
        return Err(Error::BadInput("recursive only applies to ?watch".to_owned()));
    }
    if watch && children {
        return Err(Error::BadInput("give either ?watch or ?children".to_owned()));
    }
    let (client, _) = state.session.client()?;
    if watch {
        return Ok(watch_stream::respond(&state.holds, &state.session, client, NodeWatch { path, recursive }).await);
    }
    if children {
        let (mut names, stat) = client.get_children(&path).await.map_err(|e| Error::from_zk(e, &path))?;
        names.sort();
        return Ok(with_etag(
            StatusCode::OK,
            json!({"path": path, "children": names, "stat": znode::stat_json(&stat)}),
            &stat,
        ));
    }
    let (data, stat) = client.get_data(&path).await.map_err(|e| Error::from_zk(e, &path))?;
    Ok(with_etag(StatusCode::OK, znode::node_json(&path, &data, &stat), &stat))
}

/// Creates `path`, and its missing parents as empty persistent znodes.
async fn create_with_parents(
    client: &Client,
    path: &str,
    data: &[u8],
    options: &zookeeper_client::CreateOptions<'_>,
) -> Result<(Stat, zookeeper_client::CreateSequence), zookeeper_client::Error> {
    match client.create(path, data, options).await {
        Err(zookeeper_client::Error::NoNode) => {
            session::ensure_path(client, znode::parent(path), &session::persistent()).await?;
            client.create(path, data, options).await
        }
        other => other,
    }
}

/// `PUT /v1/nodes/{path}[?ephemeral | ?lease=ID]`: `If-Match: V` sets only at version V,
/// `If-None-Match: *` only creates; otherwise sets, creating the node when it is missing (as an
/// ephemeral, bound to lease ID, when asked).
pub async fn put(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response> {
    flags.allow(&["ephemeral", "lease"])?;
    let path = znode::node_path(params.get("path"))?;
    let lease = flags.value("lease");
    let ephemeral = flags.flag("ephemeral")? || lease.is_some();
    let version = if_match(&headers)?;
    let create_only = if_none_match_any(&headers)?;
    if version.is_some() && create_only {
        return Err(Error::BadInput("If-Match and If-None-Match exclude each other".to_owned()));
    }
    let data = DataBody::parse(&body)?;
    let (client, generation) = state.session.client()?;
    if let Some(id) = lease {
        state.leases.check(id, generation)?;
    }
    let options = if ephemeral { session::ephemeral() } else { session::persistent() };
    let zk = |e| Error::from_zk(e, &path);
    if create_only {
        let (stat, _) = create_with_parents(&client, &path, &data, &options).await.map_err(zk)?;
        return created(&state, lease, &path, &data, &stat).await;
    }
    if version.is_some() {
        let stat = client.set_data(&path, &data, version).await.map_err(zk)?;
        return Ok(with_etag(StatusCode::OK, znode::node_json(&path, &data, &stat), &stat));
    }
    // Set, else create; a create racing another create falls back to a set.
    for _ in 0..4 {
        match client.set_data(&path, &data, None).await {
            Ok(stat) => return Ok(with_etag(StatusCode::OK, znode::node_json(&path, &data, &stat), &stat)),
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(zk(e)),
        }
        match create_with_parents(&client, &path, &data, &options).await {
            Ok((stat, _)) => return created(&state, lease, &path, &data, &stat).await,
            Err(zookeeper_client::Error::NodeExists) => continue,
            Err(e) => return Err(zk(e)),
        }
    }
    Err(Error::Exists(format!("znode {path} keeps being created and deleted; retry")))
}

/// The answer to a create; binds the new znode to its lease first, if it has one.
async fn created(state: &AppState, lease: Option<&str>, path: &str, data: &[u8], stat: &Stat) -> Result<Response> {
    if let Some(id) = lease {
        state.leases.bind(id, path).await?;
    }
    Ok(with_etag(StatusCode::CREATED, znode::node_json(path, data, stat), stat))
}

/// `POST /v1/nodes/{parent}?sequential[&ephemeral | &lease=ID][&prefix=P]`: creates
/// `{parent}/{P}NNNNNNNNNN`.
pub async fn post(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    RawBody(body): RawBody,
) -> Result<Response> {
    flags.allow(&["sequential", "ephemeral", "prefix", "lease"])?;
    if !flags.flag("sequential")? {
        return Err(Error::BadInput(
            "POST creates sequential nodes: add ?sequential (PUT creates a named node)".to_owned(),
        ));
    }
    let parent = znode::node_path(params.get("path"))?;
    let prefix = flags.value("prefix").unwrap_or("");
    if !prefix.is_empty() {
        znode::validate_name("prefix", prefix)?;
    }
    let data = DataBody::parse(&body)?;
    let (client, generation) = state.session.client()?;
    let lease = flags.value("lease");
    if let Some(id) = lease {
        state.leases.check(id, generation)?;
    }
    let ephemeral = flags.flag("ephemeral")? || lease.is_some();
    let options = if ephemeral { session::ephemeral_sequential() } else { session::persistent_sequential() };
    let sequential_path = if parent == "/" { format!("/{prefix}") } else { format!("{parent}/{prefix}") };
    let (stat, sequence) = create_with_parents(&client, &sequential_path, &data, &options)
        .await
        .map_err(|e| Error::from_zk(e, &parent))?;
    let path = format!("{sequential_path}{sequence}");
    if let Some(id) = lease {
        state.leases.bind(id, &path).await?;
    }
    Ok(with_etag(StatusCode::CREATED, znode::node_json(&path, &data, &stat), &stat))
}

/// `DELETE /v1/nodes/{path}` (`If-Match: V` deletes only at version V).
pub async fn delete(
    State(state): State<AppState>,
    params: Params,
    flags: Flags,
    headers: HeaderMap,
) -> Result<StatusCode> {
    flags.allow(&[])?;
    let path = znode::node_path(params.get("path"))?;
    if path == "/" {
        return Err(Error::BadInput("the namespace root cannot be deleted".to_owned()));
    }
    let version = if_match(&headers)?;
    let (client, _) = state.session.client()?;
    client.delete(&path, version).await.map_err(|e| Error::from_zk(e, &path))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The node (or `null`), or the whole subtree for a recursive watch.
async fn snapshot(client: &Client, path: &str, recursive: bool) -> Result<Value> {
    let zk = |e| Error::from_zk(e, path);
    if !recursive {
        return match client.get_data(path).await {
            Ok((data, stat)) => Ok(json!({"type": "snapshot", "node": znode::node_json(path, &data, &stat)})),
            Err(zookeeper_client::Error::NoNode) => Ok(json!({"type": "snapshot", "node": null})),
            Err(e) => Err(zk(e)),
        };
    }
    let mut nodes = Vec::new();
    let mut queue = VecDeque::from([path.to_owned()]);
    while let Some(next) = queue.pop_front() {
        if nodes.len() >= MAX_SNAPSHOT_NODES {
            return Err(Error::TooLarge(format!("{path} has more than {MAX_SNAPSHOT_NODES} znodes to snapshot")));
        }
        let (data, stat) = match client.get_data(&next).await {
            Ok(read) => read,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(zk(e)),
        };
        if stat.num_children > 0 {
            match client.list_children(&next).await {
                Ok(mut children) => {
                    children.sort();
                    queue.extend(children.iter().map(|child| znode::join(&next, child)));
                }
                Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => return Err(zk(e)),
            }
        }
        nodes.push(znode::node_json(&next, &data, &stat));
    }
    Ok(json!({"type": "snapshot", "nodes": nodes}))
}

async fn read_node(client: &Client, path: &str) -> Value {
    match client.get_data(path).await {
        Ok((data, stat)) => znode::node_json(path, &data, &stat),
        Err(_) => Value::Null,
    }
}

/// A znode, or with `recursive` its subtree, as its watch stream shows it: a snapshot, then one
/// line per event with the zxid that caused it; `created` and `changed` carry the node as read
/// after the event.
struct NodeWatch {
    path: String,
    recursive: bool,
}

impl Watched for NodeWatch {
    fn path(&self) -> &str {
        &self.path
    }

    fn mode(&self) -> AddWatchMode {
        if self.recursive {
            AddWatchMode::PersistentRecursive
        } else {
            AddWatchMode::Persistent
        }
    }

    fn shown(&self) -> &str {
        &self.path
    }

    async fn snapshot(&mut self, client: &Client) -> Result<Value> {
        snapshot(client, &self.path, self.recursive).await
    }

    async fn changed(&mut self, client: &Client, event: &WatchedEvent) -> Vec<Value> {
        match event.event_type {
            EventType::NodeCreated => {
                let node = read_node(client, &event.path).await;
                vec![json!({"type": "created", "path": event.path, "zxid": event.zxid, "node": node})]
            }
            EventType::NodeDataChanged => {
                let node = read_node(client, &event.path).await;
                vec![json!({"type": "changed", "path": event.path, "zxid": event.zxid, "node": node})]
            }
            EventType::NodeDeleted => vec![json!({"type": "deleted", "path": event.path, "zxid": event.zxid})],
            EventType::NodeChildrenChanged => {
                vec![json!({"type": "children", "path": event.path, "zxid": event.zxid})]
            }
            // Session events are the stream's own business.
            EventType::Session => Vec::new(),
        }
    }

    async fn resync(&mut self, client: &Client, _event: &WatchedEvent, rewatched: bool) -> Vec<Value> {
        if !rewatched {
            return Vec::new();
        }
        // Events during the disconnection may be lost: a fresh snapshot follows, read after the
        // watch is in place again.
        let again = snapshot(client, &self.path, self.recursive).await;
        vec![again.unwrap_or_else(|e| json!({"type": "error", "message": e.to_string()}))]
    }
}
