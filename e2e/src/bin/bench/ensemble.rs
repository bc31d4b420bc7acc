//! A three-node cluster of either system on loopback: Apache ZooKeeper (`QuorumPeerMain`, one JVM
//! per node) or Paddock (`paddock-server`, one process per node). Ports are picked up front and
//! kept across restarts, as are the data dirs; every process is killed when the ensemble drops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use paddock_testkit::pki::{Issued, Pki, Usage};

use crate::proc::{cpu_ticks, dir_bytes, Proc};

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Apache ZooKeeper.
    ZooKeeper,
    /// Paddock.
    Paddock,
}

impl Kind {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ZooKeeper => "ZooKeeper",
            Kind::Paddock => "Paddock",
        }
    }
}

/// How to start the servers.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `java` executable.
    pub java: String,
    /// JVM flags for every ZooKeeper node (heap, GC).
    pub jvm_flags: Vec<String>,
    /// ZooKeeper's class path.
    pub zk_classpath: String,
    /// The `paddock-server` binary.
    pub paddock_server: PathBuf,
}

/// The certificates of the TLS workloads: a CA, the servers' certificate (for 127.0.0.1, and as
/// a PEM key store for ZooKeeper) and the load generator's client certificate.
#[derive(Debug, Clone)]
pub struct BenchTls {
    /// The CA both sides trust.
    pub ca: PathBuf,
    /// Every server's certificate and key.
    pub server: Issued,
    /// The server key and certificate in one file (Java's PEM key store).
    pub server_pem: PathBuf,
    /// The load generator's certificate and key.
    pub client: Issued,
}

impl BenchTls {
    /// Makes them under `dir` (openssl).
    pub fn create(dir: &Path) -> Result<BenchTls> {
        let pki = Pki::new(dir, "paddock-bench-ca").map_err(|e| anyhow!("bench CA: {e}"))?;
        let server = pki
            .issue("server", "/CN=bench-server", Usage::Server, &["IP:127.0.0.1".into()])
            .map_err(|e| anyhow!("server certificate: {e}"))?;
        let client = pki
            .issue("client", "/CN=bench-client", Usage::Client, &[])
            .map_err(|e| anyhow!("client certificate: {e}"))?;
        let server_pem = dir.join("server.pem");
        let pem = format!("{}{}", std::fs::read_to_string(&server.key)?, std::fs::read_to_string(&server.cert)?);
        std::fs::write(&server_pem, pem).context("cannot write the key store")?;
        Ok(BenchTls { ca: pki.ca(), server, server_pem, client })
    }

    /// zookeeper-client's options for the load generator.
    pub fn client_options(&self) -> Result<zookeeper_client::TlsOptions> {
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
        let (ca, cert, key) = (read(&self.ca)?, read(&self.client.cert)?, read(&self.client.key)?);
        zookeeper_client::TlsOptions::new()
            .with_pem_ca(&ca)
            .and_then(|o| o.with_pem_identity(&cert, &key))
            .map_err(|e| anyhow!("TLS options: {e}"))
    }
}

/// One node.
pub struct Node {
    /// 1-based id (`myid`, `--id`).
    pub id: usize,
    /// ZooKeeper client port.
    pub client: SocketAddr,
    /// The TLS client port (served once [`Ensemble::enable_tls`] was called).
    pub secure: SocketAddr,
    /// Paddock's admin port (ZooKeeper: none, its admin server is off).
    pub admin: Option<SocketAddr>,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Node {
    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Whether this harness runs it.
    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }
}

/// Three nodes of one system.
pub struct Ensemble {
    /// Which system.
    pub kind: Kind,
    /// The nodes; index `i` has id `i + 1`.
    pub nodes: Vec<Node>,
    launch: Launch,
    peer_ports: Vec<SocketAddr>,
    election_ports: Vec<SocketAddr>,
    tls: Option<BenchTls>,
}

/// `n` distinct free loopback ports (all held until every one is picked).
pub fn free_addrs(n: usize) -> Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a free loopback port"))
        .collect::<Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().context("local address")).collect()
}

