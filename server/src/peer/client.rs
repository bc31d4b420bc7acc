//! The outbound link to one peer: a long-lived TCP connection, pipelined requests matched to
//! answers by id, reconnect with backoff. Calls made while the peer is unreachable fail at once
//! (openraft backs off itself; forwarded client writes turn into ConnectionLoss).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use paddock_contract::peer::Hello;

use super::wire::{self, Frame, PeerRequest, PeerResponse};
use super::Faults;

type Reply = oneshot::Sender<io::Result<PeerResponse>>;
type Pending = Arc<Mutex<HashMap<u64, Reply>>>;

struct Call {
    body: PeerRequest,
    reply: Reply,
}

/// A handle to the link task of one peer.
pub struct PeerClient {
    /// The peer's id.
    pub target: u64,
    /// The address dialed.
    pub addr: String,
    calls: mpsc::UnboundedSender<Call>,
}

fn unreachable(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, what.to_string())
}

impl PeerClient {
    /// Starts the link task to `target` at `addr`, introducing this server as `me`.
    pub fn spawn(target: u64, addr: String, me: u64, my_admin: String, faults: Arc<Faults>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(link(target, addr.clone(), me, my_admin, faults, rx));
        Arc::new(Self { target, addr, calls: tx })
    }

    /// Queues `body` on the link now (so calls keep their order) and returns where the answer
    /// will arrive.
    pub fn start_call(&self, body: PeerRequest) -> io::Result<oneshot::Receiver<io::Result<PeerResponse>>> {
        let (reply, rx) = oneshot::channel();
        self.calls.send(Call { body, reply }).map_err(|_| unreachable("peer link stopped"))?;
        Ok(rx)
    }

    /// Sends `body` and waits for the answer, at most `timeout`.
    pub async fn call(&self, body: PeerRequest, timeout: Duration) -> io::Result<PeerResponse> {
        let (reply, rx) = oneshot::channel();
        self.calls.send(Call { body, reply }).map_err(|_| unreachable("peer link stopped"))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(unreachable("peer link dropped the call")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("peer {} did not answer in {timeout:?}", self.target),
            )),
        }
    }
}

fn fail_all(pending: &Pending, why: &str) {
    let drained: Vec<Reply> = pending.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, r)| r).collect();
    for reply in drained {
        let _ = reply.send(Err(unreachable(why)));
    }
}

async fn connect(addr: &str, me: u64, my_admin: &str) -> io::Result<TcpStream> {
    let mut stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(format!("connect to {addr} timed out")))??;
    stream.set_nodelay(true)?;
    let hello = wire::encode_hello(&Hello { id: me, admin_addr: my_admin.to_owned() })?;
    stream.write_all(&hello).await?;
    tokio::time::timeout(Duration::from_secs(2), wire::read_hello(&mut stream))
        .await
        .map_err(|_| unreachable(format!("{addr} did not answer hello")))??;
    Ok(stream)
}

async fn link(
    target: u64,
    addr: String,
    me: u64,
    my_admin: String,
    faults: Arc<Faults>,
    mut calls: mpsc::UnboundedReceiver<Call>,
) {
    let next_id = AtomicU64::new(1);
    let mut backoff = Duration::from_millis(20);
    let mut retry_at = Instant::now();
    while let Some(first) = calls.recv().await {
        if faults.isolated() || Instant::now() < retry_at {
            let _ = first.reply.send(Err(unreachable(format!("peer {target} unreachable"))));
            continue;
        }
        let stream = match connect(&addr, me, &my_admin).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(target, %addr, "peer connect failed: {e}");
                let _ = first.reply.send(Err(e));
                retry_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        let (read_half, write_half) = stream.into_split();
        let pending: Pending = Arc::default();
        let (dead_tx, mut dead_rx) = oneshot::channel::<()>();
        let reader = {
            let pending = pending.clone();
            let faults = faults.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(read_half);
                loop {
                    match wire::read::<PeerResponse, _>(&mut reader).await {
                        Ok(frame) if !faults.isolated() => {
                            let reply = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&frame.id);
                            if let Some(reply) = reply {
                                let _ = reply.send(Ok(frame.body));
                            }
                        }
                        Ok(_) => break,
                        Err(e) => {
                            tracing::debug!(target, "peer link read ended: {e}");
                            break;
                        }
                    }
                }
                let _ = dead_tx.send(());
            })
        };
        let mut writer = BufWriter::new(write_half);
        let mut call = Some(first);
        loop {
            let next = match call.take() {
                Some(c) => c,
                None => tokio::select! {
                    _ = &mut dead_rx => break,
                    c = calls.recv() => match c {
                        Some(c) => c,
                        None => break,
                    },
                },
            };
            if faults.isolated() {
                let _ = next.reply.send(Err(unreachable("isolated")));
                break;
            }
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let bytes = match wire::encode(&Frame { id, body: next.body }) {
                Ok(b) => b,
                Err(e) => {
                    let _ = next.reply.send(Err(e));
                    continue;
                }
            };
            pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, next.reply);
            let written = async {
                writer.write_all(&bytes).await?;
                // Flush only when nothing else is queued, so bursts share a syscall.
                if calls.is_empty() {
                    writer.flush().await?;
                }
                io::Result::Ok(())
            };
            if let Err(e) = written.await {
                tracing::debug!(target, "peer link write failed: {e}");
                break;
            }
        }
        reader.abort();
        fail_all(&pending, "peer link closed");
    }
}
