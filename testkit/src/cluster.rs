//! A Raft cluster of `paddock-server` processes on loopback. How a node's command line is made is
//! the caller's: the server suite passes flags directly, the e2e suite renders them with the
//! operator's own builders. Ports are picked up front (peers must know each other's addresses
//! before any starts); each node's ports and data dir survive restarts. Every node is killed when
//! the [`Cluster`] drops, and the logs are printed when a test fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use paddock_contract::admin::ClusterView;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{http, metric, HttpAnswer};
use crate::lab::Lab;
use crate::net::{free_addrs, PeerNet};
use crate::process::Process;
use crate::wait::{poll_for, wait_for, wait_for_within, Bounded, WAIT};

/// What a launcher needs to know to make one node's command line.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Raft id (1-based).
    pub id: u64,
    /// ZooKeeper client port.
    pub client_addr: SocketAddr,
    /// Admin HTTP port.
    pub admin_addr: SocketAddr,
    /// Peer port the node listens on.
    pub peer_addr: SocketAddr,
    /// Peer address the others reach it at: `peer_addr`, or its proxy in a partitionable
    /// cluster.
    pub advertise_peer: SocketAddr,
    /// The node's own directory (its data dir goes under it).
    pub dir: PathBuf,
    /// `(id, advertised peer address)` of every initial voter, or `None` for a node that joins
    /// later.
    pub initial_members: Option<Vec<(u64, SocketAddr)>>,
}

impl NodeSpec {
    /// The data dir: `dir/data`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `binary` with this node's identity, data dir, ports and membership as flags (an env
    /// cleaned of the runner's `PADDOCK_*`); the caller adds its own flags.
    pub fn server_command(&self, binary: &std::path::Path) -> Command {
        let mut command = Command::new(binary);
        crate::process::clean_env(&mut command);
        command
            .args(["--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--client-addr", &self.client_addr.to_string()])
            .args(["--admin-addr", &self.admin_addr.to_string()])
            .args(["--peer-addr", &self.peer_addr.to_string()])
            .args(["--advertise-peer", &self.advertise_peer.to_string()]);
        match self.members_flag() {
            Some(members) => command.args(["--initial-members", &members]),
            None => command.arg("--join"),
        };
        command
    }

    /// `--initial-members` in the server's syntax.
    pub fn members_flag(&self) -> Option<String> {
        let members = self.initial_members.as_ref()?;
        Some(members.iter().map(|(id, addr)| format!("{id}={addr}")).collect::<Vec<_>>().join(","))
    }
}

/// Makes the command that starts a node (environment cleaned by the caller's choice).
pub type Launcher = Arc<dyn Fn(&NodeSpec) -> Command + Send + Sync>;

/// One `paddock-server` process.
pub struct Node {
    /// Raft id.
    pub id: u64,
    /// ZooKeeper client port.
    pub client_addr: SocketAddr,
    /// Admin HTTP port.
    pub admin_addr: SocketAddr,
    /// Peer port.
    pub peer_addr: SocketAddr,
    spec: NodeSpec,
    launcher: Launcher,
    process: Option<Process>,
}

impl Node {
    fn new(spec: NodeSpec, launcher: Launcher) -> Node {
        Node {
            id: spec.id,
            client_addr: spec.client_addr,
            admin_addr: spec.admin_addr,
            peer_addr: spec.peer_addr,
            spec,
            launcher,
            process: None,
        }
    }

