//! Runs real `paddock-server` processes as a Raft cluster on 127.0.0.1 for a test: ports picked up
//! front (peers must know each other's addresses before any of them starts), a data dir per
//! node in one temp dir, fast ticks (200 ms: sessions between 400 ms and 4 s), fault injection
//! on. The admin API is spoken with a tiny HTTP/1.1 client. Every wait is bounded; every process
//! is killed when the [`Cluster`] drops, and the node logs are printed when a test fails.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use paddock_server::admin::ClusterView;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, Error as ZkError, SessionState};

/// How long any single step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// The session timeout test clients ask for: the server's maximum with 200 ms ticks.
pub const SESSION: Duration = Duration::from_secs(4);

/// How long one write may keep failing with ConnectionLoss before a writer calls it an error.
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// Persistent, world-open.
pub const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
/// Ephemeral, world-open.
pub const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
/// Persistent sequential, world-open.
pub const SEQUENTIAL: CreateOptions<'static> = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());

/// Bounds a future by [`WAIT`].
pub trait Bounded: Future + Sized {
    /// Awaits `self`, failing the test if it takes longer than [`WAIT`].
    fn bounded(self) -> impl Future<Output = Self::Output> {
        async move {
            match tokio::time::timeout(WAIT, self).await {
                Ok(output) => output,
                Err(_) => panic!("step timed out after {WAIT:?}"),
            }
        }
    }
}

impl<F: Future> Bounded for F {}

/// Polls `probe` every [`POLL`] until it yields a value; fails the test after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_for(within, probe).await {
        Some(value) => value,
        None => panic!("gave up after {within:?} waiting for {what}"),
    }
}

/// Polls `probe` every [`POLL`] until it yields a value; `None` after `within`.
pub async fn poll_for<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(Some(value)) = tokio::time::timeout(remaining.max(POLL), probe()).await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Free loopback ports, all distinct: every listener is held until all are picked.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr")).collect()
}

/// An answer from the admin API.
#[derive(Debug)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request with `Connection: close`; the body is read to EOF.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<HttpAnswer> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_http(&raw)
    };
    // Learner additions block until caught up (the server caps them at 30 s).
    tokio::time::timeout(Duration::from_secs(40), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{method} {path} timed out")))?
}

fn parse_http(raw: &[u8]) -> std::io::Result<HttpAnswer> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body).ok_or_else(|| bad("bad chunked body"))? } else { body.to_owned() };
    Ok(HttpAnswer { status, body })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// How a node joins the cluster.
#[derive(Clone)]
enum Membership {
    /// One of the voters of a new cluster (`--initial-members`).
    Initial(String),
    /// Added later (`--join`).
    Join,
}

