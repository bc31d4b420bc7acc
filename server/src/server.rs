//! One running server: its parts and their start-up. It opens storage, starts Raft, the peer
//! links, the write path and the background duties, and holds what the three ports (client,
//! peer, admin; wired in `main.rs`) share. It answers no requests itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::async_runtime::WatchReceiver;
use openraft::impls::BasicNode;
use openraft::{ServerState, SnapshotPolicy};
use paddock_contract::peer::Hello;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::contact::Contact;
use crate::duties::Duties;
use crate::liveness::{SessionTracker, Touches};
use crate::metrics;
use crate::peer::network::PeerNetwork;
use crate::peer::service::PeerService;
use crate::peer::Peers;
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::raft::{open_db, Raft, TypeConfig};
use crate::store::Store;
use crate::tls::ServerTls;
use crate::write::WritePath;

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
    /// How writes enter the log.
    pub writes: Arc<WritePath>,
    /// Leader-side session liveness.
    pub sessions: Arc<SessionTracker>,
    /// Sessions heard from since the last batch sent to the leader (on followers).
    touches: Arc<Touches>,
    /// Whether this server is in touch with a leader (or, as leader, with a quorum).
    pub contact: Arc<Contact>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// When the process started.
    pub started: Instant,
    /// The ports' TLS.
    pub tls: ServerTls,
    /// Reviews Kubernetes tokens (`addauth k8s`), with `--k8s-token-review`.
    pub token_reviewer: Option<Arc<crate::k8s::TokenReviewer>>,
}

impl Server {
    /// Opens the data dir, starts Raft (forming a new cluster on first boot, as the flags say)
    /// and the background duties.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Server>> {
        metrics::init();
        let tls = ServerTls::load(&config).context("failed to load the TLS certificates")?;
        let token_reviewer = match config.token_review() {
            Some(review) => Some(crate::k8s::TokenReviewer::new(review?).context("--k8s-token-review")?),
            None => None,
        };
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
            // The leader lease the servers' promises about sessions rely on.
            election_timeout_max: crate::contact::LEADER_LEASE.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.snapshot_keep,
            install_snapshot_timeout: 60_000,
            // A server cut off and back does not force an election with its inflated term.
            enable_pre_vote: Some(true),
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().context("invalid raft config")?);
        let peers = Arc::new(Peers::new(config.id, config.admin_addr.to_string(), tls.peer.clone()));
        let network = PeerNetwork::new(peers.clone());
        let raft = Raft::new(config.id, raft_config, network, LogStore::new(db)?, state_machine)
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
        let contact = Arc::new(Contact::default());
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
                tracing::warn!("not elected and caught up after 10 s");
            } else {
                // Its own quorum: it serves from the start (the duties keep it so).
                contact.set_serving(true);
            }
        }
        let write_timeout = Duration::from_millis(config.write_timeout_ms);
        let writes = Arc::new(WritePath::new(config.id, raft.clone(), store.clone(), peers.clone(), write_timeout));
        let server = Arc::new(Server {
            raft,
            store,
            peers,
            writes,
            sessions: Arc::default(),
            touches: Arc::default(),
            contact,
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            tls,
            token_reviewer,
            config,
        });
        server.tls.spawn_reloaders(Duration::from_millis(server.config.tls_reload_ms), &server.shutdown);
        let duties = Duties {
            id: server.config.id,
            raft: server.raft.clone(),
            store: server.store.clone(),
            sessions: server.sessions.clone(),
            touches: server.touches.clone(),
            writes: server.writes.clone(),
            contact: server.contact.clone(),
            tick: Duration::from_millis(server.config.tick_ms),
            reap_interval: Duration::from_millis(server.config.reap_interval_ms),
            // Well inside the shortest session timeout, so clients move to a server that can
            // keep their sessions alive before those expire.
            contact_limit: (server.config.min_session_timeout() / 2).clamp(Duration::from_secs(1), write_timeout),
            shutdown: server.shutdown.clone(),
        };
        Arc::new(duties).spawn();
        Ok(server)
    }

    /// What the peer port answers with.
    pub fn peer_service(&self) -> PeerService {
        PeerService {
            hello: Hello { id: self.config.id, admin_addr: self.config.admin_addr.to_string() },
            raft: self.raft.clone(),
            peers: self.peers.clone(),
            sessions: self.sessions.clone(),
            contact: self.contact.clone(),
        }
    }

    /// A client of `session_id` was heard from. On a follower the touch reaches the leader in
    /// a batch: its number, for [`Server::ping_answerable`].
    pub fn touch(&self, session_id: i64) -> Option<u64> {
        if self.raft.is_leader() {
            self.sessions.touch(session_id, Instant::now());
            None
        } else {
            Some(self.touches.add(session_id))
        }
    }

    /// Resolves to whether a ping whose touch [`Server::touch`] recorded may be answered, within
    /// `limit`: on a follower once the leader took the touch's batch, on the leader while it may
    /// promise the session lives (its lease, [`Contact::leader_may_promise`]). A ping not
    /// answerable in time goes unanswered, and the client moves on (issue 12 hole o).
    pub fn ping_answerable(
        &self,
        touched: Option<u64>,
        limit: Duration,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let touches = self.touches.clone();
        let contact = self.contact.clone();
        let mut metrics = self.raft.metrics();
        async move {
            match touched {
                Some(number) => touches.wait_taken(number, limit).await,
                None => {
                    let lease =
                        metrics.wait_until(|m: &openraft::RaftMetrics<TypeConfig>| contact.leader_may_promise(m));
                    matches!(tokio::time::timeout(limit, lease).await, Ok(Ok(_)))
                }
            }
        }
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
            && self.contact.is_serving()
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
}