    /// How the node is started.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    fn log_path(&self) -> PathBuf {
        self.spec.dir.join("server.log")
    }

    /// The node's stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process is running (as far as this harness knows; a stopped one counts).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Starts the process and waits for its `listening` line.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "node {} already running", self.id);
        std::fs::create_dir_all(&self.spec.dir).expect("node dir");
        let command = (self.launcher)(&self.spec);
        let name = format!("node {}", self.id);
        self.process = Some(Process::start(&name, command, "paddock-server listening ", &self.log_path()).await);
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    /// SIGTERM and wait for the exit, as a pod deletion does; whether the process exited
    /// cleanly.
    pub async fn terminate(&mut self) -> bool {
        let Some(mut process) = self.process.take() else { return true };
        process.signal(Signal::SIGTERM);
        process.exited().await.success()
    }

    /// SIGKILL, then a fresh start on the same data dir and ports.
    pub async fn restart(&mut self) {
        self.kill9();
        self.start().await;
    }

    /// SIGKILL, then a fresh start on an empty data dir as a node that joins (not a member
    /// until the leader adds it): a server whose volume was lost, or its replacement.
    pub async fn restart_empty(&mut self) {
        self.kill9();
        let data = self.spec.data_dir();
        if let Err(e) = std::fs::remove_dir_all(&data) {
            assert!(e.kind() == std::io::ErrorKind::NotFound, "cannot remove {}: {e}", data.display());
        }
        self.spec.initial_members = None;
        self.start().await;
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<nix::unistd::Pid> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// Sends a signal (SIGSTOP freezes the node as a hung pod would be; SIGCONT thaws it).
    pub fn signal(&self, signal: Signal) {
        if let Some(process) = &self.process {
            process.signal(signal);
        }
    }

    /// SIGSTOP, then waits until the kernel reports the process stopped (state `T`), so
    /// nothing the test does afterwards can be seen by the node before it is thawed.
    pub async fn freeze(&self) {
        let Some(pid) = self.process.as_ref().and_then(Process::pid) else { return };
        self.signal(Signal::SIGSTOP);
        let stopped = poll_for(WAIT, || async move {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The state is the first field after the parenthesised command name.
            let state = stat.rsplit_once(')')?.1.split_whitespace().next()?.to_owned();
            (state == "T").then_some(())
        })
        .await;
        assert!(stopped.is_some(), "node {} did not stop within {WAIT:?}", self.id);
    }

    /// SIGCONT: a frozen node runs on.
    pub fn thaw(&self) {
        self.signal(Signal::SIGCONT);
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

    /// One unlabelled Prometheus sample from `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let answer = http(self.admin_addr, "GET", "/metrics", None).await.ok()?;
        metric(&answer.body, name)
    }

    /// `POST /v1/debug/isolate` (needs `--enable-fault-injection`): cuts every peer link.
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

    /// Whether any client connection is open on this node (from `cons`).
    pub async fn has_clients(&self) -> bool {
        self.four_letter("cons").await.contains("sid=0x")
    }
}

/// How a cluster's nodes reach each other and are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Each node on its own loopback ports.
    Loopback,
    /// Loopback, with every peer link through a [`PeerNet`] the test can partition.
    Proxied,
    /// Each node in its own network namespace of a [`Lab`], on the standard ports of its own
    /// address, for real network faults.
    Lab,
}

/// The standard ports of a node in a lab: client, admin, peer.
const LAB_PORTS: [u16; 3] = [2181, 8080, 2888];

/// A set of nodes sharing one temp dir.
pub struct Cluster {
    dir: TempDir,
    /// The nodes by id, running or not.
    pub nodes: BTreeMap<u64, Node>,
    launcher: Launcher,
    net: Option<PeerNet>,
    lab: Option<Arc<Lab>>,
}

impl Cluster {
    /// Starts `size` voters (ids 1..=size) made by `launcher`, and waits until they agree on a
    /// leader and all are ready.
    pub async fn start(size: u64, launcher: Launcher) -> Cluster {
        Cluster::create(size, launcher, Network::Loopback).start_all().await
    }

    /// [`Cluster::start`] with every peer link through a [`PeerNet`], so that the test can
    /// partition the cluster.
    pub async fn start_partitionable(size: u64, launcher: Launcher) -> Cluster {
        Cluster::create(size, launcher, Network::Proxied).start_all().await
    }

