//! One client connection's reading side: framing, the handshake's I/O, and a slot per request.
//!
//! The reader decodes each request, asks [`dispatch`] what it wants, and at once hands writes
//! to the write path, in order (so a session's writes are FIFO and pipelined). Every request
//! also gets a slot in the connection's ordered queue, which [`super::writer`] resolves
//! strictly in order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_tls::{ReadHalf, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::frame::{self, FrameError};
use crate::metrics;
use crate::proto::connect::ConnectRequest;
use crate::proto::header::RequestHeader;
use crate::proto::jute::write_frame;
use crate::proto::request::Request;
use crate::proto::response::Response;
use crate::proto::{ErrorCode, Id, OpCode};
use crate::store::watch::ConnId;
use crate::tree::{Txn, TxnKind};

use super::connections::ConnStats;
use super::dispatch::{self, Action, Caller};
use super::port::ClientPort;
use super::sasl::Exchange;
use super::writer::{self, write_error_code, Slot};
use super::{four_letter, session};

/// How many requests a connection may have in flight before the reader stops reading.
const MAX_IN_FLIGHT: usize = 1024;

/// Why a connection ended (for logs); none of these affects other connections.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Socket error or the peer went away.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame longer than jute.maxbuffer or negative.
    #[error("frame length {0} out of bounds")]
    FrameLength(i64),
    /// A record that does not decode.
    #[error("malformed record: {0}")]
    Malformed(#[from] crate::proto::DecodeError),
    /// Nothing heard for a whole session timeout.
    #[error("client silent for {0:?}")]
    Idle(Duration),
}

impl From<FrameError> for ConnectionError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ConnectionError::Io(e),
            // As jute reads it: a length over 2 GiB is a negative i32.
            FrameError::TooLong { len, .. } => ConnectionError::FrameLength(len as u32 as i32 as i64),
        }
    }
}

/// One request frame (its length prefix `prefix` read already), counted in the metrics.
async fn read_request(
    reader: &mut BufReader<ReadHalf>,
    prefix: [u8; 4],
    max: usize,
) -> Result<Vec<u8>, ConnectionError> {
    let body = frame::read_body(reader, prefix, max).await?;
    metrics::BYTES_IN.inc_by(4 + body.len() as u64);
    Ok(body)
}

async fn read_frame(reader: &mut BufReader<ReadHalf>, max: usize) -> Result<Vec<u8>, ConnectionError> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await?;
    read_request(reader, prefix, max).await
}

