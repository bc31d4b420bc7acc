//! One client connection's writing side: the ordered writer. It resolves the connection's slots
//! strictly in order — a read runs against the applied state only when its turn comes, after
//! every earlier write of the session is applied; a write's reply waits for its apply — and
//! delivers watch notifications, always before any later response.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use paddock_tls::WriteHalf;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::metrics;
use crate::proto::header::ReplyHeader;
use crate::proto::request::Request;
use crate::proto::response::{encode_reply, Response};
use crate::proto::watch::WatcherEvent;
use crate::proto::{ErrorCode, Id, KeeperState, OpCode};
use crate::store::watch::{ConnId, Notification};
use crate::store::WriteOutcome;
use crate::write::{PendingWrite, WriteError};

use super::connections::ConnStats;
use super::dispatch::Caller;
use super::handlers;
use super::port::ClientPort;

/// One slot of the ordered response queue.
pub enum Slot {
    /// A reply whose body is computed when its turn comes (reads, pings, sync).
    Read { xid: i32, op: OpCode, request: Request, auth: Arc<Vec<Id>>, started: Instant },
    /// sync: reply once the read-index barrier is passed.
    Sync {
        xid: i32,
        path: String,
        barrier: Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send>>,
        started: Instant,
    },
    /// A write on its way through Raft.
    Write { xid: i32, op: OpCode, sub_ops: Vec<OpCode>, pending: PendingWrite, started: Instant },
    /// A ping on a follower: answered once the leader took its touch (`taken` says whether it
    /// did in time), else left unanswered.
    Ping { taken: Pin<Box<dyn Future<Output = bool> + Send>>, started: Instant },
    /// A reply decided already (errors found while decoding, auth results).
    Immediate { xid: i32, op: OpCode, result: Result<Response, ErrorCode>, started: Instant },
    /// closeSession: reply once the txn is applied, then end the connection.
    Close { xid: i32, pending: Option<PendingWrite> },
    /// Reply, then end the connection (auth failure).
    Fatal { xid: i32, code: ErrorCode },
}

/// The ZooKeeper code a client sees for a write that failed on its way through the log: the
/// outcome is unknown, so the client must reconnect (elsewhere) and find out.
pub fn write_error_code(e: WriteError) -> ErrorCode {
    match e {
        WriteError::NoLeader | WriteError::Dropped(_) | WriteError::Timeout(_) => ErrorCode::ConnectionLoss,
    }
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
    port: Arc<ClientPort>,
    stats: Arc<ConnStats>,
    out: BufWriter<WriteHalf>,
    buf: Vec<u8>,
}

impl Writer {
    async fn send(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf).await?;
            metrics::BYTES_OUT.inc_by(self.buf.len() as u64);
            self.port.connections.count_sent(&self.stats);
            self.buf.clear();
        }
        Ok(())
    }
}

/// Writes the replies of one connection's slots, in order, until the reader is done or the
/// socket breaks.
pub async fn run(
    port: Arc<ClientPort>,
    conn: ConnId,
    stats: Arc<ConnStats>,
    session_id: i64,
    write_half: WriteHalf,
    mut slots: mpsc::Receiver<Slot>,
    mut notifications: mpsc::UnboundedReceiver<Notification>,
) {
    let mut w = Writer { port: port.clone(), stats, out: BufWriter::new(write_half), buf: Vec::with_capacity(4096) };
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
            let end = resolve(&port, conn, session_id, slot, &mut notifications, &mut w).await?;
            if end {
                break;
            }
            if slots.is_empty() && notifications.is_empty() {
                w.out.flush().await?;
            }
        }
        // The reader is done (the client left, or its session ended here): what was queued
        // for the connection still goes out before the close, as ZooKeeper's events queued
        // before an expiry's close do.
        while let Ok(n) = notifications.try_recv() {
            encode_notification(&mut w.buf, n);
        }
        w.send().await?;
        w.out.flush().await?;
        w.out.shutdown().await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("connection writer stopped: {e}");
    }
    // Wake the reader if the socket broke on our side.
    port.connections.kill(conn);
}

