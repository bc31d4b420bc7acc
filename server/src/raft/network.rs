//! The peer network openraft uses to reach other servers. A standalone server (one voter, no
//! peers) never sends an RPC; the TCP peer transport arrives with clustering, and until then
//! every RPC to another node reports it unreachable.

use std::future::Future;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{RPCError, Unreachable};
use openraft::errors::{ReplicationClosed, StreamingError};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{AnyError, OptionalSend};

use super::TypeConfig;

type C = TypeConfig;

/// Network factory of a standalone server.
#[derive(Clone, Default)]
pub struct StandaloneNetwork;

/// A "connection" to a peer that a standalone server does not have.
pub struct NoPeer {
    target: u64,
}

impl NoPeer {
    fn unreachable(&self) -> Unreachable<C> {
        Unreachable::new(&AnyError::error(format!(
            "node {} is not reachable: this server runs standalone, without a peer transport",
            self.target
        )))
    }
}

impl RaftNetworkFactory<C> for StandaloneNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        NoPeer { target }
    }
}

impl RaftNetworkV2<C> for NoPeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn vote(&mut self, _rpc: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: VoteOf<C>,
        _snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(self.unreachable()))
    }
}
