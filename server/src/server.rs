//! One running server: opens storage, starts Raft and the peer links, and owns what the client
//! listener, the peer service, the admin API and the leader's background duties share. It is
//! also the one way writes enter the log: locally on the leader, forwarded from a follower.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use openraft::async_runtime::WatchReceiver;
use openraft::impls::{BasicNode, ProgressResponder};
use openraft::{ReadPolicy, ServerState, SnapshotPolicy};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;
use crate::peer::client::PeerClient;
use crate::peer::wire::{PeerRequest, PeerResponse};
use crate::peer::Peers;
use crate::proto::ErrorCode;
use crate::raft::log_store::LogStore;
use crate::raft::network::PeerNetwork;
use crate::raft::state_machine::StateMachine;
use crate::raft::{open_db, Command, Origin, Raft, TypeConfig};
use crate::store::{Store, WriteOutcome};
use crate::tree::{Txn, TxnKind};
use crate::zk::connections::Connections;
use crate::zk::session::{SessionIds, SessionTracker};

/// See the module docs.
pub struct Server {
    /// The flags this server runs with.
    pub config: Config,
    /// The Raft handle.
    pub raft: Raft,
    /// The applied state.
    pub store: Arc<Store>,
    /// Links to the other servers.
    pub peers: Arc<Peers>,
    /// Leader-side session liveness.
    pub sessions: SessionTracker,
    /// Session id and password source.
    pub session_ids: SessionIds,
    /// Open client connections.
    pub connections: Connections,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// When the process started.
    pub started: Instant,
    /// Sessions heard from since the last batch sent to the leader (on followers).
    touched: Mutex<HashSet<i64>>,
    /// Whether this server is in touch with a leader (or, as leader, with a quorum).
    serving: tokio::sync::watch::Sender<bool>,
}

type Committed = Pin<Box<dyn Future<Output = Result<(), ErrorCode>> + Send>>;

/// A write handed to Raft whose result is not in yet.
pub struct PendingWrite {
    origin: Origin,
    outcome: tokio::sync::oneshot::Receiver<WriteOutcome>,
    committed: Committed,
    deadline: Duration,
}

impl PendingWrite {
    /// Waits for the write to be committed and applied here. A write Raft refused, or that did
    /// not commit in time (no quorum), is `ConnectionLoss`: ZooKeeper clients then retry on
    /// another server.
    pub async fn outcome(self, store: &Store) -> Result<WriteOutcome, ErrorCode> {
        let origin = self.origin;
        let outcome = self.outcome;
        let committed = self.committed;
        let waited = tokio::time::timeout(self.deadline, async move {
            committed.await?;
            outcome.await.map_err(|_| ErrorCode::ConnectionLoss)
        })
        .await;
        match waited {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(code)) => {
                store.abandon_write(origin);
                Err(code)
            }
            Err(_) => {
                tracing::debug!("write not committed in time");
                store.abandon_write(origin);
                Err(ErrorCode::ConnectionLoss)
            }
        }
    }
}

