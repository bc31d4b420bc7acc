//! The outbound link to one peer: a long-lived TCP connection, pipelined requests matched to
//! answers by id, reconnect with backoff. Calls made while the peer is unreachable fail at once
//! (openraft backs off itself; forwarded client writes turn into ConnectionLoss).
//!
//! A link that stalls — calls outstanding for [`STALL`] and not a byte of answer in that time —
//! is dropped and dialed again. A blackhole does not close a connection: the kernel goes on
//! retransmitting with a backoff that doubles each time, so after a cut of a few seconds the
//! old connection carries bytes again only seconds after the network is back (a round of the
//! soak at 045e9eb had no leader for 5.3 s after a 3.2 s blackhole, longer than its sessions:
//! the links to the healed server waited out their retransmission timers). A fresh connection
//! gets through at once.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use paddock_contract::peer::Hello;
use paddock_tls::{member_server_name, split, split_tcp, ReadHalf, Reloading, WriteHalf};

use super::wire::{self, Frame, PeerRequest, PeerResponse};
use super::Faults;

type Reply = oneshot::Sender<io::Result<PeerResponse>>;
/// Calls awaiting their answer, by frame id, with when each was sent.
type Pending = Arc<Mutex<HashMap<u64, (Instant, Reply)>>>;

/// How long a link may have calls outstanding without reading a byte before it is dialed again
/// (see the module docs). As long as a server may go without hearing from its leader before it
/// stops serving: a peer silent for longer is out of touch anyway.
pub const STALL: Duration = Duration::from_secs(1);

/// Whether a link whose oldest outstanding call was sent at `oldest` and which last read at
/// `last_read` has stalled, at `now`.
fn stalled(oldest: Option<Instant>, last_read: Instant, now: Instant) -> bool {
    oldest.is_some_and(|sent| now.duration_since(sent) >= STALL) && now.duration_since(last_read) >= STALL
}

struct Call {
    body: PeerRequest,
    reply: Reply,
}

/// How this server introduces itself on a link: its id and admin address, over mutual TLS
/// when peers speak it.
#[derive(Clone)]
pub struct Greeting {
    /// This server's id.
    pub me: u64,
    /// This server's admin address.
    pub my_admin: String,
    /// The peer port's TLS.
    pub tls: Option<Arc<Reloading>>,
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
    /// Starts the link task to `target` at `addr`, introducing this server with `greeting`.
    pub fn spawn(target: u64, addr: String, greeting: Greeting, faults: Arc<Faults>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(link(target, addr.clone(), greeting, faults, rx));
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
    let drained: Vec<Reply> = pending.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, (_, r))| r).collect();
    for reply in drained {
        let _ = reply.send(Err(unreachable(why)));
    }
}

/// Dials `target` at `addr`: TCP, then mutual TLS when peers speak it (the answering
/// server must show member `target`'s certificate), then the greetings.
async fn connect(target: u64, addr: &str, greeting: &Greeting) -> io::Result<(ReadHalf, WriteHalf)> {
    let stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(format!("connect to {addr} timed out")))??;
    stream.set_nodelay(true)?;
    let (mut read_half, mut write_half) = match &greeting.tls {
        None => split_tcp(stream),
        Some(tls) => {
            let Some(connector) = tls.current().connector.clone() else {
                return Err(unreachable("peer TLS has no client configuration"));
            };
            let name = member_server_name(target).map_err(|e| unreachable(format!("member {target}: {e}")))?;
            let stream = tokio::time::timeout(Duration::from_secs(2), connector.connect(name, stream))
                .await
                .map_err(|_| unreachable(format!("TLS handshake with {addr} timed out")))??;
            split(stream)
        }
    };
    let hello = wire::encode_hello(&Hello { id: greeting.me, admin_addr: greeting.my_admin.clone() })?;
    write_half.write_all(&hello).await?;
    write_half.flush().await?;
    tokio::time::timeout(Duration::from_secs(2), wire::read_hello(&mut read_half))
        .await
        .map_err(|_| unreachable(format!("{addr} did not answer hello")))??;
    Ok((read_half, write_half))
}

