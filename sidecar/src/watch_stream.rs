//! A persistent ZooKeeper watch streamed as NDJSON: the one loop behind every watch stream (a
//! znode or subtree, an election's leader, a group's members). The watch is added before the
//! snapshot is read, so no change falls between the two; then come the lines for each event,
//! `suspended` / `reconnected` as the connection comes and goes, and after a reconnect the watch
//! is added again and the watched thing looked at afresh, since events may have been missed. The
//! stream ends with `lost` when the session does, when the app goes, or when the drain closes
//! the streams. What the lines say is the watched thing's business ([`Watched`]).

use std::future::Future;
use std::time::Instant;

use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use zookeeper_client::{AddWatchMode, Client, EventType, SessionState as ZkState, WatchedEvent};

use crate::error::{Error, Result};
use crate::holds::Holds;
use crate::session::{self, SessionHandle};
use crate::stream::{self, stream_response, EventSink, SessionChange};

/// What a watch stream watches, and what its lines say.
pub trait Watched: Send + 'static {
    /// The znode the watch is on.
    fn path(&self) -> &str;

    /// Persistent, or persistent and recursive.
    fn mode(&self) -> AddWatchMode;

    /// What the stream is about, as its errors name it (a path, an election, `group NAME`).
    fn shown(&self) -> &str;

    /// The first line, read once the watch is in place; an error answers the request instead.
    fn snapshot(&mut self, client: &Client) -> impl Future<Output = Result<Value>> + Send;

    /// The lines for one event on a watched znode.
    fn changed(&mut self, client: &Client, event: &WatchedEvent) -> impl Future<Output = Vec<Value>> + Send;

    /// The lines after the session reconnected (`event`), once the watch was added again or
    /// failed to be (`rewatched`): what changed while the connection was down may have fired
    /// no event.
    fn resync(
        &mut self,
        client: &Client,
        event: &WatchedEvent,
        rewatched: bool,
    ) -> impl Future<Output = Vec<Value>> + Send;
}

/// Answers a watch request with the stream of `watched`, run as one of `holds`' streams so that
/// the drain ends it.
pub async fn respond(holds: &Holds, session: &SessionHandle, client: Client, watched: impl Watched) -> Response {
    let (sink, events) = stream::channel();
    let (ready, answered) = oneshot::channel();
    let stop = holds.streams_closed();
    holds.spawn_stream(run(client, session.clone(), watched, sink, ready, stop));
    stream_response(answered, events).await
}

async fn run(
    client: Client,
    session: SessionHandle,
    mut watched: impl Watched,
    events: EventSink,
    ready: oneshot::Sender<Result<()>>,
    stop: tokio_util::sync::WaitForCancellationFutureOwned,
) {
    tokio::pin!(stop);
    let (path, mode) = (watched.path().to_owned(), watched.mode());
    let mut watcher = match client.watch(&path, mode).await {
        Ok(watcher) => watcher,
        Err(e) => {
            let _ = ready.send(Err(Error::from_zk(e, watched.shown())));
            return;
        }
    };
    let first = match watched.snapshot(&client).await {
        Ok(first) => first,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    if !events.send(first).await {
        return;
    }
    loop {
        let event = tokio::select! {
            event = watcher.changed() => event,
            _ = events.closed() => return,
            _ = &mut stop => return,
        };
        let lines = match event.event_type {
            EventType::Session => match event.session_state {
                ZkState::Disconnected => {
                    let valid_until = session.valid_until().unwrap_or_else(Instant::now);
                    vec![SessionChange::Suspended(valid_until).event()]
                }
                ZkState::SyncConnected | ZkState::ConnectedReadOnly => {
                    let mut lines = vec![SessionChange::Reconnected.event()];
                    let rewatched = session::rewatch(&client, &path, mode, &mut watcher).await;
                    if let Err(e) = &rewatched {
                        let message = format!("cannot watch {} again: {e}", watched.shown());
                        lines.push(json!({"type": "error", "message": message}));
                    }
                    lines.extend(watched.resync(&client, &event, rewatched.is_ok()).await);
                    lines
                }
                ZkState::Expired => {
                    let _ = events.send(SessionChange::Lost.event()).await;
                    return;
                }
                _ => {
                    let _ = events.send(SessionChange::Closed.event()).await;
                    return;
                }
            },
            _ => watched.changed(&client, &event).await,
        };
        for line in lines {
            if !events.send(line).await {
                return;
            }
        }
    }
}
