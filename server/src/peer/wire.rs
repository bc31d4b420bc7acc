//! Peer messages and their framing: a 4-byte big-endian length, then a postcard-encoded
//! [`Frame`]. Requests carry an id so a link can pipeline; the answer carries the same id.

use openraft::alias::{SnapshotMetaOf, VoteOf};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::raft::{Command, TypeConfig};

type C = TypeConfig;

/// Largest peer frame: a snapshot travels in one frame.
pub const MAX_FRAME: usize = 1 << 30;

/// What one server asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// First frame on a link: who is dialing.
    Hello {
        /// The dialer's id.
        from: u64,
        /// The dialer's admin address (so followers can point callers at the leader's).
        admin_addr: String,
    },
    /// Raft AppendEntries.
    AppendEntries(AppendEntriesRequest<C>),
    /// Raft RequestVote.
    Vote(VoteRequest<C>),
    /// Raft pre-vote.
    PreVote(VoteRequest<C>),
    /// A whole snapshot.
    Snapshot {
        /// The sender's vote.
        vote: VoteOf<C>,
        /// The snapshot's meta.
        meta: SnapshotMetaOf<C>,
        /// The packed tree.
        data: Vec<u8>,
    },
    /// Leadership transfer notice.
    TransferLeader(TransferLeaderRequest<C>),
    /// A client write received by a follower, for the leader to append (in arrival order).
    Forward(Command),
    /// Sessions the sender's clients were heard from since its last batch.
    Touch(Vec<i64>),
    /// The leader's read index, for `sync`.
    ReadIndex,
}

/// The answer to a [`PeerRequest`]; errors travel as text (the caller only needs to know to
/// retry or to move on).
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Hello accepted.
    Welcome {
        /// The answering server's id.
        id: u64,
        /// Its admin address.
        admin_addr: String,
    },
    /// AppendEntries result.
    AppendEntries(Result<AppendEntriesResponse<C>, String>),
    /// Vote result.
    Vote(Result<VoteResponse<C>, String>),
    /// Snapshot install result.
    Snapshot(Result<SnapshotResponse<C>, String>),
    /// Transfer leader result.
    TransferLeader(Result<TransferLeaderResponse<C>, String>),
    /// The forwarded write is committed; its log index. `Err` when the receiver is not leader
    /// or lost leadership.
    Forwarded(Result<u64, String>),
    /// Touches recorded.
    Touched,
    /// The request was refused (the sender is not a member).
    Refused(String),
    /// The leader's read index.
    ReadIndex(Result<u64, String>),
}

/// A request or answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame<T> {
    /// Pairs an answer with its request.
    pub id: u64,
    /// The message.
    pub body: T,
}

/// Encodes one frame, length prefix included.
pub fn encode<T: Serialize>(frame: &Frame<T>) -> std::io::Result<Vec<u8>> {
    let out = vec![0u8; 4];
    let out = postcard::to_extend(frame, out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(out.len() - 4).map_err(|_| std::io::Error::other("peer frame too large"))?;
    let mut out = out;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Reads one frame; a malformed or oversized frame is an error that ends the link.
pub async fn read<T: for<'de> Deserialize<'de>, R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Frame<T>> {
    let len = reader.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("peer frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    postcard::from_bytes(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let frame = Frame { id: 7, body: PeerRequest::Touch(vec![1, 2, 3]) };
        let bytes = encode(&frame).expect("encode");
        let back: Frame<PeerRequest> = read(&mut bytes.as_slice()).await.expect("decode");
        assert_eq!(back.id, 7);
        assert!(matches!(back.body, PeerRequest::Touch(ref s) if s == &[1, 2, 3]));
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut bytes = vec![0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(read::<PeerRequest, _>(&mut bytes.as_slice()).await.is_err());
        bytes = vec![0xff, 0xff, 0xff, 0xff];
        assert!(read::<PeerRequest, _>(&mut bytes.as_slice()).await.is_err());
    }
}
