//! Real processes for the sidecar suites: a `paddock-server` on loopback ports chosen by the
//! kernel (fast ticks), a three-node Raft cluster of them for failover tests, `paddock-sidecar`s
//! with their sockets in a temp dir, and a TCP proxy between a sidecar and the server that a
//! test can cut to make the session suspended or lost. Readiness is each binary's stdout line;
//! every wait is bounded; every child is killed on drop.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paddock_sidecar::client::{EventLines, Reply, SocketClient};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long any single step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// How often a condition without an event (readiness) is polled.
pub const POLL: Duration = Duration::from_millis(20);

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

/// Polls `condition` every [`POLL`] until it holds; fails the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if condition().bounded().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up after {WAIT:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` every [`POLL`] until it yields a value; fails the test after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().bounded().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up after {WAIT:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

fn bin_dir() -> PathBuf {
    let sidecar = PathBuf::from(env!("CARGO_BIN_EXE_paddock-sidecar"));
    sidecar.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Starts `command`, sends its stdout lines to a channel (draining it for the child's life) and
/// waits for the line starting with `ready`.
fn spawn_until(mut command: Command, ready: &str, log: &Path) -> (Child, String) {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log_file));
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            let _ = lines_tx.send(std::mem::take(&mut line));
        }
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
    });
    loop {
        match lines_rx.recv_timeout(WAIT) {
            Ok(line) if line.starts_with(ready) => return (child, line),
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{ready} not seen ({e}); log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
            }
        }
    }
}

fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("PADDOCK_") && key != "PADDOCK_LOG") || key.starts_with("POD_") {
            command.env_remove(key);
        }
    }
}

fn print_tail(what: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    eprintln!("--- {what} log (last {} lines) ---", tail.len());
    for line in tail.into_iter().rev() {
        eprintln!("{line}");
    }
}

/// One `paddock-server` (standalone) and its data dir.
pub struct Server {
    child: Option<Child>,
    dir: TempDir,
    /// The ZooKeeper client port.
    pub client_addr: SocketAddr,
}

impl Server {
    /// A standalone server with 100 ms ticks (sessions 200 ms .. 2 s).
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// A standalone server with 100 ms ticks plus `extra` flags.
    pub async fn start_with(extra: &[&str]) -> Server {
        let binary = bin_dir().join("paddock-server");
        assert!(
            binary.exists(),
            "{} is missing: build it first with `cargo build -p paddock-server --bins`",
            binary.display()
        );
        let dir = tempfile::Builder::new().prefix("paddock-sidecar-test").tempdir().expect("temp dir");
        let mut command = Command::new(binary);
        clean_env(&mut command);
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
            .args(["--tick-ms", "100", "--reap-interval-ms", "100"])
            .args(extra);
        let log = dir.path().join("server.log");
        let (child, line) =
            tokio::task::spawn_blocking(move || spawn_until(command, "paddock-server listening ", &log))
                .await
                .expect("server start");
        let client_addr = field(&line, "client=").parse().expect("client address");
        Server { child: Some(child), dir, client_addr }
    }

    /// Where a test may put its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            print_tail("paddock-server", &self.dir.path().join("server.log"));
        }
    }
}

/// One `paddock-sidecar`.
pub struct Sidecar {
    child: Option<Child>,
    log: PathBuf,
    /// The pod name it runs as.
    pub pod: String,
    /// Its Unix socket.
    pub socket: PathBuf,
    /// Its TCP health/metrics address.
    pub http: SocketAddr,
    /// A client of its socket.
    pub api: SocketClient,
}

impl Sidecar {
    /// A sidecar for pod `pod` on `cluster` (a connect string), with `extra` flags; returns once
    /// `/readyz` says its session is connected.
    pub async fn start(server: &Server, cluster: &str, pod: &str, extra: &[&str]) -> Sidecar {
        Sidecar::start_in(server.dir(), cluster, pod, extra).await
    }

