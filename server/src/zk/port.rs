//! The client port's own state: the server it serves from, its open connections and the source
//! of new session ids. It also follows the server: when contact with the cluster is lost every
//! connection ends, and when a session's close, expiry or move to another server is applied its
//! connections here end, so their clients move on (and learn of an expiry when they reconnect,
//! as with ZooKeeper).

use std::sync::Arc;

use crate::clock::now_ms;
use crate::server::Server;
use crate::store::Store;

use std::time::Duration;

use super::connections::Connections;
use super::sasl::{SaslUsers, UsersError};
use super::session::SessionIds;

/// See the module docs.
pub struct ClientPort {
    /// The server's parts.
    pub server: Arc<Server>,
    /// Open client connections.
    pub connections: Connections,
    /// Ids and passwords for new sessions.
    pub session_ids: SessionIds,
    /// The users SASL accepts, when `--sasl-users` is given.
    pub sasl_users: Option<Arc<SaslUsers>>,
}

impl ClientPort {
    /// The client port of `server`; fails when the SASL users file cannot be used.
    pub fn new(server: Arc<Server>) -> Result<Arc<Self>, UsersError> {
        let session_ids = SessionIds::new(server.config.id, now_ms() as u64);
        let sasl_users = server.config.sasl_users.clone().map(SaslUsers::load).transpose()?;
        if let Some(users) = &sasl_users {
            users.spawn_reloader(Duration::from_millis(server.config.tls_reload_ms), server.shutdown.clone());
        }
        Ok(Arc::new(Self { server, connections: Connections::default(), session_ids, sasl_users }))
    }

    /// Ends connections the server can no longer serve, until it shuts down.
    pub async fn follow_server(self: Arc<Self>) {
        let mut losses = self.server.contact.losses();
        let follow_sessions = end_connections_of_ended_sessions(&self.server.store, &self.connections);
        tokio::pin!(follow_sessions);
        loop {
            tokio::select! {
                _ = self.server.shutdown.cancelled() => return,
                () = &mut follow_sessions => return,
                changed = losses.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.connections.kill_all();
                }
            }
        }
    }
}

/// Ends the connections here of every session whose close, expiry or move to another server is
/// applied, for as long as the store lives.
async fn end_connections_of_ended_sessions(store: &Store, connections: &Connections) {
    let mut ended = store.ended_sessions();
    loop {
        // The counter says only that some session ended: every connection's session is checked
        // against the tree, so a burst of ends is one pass and none is skipped. A session that
        // moved away and back since is served here again and keeps its connection.
        connections.end_sessions_where(|session_id| !store.serves_session(session_id));
        if ended.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::store::{Command, Origin};
    use crate::tree::{Txn, TxnKind};

    fn command(server: u64, kind: TxnKind) -> Command {
        Command { origin: Some(Origin { server, run: 0, seq: 0 }), txn: Txn { time_ms: 0, kind } }
    }

    /// Sessions ending in a burst (a leader expiring thousands at once, a snapshot install)
    /// faster than the client port follows: every connection of every ended session must still
    /// end, or its client keeps reading from a session the cluster has expired (issue 12 j).
    #[tokio::test]
    async fn every_connection_of_an_ended_session_ends_however_many_end_at_once() {
        let store = Store::new(1);
        let connections = Connections::default();
        let sessions = 3000;
        let mut zxid = 0;
        let mut open = Vec::new();
        for session_id in 1..=sessions {
            zxid += 1;
            let create = TxnKind::CreateSession { session_id, password: vec![0; 16], timeout_ms: 4000 };
            store.apply(zxid, 1, &command(1, create));
            let (_, stats) = connections.open("127.0.0.1:1".parse().expect("addr"));
            stats.session_id.store(session_id, Ordering::Relaxed);
            open.push(stats);
        }
        let follow = end_connections_of_ended_sessions(&store, &connections);
        tokio::pin!(follow);
        // Let it start following, then end every session at once: closes and expiries, and
        // moves to server 2, with no chance for the follower to run in between.
        assert!(tokio::time::timeout(Duration::from_millis(10), &mut follow).await.is_err());
        for session_id in 1..=sessions {
            zxid += 1;
            let kind = if session_id % 3 == 0 {
                TxnKind::MoveSession { session_id }
            } else {
                TxnKind::CloseSession { session_id }
            };
            store.apply(zxid, 1, &command(if session_id % 3 == 0 { 2 } else { 1 }, kind));
        }
        let all_ended = async {
            loop {
                if open.iter().all(|stats| stats.kill.is_cancelled()) {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            () = all_ended => {}
            () = &mut follow => panic!("stopped following"),
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                let left = open.iter().filter(|stats| !stats.kill.is_cancelled()).count();
                panic!("{left} of {sessions} connections of ended sessions are still open");
            }
        }
    }
}
