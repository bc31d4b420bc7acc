//! Runs the real `paddock-server` binary for a test: a fresh data dir, loopback ports chosen by
//! the kernel, fast ticks (100 ms: sessions between 200 ms and 2 s) and a fast reaper. The
//! readiness event is the one line the server prints on stdout once it serves. Every wait here
//! is bounded; the child is killed when the handle drops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use paddock_testkit::{clean_env, Process};
pub use paddock_testkit::{eventually, Bounded, WAIT};
use tempfile::TempDir;
use zookeeper_client::{Acls, Client, Connector, CreateMode, CreateOptions};

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

/// Milliseconds since the epoch, to bound ctime / mtime.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One running `paddock-server` and its data dir.
pub struct TestServer {
    process: Option<Process>,
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
            process: None,
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

    async fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_paddock-server"));
        clean_env(&mut command);
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
            .args(["--tick-ms", "100", "--reap-interval-ms", "100"])
            .args(&self.extra);
        let process = Process::start("paddock-server", command, "paddock-server listening ", &self.log_path()).await;
        self.client_addr = process.field("client=").parse().expect("client address");
        self.admin_addr = process.field("admin=").parse().expect("admin address");
        self.process = Some(process);
    }

    /// SIGKILL, no shutdown path: what is acknowledged must already be durable.
    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
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