/// Milliseconds since the epoch: the leader's clock, stamped into txns.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Server {
    /// Opens the data dir, starts Raft (forming a new cluster on first boot, as the flags say)
    /// and the background duties.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Server>> {
        metrics::init();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("failed to create data dir {}", config.data_dir.display()))?;
        let db = open_db(&config.data_dir)
            .with_context(|| format!("failed to open the database in {}", config.data_dir.display()))?;
        let store = Arc::new(Store::new(config.id));
        let state_machine = StateMachine::open(store.clone(), db.clone()).context("failed to restore the snapshot")?;
        let raft_config = openraft::Config {
            cluster_name: "paddock".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            install_snapshot_timeout: 60_000,
            // A server cut off and back does not force an election with its inflated term.
            enable_pre_vote: Some(true),
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().context("invalid raft config")?);
        let peers = Arc::new(Peers::new(config.id, config.admin_addr.to_string()));
        let network = PeerNetwork::new(peers.clone());
        let raft = Raft::new(config.id, raft_config, network, LogStore::new(db), state_machine)
            .await
            .context("failed to start raft")?;
        if !raft.is_initialized().await.context("raft stopped")? && !config.join {
            let members: BTreeMap<u64, BasicNode> = match &config.initial_members {
                Some(members) => members.0.iter().map(|(&id, addr)| (id, BasicNode::new(addr.clone()))).collect(),
                None => BTreeMap::from([(config.id, BasicNode::new(config.advertised_peer()))]),
            };
            // Every member of a new cluster initializes with the same list; Raft's vote
            // makes one of them leader.
            raft.initialize(members).await.context("failed to initialize the cluster")?;
            tracing::info!(id = config.id, "initialized a new cluster");
        }
        if config.standalone() {
            // A standalone server elects itself within one election timeout; wait so the first
            // clients are not turned away.
            let mut metrics_rx = raft.metrics();
            // Ready means elected and the log (its own blank entry, or a replay after restart)
            // applied, so the first client sees the full state.
            let elected = metrics_rx.wait_until(|m| {
                m.current_leader.is_some() && m.last_applied.as_ref().map(|l| l.index) == m.last_log_index
            });
            if tokio::time::timeout(Duration::from_secs(10), elected).await.is_err() {
                tracing::warn!("not elected and caught up after 10 s; serving anyway");
            }
        }
        let server = Arc::new(Server {
            session_ids: SessionIds::new(config.id, now_ms() as u64),
            config,
            raft,
            store,
            peers,
            sessions: SessionTracker::default(),
            connections: Connections::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            touched: Mutex::default(),
            serving: tokio::sync::watch::channel(true).0,
        });
        tokio::spawn(leader_duties(server.clone()));
        tokio::spawn(follower_duties(server.clone()));
        tokio::spawn(end_closed_sessions(server.clone()));
        Ok(server)
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.config.write_timeout_ms)
    }

    /// How long a server may go without hearing from the leader (or, as leader, from a
    /// quorum) before it stops serving: well inside the shortest session timeout, so clients
    /// move to a server that can keep their sessions alive before those expire.
    fn contact_limit(&self) -> Duration {
        (self.config.min_session_timeout() / 2).clamp(Duration::from_secs(1), self.write_timeout())
    }

    /// The link to the current leader, when another server leads.
    fn leader_link(&self) -> Option<Arc<PeerClient>> {
        let m = self.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader.filter(|&l| l != self.config.id)?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some(self.peers.link(leader, &node.addr))
    }

    /// Where writes go now: `None` here when this server leads, else the leader's link. With no
    /// leader known the write fails at once with ConnectionLoss, as on a ZooKeeper server that
    /// lost its leader: waiting here would also hold up the session's pings.
    fn write_target(&self) -> Result<Option<Arc<PeerClient>>, ErrorCode> {
        if self.raft.is_leader() {
            return Ok(None);
        }
        self.leader_link().map(Some).ok_or(ErrorCode::ConnectionLoss)
    }

    /// Waits (at most `limit`) until a leader is known; false if none appeared. Used before a
    /// session is created, where nothing else of the client's waits behind it.
    pub async fn wait_for_leader(&self, limit: Duration) -> bool {
        let mut metrics = self.raft.metrics();
        let known = metrics.wait_until(|m| m.current_leader.is_some());
        tokio::time::timeout(limit, known).await.is_ok_and(|r| r.is_ok())
    }

    /// Hands a txn to Raft, in call order: writes proposed one after another by one task enter
    /// the log in that order (this is what keeps a session's writes FIFO), whether appended
    /// here or forwarded to the leader over the (ordered) peer link.
    pub async fn propose(&self, txn: Txn) -> Result<PendingWrite, ErrorCode> {
        let target = self.write_target()?;
        let (origin, outcome) = self.store.register_write();
        let command = Command { origin: Some(origin), txn };
        let committed: Committed = match target {
            None => {
                let (responder, committed) = ProgressResponder::complete_only();
                if self.raft.client_write_ff(command, Some(responder)).await.is_err() {
                    self.store.abandon_write(origin);
                    return Err(ErrorCode::ConnectionLoss);
                }
                Box::pin(async move {
                    match committed.await {
                        Ok(Ok(_)) => Ok(()),
                        _ => Err(ErrorCode::ConnectionLoss),
                    }
                })
            }
            Some(link) => {
                let answer = link.start_call(PeerRequest::Forward(command));
                Box::pin(async move {
                    match answer?.await {
                        Ok(Ok(PeerResponse::Forwarded(Ok(_)))) => Ok(()),
                        _ => Err(ErrorCode::ConnectionLoss),
                    }
                })
            }
        };
        Ok(PendingWrite { origin, outcome, committed, deadline: self.write_timeout() })
    }

    /// Proposes a txn and waits for its result.
    pub async fn write(&self, kind: TxnKind) -> Result<WriteOutcome, ErrorCode> {
        self.propose(Txn { time_ms: now_ms(), kind }).await?.outcome(&self.store).await
    }

    /// `sync`: resolves once this server has applied everything the leader had committed when
    /// the barrier was asked for (a read index through the leader).
    pub fn sync_barrier(self: &Arc<Self>) -> Pin<Box<dyn Future<Output = Result<(), ErrorCode>> + Send>> {
        let server = self.clone();
        let link = if self.raft.is_leader() { None } else { self.leader_link() };
        let answer = link.map(|l| l.start_call(PeerRequest::ReadIndex));
        Box::pin(async move {
            let index = match answer {
                None if server.raft.is_leader() => server
                    .raft
                    .ensure_linearizable(ReadPolicy::ReadIndex)
                    .await
                    .map(|read| read.index())
                    .map_err(|_| ErrorCode::ConnectionLoss)?,
                None => return Err(ErrorCode::ConnectionLoss),
                Some(answer) => match answer?.await {
                    Ok(Ok(PeerResponse::ReadIndex(Ok(index)))) => index,
                    _ => return Err(ErrorCode::ConnectionLoss),
                },
            };
            tokio::time::timeout(server.write_timeout(), server.store.wait_applied(index as i64))
                .await
                .map_err(|_| ErrorCode::ConnectionLoss)
        })
    }

    /// A client of `session_id` was heard from.
    pub fn touch(&self, session_id: i64) {
        if self.raft.is_leader() {
            self.sessions.touch(session_id, Instant::now());
        } else {
            self.touched.lock().unwrap_or_else(|e| e.into_inner()).insert(session_id);
        }
    }

    /// Whether clients may be served: in touch with a leader (or a quorum, as leader) and a
    /// member of the cluster.
    pub fn is_serving(&self) -> bool {
        *self.serving.borrow()
    }

    /// Waits (at most `limit`) until this server serves clients; false if it did not.
    pub async fn wait_serving(&self, limit: Duration) -> bool {
        let mut serving = self.serving.subscribe();
        tokio::time::timeout(limit, serving.wait_for(|s| *s)).await.is_ok_and(|r| r.is_ok())
    }

    /// Whether `id` is in the current membership (voter or learner).
    pub fn is_member(&self, id: u64) -> bool {
        self.raft.metrics().borrow_watched().membership_config.membership().get_node(&id).is_some()
    }

    /// Whether this server is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// A copy of the current Raft metrics.
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Whether this server is in a cluster with a leader and has applied all it committed.
    pub fn is_ready(&self) -> bool {
        let m = self.raft_metrics();
        let index = |id: &Option<openraft::alias::LogIdOf<TypeConfig>>| id.as_ref().map(|l| l.index);
        m.current_leader.is_some()
            && m.running_state.is_ok()
            && self.is_serving()
            && index(&m.last_applied) >= index(&m.local_committed)
    }

    /// Copies Raft and tree figures into the gauges (on scrape).
    pub fn refresh_metrics(&self) {
        let m = self.raft_metrics();
        let index =
            |id: &Option<openraft::alias::LogIdOf<TypeConfig>>| id.as_ref().map(|l| l.index as i64).unwrap_or(0);
        metrics::RAFT_TERM.set(m.current_term as i64);
        metrics::RAFT_IS_LEADER.set(i64::from(m.state == ServerState::Leader));
        metrics::RAFT_LAST_LOG_INDEX.set(m.last_log_index.unwrap_or(0) as i64);
        metrics::RAFT_COMMIT_INDEX.set(index(&m.local_committed));
        metrics::RAFT_APPLIED_INDEX.set(index(&m.last_applied));
        metrics::RAFT_APPLY_LAG.set(index(&m.local_committed) - index(&m.last_applied));
        metrics::RAFT_PURGED_INDEX.set(index(&m.purged));
        metrics::SNAPSHOT_INDEX.set(index(&m.snapshot));
        let view = self.store.read();
        metrics::ZNODES.set(view.tree.node_count() as i64);
        metrics::EPHEMERALS.set(view.tree.ephemeral_count() as i64);
        metrics::DATA_BYTES.set(view.tree.approximate_data_size() as i64);
        metrics::SESSIONS.set(view.tree.sessions().count() as i64);
        metrics::WATCHES.set(view.watches.watch_count() as i64);
    }

    /// The role as ZooKeeper's `Mode:` line says it: standalone, leader, follower or observer
    /// (a learner).
    pub fn role(&self) -> &'static str {
        let m = self.raft_metrics();
        let voters = m.membership_config.membership().voter_ids().count();
        match m.state {
            ServerState::Leader if voters <= 1 => "standalone",
            ServerState::Leader => "leader",
            ServerState::Learner => "observer",
            _ => "follower",
        }
    }

    /// Stops Raft; called once the listeners are closed.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }

    /// Records whether clients may be served; when that ends, every client connection is
    /// closed so its client moves to a server that can serve it (as a ZooKeeper server that
    /// loses its leader does).
    fn set_serving(&self, serving: bool) {
        let was = self.serving.send_replace(serving);
        if was && !serving {
            tracing::warn!("lost contact with the cluster: closing client connections");
            self.connections.kill_all();
        } else if serving && !was {
            tracing::info!("back in contact with the cluster: serving clients");
        }
    }
}

