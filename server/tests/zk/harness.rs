//! Runs the real `paddock-server` binary for a test: a fresh data dir, loopback ports chosen by
//! the kernel, fast ticks (100 ms: sessions between 200 ms and 2 s) and a fast reaper. The
//! readiness event is the one line the server prints on stdout once it serves. Every wait here
//! is bounded; the child is killed when the handle drops.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;
use zookeeper_client::{Acls, Client, Connector, CreateMode, CreateOptions};

/// How long any single step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a condition that has no event (expiry, reaping) is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// The session timeout regular test clients ask for (the server's maximum with 100 ms ticks).
pub const SESSION: Duration = Duration::from_secs(2);

/// `digest` auth for `super:test`, matching [`SUPER_DIGEST`].
pub const SUPER_AUTH: &[u8] = b"super:test";

/// `--super-digest` value for the password `super:test`.
pub const SUPER_DIGEST: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

/// Persistent, world-open.
pub const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
/// Ephemeral, world-open.
pub const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
/// Persistent sequential, world-open.
pub const SEQUENTIAL: CreateOptions<'static> = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
/// Ephemeral sequential, world-open.
pub const EPHEMERAL_SEQUENTIAL: CreateOptions<'static> = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
/// Container, world-open.
pub const CONTAINER: CreateOptions<'static> = CreateMode::Container.with_acls(Acls::anyone_all());

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

/// Milliseconds since the epoch, to bound ctime / mtime.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One running `paddock-server` and its data dir.
pub struct TestServer {
    child: Option<Child>,
    dir: TempDir,
    extra: Vec<String>,
    /// The ZooKeeper client port.
    pub client_addr: SocketAddr,
    /// The admin HTTP port.
    pub admin_addr: SocketAddr,
}

impl TestServer {
    /// A standalone server with the test flags.
    pub async fn start() -> TestServer {
        Self::start_with(&[]).await
    }

    /// A standalone server that knows the super user `super:test`.
    pub async fn with_super_digest() -> TestServer {
        Self::start_with(&["--super-digest", SUPER_DIGEST]).await
    }

    /// A standalone server with the test flags plus `extra`.
    pub async fn start_with(extra: &[&str]) -> TestServer {
        let dir = tempfile::Builder::new().prefix("paddock-zk-test").tempdir().expect("temp dir");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let mut server = TestServer {
            child: None,
            dir,
            extra,
            client_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        server.spawn().await;
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's stderr so far (all runs on this data dir).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-server"));
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PADDOCK_") && key != "PADDOCK_LOG" {
                command.env_remove(key);
            }
        }
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
            .args(["--tick-ms", "100", "--reap-interval-ms", "100"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().expect("failed to start paddock-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        // Keeps draining stdout for the child's whole life so it never blocks on a full pipe.
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
        let line = match ready {
            Ok(line) => line,
            Err(e) => panic!("paddock-server did not become ready ({e}); log:\n{}", self.log()),
        };
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in {line:?}"))
        };
        self.client_addr = addr("client=");
        self.admin_addr = addr("admin=");
    }

    /// SIGKILL, no shutdown path: what is acknowledged must already be durable.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data dir (new ports).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// The connect string for clients.
    pub fn connect_string(&self) -> String {
        self.client_addr.to_string()
    }

    /// A client with the [`SESSION`] timeout.
    pub async fn client(&self) -> Client {
        self.connect(Client::connector().with_session_timeout(SESSION)).await
    }

    /// Connects with `connector`.
    pub async fn connect(&self, connector: Connector) -> Client {
        self.try_connect(connector).await.expect("client connects")
    }

    /// Connects with `connector`, returning the client's error.
    pub async fn try_connect(&self, connector: Connector) -> Result<Client, zookeeper_client::Error> {
        connector.with_fail_eagerly().connect(&self.connect_string()).bounded().await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- paddock-server log (last {} lines) ---", tail.len());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
