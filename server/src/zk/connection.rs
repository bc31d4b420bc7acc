//! One client connection: framing, the session handshake, and the per-session pipeline.
//!
//! The reader decodes requests and hands writes to Raft at once, in order (so a session's
//! writes are FIFO and pipelined). Every request also gets a slot in an ordered queue; the
//! writer resolves slots strictly in order — a read runs against the tree only when its turn
//! comes, after every earlier write of the session is applied — and delivers watch
//! notifications, always before any later response.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::metrics;
use crate::proto::connect::{ConnectRequest, ConnectResponse};
use crate::proto::header::{ReplyHeader, RequestHeader, PING_XID};
use crate::proto::jute::write_frame;
use crate::proto::request::Request;
use crate::proto::response::{encode_reply, Response};
use crate::proto::watch::WatcherEvent;
use crate::proto::{ErrorCode, Id, KeeperState, OpCode};
use crate::server::{PendingWrite, Server};
use crate::tree::TxnKind;

use super::connections::ConnStats;
use super::four_letter;
use super::handlers::{self, Caller};
use super::watch::{ConnId, Notification};

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

/// One slot of the ordered response queue.
enum Slot {
    /// A reply whose body is computed when its turn comes (reads, pings, sync).
    Read { xid: i32, op: OpCode, request: Request, auth: Arc<Vec<Id>>, started: Instant },
    /// sync: reply once the read-index barrier is passed.
    Sync {
        xid: i32,
        path: String,
        barrier: Pin<Box<dyn Future<Output = Result<(), ErrorCode>> + Send>>,
        started: Instant,
    },
    /// A write on its way through Raft.
    Write { xid: i32, op: OpCode, sub_ops: Vec<OpCode>, pending: PendingWrite, started: Instant },
    /// A reply decided already (errors found while decoding, auth results).
    Immediate { xid: i32, op: OpCode, result: Result<Response, ErrorCode>, started: Instant },
    /// closeSession: reply once the txn is applied, then end the connection.
    Close { xid: i32, pending: Option<PendingWrite> },
    /// Reply, then end the connection (auth failure).
    Fatal { xid: i32, code: ErrorCode },
}

async fn read_frame(reader: &mut BufReader<OwnedReadHalf>, max: usize) -> Result<Vec<u8>, ConnectionError> {
    let len = reader.read_i32().await?;
    read_body(reader, len, max).await
}