/// One `paddock-server` process; its ports and data dir survive restarts.
pub struct Node {
    /// Raft id.
    pub id: u64,
    /// ZooKeeper client port.
    pub client_addr: SocketAddr,
    /// Admin HTTP port.
    pub admin_addr: SocketAddr,
    /// Peer port.
    pub peer_addr: SocketAddr,
    dir: PathBuf,
    membership: Membership,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The node's stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process is running (as far as this harness knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits for its `listening` line.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        std::fs::create_dir_all(&self.dir).expect("node dir");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-server"));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PADDOCK_") && key != "PADDOCK_LOG" {
                command.env_remove(key);
            }
        }
        command
            .args(["--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--client-addr", &self.client_addr.to_string()])
            .args(["--admin-addr", &self.admin_addr.to_string()])
            .args(["--peer-addr", &self.peer_addr.to_string()])
            .args(["--tick-ms", "200", "--enable-fault-injection"]);
        match &self.membership {
            Membership::Initial(members) => command.args(["--initial-members", members]),
            Membership::Join => command.arg("--join"),
        };
        command.args(&self.extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = command.spawn().expect("failed to start paddock-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        // Drains stdout for the child's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                let _ = lines_tx.send(std::mem::take(&mut line));
            }
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        });
        self.child = Some(child);
        let ready = tokio::task::spawn_blocking(move || loop {
            match lines_rx.recv_timeout(WAIT) {
                Ok(line) if line.starts_with("paddock-server listening ") => return Ok(line),
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        })
        .await
        .expect("readiness reader");
        if let Err(e) = ready {
            panic!("node {} did not start ({e}); log:\n{}", self.id, self.log());
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `GET /v1/cluster`; `None` when the node does not answer.
    pub async fn view(&self) -> Option<ClusterView> {
        let answer = tokio::time::timeout(Duration::from_secs(2), http(self.admin_addr, "GET", "/v1/cluster", None))
            .await
            .ok()?
            .ok()?;
        if answer.status != 200 {
            return None;
        }
        serde_json::from_str(&answer.body).ok()
    }

    /// Whether `GET /readyz` answers 200.
    pub async fn ready(&self) -> bool {
        let answer = tokio::time::timeout(Duration::from_secs(2), http(self.admin_addr, "GET", "/readyz", None)).await;
        matches!(answer, Ok(Ok(HttpAnswer { status: 200, .. })))
    }

    /// One Prometheus gauge or counter (unlabelled) from `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let answer = http(self.admin_addr, "GET", "/metrics", None).await.ok()?;
        answer.body.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// `POST /v1/debug/isolate`.
    pub async fn isolate(&self, isolated: bool) {
        let body = serde_json::json!({ "isolated": isolated });
        let answer = http(self.admin_addr, "POST", "/v1/debug/isolate", Some(&body)).await.expect("isolate call");
        assert_eq!(answer.status, 200, "isolate answered {answer:?}");
    }

    /// A four-letter word on the client port.
    pub async fn four_letter(&self, word: &str) -> String {
        let exchange = async {
            let mut stream = TcpStream::connect(self.client_addr).await?;
            stream.write_all(word.as_bytes()).await?;
            let mut out = String::new();
            stream.read_to_string(&mut out).await?;
            std::io::Result::Ok(out)
        };
        exchange.bounded().await.unwrap_or_default()
    }

    /// Whether a client connection of `session` is open on this node (from `cons`).
    pub async fn has_session(&self, session: i64) -> bool {
        self.four_letter("cons").await.contains(&format!("sid=0x{session:x},"))
    }
}

/// A set of nodes sharing one temp dir.
pub struct Cluster {
    dir: TempDir,
    /// The nodes by id, running or not.
    pub nodes: BTreeMap<u64, Node>,
    extra: Vec<String>,
}

impl Cluster {
    /// Starts `size` voters (ids 1..=size) with the test flags plus `extra`, and waits until they
    /// agree on a leader and all are ready.
    pub async fn start(size: u64, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("paddock-cluster-test").tempdir().expect("temp dir");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let addrs = free_addrs(3 * size as usize);
        let members =
            (1..=size).map(|id| format!("{id}={}", addrs[3 * (id as usize - 1) + 2])).collect::<Vec<_>>().join(",");
        let mut cluster = Cluster { dir, nodes: BTreeMap::new(), extra };
        for id in 1..=size {
            let at = 3 * (id as usize - 1);
            let node =
                cluster.node_at(id, [addrs[at], addrs[at + 1], addrs[at + 2]], Membership::Initial(members.clone()));
            cluster.nodes.insert(id, node);
        }
        for node in cluster.nodes.values_mut() {
            node.start().await;
        }
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        cluster.wait_leader(&ids, None).await;
        cluster.wait_ready(&ids).await;
        cluster
    }

    fn node_at(&self, id: u64, [client, admin, peer]: [SocketAddr; 3], membership: Membership) -> Node {
        Node {
            id,
            client_addr: client,
            admin_addr: admin,
            peer_addr: peer,
            dir: self.dir.path().join(format!("node-{id}")),
            membership,
            extra: self.extra.clone(),
            child: None,
        }
    }

    /// Starts a new empty node with `--join` (not yet a member).
    pub async fn start_joiner(&mut self, id: u64) -> &Node {
        let addrs = free_addrs(3);
        let mut node = self.node_at(id, [addrs[0], addrs[1], addrs[2]], Membership::Join);
        node.start().await;
        self.nodes.insert(id, node);
        &self.nodes[&id]
    }

    /// The node with `id`.
    pub fn node(&self, id: u64) -> &Node {
        self.nodes.get(&id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The node with `id`, mutably.
    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// A client connect string over `ids`.
    pub fn connect_string(&self, ids: &[u64]) -> String {
        ids.iter().map(|id| self.node(*id).client_addr.to_string()).collect::<Vec<_>>().join(",")
    }

    /// A client with the [`SESSION`] timeout over the nodes `ids`.
    pub async fn client(&self, ids: &[u64]) -> Client {
        self.try_client(ids).await.unwrap_or_else(|e| panic!("client to {ids:?} failed to connect: {e}"))
    }

    /// Like [`Cluster::client`], returning the error.
    pub async fn try_client(&self, ids: &[u64]) -> Result<Client, ZkError> {
        Client::connector()
            .with_session_timeout(SESSION)
            .with_fail_eagerly()
            .connect(&self.connect_string(ids))
            .bounded()
            .await
    }

    /// Waits until every node of `ids` names the same leader, one of `ids` and not `not`, and
    /// that leader says so itself; returns it.
    pub async fn wait_leader(&self, ids: &[u64], not: Option<u64>) -> u64 {
        self.wait_leader_within(ids, not, WAIT).await
    }

    /// [`Cluster::wait_leader`] with its own bound.
    pub async fn wait_leader_within(&self, ids: &[u64], not: Option<u64>, within: Duration) -> u64 {
        wait_for(&format!("nodes {ids:?} to agree on a leader (not {not:?})"), within, || async {
            let mut leader = None;
            for id in ids {
                let view = self.node(*id).view().await?;
                let named = view.leader?;
                if leader.is_some_and(|l| l != named) {
                    return None;
                }
                leader = Some(named);
            }
            let leader = leader?;
            if !ids.contains(&leader) || Some(leader) == not {
                return None;
            }
            let own = self.node(leader).view().await?;
            (own.leader == Some(leader)).then_some(leader)
        })
        .await
    }

    /// Waits until `/readyz` answers 200 on every node of `ids`.
    pub async fn wait_ready(&self, ids: &[u64]) {
        for id in ids {
            let node = self.node(*id);
            wait_for(&format!("node {id} to be ready"), WAIT, || async { node.ready().await.then_some(()) }).await;
        }
    }

    /// Waits until node `id` has applied everything the leader (among `ids`) had committed when
    /// the wait began.
    pub async fn wait_caught_up(&self, id: u64, ids: &[u64]) {
        let leader = self.wait_leader(ids, None).await;
        let target = self.node(leader).view().bounded().await.expect("leader answers").committed;
        let node = self.node(id);
        wait_for(&format!("node {id} to apply index {target}"), WAIT, || async {
            let view = node.view().await?;
            (view.applied >= target).then_some(())
        })
        .await;
    }

    /// Sends a membership request to the leader: asks any running node, follows a 421 to the
    /// leader's admin address, retries while no leader is known.
    pub async fn admin_on_leader(&self, method: &str, path: &str, body: Option<&Value>) -> HttpAnswer {
        let candidates: Vec<SocketAddr> =
            self.nodes.values().filter(|n| n.is_running()).map(|n| n.admin_addr).collect();
        wait_for(&format!("the leader to take {method} {path}"), WAIT, || async {
            for addr in &candidates {
                let Ok(answer) = http(*addr, method, path, body).await else { continue };
                if answer.status != 421 {
                    return Some(answer);
                }
                let leader = answer.json()["leader_admin"].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(leader) = leader {
                    if let Ok(answer) = http(leader, method, path, body).await {
                        if answer.status != 421 {
                            return Some(answer);
                        }
                    }
                }
            }
            None
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            node.kill9();
        }
        if std::thread::panicking() {
            for node in self.nodes.values() {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- node {} log (last {} lines) ---", node.id, tail.len());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
            if std::env::var_os("PADDOCK_KEEP_TEST_DIR").is_some() {
                let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
                eprintln!("--- node dirs kept in {} ---", kept.display());
            }
        }
    }
}

/// Every session state a client went through, recorded by a background task.
pub struct StateLog {
    states: Arc<Mutex<Vec<SessionState>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StateLog {
    /// Starts recording `client`'s state changes.
    pub fn watch(client: &Client) -> StateLog {
        let mut watcher = client.state_watcher();
        let states = Arc::new(Mutex::new(vec![watcher.state()]));
        let task = {
            let states = states.clone();
            tokio::spawn(async move {
                loop {
                    let state = watcher.changed().await;
                    states.lock().unwrap_or_else(|e| e.into_inner()).push(state);
                }
            })
        };
        StateLog { states, task }
    }

    /// The states so far.
    pub fn states(&self) -> Vec<SessionState> {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails the test if the session ever expired or closed.
    pub fn assert_never_expired(&self, who: &str) {
        let states = self.states();
        assert!(!states.iter().any(|s| s.is_terminated()), "{who} saw a terminal session state; states: {states:?}");
    }
}

impl Drop for StateLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `e` says the connection was lost with the request in flight (its outcome unknown):
/// ConnectionLoss, or the client's own "no response from connection" / socket errors, which
/// `zookeeper-client` reports as `Custom`.
pub fn lost_connection(e: &ZkError) -> bool {
    matches!(e, ZkError::ConnectionLoss | ZkError::Custom(_))
}

/// Runs `op` until it succeeds, retrying ConnectionLoss (the outcome of the lost attempt is
/// unknown, so `op` must be safe to repeat); other errors are returned.
pub async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T, ZkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ZkError>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        match tokio::time::timeout(WAIT, op()).await {
            Ok(Err(e)) if lost_connection(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Ok(result) => return result,
            Err(_) => panic!("{what}: no answer in {WAIT:?}"),
        }
    }
}

/// Creates `path` (persistent, no data), retrying ConnectionLoss; an existing node is fine.
pub async fn ensure_node(client: &Client, path: &str) {
    match retrying(path, || client.create(path, b"", &PERSISTENT)).await {
        Ok(_) | Err(ZkError::NodeExists) => {}
        Err(e) => panic!("failed to create {path}: {e}"),
    }
}

/// What a [`Writer`] did.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Paths whose create was acknowledged (directly, or a retry found it already there).
    pub acked: Vec<String>,
    /// Lost connections (ConnectionLoss and the like) that were retried.
    pub retries: usize,
    /// Anything else that went wrong.
    pub errors: Vec<String>,
}

/// A background task creating `PARENT/w-NNNNNN` one after another through one client, retrying
/// ConnectionLoss, counting acknowledged creates.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<WriterReport>,
}

impl Writer {
    /// Starts writing under `parent` (which must exist).
    pub fn spawn(client: Client, parent: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let parent = parent.to_owned();
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut report = WriterReport::default();
                let mut i = 0usize;
                'writes: while !stop.load(Ordering::Relaxed) {
                    let path = format!("{parent}/w-{i:06}");
                    let deadline = tokio::time::Instant::now() + RETRY_FOR;
                    let mut retried = false;
                    loop {
                        let outcome = tokio::time::timeout(WAIT, client.create(&path, path.as_bytes(), &PERSISTENT));
                        match outcome.await {
                            Ok(Ok(_)) => break,
                            Ok(Err(ZkError::NodeExists)) if retried => break,
                            Ok(Err(e)) if lost_connection(&e) && tokio::time::Instant::now() < deadline => {
                                report.retries += 1;
                                retried = true;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Ok(Err(e)) => {
                                report.errors.push(format!("{path}: {e}"));
                                if matches!(e, ZkError::SessionExpired | ZkError::ClientClosed) {
                                    break 'writes;
                                }
                                // The outcome is unknown only for a lost connection; skip this one.
                                i += 1;
                                continue 'writes;
                            }
                            Err(_) => {
                                report.errors.push(format!("{path}: no answer in {WAIT:?}"));
                                break 'writes;
                            }
                        }
                    }
                    report.acked.push(path);
                    acked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                report
            })
        };
        Writer { stop, acked, task }
    }

    /// Acknowledged creates so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` creates beyond the current count are acknowledged.
    pub async fn wait_progress(&self, more: usize, within: Duration) {
        let target = self.acked() + more;
        wait_for(&format!("the writer to reach {target} acknowledged creates"), within, || async {
            (self.acked() >= target).then_some(())
        })
        .await;
    }

    /// Stops the writer after its current create and returns its report.
    pub async fn finish(self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        // One create may be retrying for up to RETRY_FOR.
        tokio::time::timeout(RETRY_FOR + WAIT, self.task)
            .await
            .expect("writer stops in time")
            .expect("writer task does not panic")
    }
}

/// The subtree under `root` as seen through `client` after `sync`: every descendant's path and
/// data (the root itself excluded).
pub async fn read_subtree(client: &Client, root: &str) -> BTreeMap<String, Vec<u8>> {
    retrying("sync", || client.sync(root)).await.expect("sync");
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let children = retrying("list", || client.list_children(&dir)).await.expect("list children");
        let paths: Vec<String> =
            children.iter().map(|c| if dir == "/" { format!("/{c}") } else { format!("{dir}/{c}") }).collect();
        let reads = futures::stream::iter(paths.iter())
            .map(|path| async move {
                let data = retrying("get", || client.get_data(path)).await.expect("get data");
                (path.clone(), data.0, data.1.num_children)
            })
            .buffered(64)
            .collect::<Vec<_>>()
            .bounded()
            .await;
        for (path, data, children) in reads {
            if children > 0 {
                pending.push(path.clone());
            }
            out.insert(path, data);
        }
    }
    out
}

/// Fails the test unless every node of `ids` holds the same subtree under `root`, and that
/// subtree holds every path in `acked`. Returns the subtree.
pub async fn assert_same_everywhere(
    cluster: &Cluster,
    ids: &[u64],
    root: &str,
    acked: &[String],
) -> BTreeMap<String, Vec<u8>> {
    let mut first: Option<(u64, BTreeMap<String, Vec<u8>>)> = None;
    for id in ids {
        let client = cluster.client(&[*id]).await;
        let tree = read_subtree(&client, root).await;
        let missing: Vec<&String> = acked.iter().filter(|p| !tree.contains_key(*p)).collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks {} acknowledged writes under {root} (of {}), e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        match &first {
            None => first = Some((*id, tree)),
            Some((other, expected)) => {
                if &tree != expected {
                    let only_here: Vec<&String> = tree.keys().filter(|k| !expected.contains_key(*k)).collect();
                    let only_there: Vec<&String> = expected.keys().filter(|k| !tree.contains_key(*k)).collect();
                    let differ: Vec<&String> = tree
                        .iter()
                        .filter(|(k, v)| expected.get(*k).is_some_and(|e| e != *v))
                        .map(|(k, _)| k)
                        .collect();
                    panic!(
                        "node {id} and node {other} differ under {root}: only on {id}: {only_here:?}, only on \
                         {other}: {only_there:?}, different data: {differ:?}"
                    );
                }
            }
        }
    }
    first.map(|(_, tree)| tree).unwrap_or_default()
}
