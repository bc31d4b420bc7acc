//! One running server: opens storage, starts Raft, and owns what the client listener, the
//! admin API and the leader's background duties share. Also the one way writes enter the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use openraft::alias::OneshotReceiverOf;
use openraft::async_runtime::WatchReceiver;
use openraft::impls::{BasicNode, ProgressResponder};
use openraft::raft::ClientWriteResult;
use openraft::{ServerState, SnapshotPolicy};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;
use crate::proto::ErrorCode;
use crate::raft::log_store::LogStore;
use crate::raft::network::StandaloneNetwork;
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
    /// Leader-side session liveness.
    pub sessions: SessionTracker,
    /// Session id and password source (used when this server is leader).
    pub session_ids: SessionIds,
    /// Open client connections.
    pub connections: Connections,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// When the process started.
    pub started: Instant,
}

/// A write handed to Raft whose result is not in yet.
pub struct PendingWrite {
    origin: Origin,
    outcome: tokio::sync::oneshot::Receiver<WriteOutcome>,
    committed: OneshotReceiverOf<TypeConfig, ClientWriteResult<TypeConfig>>,
}

impl PendingWrite {
    /// Waits for the write to be applied here. A write Raft refused (no leader, shutting
    /// down) is `ConnectionLoss`, as ZooKeeper clients expect: they retry elsewhere.
    pub async fn outcome(self, store: &Store) -> Result<WriteOutcome, ErrorCode> {
        match self.committed.await {
            Ok(Ok(_)) => self.outcome.await.map_err(|_| ErrorCode::ConnectionLoss),
            Ok(Err(e)) => {
                tracing::debug!("write refused by raft: {e}");
                store.abandon_write(self.origin);
                Err(ErrorCode::ConnectionLoss)
            }
            Err(_) => {
                store.abandon_write(self.origin);
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
    /// Opens the data dir, starts Raft (initializing a new single-voter cluster on first boot)
    /// and the leader's background duties.
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
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().context("invalid raft config")?);
        let raft = Raft::new(config.id, raft_config, StandaloneNetwork, LogStore::new(db), state_machine)
            .await
            .context("failed to start raft")?;
        if !raft.is_initialized().await.context("raft stopped")? {
            let members = BTreeMap::from([(config.id, BasicNode::new(config.advertise_peer.clone()))]);
            raft.initialize(members).await.context("failed to initialize a standalone cluster")?;
            tracing::info!(id = config.id, "initialized a new standalone cluster");
        }
        // A standalone server elects itself within one election timeout; wait for it so the
        // first clients are not turned away.
        let mut metrics_rx = raft.metrics();
        let elected =
            tokio::time::timeout(Duration::from_secs(10), metrics_rx.wait_until(|m| m.current_leader.is_some()));
        if elected.await.is_err() {
            tracing::warn!("no leader after 10 s; serving anyway");
        }
        let server = Arc::new(Server {
            session_ids: SessionIds::new(config.id, now_ms() as u64),
            config,
            raft,
            store,
            sessions: SessionTracker::default(),
            connections: Connections::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
        });
        tokio::spawn(leader_duties(server.clone()));
        tokio::spawn(end_closed_sessions(server.clone()));
        Ok(server)
    }

    /// Hands a txn to Raft, in call order: writes proposed one after another by one task enter
    /// the log in that order (this is what makes a session's writes FIFO).
    pub async fn propose(&self, txn: Txn) -> Result<PendingWrite, ErrorCode> {
        let (origin, outcome) = self.store.register_write();
        let (responder, committed) = ProgressResponder::complete_only();
        let command = Command { origin: Some(origin), txn };
        if self.raft.client_write_ff(command, Some(responder)).await.is_err() {
            self.store.abandon_write(origin);
            return Err(ErrorCode::ConnectionLoss);
        }
        Ok(PendingWrite { origin, outcome, committed })
    }

    /// Proposes a txn and waits for its result.
    pub async fn write(&self, kind: TxnKind) -> Result<WriteOutcome, ErrorCode> {
        self.propose(Txn { time_ms: now_ms(), kind }).await?.outcome(&self.store).await
    }

    /// A copy of the current Raft metrics.
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Whether this server is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.raft_metrics().state == ServerState::Leader
    }

    /// Whether this server is in a cluster with a leader and has applied all it committed.
    pub fn is_ready(&self) -> bool {
        let m = self.raft_metrics();
        m.current_leader.is_some()
            && m.running_state.is_ok()
            && m.last_applied.as_ref().map(|l| l.index) >= m.local_committed.as_ref().map(|c| c.index)
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

    /// Stops Raft; called once the listeners are closed.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

/// What only the leader does: expire sessions and delete emptied containers and expired TTL
/// nodes. Each turns into an ordinary txn through the log.
async fn leader_duties(server: Arc<Server>) {
    let mut was_leader = false;
    let mut last_reap = Instant::now();
    let mut leader_changes = server.raft.metrics();
    let mut last_leader = None;
    let tick = Duration::from_millis((server.config.tick_ms / 4).clamp(10, 250));
    loop {
        tokio::select! {
            _ = server.shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        {
            let leader = leader_changes.borrow_and_update().current_leader;
            if leader != last_leader {
                if leader.is_some() {
                    metrics::RAFT_LEADER_CHANGES.inc();
                }
                last_leader = leader;
            }
        }
        let leader = server.is_leader();
        if !leader {
            was_leader = false;
            continue;
        }
        let now = Instant::now();
        {
            let tree = server.store.tree();
            let live = tree.sessions().map(|(id, s)| (id, Duration::from_millis(s.timeout_ms.max(0) as u64)));
            // A new leader gives every session a fresh full timeout.
            if !was_leader || tree.sessions().count() != server.sessions.len() {
                server.sessions.sync_with(live, now, !was_leader);
            }
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

impl Server {
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