    /// [`Cluster::start`] with each node in its own namespace of a [`Lab`] (needs root, see
    /// [`Lab::available`]).
    pub async fn start_in_lab(size: u64, launcher: Launcher) -> Cluster {
        Cluster::create(size, launcher, Network::Lab).start_all().await
    }

    async fn start_all(mut self) -> Cluster {
        for node in self.nodes.values_mut() {
            node.start().await;
        }
        let ids = self.ids();
        self.wait_leader(&ids, None).await;
        self.wait_ready(&ids).await;
        self
    }

    /// `size` voters with their ports and dirs, none started yet.
    pub fn create(size: u64, launcher: Launcher, network: Network) -> Cluster {
        let dir = tempfile::Builder::new().prefix("paddock-cluster").tempdir().expect("temp dir");
        let ids: Vec<u64> = (1..=size).collect();
        let lab = (network == Network::Lab)
            .then(|| Arc::new(Lab::create(&ids).unwrap_or_else(|e| panic!("cannot make a lab: {e}"))));
        let addrs = match &lab {
            Some(lab) => ids.iter().flat_map(|id| lab_addrs(lab, *id)).collect(),
            None => free_addrs(3 * size as usize),
        };
        let at = |id: u64, k: usize| addrs[3 * (id as usize - 1) + k];
        let launcher = match &lab {
            Some(lab) => in_lab(lab, launcher),
            None => launcher,
        };
        let mut net = (network == Network::Proxied).then(PeerNet::default);
        let mut advertised = BTreeMap::new();
        for id in 1..=size {
            let advertise = match &mut net {
                Some(net) => {
                    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a peer proxy");
                    let addr = listener.local_addr().expect("proxy address");
                    net.route(id, listener, at(id, 2));
                    addr
                }
                None => at(id, 2),
            };
            advertised.insert(id, advertise);
        }
        let members: Vec<(u64, SocketAddr)> = advertised.iter().map(|(id, addr)| (*id, *addr)).collect();
        let mut cluster = Cluster { dir, nodes: BTreeMap::new(), launcher, net, lab };
        for id in 1..=size {
            let node = cluster.node_at(id, [at(id, 0), at(id, 1), at(id, 2), advertised[&id]], Some(members.clone()));
            cluster.nodes.insert(id, node);
        }
        cluster
    }

    fn node_at(
        &self,
        id: u64,
        [client_addr, admin_addr, peer_addr, advertise_peer]: [SocketAddr; 4],
        initial_members: Option<Vec<(u64, SocketAddr)>>,
    ) -> Node {
        let spec = NodeSpec {
            id,
            client_addr,
            admin_addr,
            peer_addr,
            advertise_peer,
            dir: self.dir.path().join(format!("node-{id}")),
            initial_members,
        };
        Node::new(spec, self.launcher.clone())
    }

    /// Splits the cluster: no peer link between `side` and the other nodes. Needs a cluster
    /// made by [`Cluster::start_partitionable`].
    pub fn partition(&self, side: &[u64]) {
        let others: Vec<u64> = self.ids().into_iter().filter(|id| !side.contains(id)).collect();
        self.net.as_ref().expect("a partitionable cluster").partition(side, &others);
    }

    /// Heals every partition.
    pub fn heal(&self) {
        self.net.as_ref().expect("a partitionable cluster").heal();
    }

    /// Where a test may put its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The lab of a cluster made by [`Cluster::start_in_lab`].
    pub fn lab(&self) -> &Lab {
        self.lab.as_deref().expect("a cluster in a lab")
    }

    /// Starts a new empty node that joins later (not yet a member).
    pub async fn start_joiner(&mut self, id: u64) -> &Node {
        let addrs = match &self.lab {
            Some(lab) => {
                lab.add_host(id).unwrap_or_else(|e| panic!("cannot add lab host {id}: {e}"));
                lab_addrs(lab, id).to_vec()
            }
            None => free_addrs(3),
        };
        let mut node = self.node_at(id, [addrs[0], addrs[1], addrs[2], addrs[2]], None);
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

    /// Every node's id.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of the nodes that run.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| n.is_running()).map(|n| n.id).collect()
    }