    /// [`Sidecar::start`] with its socket and log in `dir`.
    pub async fn start_in(dir: &Path, cluster: &str, pod: &str, extra: &[&str]) -> Sidecar {
        let socket = dir.join(format!("{pod}.sock"));
        let log = dir.join(format!("{pod}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-sidecar"));
        clean_env(&mut command);
        command
            .arg("--socket")
            .arg(&socket)
            .args(["--cluster", cluster, "--listen-addr", "127.0.0.1:0"])
            .args(extra)
            // The server's largest session with 100 ms ticks; a flag in `extra` overrides it.
            .env("PADDOCK_SESSION_TIMEOUT_MS", "2000")
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", "test")
            .env("POD_IP", "127.0.0.1")
            .env("POD_UID", format!("uid-{pod}"));
        let log_path = log.clone();
        let (child, line) =
            tokio::task::spawn_blocking(move || spawn_until(command, "paddock-sidecar listening ", &log_path))
                .await
                .expect("sidecar start");
        let http = field(&line, "http=").parse().expect("http address");
        let sidecar =
            Sidecar { child: Some(child), log, pod: pod.to_owned(), api: SocketClient::new(&socket), socket, http };
        sidecar.ready().await;
        sidecar
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self) {
        eventually("sidecar ready", || async {
            matches!(self.api.get("/readyz").await, Ok(reply) if reply.status == StatusCode::OK)
        })
        .await;
    }

    /// One request with a JSON body; fails the test if the socket does not answer.
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_with(method, uri, body, &[]).await
    }

    /// One request with headers.
    pub async fn call_with(&self, method: Method, uri: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        match self.api.request(method.clone(), uri, body.as_ref(), headers).bounded().await {
            Ok(reply) => reply,
            Err(e) => panic!("{method} {uri} failed: {e}"),
        }
    }

    /// Opens a stream; fails the test unless it is answered 200.
    pub async fn stream(&self, method: Method, uri: &str, body: Option<Value>) -> EventLines {
        match self.api.stream(method.clone(), uri, body.as_ref()).bounded().await {
            Ok(stream) => stream,
            Err(e) => panic!("{method} {uri} failed: {e}"),
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            let pid = i32::try_from(child.id()).expect("pid");
            kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
        }
    }

    /// Waits (bounded) for the process to exit.
    pub async fn exited(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running sidecar");
        let status = tokio::task::spawn_blocking(move || child.wait()).bounded().await;
        status.expect("join").expect("wait")
    }

    /// The sidecar's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            print_tail(&format!("sidecar {}", self.pod), &self.log);
        }
    }
}

/// One `paddock-server` of a [`Cluster`].
pub struct Node {
    /// Raft id.
    pub id: u64,
    /// ZooKeeper client port.
    pub client_addr: SocketAddr,
    /// Admin HTTP port.
    pub admin_addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// `GET /v1/cluster`'s leader as this node sees it; `None` when it does not answer or knows
    /// none.
    pub async fn leader(&self) -> Option<u64> {
        let (status, body) = admin(self.admin_addr, "GET", "/v1/cluster", None).await?;
        (status == 200).then(|| body["leader"].as_u64()).flatten()
    }

