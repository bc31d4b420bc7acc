//! Real processes for the sidecar suites (through `paddock-testkit`): a `paddock-server` on
//! loopback ports chosen by the kernel (fast ticks), a three-node Raft cluster of them for
//! failover tests, and `paddock-sidecar`s with their sockets in a temp dir.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

pub use paddock_testkit::cluster::Cluster;
use paddock_testkit::cluster::NodeSpec;
pub use paddock_testkit::sidecar::{expect, next, Sidecar};
use paddock_testkit::{binary, clean_env, Process};
pub use paddock_testkit::{eventually, wait_for, Bounded, Proxy};
use tempfile::TempDir;

/// One `paddock-server` (standalone) and its data dir.
pub struct Server {
    _process: Process,
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
        let dir = tempfile::Builder::new().prefix("paddock-sidecar-test").tempdir().expect("temp dir");
        let mut command = Command::new(binary("paddock-server"));
        clean_env(&mut command);
        command
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--client-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
            .args(["--tick-ms", "100", "--reap-interval-ms", "100"])
            .args(extra);
        let process =
            Process::start("paddock-server", command, "paddock-server listening ", &dir.path().join("server.log"))
                .await;
        let client_addr = process.field("client=").parse().expect("client address");
        Server { _process: process, dir, client_addr }
    }

    /// Where a test may put its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A three-node-style Raft cluster of `paddock-server`s on loopback (200 ms ticks, sessions up
/// to 30 s, fault injection on); returns once the nodes agree on a leader.
pub async fn start_cluster(size: u64) -> Cluster {
    let launcher = Arc::new(|spec: &NodeSpec| {
        let mut command = spec.server_command(&binary("paddock-server"));
        command.args(["--tick-ms", "200", "--max-session-timeout-ms", "30000", "--enable-fault-injection"]);
        command
    });
    Cluster::start(size, launcher).await
}

/// Sidecars started with this suite's flags.
pub trait SidecarExt {
    /// A sidecar for pod `pod` on `cluster` (a connect string), with `extra` flags; returns once
    /// `/readyz` says its session is connected.
    async fn start(server: &Server, cluster: &str, pod: &str, extra: &[&str]) -> Sidecar;
    /// [`SidecarExt::start`] with its socket and log in `dir`.
    async fn start_in(dir: &Path, cluster: &str, pod: &str, extra: &[&str]) -> Sidecar;
}

impl SidecarExt for Sidecar {
    async fn start(server: &Server, cluster: &str, pod: &str, extra: &[&str]) -> Sidecar {
        Sidecar::start_in(server.dir(), cluster, pod, extra).await
    }

    async fn start_in(dir: &Path, cluster: &str, pod: &str, extra: &[&str]) -> Sidecar {
        let socket = dir.join(format!("{pod}.sock"));
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
        Sidecar::launch(command, pod, &socket, &dir.join(format!("{pod}.log"))).await
    }
}
