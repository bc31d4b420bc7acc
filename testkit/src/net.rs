//! Loopback addresses for tests: free ports picked up front, and a TCP proxy a test can cut.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use paddock_contract::peer::{Hello, MAX_HELLO};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// `n` free, distinct loopback addresses: every listener is held until all are picked (peers
/// must know each other's addresses before any of them starts).
///
/// The ports come from below the kernel's ephemeral range, never from it: a port picked here is
/// free again until the server meant for it binds it, and in between any outgoing connection
/// (a client, a peer link, a proxy) may be given it as its local port, and the server then fails
/// with "address in use". Within one test process the picks go round the range in turn, so two
/// tests do not pick the same port either.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let (low, high) = picking_range();
    let span = high - low;
    let next = NEXT.get_or_init(|| {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        AtomicU32::new(seed.wrapping_add(std::process::id().wrapping_mul(7919)))
    });
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..span {
        if listeners.len() == n {
            break;
        }
        let port = low + next.fetch_add(1, Ordering::Relaxed) % span;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
            listeners.push(listener);
        }
    }
    assert_eq!(listeners.len(), n, "no {n} free loopback ports in {low}..{high}");
    listeners.iter().map(|l| l.local_addr().expect("local addr")).collect()
}

/// The ports [`free_addrs`] picks from: 10000 up to the start of the kernel's ephemeral range
/// (32768 by default), or the 4000 ports above it when the range starts too low to leave room.
fn picking_range() -> (u32, u32) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().map(|b| b.parse::<u32>().ok());
    let ephemeral_low = bounds.next().flatten().unwrap_or(32768);
    let ephemeral_high = bounds.next().flatten().unwrap_or(60999);
    if ephemeral_low >= 14000 {
        (10000, ephemeral_low)
    } else {
        (ephemeral_high + 1, (ephemeral_high + 4001).min(65536))
    }
}

/// A loopback TCP proxy to one target; [`Proxy::cut`] drops every connection and refuses new
/// ones, [`Proxy::stall`] blackholes them (no byte goes either way, nothing is closed, new
/// connections are accepted and stall too), until [`Proxy::restore`].
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`Proxy`] does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes flow.
    Open,
    /// Bytes wait, sockets stay open: a blackhole, as a dead switch or a dropped route makes.
    Stalled,
    /// Connections are dropped and refused.
    Cut,
}

impl Proxy {
    /// A proxy to `target` on a free port.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        Proxy::serve(listener, target)
    }

    /// A proxy to `target` listening on `listener`.
    pub fn serve(listener: TcpListener, target: SocketAddr) -> Proxy {
        let addr = listener.local_addr().expect("proxy address");
        let (mode, mode_rx) = watch::channel(Mode::Open);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *mode_rx.borrow() == Mode::Cut {
                    continue;
                }
                let mut mode_rx = mode_rx.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_target, to_target) = outbound.into_split();
                    tokio::select! {
                        _ = forward(from_client, to_target, mode_rx.clone()) => {}
                        _ = forward(from_target, to_client, mode_rx.clone()) => {}
                        _ = mode_rx.wait_for(|mode| *mode == Mode::Cut) => {}
                    }
                });
            }
        });
        Proxy { addr, mode, task }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Stops forwarding bytes both ways without closing anything: both ends see a silent peer.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    /// Lets connections through again (a stalled one goes on where it stopped).
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Open);
    }
}

/// Copies `from` to `to` while the proxy is open; while it stalls, neither reads nor writes (so
/// the senders' buffers fill up, as behind a blackhole). Ends when either side closes.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if mode.wait_for(|mode| *mode == Mode::Open).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // Stop reading the moment the link stalls.
            _ = mode.wait_for(|mode| *mode != Mode::Open) => continue,
        };
        // Bytes read just before a stall are held until the link is open again.
        if mode.wait_for(|mode| *mode == Mode::Open).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The peer network of a cluster under test, able to partition it: every node's peer port is
/// reached through a proxy of its own (the address the node advertises), which reads the
/// dialer's `Hello` frame to learn who is calling. [`PeerNet::partition`] drops and refuses
/// every link between two sides; [`PeerNet::heal`] lets them through again. Links inside a side
/// are untouched, as in a real network split.
pub struct PeerNet {
    blocked: watch::Sender<BTreeSet<(u64, u64)>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for PeerNet {
    fn default() -> Self {
        PeerNet { blocked: watch::channel(BTreeSet::new()).0, tasks: Vec::new() }
    }
}

impl PeerNet {
    /// Routes links to node `id` from `listener` (its advertised peer address) to `target`
    /// (the port it really listens on).
    pub fn route(&mut self, id: u64, listener: std::net::TcpListener, target: SocketAddr) {
        listener.set_nonblocking(true).expect("nonblocking listener");
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let blocked = self.blocked.subscribe();
        self.tasks.push(tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(link(inbound, id, target, blocked.clone()));
            }
        }));
    }

    /// Splits the nodes into `side` and everyone else: no link crosses.
    pub fn partition(&self, side: &[u64], others: &[u64]) {
        let pairs = side.iter().flat_map(|a| others.iter().map(move |b| pair(*a, *b))).collect();
        self.blocked.send_replace(pairs);
    }

    /// Lets every link through again.
    pub fn heal(&self) {
        self.blocked.send_replace(BTreeSet::new());
    }
}

impl Drop for PeerNet {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

fn pair(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

/// One link to node `to`: learns the dialer from its first frame, then copies both ways until
/// either end closes or the pair is partitioned.
async fn link(mut inbound: TcpStream, to: u64, target: SocketAddr, mut blocked: watch::Receiver<BTreeSet<(u64, u64)>>) {
    let greeting = tokio::time::timeout(std::time::Duration::from_secs(5), read_greeting(&mut inbound)).await;
    let Ok(Some((from, first))) = greeting else { return };
    let key = pair(from, to);
    if blocked.borrow().contains(&key) {
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    if outbound.write_all(&first).await.is_err() {
        return;
    }
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = blocked.wait_for(|b| b.contains(&key)) => {}
    }
}

/// The dialer's greeting: its id, and the frame as read (to pass on unchanged).
async fn read_greeting(inbound: &mut TcpStream) -> Option<(u64, Vec<u8>)> {
    let mut frame = vec![0u8; 4];
    inbound.read_exact(&mut frame).await.ok()?;
    let len = u32::from_be_bytes(frame[..4].try_into().ok()?) as usize;
    if len > MAX_HELLO {
        return None;
    }
    frame.resize(4 + len, 0);
    inbound.read_exact(&mut frame[4..]).await.ok()?;
    let hello = Hello::from_body(&frame[4..]).ok()?;
    Some((hello.id, frame))
}