/// Waits for a write while still delivering notifications, then drains the ones the write's own
/// apply fired, so they precede its reply.
async fn await_write(
    pending: PendingWrite,
    notifications: &mut mpsc::UnboundedReceiver<Notification>,
    w: &mut Writer,
) -> std::io::Result<Result<WriteOutcome, ErrorCode>> {
    let outcome = async { pending.outcome().await.map_err(write_error_code) };
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

/// The zxid a reply that reads no znode may carry (the last applied), with the events of every
/// apply up to it put out first. Both are taken under the read view, which holds off applies
/// (an apply fires its watches under the tree's write lock): no reply is past a change whose
/// event comes after it. A client takes its last seen zxid from every reply; one that
/// reconnects before such an event arrives sets its watches again relative to that zxid, and
/// the event is lost (issue 12 hole n: a sync's reply overtook the events of the applies its
/// barrier waited for).
fn events_up_to_applied(
    server: &crate::server::Server,
    notifications: &mut mpsc::UnboundedReceiver<Notification>,
    w: &mut Writer,
) -> i64 {
    let view = server.store.read();
    let zxid = view.tree.last_zxid();
    while let Ok(n) = notifications.try_recv() {
        encode_notification(&mut w.buf, n);
    }
    zxid
}

/// Resolves one slot into its reply; true when the connection must end after it.
async fn resolve(
    port: &ClientPort,
    conn: ConnId,
    session_id: i64,
    slot: Slot,
    notifications: &mut mpsc::UnboundedReceiver<Notification>,
    w: &mut Writer,
) -> std::io::Result<bool> {
    let server = &port.server;
    let mut end = false;
    match slot {
        Slot::Read { xid, op, request, auth, started } => {
            let mut view = server.store.read();
            let caller = Caller { conn, session_id, auth: &auth };
            let result = handlers::read(&mut view, &caller, op, request);
            let zxid = view.tree.last_zxid();
            // Events of the applies this read observed go out first. They are taken while the
            // view still holds off applies: an apply after the read may fire the watch the
            // read just left, and that event must follow the reply that registered the watch.
            while let Ok(n) = notifications.try_recv() {
                encode_notification(&mut w.buf, n);
            }
            drop(view);
            encode_result(&mut w.buf, xid, op, zxid, result, started);
        }
        Slot::Sync { xid, path, barrier, started } => {
            let result = barrier.await.map(|()| Response::Sync { path }).map_err(write_error_code);
            let zxid = events_up_to_applied(server, notifications, w);
            encode_result(&mut w.buf, xid, OpCode::Sync, zxid, result, started);
        }
        Slot::Ping { taken, started } => {
            if taken.await {
                let zxid = events_up_to_applied(server, notifications, w);
                encode_result(&mut w.buf, crate::proto::PING_XID, OpCode::Ping, zxid, Ok(Response::Empty), started);
            }
        }
        Slot::Immediate { xid, op, result, started } => {
            let zxid = events_up_to_applied(server, notifications, w);
            encode_result(&mut w.buf, xid, op, zxid, result, started);
        }
        Slot::Write { xid, op, sub_ops, pending, started } => {
            let (result, zxid) = match await_write(pending, notifications, w).await? {
                Ok(outcome) if outcome.result.is_session_moved() => {
                    // The session moved to another server after this write was sent: this
                    // connection is stale. ZooKeeper closes it without an answer (its
                    // ZOOKEEPER-710), and so does this server; the client is elsewhere.
                    tracing::debug!(session_id, "write refused: the session moved; closing the connection");
                    end = true;
                    (Err(ErrorCode::SessionMoved), outcome.zxid)
                }
                Ok(outcome) => (handlers::write_response(op, &sub_ops, outcome.result), outcome.zxid),
                Err(code) => {
                    // Raft refused the write: the client must reconnect (elsewhere).
                    end = code == ErrorCode::ConnectionLoss;
                    (Err(code), events_up_to_applied(server, notifications, w))
                }
            };
            if !end {
                encode_result(&mut w.buf, xid, op, zxid, result, started);
            }
        }
        Slot::Close { xid, pending } => {
            if let Some(pending) = pending {
                if let Ok(outcome) = await_write(pending, notifications, w).await? {
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
            let zxid = events_up_to_applied(server, notifications, w);
            encode_result(&mut w.buf, xid, OpCode::Auth, zxid, Err(code), Instant::now());
            end = true;
        }
    }
    w.stats.last_zxid.store(server.store.tree().last_zxid(), Ordering::Relaxed);
    w.send().await?;
    Ok(end)
}
