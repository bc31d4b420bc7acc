//! Client sessions at the client port: the handshake policy (accept a new session, resume a
//! known one, or turn the client away so it tries another server) and the ids and passwords of
//! new sessions. The session table is the data tree's; liveness is [`crate::liveness`]'s.

use std::time::{Duration, Instant};

use rand::RngCore;

use crate::proto::connect::{ConnectRequest, ConnectResponse};
use crate::server::Server;
use crate::tree::{TxnKind, TxnResult};

/// The longest a server out of touch holds a handshake before it turns the client away.
const HANDSHAKE_HOLD: Duration = Duration::from_millis(500);

/// What a handshake settled on: the answer to send, and the session the connection serves from
/// then on (`None`: the client was turned away, after the answer if there is one).
pub struct Settled {
    /// The ConnectResponse to send; `None` to close without one.
    pub response: Option<ConnectResponse>,
    /// The session id and its negotiated timeout.
    pub session: Option<(i64, Duration)>,
}

/// Settles a client's ConnectRequest, as ZooKeeper does: refuse while out of touch with the
/// cluster or behind the client's last seen zxid (it moves on); create a session (through the
/// log) for id 0; resume a known session whose password matches, moving it here through the
/// log first when another server owns it (see [`TxnKind::MoveSession`]); answer timeout 0 /
/// session 0 for an unknown or expired one.
pub async fn handshake(server: &Server, ids: &SessionIds, request: &ConnectRequest) -> Settled {
    settle(server, ids, request).await.unwrap_or(Settled { response: None, session: None })
}

/// [`handshake`]; `None` when the client is turned away without an answer.
async fn settle(server: &Server, ids: &SessionIds, request: &ConnectRequest) -> Option<Settled> {
    let requested = Duration::from_millis(request.timeout_ms.max(0) as u64);
    // Out of touch with the cluster (an election, a partition): give it a moment, then turn the
    // client away so it tries another server — well within the client's own connection timeout
    // (zookeeper-client gives a server 2/5 of the session timeout, the Java client the session
    // timeout over the number of servers): a client held longer loses its try at the others, and
    // with two such tries its whole session (test `cluster isolation::
    // a_server_out_of_touch_turns_a_client_away_within_its_connection_timeout`).
    if !server.contact.wait_serving(HANDSHAKE_HOLD.min(requested / 10)).await {
        return None;
    }
    let applied = server.store.tree().last_zxid();
    if request.last_zxid_seen > applied {
        // The client has seen a newer state than ours; ZooKeeper refuses so that it moves on
        // to a server that has caught up.
        tracing::info!(client_zxid = request.last_zxid_seen, applied, "refusing session from the future");
        return None;
    }
    let timeout = requested.clamp(server.config.min_session_timeout(), server.config.max_session_timeout());
    let settled = if request.session_id == 0 {
        // During an election, hold the new session (not refuse it) until a leader is known,
        // within the client's own timeout.
        if !server.writes.wait_for_leader(timeout.min(server.config.max_session_timeout())).await {
            return None;
        }
        let session_id = ids.next_id();
        let password = SessionIds::password();
        let created = server
            .writes
            .write(TxnKind::CreateSession {
                session_id,
                password: password.clone(),
                timeout_ms: timeout.as_millis() as i32,
            })
            .await;
        match created {
            Ok(_) => {
                if server.is_leader() {
                    server.sessions.add(session_id, timeout, Instant::now());
                }
                Some((session_id, password, timeout))
            }
            // No quorum: ZooKeeper closes the socket and the client tries another server.
            Err(_) => return None,
        }
    } else {
        let known =
            server.store.tree().session(request.session_id).map(|s| (s.password.clone(), s.timeout_ms, s.owner));
        match known {
            Some((password, timeout_ms, owner)) if password == request.password => {
                let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
                // Attached elsewhere before: move the session here through the log before
                // answering, so every write of it still on its way from the old server is
                // ordered after the move, and refused (SessionMoved) instead of landing after
                // the writes the client sends here.
                let owned = owner == server.config.id || move_here(server, request.session_id, timeout).await?;
                if !owned {
                    None
                } else {
                    // A resumed session is a promise that it lives, as a ping answer is: given
                    // only once the leader may make it (issue 12 hole o; test `cluster
                    // isolation::no_session_expires_sooner_than_its_timeout_after_a_cut_off_leader_resumed_it`).
                    // Else the client is turned away and tries another server.
                    let touched = server.touch(request.session_id);
                    if !server.ping_answerable(touched, HANDSHAKE_HOLD.min(requested / 10)).await {
                        return None;
                    }
                    Some((request.session_id, password, timeout))
                }
            }
            _ => None,
        }
    };
    let (session_id, password, timeout) = settled.unwrap_or((0, vec![0; 16], Duration::ZERO));
    let response = ConnectResponse {
        protocol_version: 0,
        timeout_ms: timeout.as_millis() as i32,
        session_id,
        password,
        read_only: request.read_only.map(|_| false),
    };
    Some(Settled { response: Some(response), session: (session_id != 0).then_some((session_id, timeout)) })
}

/// Makes this server the owner of `session_id` (one log write, [`TxnKind::MoveSession`]):
/// `Some(true)` once the move is applied here, `Some(false)` when the session is gone (closed
/// or expired meanwhile), `None` when the move could not be made (no leader or no quorum: the
/// client tries another server).
async fn move_here(server: &Server, session_id: i64, timeout: Duration) -> Option<bool> {
    if !server.writes.wait_for_leader(timeout.min(server.config.max_session_timeout())).await {
        return None;
    }
    match server.writes.write(TxnKind::MoveSession { session_id }).await {
        Ok(outcome) => Some(matches!(outcome.result, TxnResult::OwnerChanged { .. })),
        Err(e) => {
            tracing::debug!(session_id, "could not move the session here: {e}");
            None
        }
    }
}

/// Makes session ids and passwords (on the leader; the txn carries them to every replica).
pub struct SessionIds {
    base: i64,
    counter: std::sync::atomic::AtomicI64,
}

impl SessionIds {
    /// Ids for server `server_id`: the id in the top byte, the start time below, a counter in
    /// the low 16 bits, as ZooKeeper does, so ids from different servers and restarts differ.
    pub fn new(server_id: u64, now_ms: u64) -> Self {
        let base = (((server_id & 0x7f) as i64) << 56) | (((now_ms & 0xff_ffff_ffff) as i64) << 16);
        Self { base, counter: std::sync::atomic::AtomicI64::new(0) }
    }

    /// A fresh session id (never 0).
    pub fn next_id(&self) -> i64 {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The counter carries into the time bits after 65536 sessions, which keeps ids unique.
        (self.base + n + 1).max(1)
    }

    /// A random 16-byte session password.
    pub fn password() -> Vec<u8> {
        let mut pw = vec![0u8; 16];
        rand::rng().fill_bytes(&mut pw);
        pw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_positive() {
        let ids = SessionIds::new(3, 1_700_000_000_000);
        let a = ids.next_id();
        let b = ids.next_id();
        assert!(a > 0 && b > a);
        assert_eq!(a >> 56, 3);
        assert_eq!(SessionIds::password().len(), 16);
    }
}