async fn read_body(reader: &mut BufReader<OwnedReadHalf>, len: i32, max: usize) -> Result<Vec<u8>, ConnectionError> {
    if len < 0 || len as usize > max {
        return Err(ConnectionError::FrameLength(len as i64));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    metrics::BYTES_IN.inc_by(4 + len as u64);
    Ok(body)
}

/// Serves one accepted connection until it ends.
pub async fn serve(server: Arc<Server>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);
    let mut first = [0u8; 4];
    // A peer that never says anything is not held forever.
    let handshake_timeout = server.config.max_session_timeout();
    match tokio::time::timeout(handshake_timeout, reader.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if four_letter::is_word(&first) {
        let answer = four_letter::answer(&server, &first);
        let _ = write_half.write_all(answer.as_bytes()).await;
        let _ = write_half.shutdown().await;
        return;
    }
    metrics::CONNECTIONS_ACCEPTED.inc();
    metrics::CONNECTIONS.inc();
    let (conn, stats) = server.connections.open(peer);
    let result = run(&server, conn, &stats, reader, write_half, i32::from_be_bytes(first), peer).await;
    match result {
        Ok(()) => {}
        Err(ConnectionError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e @ (ConnectionError::FrameLength(_) | ConnectionError::Malformed(_))) => {
            metrics::PROTOCOL_ERRORS.inc();
            tracing::info!(%peer, "closing connection: {e}");
        }
        Err(e) => tracing::debug!(%peer, "connection ended: {e}"),
    }
    server.store.watches().detach(conn);
    server.connections.close(conn);
    metrics::CONNECTIONS.dec();
}

/// The session a handshake settled on, or `None` when the client must be turned away (after the
/// expired-session answer has been written).
async fn handshake(
    server: &Server,
    request: &ConnectRequest,
    write_half: &mut OwnedWriteHalf,
) -> Result<Option<(i64, Duration)>, ConnectionError> {
    let requested = Duration::from_millis(request.timeout_ms.max(0) as u64);
    // Out of touch with the cluster (an election, a partition): give it a moment, then turn the
    // client away so it tries another server.
    if !server.wait_serving((requested / 2).min(Duration::from_secs(2))).await {
        return Ok(None);
    }
    let applied = server.store.tree().last_zxid();
    if request.last_zxid_seen > applied {
        // The client has seen a newer state than ours; ZooKeeper refuses so that it moves on
        // to a server that has caught up.
        tracing::info!(client_zxid = request.last_zxid_seen, applied, "refusing session from the future");
        return Ok(None);
    }
    let timeout = requested.clamp(server.config.min_session_timeout(), server.config.max_session_timeout());
    let settled = if request.session_id == 0 {
        // During an election, hold the new session (not refuse it) until a leader is known,
        // within the client's own timeout.
        if !server.wait_for_leader(timeout.min(server.config.max_session_timeout())).await {
            return Ok(None);
        }
        let session_id = server.session_ids.next_id();
        let password = crate::zk::session::SessionIds::password();
        let created = server
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
            Err(_) => return Ok(None),
        }
    } else {
        let known = server.store.tree().session(request.session_id).map(|s| (s.password.clone(), s.timeout_ms));
        match known {
            Some((password, timeout_ms)) if password == request.password => {
                server.touch(request.session_id);
                Some((request.session_id, password, Duration::from_millis(timeout_ms.max(0) as u64)))
            }
            _ => None,
        }
    };
    let (session_id, password, timeout) = match settled {
        Some(s) => s,
        None => (0, vec![0; 16], Duration::ZERO),
    };
    let response = ConnectResponse {
        protocol_version: 0,
        timeout_ms: timeout.as_millis() as i32,
        session_id,
        password,
        read_only: request.read_only.map(|_| false),
    };
    let mut out = Vec::new();
    write_frame(&mut out, |out| response.encode(out));
    write_half.write_all(&out).await?;
    metrics::BYTES_OUT.inc_by(out.len() as u64);
    Ok((session_id != 0).then_some((session_id, timeout)))
}

