//! The client port's own state: the server it serves from, its open connections and the source
//! of new session ids. It also follows the server: when contact with the cluster is lost every
//! connection ends, and when a session's close, expiry or move to another server is applied its
//! connections here end, so their clients move on (and learn of an expiry when they reconnect,
//! as with ZooKeeper).

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::server::Server;
use crate::write::now_ms;

use super::connections::Connections;
use super::session::SessionIds;

/// See the module docs.
pub struct ClientPort {
    /// The server's parts.
    pub server: Arc<Server>,
    /// Open client connections.
    pub connections: Connections,
    /// Ids and passwords for new sessions.
    pub session_ids: SessionIds,
}

impl ClientPort {
    /// The client port of `server`.
    pub fn new(server: Arc<Server>) -> Arc<Self> {
        let session_ids = SessionIds::new(server.config.id, now_ms() as u64);
        Arc::new(Self { server, connections: Connections::default(), session_ids })
    }

    /// Ends connections the server can no longer serve, until it shuts down.
    pub async fn follow_server(self: Arc<Self>) {
        let mut losses = self.server.contact.losses();
        let mut ended = self.server.store.ended_sessions();
        loop {
            tokio::select! {
                _ = self.server.shutdown.cancelled() => return,
                changed = losses.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.connections.kill_all();
                }
                next = ended.recv() => match next {
                    // A session that moved away and back since is served here again.
                    Ok(session_id) if !self.server.store.serves_session(session_id) => {
                        self.connections.kill_session(session_id);
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }
}