    /// A client connect string over `ids`.
    pub fn connect_string(&self, ids: &[u64]) -> String {
        ids.iter().map(|id| self.node(*id).client_addr.to_string()).collect::<Vec<_>>().join(",")
    }

    /// A client connect string over every node.
    pub fn connect_all(&self) -> String {
        self.connect_string(&self.ids())
    }

    /// Waits until every node of `ids` names the same leader, one of `ids` and not `not`, and
    /// that leader says so itself; returns it.
    pub async fn wait_leader(&self, ids: &[u64], not: Option<u64>) -> u64 {
        self.wait_leader_within(ids, not, WAIT).await
    }

    /// [`Cluster::wait_leader`] with its own bound.
    pub async fn wait_leader_within(&self, ids: &[u64], not: Option<u64>, within: Duration) -> u64 {
        wait_for_within(&format!("nodes {ids:?} to agree on a leader (not {not:?})"), within, || async {
            let mut leader = None;
            for id in ids {
                let named = self.node(*id).view().await?.leader?;
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

    /// The leader every running node agrees on.
    pub async fn leader(&self) -> u64 {
        self.wait_leader(&self.running(), None).await
    }

    /// Waits until `/readyz` answers 200 on every node of `ids`.
    pub async fn wait_ready(&self, ids: &[u64]) {
        for id in ids {
            let node = self.node(*id);
            wait_for(&format!("node {id} to be ready"), || async { node.ready().await.then_some(()) }).await;
        }
    }

    /// Waits until node `id` has applied everything the leader (among `ids`) had committed when
    /// the wait began.
    pub async fn wait_caught_up(&self, id: u64, ids: &[u64]) {
        let leader = self.wait_leader(ids, None).await;
        let target = self.node(leader).view().bounded().await.expect("leader answers").committed;
        let node = self.node(id);
        wait_for(&format!("node {id} to apply index {target}"), || async {
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
        wait_for(&format!("the leader to take {method} {path}"), || async {
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

    /// Moves leadership to node `to` and waits until every running node agrees (asks again
    /// while it has not happened: a transfer can lose to an election).
    pub async fn transfer_leader(&self, to: u64) {
        let body = serde_json::json!({ "id": to });
        let running = self.running();
        wait_for(&format!("leadership to move to node {to}"), || async {
            let leader = self.wait_leader(&running, None).await;
            if leader == to {
                return Some(());
            }
            let _ = http(self.node(leader).admin_addr, "POST", "/v1/cluster/leader", Some(&body)).await;
            None
        })
        .await;
    }
}

/// Client, admin and peer address of lab host `id`.
fn lab_addrs(lab: &Lab, id: u64) -> [SocketAddr; 3] {
    let ip = std::net::IpAddr::V4(lab.host(id).addr);
    LAB_PORTS.map(|port| SocketAddr::new(ip, port))
}

/// `launcher`'s commands run inside each node's namespace.
fn in_lab(lab: &Arc<Lab>, launcher: Launcher) -> Launcher {
    let lab = lab.clone();
    Arc::new(move |spec: &NodeSpec| lab.wrap(spec.id, &launcher(spec)))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A running node's process prints its own log tail as it is killed.
            for node in self.nodes.values().filter(|n| !n.is_running()) {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- node {} log, stopped earlier (last {} lines) ---", node.id, tail.len());
                tail.into_iter().rev().for_each(|line| eprintln!("{line}"));
            }
        }
        // Links healed first: the nodes' last packets are not left retrying into a blackhole.
        if let Some(lab) = &self.lab {
            lab.heal();
        }
        for node in self.nodes.values_mut() {
            node.kill9();
        }
        if std::thread::panicking() && std::env::var_os("PADDOCK_KEEP_TEST_DIR").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!("--- node dirs kept in {} ---", kept.display());
        }
    }
}
