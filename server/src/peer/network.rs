//! openraft's view of the peer network: each RPC becomes one request on the pipelined link to
//! the target (see [`crate::peer`]). Transport failures are `Unreachable` (openraft backs off);
//! an error the peer answered with is a `Network` error.

use std::future::Future;
use std::io;
use std::sync::Arc;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend};

use super::client::PeerClient;
use super::wire::{PeerRequest, PeerResponse};
use super::Peers;
use crate::raft::TypeConfig;

type C = TypeConfig;

/// The network factory: links come from the shared [`Peers`] pool.
#[derive(Clone)]
pub struct PeerNetwork {
    peers: Arc<Peers>,
}

impl PeerNetwork {
    /// A factory over `peers`.
    pub fn new(peers: Arc<Peers>) -> Self {
        Self { peers }
    }
}

/// The RPC client for one target.
pub struct PeerRpc {
    link: Arc<PeerClient>,
}

impl RaftNetworkFactory<C> for PeerNetwork {
    type Network = PeerRpc;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerRpc { link: self.peers.link(target, &node.addr) }
    }
}

fn transport(e: io::Error) -> Unreachable<C> {
    Unreachable::new(&e)
}

fn remote(message: String) -> NetworkError<C> {
    NetworkError::new(&AnyError::error(message))
}

fn unexpected(answer: PeerResponse) -> NetworkError<C> {
    remote(format!("unexpected peer answer {answer:?}"))
}

impl PeerRpc {
    async fn call(&self, request: PeerRequest, option: &RPCOption) -> Result<PeerResponse, RPCError<C>> {
        self.link.call(request, option.soft_ttl()).await.map_err(|e| RPCError::Unreachable(transport(e)))
    }
}

impl RaftNetworkV2<C> for PeerRpc {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        match self.call(PeerRequest::AppendEntries(rpc), &option).await? {
            PeerResponse::AppendEntries(answer) => answer.map_err(|e| RPCError::Network(remote(e))),
            other => Err(RPCError::Network(unexpected(other))),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        match self.call(PeerRequest::Vote(rpc), &option).await? {
            PeerResponse::Vote(answer) => answer.map_err(|e| RPCError::Network(remote(e))),
            other => Err(RPCError::Network(unexpected(other))),
        }
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        match self.call(PeerRequest::PreVote(rpc), &option).await? {
            PeerResponse::Vote(answer) => answer.map_err(|e| RPCError::Network(remote(e))),
            other => Err(RPCError::Network(unexpected(other))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let request = PeerRequest::Snapshot { vote, meta: snapshot.meta, data: snapshot.snapshot };
        // A snapshot may be large: allow the hard limit, not the per-RPC soft one.
        let sent = self.link.call(request, option.hard_ttl());
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = sent => answer.map_err(|e| StreamingError::Unreachable(transport(e)))?,
        };
        match answer {
            PeerResponse::Snapshot(answer) => answer.map_err(|e| StreamingError::Network(remote(e))),
            other => Err(StreamingError::Network(unexpected(other))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        match self.call(PeerRequest::TransferLeader(req), &option).await? {
            PeerResponse::TransferLeader(answer) => answer.map_err(|e| RPCError::Network(remote(e))),
            other => Err(RPCError::Network(unexpected(other))),
        }
    }
}