/// Serves one accepted connection until it ends. `identities` are what its TLS client
/// certificate says (the `x509` ids), besides the `ip` id every connection has.
pub async fn serve(port: Arc<ClientPort>, halves: (ReadHalf, WriteHalf), peer: SocketAddr, identities: Vec<Id>) {
    let (read_half, mut write_half) = halves;
    let mut reader = BufReader::new(read_half);
    let mut first = [0u8; 4];
    // A peer that never says anything is not held forever.
    let handshake_timeout = port.server.config.max_session_timeout();
    match tokio::time::timeout(handshake_timeout, reader.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if four_letter::is_word(&first) {
        let answer = four_letter::answer(&port, &first);
        let _ = write_half.write_all(answer.as_bytes()).await;
        let _ = write_half.shutdown().await;
        return;
    }
    metrics::CONNECTIONS_ACCEPTED.inc();
    metrics::CONNECTIONS.inc();
    let (conn, stats) = port.connections.open(peer);
    let auth = [vec![Id::new("ip", peer.ip().to_string())], identities].concat();
    let result = run(&port, conn, &stats, reader, write_half, first, auth).await;
    match result {
        Ok(()) => {}
        Err(ConnectionError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e @ (ConnectionError::FrameLength(_) | ConnectionError::Malformed(_))) => {
            metrics::PROTOCOL_ERRORS.inc();
            tracing::info!(%peer, "closing connection: {e}");
        }
        Err(e) => tracing::debug!(%peer, "connection ended: {e}"),
    }
    port.server.store.watches().detach(conn);
    port.connections.close(conn);
    metrics::CONNECTIONS.dec();
}

/// Adds `ids` the connection does not hold yet.
fn add_ids(auth: &mut Arc<Vec<Id>>, ids: Vec<Id>) {
    if ids.iter().all(|id| auth.contains(id)) {
        return;
    }
    let mut next = (**auth).clone();
    for id in ids {
        if !next.contains(&id) {
            next.push(id);
        }
    }
    *auth = Arc::new(next);
}

/// Reads the ConnectRequest, lets [`session::handshake`] settle it and writes the answer; the
/// session and its timeout, or `None` when the client was turned away.
async fn handshake(
    port: &ClientPort,
    reader: &mut BufReader<ReadHalf>,
    write_half: &mut WriteHalf,
    prefix: [u8; 4],
) -> Result<Option<(i64, Duration)>, ConnectionError> {
    let limit = port.server.config.max_session_timeout();
    let body = tokio::time::timeout(limit, read_request(reader, prefix, port.server.config.max_buffer))
        .await
        .map_err(|_| ConnectionError::Idle(limit))??;
    let request = ConnectRequest::decode(&body)?;
    let settled = session::handshake(&port.server, &port.session_ids, &request).await;
    if let Some(response) = settled.response {
        let mut out = Vec::new();
        write_frame(&mut out, |out| response.encode(out));
        write_half.write_all(&out).await?;
        metrics::BYTES_OUT.inc_by(out.len() as u64);
    }
    Ok(settled.session)
}

async fn run(
    port: &Arc<ClientPort>,
    conn: ConnId,
    stats: &Arc<ConnStats>,
    mut reader: BufReader<ReadHalf>,
    mut write_half: WriteHalf,
    first: [u8; 4],
    auth: Vec<Id>,
) -> Result<(), ConnectionError> {
    let server = &port.server;
    let Some((session_id, timeout)) = handshake(port, &mut reader, &mut write_half, first).await? else {
        let _ = write_half.shutdown().await;
        return Ok(());
    };
    stats.session_id.store(session_id, Ordering::Relaxed);
    stats.timeout_ms.store(timeout.as_millis() as i64, Ordering::Relaxed);
    port.connections.bind_session(conn, session_id);
    // The session may have ended (expired, moved) between the handshake and the bind, when the
    // client port's sweep could not see this connection's session yet; it sees it from here on.
    if !server.store.serves_session(session_id) {
        let _ = write_half.shutdown().await;
        return Ok(());
    }

    let (notify_tx, notify_rx) = mpsc::unbounded_channel();
    server.store.watches().attach(conn, notify_tx);
    let (slots_tx, slots_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let writer =
        tokio::spawn(writer::run(port.clone(), conn, stats.clone(), session_id, write_half, slots_rx, notify_rx));

    let mut auth = Arc::new(auth);
    let mut sasl = Exchange::default();
    let kill = port.connections.kill_signal(conn);
    // A silent client's connection ends when its session does (the leader expires it; the
    // client port then ends the connection, after the expiry's watch events are queued on
    // it), so the client reads those events before the close, as from ZooKeeper. Closing on
    // a timer of the session timeout raced the expiry and dropped the connection's watches
    // before the expiry fired them (issue 12 m). This limit is only a backstop, past the
    // expiry even when a leader change gave the session a fresh timeout.
    let idle_limit = timeout * 3;
    let outcome = loop {
        let frame = tokio::select! {
            _ = kill.cancelled() => break Ok(()),
            frame = tokio::time::timeout(idle_limit, read_frame(&mut reader, server.config.max_buffer)) => match frame {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => break Err(e),
                Err(_) => break Err(ConnectionError::Idle(idle_limit)),
            },
        };
        let started = Instant::now();
        port.connections.count_received(stats);
        let touched = server.touch(session_id);
        let (header, body) = match RequestHeader::decode(&frame) {
            Ok(decoded) => decoded,
            Err(crate::proto::DecodeError::UnknownOpCode(op)) => {
                // The xid is intact: answer this one request, keep the connection.
                tracing::debug!(op, "unknown opcode");
                let xid = RequestHeader::read_xid(&frame)?;
                let slot = Slot::Immediate { xid, op: OpCode::Error, result: Err(ErrorCode::Unimplemented), started };
                if slots_tx.send(slot).await.is_err() {
                    break Ok(());
                }
                continue;
            }
            Err(e) => break Err(e.into()),
        };
        let (xid, op) = (header.xid, header.op);
        metrics::REQUESTS.with_label_values(&[op.name()]).inc();
        let request = match Request::decode(op, body) {
            Ok(r) => r,
            // ZooKeeper answers unknown create flags with BadArguments and carries on.
            Err(crate::proto::DecodeError::BadCreateMode(_)) => {
                let slot = Slot::Immediate { xid, op, result: Err(ErrorCode::BadArguments), started };
                if slots_tx.send(slot).await.is_err() {
                    break Ok(());
                }
                continue;
            }
            Err(e) => break Err(e.into()),
        };
        let caller = Caller { conn, session_id, auth: &auth };
        let slot = match dispatch::dispatch(op, request, &caller, server.config.super_digest.as_deref()) {
            // A follower answers a ping once the leader has taken its touch, the leader while
            // within its lease (issue 12 hole o); a ping not answerable within a quarter of the
            // timeout goes unanswered, and the client moves on.
            Action::Ping => Slot::Ping { taken: Box::pin(server.ping_answerable(touched, timeout / 4)), started },
            Action::Answer(result) => Slot::Immediate { xid, op, result, started },
            Action::Authenticated(ids) => {
                add_ids(&mut auth, ids);
                // Answered under the request's own xid, as ZooKeeper does: Java clients send
                // -4, others (zookeeper-client) a normal xid and wait for it.
                Slot::Immediate { xid, op, result: Ok(Response::Empty), started }
            }
            Action::Sasl(token) => {
                let step = match &port.sasl_users {
                    Some(users) => sasl.step(&token, users, server.config.sasl_super_user.as_deref()),
                    None => Err(ErrorCode::AuthFailed),
                };
                match step {
                    Ok(step) => {
                        add_ids(&mut auth, step.ids);
                        Slot::Immediate { xid, op, result: Ok(Response::Sasl { token: step.token }), started }
                    }
                    Err(code) => {
                        // As ZooKeeper: answer AuthFailed, then nothing more is served.
                        metrics::SASL_FAILURES.inc();
                        let _ = slots_tx.send(Slot::Fatal { xid, code }).await;
                        break Ok(());
                    }
                }
            }
            Action::Review(token) => {
                let reviewed = match &server.token_reviewer {
                    Some(reviewer) => reviewer.review(&token).await,
                    None => Err(crate::k8s::ReviewError::Refused("this server takes no Kubernetes tokens".into())),
                };
                let outcome = match &reviewed {
                    Ok(_) => "ok",
                    Err(crate::k8s::ReviewError::Expired) => "expired",
                    Err(crate::k8s::ReviewError::Refused(_)) => "refused",
                    Err(_) => "unchecked",
                };
                metrics::K8S_REVIEWS.with_label_values(&[outcome]).inc();
                match reviewed {
                    Ok(ids) => {
                        add_ids(&mut auth, ids);
                        Slot::Immediate { xid, op, result: Ok(Response::Empty), started }
                    }
                    // No id, and the connection lives on (see crate::k8s): an expired token
                    // is NoAuth, a token that could not be checked OperationTimeout.
                    Err(crate::k8s::ReviewError::Expired) => {
                        Slot::Immediate { xid, op, result: Err(ErrorCode::NoAuth), started }
                    }
                    Err(error @ (crate::k8s::ReviewError::Unreachable(_) | crate::k8s::ReviewError::Setup(_))) => {
                        tracing::warn!(%error, "addauth k8s could not be checked");
                        Slot::Immediate { xid, op, result: Err(ErrorCode::OperationTimeout), started }
                    }
                    Err(error) => {
                        tracing::info!(%error, "addauth k8s failed");
                        let _ = slots_tx.send(Slot::Fatal { xid, code: ErrorCode::AuthFailed }).await;
                        break Ok(());
                    }
                }
            }
            Action::AuthFailed(code) => {
                // Answer, then stop reading: nothing after a failed auth is served.
                let _ = slots_tx.send(Slot::Fatal { xid, code }).await;
                break Ok(());
            }
            Action::Close => {
                let txn = Txn::unstamped(TxnKind::CloseSession { session_id });
                let pending = server.writes.propose(txn).await.ok();
                let _ = slots_tx.send(Slot::Close { xid, pending }).await;
                break Ok(());
            }
            Action::Sync { path } => Slot::Sync { xid, path, barrier: server.writes.sync_barrier(session_id), started },
            Action::Write { kind, sub_ops } => match server.writes.propose(Txn::unstamped(kind)).await {
                Ok(pending) => Slot::Write { xid, op, sub_ops, pending, started },
                Err(e) => Slot::Immediate { xid, op, result: Err(write_error_code(e)), started },
            },
            Action::Read(request) => Slot::Read { xid, op, request, auth: auth.clone(), started },
        };
        if slots_tx.send(slot).await.is_err() {
            break Ok(());
        }
    };
    drop(slots_tx);
    // The writer finishes the queued replies (a closeSession's among them) and then stops.
    let _ = writer.await;
    outcome
}