/// What only the leader does: expire sessions and delete emptied containers and expired TTL
/// nodes. Each turns into an ordinary txn through the log.
async fn leader_duties(server: Arc<Server>) {
    let mut was_leader = false;
    let mut seen_session_changes = u64::MAX;
    let mut last_reap = Instant::now();
    let mut last_leader = None;
    let tick = Duration::from_millis((server.config.tick_ms / 4).clamp(10, 250));
    loop {
        tokio::select! {
            _ = server.shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let m = server.raft_metrics();
        if m.current_leader != last_leader {
            if m.current_leader.is_some() {
                metrics::RAFT_LEADER_CHANGES.inc();
            }
            last_leader = m.current_leader;
        }
        if m.state != ServerState::Leader {
            was_leader = false;
            continue;
        }
        let voters = m.membership_config.membership().voter_ids().count();
        let quorum_fresh = voters <= 1
            || m.last_quorum_acked
                .as_ref()
                .is_some_and(|at| openraft::Instant::elapsed(&**at) < server.contact_limit());
        let member = m.membership_config.membership().get_node(&server.config.id).is_some();
        server.set_serving(quorum_fresh && member);
        let now = Instant::now();
        let changes = server.store.session_changes();
        if !was_leader || changes != seen_session_changes {
            seen_session_changes = changes;
            let tree = server.store.tree();
            let live = tree.sessions().map(|(id, s)| (id, Duration::from_millis(s.timeout_ms.max(0) as u64)));
            // A new leader gives every session a fresh full timeout.
            server.sessions.sync_with(live, now, !was_leader);
        }
        was_leader = true;
        for session_id in server.sessions.take_expired(now) {
            tracing::info!(session = format_args!("0x{session_id:x}"), "session expired");
            match server.write(TxnKind::CloseSession { session_id }).await {
                Ok(_) => metrics::SESSIONS_EXPIRED.inc(),
                Err(_) => server.sessions.retry_expiry(session_id),
            }
        }
        if last_reap.elapsed() >= Duration::from_millis(server.config.reap_interval_ms) {
            last_reap = Instant::now();
            let candidates = server.store.tree().reap_candidates(now_ms());
            if !candidates.is_empty() {
                if let Err(e) = server.write(TxnKind::Reap { nodes: candidates }).await {
                    tracing::debug!("reap proposal failed: {e}");
                }
            }
        }
    }
}

/// What a follower or learner does: send the leader the sessions its clients were heard from,
/// in batches (never through the log), and keep track of whether the leader is reachable.
async fn follower_duties(server: Arc<Server>) {
    let tick = Duration::from_millis((server.config.tick_ms / 2).clamp(10, 500));
    let mut last_contact = Instant::now();
    let mut leader_changes = server.raft.metrics();
    let mut leader = None;
    loop {
        // Every half tick, and at once when a new leader appears (so a follower serves again
        // right after an election).
        tokio::select! {
            _ = server.shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
            _ = leader_changes.wait_until(|m| m.current_leader != leader) => {}
        }
        leader = server.raft_metrics().current_leader;
        if server.raft.is_leader() {
            last_contact = Instant::now();
            continue;
        }
        let m = server.raft_metrics();
        let member = m.membership_config.membership().get_node(&server.config.id).is_some();
        let batch: Vec<i64> = server.touched.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        let contacted = match server.leader_link() {
            Some(link) => matches!(
                link.call(PeerRequest::Touch(batch), tick.max(Duration::from_millis(200))).await,
                Ok(PeerResponse::Touched)
            ),
            None => false,
        };
        if contacted {
            last_contact = Instant::now();
        }
        let fresh = last_contact.elapsed() < server.contact_limit();
        server.set_serving(fresh && member);
    }
}

/// Ends the connections of sessions whose close or expiry was applied: their clients learn of
/// it when they reconnect (SessionExpired), as with ZooKeeper.
async fn end_closed_sessions(server: Arc<Server>) {
    let mut closed = server.store.closed_sessions();
    loop {
        let session_id = tokio::select! {
            _ = server.shutdown.cancelled() => return,
            next = closed.recv() => match next {
                Ok(id) => id,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        server.connections.kill_session(session_id);
    }
}
