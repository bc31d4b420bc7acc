//! The write path: how a txn enters the log and how its submitter learns the result. On the
//! leader a txn is appended to Raft here; on a follower it is forwarded over the (ordered) peer
//! link to the leader. Either way the result arrives when the entry is applied on this server
//! ([`Store::apply`](crate::store::Store::apply) hands it to the [`PendingWrite`]), so the
//! session then reads its own write. `sync`'s read-index barrier goes the same way.
//!
//! Failures are [`WriteError`]s; the client port maps them to ZooKeeper codes, once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::impls::ProgressResponder;
use openraft::ReadPolicy;

use crate::clock;
use crate::peer::client::PeerClient;
use crate::peer::wire::{PeerRequest, PeerResponse};
use crate::peer::Peers;
use crate::raft::Raft;
use crate::store::{Command, Origin, Store, WriteOutcome};
use crate::tree::{Txn, TxnKind};

/// Why a write (or a sync barrier) did not take effect here, or may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No leader is known (an election is running, or this server is cut off).
    #[error("no leader is known")]
    NoLeader,
    /// Raft on this server, or the leader, refused or dropped the txn: this server stopped or
    /// lost leadership, the leader refused a non-member, or the link broke. The txn may still
    /// commit (when it reached a leader before the failure).
    #[error("the write was refused or dropped: {0}")]
    Dropped(String),
    /// The txn did not commit and apply here within the write deadline (no quorum). It may
    /// still commit later.
    #[error("the write was not applied within {0:?}")]
    Timeout(Duration),
}

type Committed = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send>>;

/// A write handed to Raft whose result is not in yet.
pub struct PendingWrite {
    store: Arc<Store>,
    origin: Origin,
    outcome: tokio::sync::oneshot::Receiver<WriteOutcome>,
    committed: Committed,
    deadline: Duration,
}

impl PendingWrite {
    /// Waits for the write to be committed and applied here, within the write deadline.
    pub async fn outcome(self) -> Result<WriteOutcome, WriteError> {
        let Self { store, origin, outcome, committed, deadline } = self;
        let waited = tokio::time::timeout(deadline, async move {
            committed.await?;
            outcome.await.map_err(|_| WriteError::Dropped("the result was dropped".into()))
        })
        .await;
        let result = waited.unwrap_or(Err(WriteError::Timeout(deadline)));
        if let Err(e) = &result {
            tracing::debug!("write failed: {e}");
            store.abandon_write(origin);
        }
        result
    }
}

/// See the module docs.
pub struct WritePath {
    id: u64,
    raft: Raft,
    store: Arc<Store>,
    peers: Arc<Peers>,
    deadline: Duration,
}

impl WritePath {
    /// The write path of server `id`; a write not applied within `deadline` fails.
    pub fn new(id: u64, raft: Raft, store: Arc<Store>, peers: Arc<Peers>, deadline: Duration) -> Self {
        Self { id, raft, store, peers, deadline }
    }

    /// The link to the current leader, when another server leads.
    pub fn leader_link(&self) -> Option<Arc<PeerClient>> {
        // Every write on a follower asks this: take the two fields, not a copy of all metrics.
        let (leader, addr) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let leader = m.current_leader.filter(|&l| l != self.id)?;
            (leader, m.membership_config.membership().get_node(&leader)?.addr.clone())
        };
        Some(self.peers.link(leader, &addr))
    }

    /// Where writes go now: `None` here when this server leads, else the leader's link. With no
    /// leader known the write fails at once, as on a ZooKeeper server that lost its leader:
    /// waiting here would also hold up the session's pings.
    fn target(&self) -> Result<Option<Arc<PeerClient>>, WriteError> {
        if self.raft.is_leader() {
            return Ok(None);
        }
        self.leader_link().map(Some).ok_or(WriteError::NoLeader)
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
    /// here or forwarded to the leader over the (ordered) peer link. The leader stamps its
    /// time into the txn as it appends it (here, or where it takes a forwarded one): the
    /// `time_ms` a caller passes is replaced.
    pub async fn propose(&self, txn: Txn) -> Result<PendingWrite, WriteError> {
        let target = self.target()?;
        let (origin, outcome) = self.store.register_write();
        let mut command = Command { origin: Some(origin), txn };
        let committed: Committed = match target {
            None => {
                command.txn.time_ms = clock::now_ms();
                let (responder, committed) = ProgressResponder::complete_only();
                if let Err(e) = self.raft.client_write_ff(command, Some(responder)).await {
                    self.store.abandon_write(origin);
                    return Err(WriteError::Dropped(e.to_string()));
                }
                Box::pin(async move {
                    match committed.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(WriteError::Dropped(e.to_string())),
                        Err(_) => Err(WriteError::Dropped("raft dropped the write".into())),
                    }
                })
            }
            Some(link) => {
                let answer = link.start_call(PeerRequest::Forward(command));
                Box::pin(async move {
                    let answer = answer.map_err(|e| WriteError::Dropped(e.to_string()))?;
                    match answer.await {
                        Ok(Ok(PeerResponse::Forwarded(Ok(_)))) => Ok(()),
                        Ok(Ok(PeerResponse::Forwarded(Err(e)))) => Err(WriteError::Dropped(e)),
                        Ok(Ok(other)) => Err(WriteError::Dropped(format!("unexpected answer {other:?}"))),
                        Ok(Err(e)) => Err(WriteError::Dropped(e.to_string())),
                        Err(_) => Err(WriteError::Dropped("the leader link dropped the write".into())),
                    }
                })
            }
        };
        Ok(PendingWrite { store: self.store.clone(), origin, outcome, committed, deadline: self.deadline })
    }

    /// Proposes a txn (the leader stamps its time) and waits for its result.
    pub async fn write(&self, kind: TxnKind) -> Result<WriteOutcome, WriteError> {
        self.propose(Txn::unstamped(kind)).await?.outcome().await
    }

    /// `sync` of `session`: resolves once this server has applied everything the leader had
    /// committed when the barrier was asked for (a read index through the leader). The question
    /// is sent now, so the barrier orders after every request the session sent before it. The
    /// leader hears of the session with it: an answered sync proves the session cannot expire
    /// sooner than its timeout after it was sent (the read index confirms the leader with a
    /// quorum after it heard), which is how the sidecar measures its hold deadlines.
    pub fn sync_barrier(
        self: &Arc<Self>,
        session: i64,
    ) -> Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send>> {
        let path = self.clone();
        let link = if self.raft.is_leader() { None } else { self.leader_link() };
        let answer = link.map(|l| l.start_call(PeerRequest::ReadIndex { session }));
        Box::pin(async move {
            let index = match answer {
                None if path.raft.is_leader() => path
                    .raft
                    .ensure_linearizable(ReadPolicy::ReadIndex)
                    .await
                    .map(|read| read.index())
                    .map_err(|e| WriteError::Dropped(e.to_string()))?,
                None => return Err(WriteError::NoLeader),
                Some(answer) => match answer.map_err(|e| WriteError::Dropped(e.to_string()))?.await {
                    Ok(Ok(PeerResponse::ReadIndex(Ok(index)))) => index,
                    Ok(Ok(PeerResponse::ReadIndex(Err(e)))) => return Err(WriteError::Dropped(e)),
                    _ => return Err(WriteError::Dropped("the leader link dropped the read index".into())),
                },
            };
            tokio::time::timeout(path.deadline, path.store.wait_applied(index as i64))
                .await
                .map_err(|_| WriteError::Timeout(path.deadline))
        })
    }
}