    /// Whether a client connection is open on this node (from the `cons` four-letter word).
    pub async fn has_clients(&self) -> bool {
        let exchange = async {
            let mut stream = TcpStream::connect(self.client_addr).await?;
            stream.write_all(b"cons").await?;
            let mut out = String::new();
            stream.read_to_string(&mut out).await?;
            std::io::Result::Ok(out)
        };
        exchange.bounded().await.unwrap_or_default().contains("sid=0x")
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request to an admin port (`Connection: close`); the status and JSON body.
async fn admin(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
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
        std::io::Result::Ok(String::from_utf8_lossy(&raw).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange).await.ok()?.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A Raft cluster of `paddock-server`s on loopback (200 ms ticks, sessions up to 30 s), all in
/// one temp dir; every node is killed on drop and the logs are printed when a test fails.
pub struct Cluster {
    dir: TempDir,
    /// The nodes, ids 1..=n.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `size` voters and waits until they agree on a leader.
    pub async fn start(size: usize) -> Cluster {
        let binary = bin_dir().join("paddock-server");
        assert!(binary.exists(), "{} is missing: build it first", binary.display());
        let dir = tempfile::Builder::new().prefix("paddock-sidecar-cluster").tempdir().expect("temp dir");
        // Peers must know each other's addresses before any starts: pick every port up front,
        // holding each listener until all are picked so that they differ.
        let listeners: Vec<std::net::TcpListener> =
            (0..3 * size).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port")).collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().expect("local addr")).collect();
        drop(listeners);
        let members = (0..size).map(|i| format!("{}={}", i + 1, addrs[3 * i + 2])).collect::<Vec<_>>().join(",");
        let mut cluster = Cluster { dir, nodes: Vec::new() };
        for i in 0..size {
            let id = i as u64 + 1;
            let node_dir = cluster.dir.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut command = Command::new(&binary);
            clean_env(&mut command);
            command
                .args(["--id", &id.to_string()])
                .arg("--data-dir")
                .arg(node_dir.join("data"))
                .args(["--client-addr", &addrs[3 * i].to_string()])
                .args(["--admin-addr", &addrs[3 * i + 1].to_string()])
                .args(["--peer-addr", &addrs[3 * i + 2].to_string()])
                .args(["--initial-members", &members])
                .args(["--tick-ms", "200", "--max-session-timeout-ms", "30000"]);
            let log = node_dir.join("server.log");
            let log_path = log.clone();
            let (child, _) =
                tokio::task::spawn_blocking(move || spawn_until(command, "paddock-server listening ", &log_path))
                    .await
                    .expect("server start");
            cluster.nodes.push(Node {
                id,
                client_addr: addrs[3 * i],
                admin_addr: addrs[3 * i + 1],
                child: Some(child),
                log,
            });
        }
        cluster.leader().await;
        cluster
    }

    /// Where a test may put its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The connect string of every node.
    pub fn connect_string(&self) -> String {
        self.nodes.iter().map(|n| n.client_addr.to_string()).collect::<Vec<_>>().join(",")
    }

    /// The node with `id`.
    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Waits until every running node names the same running leader; returns it.
    pub async fn leader(&self) -> u64 {
        wait_for("the nodes to agree on a leader", || async {
            let mut leader = None;
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                match (node.leader().await, leader) {
                    (Some(named), None) => leader = Some(named),
                    (Some(named), Some(seen)) if named == seen => {}
                    _ => return None,
                }
            }
            leader.filter(|id| self.nodes.iter().any(|n| n.id == *id && n.child.is_some()))
        })
        .await
    }

    /// Moves leadership to node `to` and waits until every node agrees.
    pub async fn transfer_leader(&self, to: u64) {
        let body = serde_json::json!({ "id": to });
        eventually(&format!("leadership to move to node {to}"), || async {
            let leader = self.leader().await;
            if leader == to {
                return true;
            }
            let admin_addr = self.nodes.iter().find(|n| n.id == leader).map(|n| n.admin_addr);
            if let Some(addr) = admin_addr {
                let _ = admin(addr, "POST", "/v1/cluster/leader", Some(&body)).await;
            }
            false
        })
        .await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill9();
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                print_tail(&format!("paddock-server {}", node.id), &node.log);
            }
        }
    }
}

/// The next event of `stream` (bounded); `None` when the stream ended.
pub async fn next(stream: &mut EventLines) -> Option<Value> {
    match stream.next().bounded().await {
        Ok(event) => event,
        Err(e) => panic!("stream failed: {e}"),
    }
}

/// The next event, which must exist and be of `kind`.
pub async fn expect(stream: &mut EventLines, kind: &str) -> Value {
    match next(stream).await {
        Some(event) if event["type"] == kind => event,
        other => panic!("expected a {kind} event, got {other:?}"),
    }
}

/// A loopback TCP proxy to the server; [`Proxy::cut`] drops every connection and refuses new
/// ones until [`Proxy::restore`].
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (open, open_rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*open_rx.borrow() {
                    continue;
                }
                let mut open_rx = open_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = open_rx.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Proxy { addr, open, task }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
