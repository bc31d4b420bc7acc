//! openraft's view of the peer network: each RPC becomes one request on the pipelined link to
//! the target (see [`crate::peer`]). Transport failures are `Unreachable` (openraft backs off);
//! an error the peer answered with is a `Network` error.
//!
//! Appends are bounded in size and given time by what they carry (issue 12 a): openraft hands
//! the network up to 300 entries with the heartbeat interval as the deadline (75 ms soft), but a
//! batch of legal ~1 MiB values, a debug build, an fsync stall or a follower at its CPU limit
//! needs longer — and a batch that times out is resent whole, times out again, forever. So one
//! AppendEntries carries at most [`APPEND_BUDGET`] bytes of entries (always at least one; the
//! rest follow as openraft sees the partial success), and one that carries entries may take
//! [`APPEND_DEADLINE`]. Heartbeats (no entries) keep the soft deadline: they are how a stalled
//! link is noticed.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::impls::BasicNode;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, OptionalSend};

use super::client::PeerClient;
use super::snapshot::chunks;
use super::wire::{PeerRequest, PeerResponse, SnapshotChunk, MAX_FRAME};
use super::Peers;
use crate::config::MAX_BUFFER_LIMIT;
use crate::raft::TypeConfig;

type C = TypeConfig;

/// The most bytes of encoded entries one AppendEntries carries (beyond its first entry).
pub const APPEND_BUDGET: usize = 2 << 20;
// The largest AppendEntries — its budget of entries, or one entry of the largest client request
// with its txn's own fields — fits in a peer frame twice over (see `MAX_FRAME`).
const _: () = assert!(2 * (APPEND_BUDGET + MAX_BUFFER_LIMIT + (1 << 20)) <= MAX_FRAME);

/// How long an AppendEntries that carries entries may take: the follower writes and syncs them
/// before it answers.
pub const APPEND_DEADLINE: Duration = Duration::from_secs(5);

/// How many of `entries`, from the first, fit in [`APPEND_BUDGET`] (at least one when there are
/// any). An entry that cannot be encoded counts as over the budget; sending it fails later with
/// the encoding error.
fn fitting<E: serde::Serialize>(entries: &[E]) -> usize {
    if entries.len() <= 1 {
        return entries.len();
    }
    let mut bytes = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        // Counted, not copied: the entries are encoded for real once, on the link.
        let mut counted = Counted(0);
        let size = match postcard::to_io(entry, &mut counted) {
            Ok(_) => counted.0,
            Err(_) => usize::MAX,
        };
        bytes = bytes.saturating_add(size);
        if i > 0 && bytes > APPEND_BUDGET {
            return i;
        }
    }
    entries.len()
}

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

/// A writer that only counts the bytes written to it.
struct Counted(usize);

impl io::Write for Counted {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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
        mut rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let fit = fitting(&rpc.entries);
        // The last entry sent, when the rest are left for the next request.
        let sent_up_to = (fit < rpc.entries.len()).then(|| rpc.entries[fit - 1].log_id());
        rpc.entries.truncate(fit);
        let deadline = if rpc.entries.is_empty() { option.soft_ttl() } else { option.soft_ttl().max(APPEND_DEADLINE) };
        let answer = self.link.call(PeerRequest::AppendEntries(rpc), deadline).await;
        match answer.map_err(|e| RPCError::Unreachable(transport(e)))? {
            PeerResponse::AppendEntries(Ok(AppendEntriesResponse::Success)) if sent_up_to.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(sent_up_to))
            }
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

    /// Sends the snapshot in chunks, in order, each once the one before is answered (see
    /// [`super::snapshot`]); the last one's answer is the install's. Each chunk may take the
    /// soft TTL: openraft's hard TTL bounds one request and its answer, not a transfer, which
    /// takes as long as its size needs while it moves. A refused chunk or a broken link fails
    /// the transfer, and openraft sends the snapshot again from its start.
    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let SnapshotOf::<C, Vec<u8>> { meta, snapshot: data } = snapshot;
        let transfer = rand::random::<u64>();
        let total = data.len() as u64;
        let mut cancel = std::pin::pin!(cancel);
        for range in chunks(data.len()) {
            let last = range.end == data.len();
            let chunk = SnapshotChunk {
                transfer,
                vote,
                meta: meta.clone(),
                offset: range.start as u64,
                total,
                data: data[range].to_vec(),
            };
            let answer = tokio::select! {
                biased;
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                answer = self.link.call(PeerRequest::SnapshotChunk(chunk), option.soft_ttl()) => answer,
            };
            match answer.map_err(|e| StreamingError::Unreachable(transport(e)))? {
                PeerResponse::SnapshotChunk(Ok(())) if !last => {}
                PeerResponse::Snapshot(answer) if last => {
                    return answer.map_err(|e| StreamingError::Network(remote(e)))
                }
                PeerResponse::SnapshotChunk(Err(e)) => return Err(StreamingError::Network(remote(e))),
                other => return Err(StreamingError::Network(unexpected(other))),
            }
        }
        // Not reached: there is always a chunk, and the last one's answer returns.
        Err(StreamingError::Network(remote("a snapshot transfer ended before its last chunk".into())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_carries_at_most_its_budget_but_always_one_entry() {
        let big = vec![7u8; APPEND_BUDGET];
        assert_eq!(fitting::<Vec<u8>>(&[]), 0);
        assert_eq!(fitting(std::slice::from_ref(&big)), 1, "one entry over the budget still goes alone");
        assert_eq!(fitting(&[big.clone(), big.clone()]), 1);
        let small = vec![1u8; 1000];
        assert_eq!(fitting(&vec![small.clone(); 100]), 100);
        let many = vec![small; 3000];
        let n = fitting(&many);
        assert!(n > 1 && n < 3000 && n * 1000 <= APPEND_BUDGET + 1000, "{n} entries of 1000 bytes");
    }
}