async fn link(
    target: u64,
    addr: String,
    greeting: Greeting,
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
        let (read_half, write_half) = match connect(target, &addr, &greeting).await {
            Ok(halves) => halves,
            Err(e) => {
                tracing::debug!(target, %addr, "peer connect failed: {e}");
                let _ = first.reply.send(Err(e));
                retry_at = Instant::now() + backoff;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(20);
        let pending: Pending = Arc::default();
        let last_read = Arc::new(Mutex::new(Instant::now()));
        let (dead_tx, mut dead_rx) = oneshot::channel::<()>();
        let reader = {
            let pending = pending.clone();
            let faults = faults.clone();
            let last_read = last_read.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(read_half);
                loop {
                    match wire::read::<PeerResponse, _>(&mut reader).await {
                        Ok(frame) if !faults.isolated() => {
                            *last_read.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                            let reply = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&frame.id);
                            if let Some((_, reply)) = reply {
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
        let mut check = tokio::time::interval(STALL / 4);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = match call.take() {
                Some(c) => c,
                None => tokio::select! {
                    _ = &mut dead_rx => break,
                    c = calls.recv() => match c {
                        Some(c) => c,
                        None => break,
                    },
                    _ = check.tick() => {
                        let oldest = pending.lock().unwrap_or_else(|e| e.into_inner()).values().map(|(at, _)| *at).min();
                        let read = *last_read.lock().unwrap_or_else(|e| e.into_inner());
                        if stalled(oldest, read, Instant::now()) {
                            tracing::info!(target, "peer link stalled for {STALL:?}: dialing again");
                            break;
                        }
                        continue;
                    }
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
            pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (Instant::now(), next.reply));
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn a_link_stalls_only_when_a_call_waited_and_nothing_was_read_for_the_limit() {
        let now = Instant::now() + 10 * STALL;
        let long_ago = now - 2 * STALL;
        let just_now = now - STALL / 10;
        assert!(stalled(Some(long_ago), long_ago, now));
        assert!(!stalled(None, long_ago, now), "nothing outstanding: an idle link");
        assert!(!stalled(Some(just_now), long_ago, now), "a call just sent after a quiet spell");
        assert!(!stalled(Some(long_ago), just_now, now), "a slow call while the peer answers others");
    }

    /// A peer that takes connections and reads requests but never answers (a blackhole that
    /// leaves the kernel acknowledging, a frozen process): the link dials again after
    /// [`STALL`] instead of waiting on the old connection for ever.
    #[tokio::test]
    async fn a_link_whose_peer_stops_answering_dials_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let _ = accepted_tx.send(());
                tokio::spawn(async move {
                    let _ = wire::read_hello(&mut stream).await;
                    let hello = wire::encode_hello(&Hello { id: 2, admin_addr: "127.0.0.1:0".into() }).expect("hello");
                    let _ = stream.write_all(&hello).await;
                    // Reads whatever comes, answers nothing.
                    let mut sink = [0u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        let link = PeerClient::spawn(
            2,
            addr,
            Greeting { me: 1, my_admin: "127.0.0.1:0".into(), tls: None },
            Arc::new(Faults::default()),
        );
        let wait = Duration::from_secs(10);
        let asked = link.call(PeerRequest::Touch(vec![1]), Duration::from_millis(100)).await;
        assert!(asked.is_err(), "the silent peer answered: {asked:?}");
        tokio::time::timeout(wait, accepted.recv()).await.expect("the first connection").expect("listener");
        // Calls keep coming, as heartbeats do; the link must give the silent connection up.
        let again = async {
            loop {
                let _ = link.call(PeerRequest::Touch(vec![1]), Duration::from_millis(100)).await;
                if accepted.try_recv().is_ok() {
                    return;
                }
            }
        };
        tokio::time::timeout(wait, again).await.expect("the link never dialed the silent peer again");
    }
}