/// Sends a four-letter word and reads the answer (bounded by `within`).
pub async fn four_letter(addr: SocketAddr, word: &str, within: Duration) -> Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(word.as_bytes()).await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        std::io::Result::Ok(out)
    };
    tokio::time::timeout(within, exchange)
        .await
        .map_err(|_| anyhow!("{word} on {addr}: no answer within {within:?}"))?
        .with_context(|| format!("{word} on {addr}"))
}

/// The `Mode:` of a `srvr` answer (`leader`, `follower`, ...).
pub fn srvr_mode(srvr: &str) -> Option<&str> {
    srvr.lines().find_map(|l| l.strip_prefix("Mode:")).map(str::trim)
}

/// The `Node count:` of a `srvr` answer.
pub fn srvr_node_count(srvr: &str) -> Option<u64> {
    srvr.lines().find_map(|l| l.strip_prefix("Node count:")).and_then(|v| v.trim().parse().ok())
}

impl Ensemble {
    /// Three nodes under `dir` with fresh ports and config, none started.
    pub fn create(kind: Kind, launch: Launch, dir: &Path) -> Result<Ensemble> {
        const SIZE: usize = 3;
        const PORTS: usize = 5;
        let addrs = free_addrs(PORTS * SIZE)?;
        let mut nodes = Vec::new();
        let (mut peer_ports, mut election_ports) = (Vec::new(), Vec::new());
        for i in 0..SIZE {
            let node_dir = dir.join(format!("{}-{}", kind.name().to_lowercase(), i + 1));
            std::fs::create_dir_all(node_dir.join("data"))
                .with_context(|| format!("cannot create {}", node_dir.display()))?;
            nodes.push(Node {
                id: i + 1,
                client: addrs[PORTS * i],
                secure: addrs[PORTS * i + 4],
                admin: (kind == Kind::Paddock).then_some(addrs[PORTS * i + 1]),
                dir: node_dir,
                proc: None,
            });
            peer_ports.push(addrs[PORTS * i + 2]);
            election_ports.push(addrs[PORTS * i + 3]);
        }
        let ensemble = Ensemble { kind, nodes, launch, peer_ports, election_ports, tls: None };
        if kind == Kind::ZooKeeper {
            ensemble.write_zk_config()?;
        }
        Ok(ensemble)
    }

    /// Serves a TLS client port too from the next start (every node must be stopped): for
    /// ZooKeeper `secureClientPort` (which needs its Netty connection factory, for both ports:
    /// so the plain-text workloads all run before this), for Paddock `--secure-client-addr`.
    /// Both need client certificates of the CA.
    pub fn enable_tls(&mut self, tls: BenchTls) -> Result<()> {
        if self.nodes.iter().any(Node::is_running) {
            bail!("TLS is switched on with the ensemble stopped");
        }
        self.tls = Some(tls);
        if self.kind == Kind::ZooKeeper {
            self.write_zk_config()?;
        }
        Ok(())
    }

    fn zk_config_path(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("zoo.cfg")
    }