async fn run(
    server: &Arc<Server>,
    conn: ConnId,
    stats: &Arc<ConnStats>,
    mut reader: BufReader<OwnedReadHalf>,
    mut write_half: OwnedWriteHalf,
    first_len: i32,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    let body = tokio::time::timeout(
        server.config.max_session_timeout(),
        read_body(&mut reader, first_len, server.config.max_buffer),
    )
    .await
    .map_err(|_| ConnectionError::Idle(server.config.max_session_timeout()))??;
    let request = ConnectRequest::decode(&body)?;
    let Some((session_id, timeout)) = handshake(server, &request, &mut write_half).await? else {
        let _ = write_half.shutdown().await;
        return Ok(());
    };
    stats.session_id.store(session_id, Ordering::Relaxed);
    stats.timeout_ms.store(timeout.as_millis() as i64, Ordering::Relaxed);
    server.connections.bind_session(conn, session_id);

    let (notify_tx, notify_rx) = mpsc::unbounded_channel();
    server.store.watches().attach(conn, notify_tx);
    let (slots_tx, slots_rx) = mpsc::channel(MAX_IN_FLIGHT);
    let writer =
        tokio::spawn(write_loop(server.clone(), conn, stats.clone(), session_id, write_half, slots_rx, notify_rx));

    let mut auth = Arc::new(vec![Id::new("ip", peer.ip().to_string())]);
    let kill = server.connections.kill_signal(conn);
    let outcome = loop {
        let frame = tokio::select! {
            _ = kill.cancelled() => break Ok(()),
            frame = tokio::time::timeout(timeout, read_frame(&mut reader, server.config.max_buffer)) => match frame {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => break Err(e),
                Err(_) => break Err(ConnectionError::Idle(timeout)),
            },
        };
        let started = Instant::now();
        server.connections.count_received(stats);
        server.touch(session_id);
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
        let slot = match (op, request) {
            (OpCode::Ping, _) => Slot::Immediate { xid: PING_XID, op, result: Ok(Response::Empty), started },
            (OpCode::Auth, Request::Auth { scheme, auth: data, .. }) => {
                match handlers::authenticate(&scheme, &data, server.config.super_digest.as_deref()) {
                    Ok(ids) => {
                        let mut next = (*auth).clone();
                        for id in ids {
                            if !next.contains(&id) {
                                next.push(id);
                            }
                        }
                        auth = Arc::new(next);
                        // Answered under the request's own xid, as ZooKeeper does: Java clients
                        // send -4, others (zookeeper-client) a normal xid and wait for it.
                        Slot::Immediate { xid, op, result: Ok(Response::Empty), started }
                    }
                    Err(code) => {
                        // Answer, then stop reading: nothing after a failed auth is served.
                        let _ = slots_tx.send(Slot::Fatal { xid, code }).await;
                        break Ok(());
                    }
                }
            }
            (OpCode::CloseSession, _) => {
                let pending = server
                    .propose(crate::tree::Txn {
                        time_ms: crate::server::now_ms(),
                        kind: TxnKind::CloseSession { session_id },
                    })
                    .await
                    .ok();
                let _ = slots_tx.send(Slot::Close { xid, pending }).await;
                break Ok(());
            }
            (OpCode::Sync, Request::Sync { path }) => Slot::Sync { xid, path, barrier: server.sync_barrier(), started },
            (OpCode::Reconfig, _) => Slot::Immediate { xid, op, result: Err(ErrorCode::ReconfigDisabled), started },
            (OpCode::Sasl, _) => Slot::Immediate { xid, op, result: Err(ErrorCode::Unimplemented), started },
            (op, request) if handlers::is_write(op) => {
                let caller = Caller { conn, session_id, auth: &auth };
                match handlers::write_txn(&caller, op, request) {
                    Ok((kind, sub_ops)) => {
                        match server.propose(crate::tree::Txn { time_ms: crate::server::now_ms(), kind }).await {
                            Ok(pending) => Slot::Write { xid, op, sub_ops, pending, started },
                            Err(code) => Slot::Immediate { xid, op, result: Err(code), started },
                        }
                    }
                    Err(code) => Slot::Immediate { xid, op, result: Err(code), started },
                }
            }
            (op, request) => Slot::Read { xid, op, request, auth: auth.clone(), started },
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

/// Appends a reply frame for `result` and records its metrics.
fn encode_result(
    out: &mut Vec<u8>,
    xid: i32,
    op: OpCode,
    zxid: i64,
    result: Result<Response, ErrorCode>,
    started: Instant,
) {
    let (header, body) = match result {
        Ok(body) => (ReplyHeader::ok(xid, zxid), Some(body)),
        Err(code) => {
            metrics::REQUEST_ERRORS.with_label_values(&[op.name(), &code.code().to_string()]).inc();
            (ReplyHeader::new(xid, zxid, code), None)
        }
    };
    encode_reply(&header, body.as_ref(), out);
    if op != OpCode::Ping {
        metrics::REQUEST_SECONDS.with_label_values(&[op.name()]).observe(started.elapsed().as_secs_f64());
    }
}

fn encode_notification(out: &mut Vec<u8>, n: Notification) {
    metrics::NOTIFICATIONS.inc();
    WatcherEvent { event_type: n.event, state: KeeperState::SyncConnected, path: n.path }
        .encode_notification(n.zxid, out);
}

struct Writer {
    server: Arc<Server>,
    stats: Arc<ConnStats>,
    out: BufWriter<OwnedWriteHalf>,
    buf: Vec<u8>,
}

impl Writer {
    async fn send(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf).await?;
            metrics::BYTES_OUT.inc_by(self.buf.len() as u64);
            self.server.connections.count_sent(&self.stats);
            self.buf.clear();
        }
        Ok(())
    }
}

async fn write_loop(
    server: Arc<Server>,
    conn: ConnId,
    stats: Arc<ConnStats>,
    session_id: i64,
    write_half: OwnedWriteHalf,
    mut slots: mpsc::Receiver<Slot>,
    mut notifications: mpsc::UnboundedReceiver<Notification>,
) {
    let mut w =
        Writer { server: server.clone(), stats, out: BufWriter::new(write_half), buf: Vec::with_capacity(4096) };
    let result: std::io::Result<()> = async {
        loop {
            let slot = tokio::select! {
                biased;
                Some(n) = notifications.recv() => {
                    encode_notification(&mut w.buf, n);
                    w.send().await?;
                    if slots.is_empty() && notifications.is_empty() {
                        w.out.flush().await?;
                    }
                    continue;
                }
                slot = slots.recv() => match slot {
                    Some(slot) => slot,
                    None => break,
                },
            };
            let end = resolve(&server, conn, session_id, slot, &mut notifications, &mut w).await?;
            if end {
                break;
            }
            if slots.is_empty() && notifications.is_empty() {
                w.out.flush().await?;
            }
        }
        w.out.flush().await?;
        w.out.shutdown().await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("connection writer stopped: {e}");
    }
    // Wake the reader if the socket broke on our side.
    server.connections.kill(conn);
}

/// Waits for a write while still delivering notifications, then drains the ones the write's own
/// apply fired, so they precede its reply.
async fn await_write(
    server: &Server,
    pending: PendingWrite,
    notifications: &mut mpsc::UnboundedReceiver<Notification>,
    w: &mut Writer,
) -> std::io::Result<Result<crate::store::WriteOutcome, ErrorCode>> {
    let outcome = pending.outcome(&server.store);
    tokio::pin!(outcome);
    let result = loop {
        tokio::select! {
            biased;
            Some(n) = notifications.recv() => {
                encode_notification(&mut w.buf, n);
                w.send().await?;
            }
            result = &mut outcome => break result,
        }
    };
    while let Ok(n) = notifications.try_recv() {
        encode_notification(&mut w.buf, n);
    }
    Ok(result)
}

/// Resolves one slot into its reply; true when the connection must end after it.
async fn resolve(
    server: &Server,
    conn: ConnId,
    session_id: i64,
    slot: Slot,
    notifications: &mut mpsc::UnboundedReceiver<Notification>,
    w: &mut Writer,
) -> std::io::Result<bool> {
    let mut end = false;
    match slot {
        Slot::Read { xid, op, request, auth, started } => {
            let (result, zxid) = {
                let mut view = server.store.read();
                let caller = Caller { conn, session_id, auth: &auth };
                let result = handlers::read(&mut view, &caller, op, request);
                (result, view.tree.last_zxid())
            };
            // Events queued before this read (by applies it observed) go out first.
            while let Ok(n) = notifications.try_recv() {
                encode_notification(&mut w.buf, n);
            }
            encode_result(&mut w.buf, xid, op, zxid, result, started);
        }
        Slot::Sync { xid, path, barrier, started } => {
            let result = barrier.await.map(|()| Response::Sync { path });
            let zxid = server.store.tree().last_zxid();
            encode_result(&mut w.buf, xid, OpCode::Sync, zxid, result, started);
        }
        Slot::Immediate { xid, op, result, started } => {
            let zxid = server.store.tree().last_zxid();
            encode_result(&mut w.buf, xid, op, zxid, result, started);
        }
        Slot::Write { xid, op, sub_ops, pending, started } => {
            let (result, zxid) = match await_write(server, pending, notifications, w).await? {
                Ok(outcome) => (handlers::write_response(op, &sub_ops, outcome.result), outcome.zxid),
                Err(code) => {
                    // Raft refused the write: the client must reconnect (elsewhere).
                    end = code == ErrorCode::ConnectionLoss;
                    (Err(code), server.store.tree().last_zxid())
                }
            };
            if !end {
                encode_result(&mut w.buf, xid, op, zxid, result, started);
            }
        }
        Slot::Close { xid, pending } => {
            if let Some(pending) = pending {
                if let Ok(outcome) = await_write(server, pending, notifications, w).await? {
                    encode_result(
                        &mut w.buf,
                        xid,
                        OpCode::CloseSession,
                        outcome.zxid,
                        Ok(Response::Empty),
                        Instant::now(),
                    );
                }
            }
            end = true;
        }
        Slot::Fatal { xid, code } => {
            let zxid = server.store.tree().last_zxid();
            encode_result(&mut w.buf, xid, OpCode::Auth, zxid, Err(code), Instant::now());
            end = true;
        }
    }
    w.stats.last_zxid.store(server.store.tree().last_zxid(), Ordering::Relaxed);
    w.send().await?;
    Ok(end)
}