    /// zoo.cfg and myid per node. Everything not set here is ZooKeeper's default; in particular
    /// `forceSync=yes` (the txn log is fsynced before a write is acknowledged).
    fn write_zk_config(&self) -> Result<()> {
        let servers: String = (0..self.nodes.len())
            .map(|i| format!("server.{}={}:{}\n", i + 1, self.peer_ports[i], self.election_ports[i].port()))
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            let cfg = format!(
                "# written by paddock-bench; everything else is ZooKeeper's default (forceSync=yes)\n\
                 tickTime=2000\ninitLimit=10\nsyncLimit=5\n\
                 dataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
                 # the load generator opens more than the default 60 connections from 127.0.0.1\n\
                 maxClientCnxns=0\n\
                 4lw.commands.whitelist=*\nadmin.enableServer=false\n{servers}",
                node.data_dir().display(),
                node.client.port(),
            );
            let cfg = match &self.tls {
                None => cfg,
                Some(_) => format!("{cfg}secureClientPort={}\nsecureClientPortAddress=127.0.0.1\n", node.secure.port()),
            };
            std::fs::write(self.zk_config_path(i), cfg).context("cannot write zoo.cfg")?;
            std::fs::write(node.data_dir().join("myid"), format!("{}\n", node.id)).context("cannot write myid")?;
        }
        Ok(())
    }

    fn command(&self, i: usize) -> Command {
        let node = &self.nodes[i];
        match self.kind {
            Kind::ZooKeeper => {
                let mut command = Command::new(&self.launch.java);
                let mut classpath = self.launch.zk_classpath.clone();
                command.args(&self.launch.jvm_flags).arg(format!("-Dzookeeper.log.dir={}", node.dir.display()));
                if let Some(tls) = &self.tls {
                    command.args([
                        "-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory".to_owned(),
                        format!("-Dzookeeper.ssl.keyStore.location={}", tls.server_pem.display()),
                        "-Dzookeeper.ssl.keyStore.type=PEM".to_owned(),
                        format!("-Dzookeeper.ssl.trustStore.location={}", tls.ca.display()),
                        "-Dzookeeper.ssl.trustStore.type=PEM".to_owned(),
                    ]);
                    // Debian's manifest misses the netty jars the Netty factory needs besides
                    // those it names (server/tests/kazoo/test_tls.py).
                    classpath.push_str(":/usr/share/java/netty-resolver.jar:/usr/share/java/netty-codec.jar");
                }
                command
                    .arg("-cp")
                    .arg(classpath)
                    .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                    .arg(self.zk_config_path(i));
                command
            }
            Kind::Paddock => {
                let members: Vec<String> =
                    self.peer_ports.iter().enumerate().map(|(j, addr)| format!("{}={addr}", j + 1)).collect();
                let mut command = Command::new(&self.launch.paddock_server);
                for (key, _) in std::env::vars_os() {
                    let key = key.to_string_lossy().into_owned();
                    if (key.starts_with("PADDOCK_") && key != "PADDOCK_LOG") || key.starts_with("POD_") {
                        command.env_remove(key);
                    }
                }
                command
                    .arg("--id")
                    .arg(node.id.to_string())
                    .arg("--data-dir")
                    .arg(node.data_dir())
                    .arg("--client-addr")
                    .arg(node.client.to_string())
                    .arg("--admin-addr")
                    .arg(node.admin.map(|a| a.to_string()).unwrap_or_default())
                    .arg("--peer-addr")
                    .arg(self.peer_ports[i].to_string())
                    .arg("--initial-members")
                    .arg(members.join(","));
                if let Some(tls) = &self.tls {
                    command
                        .arg("--secure-client-addr")
                        .arg(node.secure.to_string())
                        .arg("--tls-cert")
                        .arg(&tls.server.cert)
                        .arg("--tls-key")
                        .arg(&tls.server.key)
                        .arg("--tls-ca")
                        .arg(&tls.ca);
                }
                command
            }
        }
    }

    /// Starts node `i`'s process (does not wait for it).
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].proc.is_some() {
            bail!("{} node {} is already running", self.kind.name(), i + 1);
        }
        let command = self.command(i);
        let name = format!("{} node {}", self.kind.name(), i + 1);
        let log = self.nodes[i].dir.join("server.log");
        self.nodes[i].proc = Some(Proc::spawn(&name, command, &log)?);
        Ok(())
    }

    /// Starts every node and waits (up to `within`) until all serve and one leads.
    pub async fn start(&mut self, within: Duration) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.spawn(i)?;
        }
        if self.kind == Kind::Paddock {
            for node in &mut self.nodes {
                if let Some(proc) = node.proc.as_mut() {
                    proc.wait_line("paddock-server listening ", within).await?;
                }
            }
        }
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.wait_serving(&all, within).await?;
        Ok(())
    }

    /// One node's `srvr` answer.
    pub async fn srvr(&self, i: usize) -> Result<String> {
        four_letter(self.nodes[i].client, "srvr", Duration::from_secs(3)).await
    }

    /// Whether node `i` serves clients as leader or follower (Paddock: and is ready).
    async fn serving(&self, i: usize) -> Option<bool> {
        let srvr = self.srvr(i).await.ok()?;
        let leader = match srvr_mode(&srvr)? {
            "leader" => true,
            "follower" => false,
            _ => return None,
        };
        if let Some(admin) = self.nodes[i].admin {
            let ready =
                tokio::time::timeout(Duration::from_secs(3), paddock_testkit::http(admin, "GET", "/readyz", None))
                    .await;
            if !matches!(ready, Ok(Ok(answer)) if answer.status == 200) {
                return None;
            }
        }
        Some(leader)
    }

    /// Waits until every node of `ids` serves and exactly one node of the ensemble leads;
    /// returns the leader's index.
    pub async fn wait_serving(&self, ids: &[usize], within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            let mut all_serve = true;
            for &i in ids {
                if self.serving(i).await.is_none() {
                    all_serve = false;
                    break;
                }
            }
            if all_serve {
                if let Ok(leader) = self.leader().await {
                    return Ok(leader);
                }
            }
            if Instant::now() >= deadline {
                let tails: Vec<String> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.proc.as_ref().map(|p| format!("--- node {} ---\n{}", n.id, p.tail(15))))
                    .collect();
                bail!(
                    "{} nodes {:?} did not all serve within {within:?}; logs:\n{}",
                    self.kind.name(),
                    ids.iter().map(|i| i + 1).collect::<Vec<_>>(),
                    tails.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the node whose `srvr` says `Mode: leader` (exactly one must).
    pub async fn leader(&self) -> Result<usize> {
        let mut leaders = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            if let Ok(srvr) = self.srvr(i).await {
                if srvr_mode(&srvr) == Some("leader") {
                    leaders.push(i);
                }
            }
        }
        match leaders.as_slice() {
            [one] => Ok(*one),
            other => bail!("{} has {} leaders", self.kind.name(), other.len()),
        }
    }

    /// SIGKILL node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut proc) = self.nodes[i].proc.take() {
            proc.kill9();
        }
    }

    /// SIGTERM every node (SIGKILL after `grace`).
    pub async fn stop_all(&mut self, grace: Duration) {
        for node in &mut self.nodes {
            if let Some(mut proc) = node.proc.take() {
                proc.terminate(grace).await;
            }
        }
    }

    /// A connect string over the nodes at `indexes`.
    pub fn connect_string(&self, indexes: &[usize]) -> String {
        indexes.iter().map(|&i| self.nodes[i].client.to_string()).collect::<Vec<_>>().join(",")
    }

    /// A TLS connect string over the nodes at `indexes`' TLS ports.
    pub fn secure_connect_string(&self, indexes: &[usize]) -> String {
        indexes.iter().map(|&i| format!("tcp+tls://{}", self.nodes[i].secure)).collect::<Vec<_>>().join(",")
    }

    /// A connect string over every node.
    pub fn connect_all(&self) -> String {
        self.connect_string(&(0..self.nodes.len()).collect::<Vec<_>>())
    }

    /// The resident memory of every node, in bytes.
    pub fn rss(&self) -> Result<Vec<u64>> {
        self.nodes
            .iter()
            .map(|n| n.proc.as_ref().ok_or_else(|| anyhow!("node {} is not running", n.id))?.rss_bytes())
            .collect()
    }

    /// CPU ticks used so far by every running node together.
    pub fn cpu_ticks(&self) -> u64 {
        self.nodes.iter().filter_map(|n| n.pid()).filter_map(|pid| cpu_ticks(&pid.to_string())).sum()
    }

    /// Bytes in every node's data dir together.
    pub fn data_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| dir_bytes(&n.data_dir())).sum()
    }

    /// Every node's `Node count` from `srvr` (`None` where it does not answer).
    pub async fn node_counts(&self) -> Vec<Option<u64>> {
        let mut counts = Vec::new();
        for i in 0..self.nodes.len() {
            counts.push(self.srvr(i).await.ok().as_deref().and_then(srvr_node_count));
        }
        counts
    }

    /// Tails of every node's log (for error reports).
    pub fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(n.dir.join("server.log")).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                format!(
                    "--- {} node {} ---\n{}",
                    self.kind.name(),
                    n.id,
                    all[all.len().saturating_sub(lines)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut proc) = node.proc.take() {
                proc.kill9();
            }
        }
    }
}
