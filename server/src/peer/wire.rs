//! Peer messages and their framing: a 4-byte big-endian length, then a postcard-encoded
//! [`Frame`]. Requests carry an id so a link can pipeline; the answer carries the same id. A
//! link opens with a greeting each way ([`paddock_contract::peer::Hello`], capped small) before
//! any frame.

use openraft::alias::{SnapshotMetaOf, VoteOf};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use paddock_contract::peer::{Hello, MAX_HELLO};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::frame;
use crate::raft::TypeConfig;
use crate::store::Command;

type C = TypeConfig;

/// Largest peer frame after the greeting; a longer one is refused before it is read (garbage,
/// or a peer of another version), and ends the link.
///
/// Nothing of unbounded size travels in one frame: a snapshot goes in chunks of
/// [`SNAPSHOT_CHUNK`] (2 MiB). The largest frames are AppendEntries: at most [`APPEND_BUDGET`] (2 MiB) of entries, or one
/// entry alone when it is larger. An entry is a session's open, close or move, a membership
/// change, a reap of at most [`REAP_BUDGET`] (1 MiB) of paths, or one client request's txn: about
/// the size of the request's jute encoding — at most `--max-buffer`, itself at most
/// [`MAX_BUFFER_LIMIT`] (16 MiB) — plus the connection's auth ids and a few dozen bytes. A
/// `Forward` carries one such txn. So 64 MiB holds the largest legal frame (about 18 MiB) with
/// room to spare; `peer::network` checks this at compile time.
///
/// [`SNAPSHOT_CHUNK`]: super::snapshot::SNAPSHOT_CHUNK
/// [`APPEND_BUDGET`]: super::network::APPEND_BUDGET
/// [`REAP_BUDGET`]: crate::duties::REAP_BUDGET
/// [`MAX_BUFFER_LIMIT`]: crate::config::MAX_BUFFER_LIMIT
pub const MAX_FRAME: usize = 64 << 20;

/// What one server asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Raft AppendEntries.
    AppendEntries(AppendEntriesRequest<C>),
    /// Raft RequestVote.
    Vote(VoteRequest<C>),
    /// Raft pre-vote.
    PreVote(VoteRequest<C>),
    /// One piece of a snapshot; the last one's answer is the install's result.
    SnapshotChunk(SnapshotChunk),
    /// Leadership transfer notice.
    TransferLeader(TransferLeaderRequest<C>),
    /// A client write received by a follower, for the leader to append (in arrival order).
    Forward(Command),
    /// Sessions the sender's clients were heard from since its last batch.
    Touch(Vec<i64>),
    /// The leader's read index, for a `sync` of `session`, which the leader touches.
    ReadIndex {
        /// The session that sent the sync.
        session: i64,
    },
}

/// One piece of a snapshot in transfer (see [`super::snapshot`]): the chunks of a transfer go
/// in order, each with the whole transfer's description, and the one that completes `total`
/// is the last.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// Tells this transfer from others (of the same snapshot too): drawn by the sender.
    pub transfer: u64,
    /// The sender's vote, which the snapshot is installed under.
    pub vote: VoteOf<C>,
    /// The snapshot's meta.
    pub meta: SnapshotMetaOf<C>,
    /// Where in the snapshot `data` begins.
    pub offset: u64,
    /// The snapshot's size in bytes.
    pub total: u64,
    /// The bytes from `offset` on.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The answer to a [`PeerRequest`]; errors travel as text (the caller only needs to know to
/// retry or to move on).
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// AppendEntries result.
    AppendEntries(Result<AppendEntriesResponse<C>, String>),
    /// Vote result.
    Vote(Result<VoteResponse<C>, String>),
    /// A snapshot chunk before the last was taken (or refused: the transfer starts over).
    SnapshotChunk(Result<(), String>),
    /// Snapshot install result, the answer to a transfer's last chunk.
    Snapshot(Result<SnapshotResponse<C>, String>),
    /// Transfer leader result.
    TransferLeader(Result<TransferLeaderResponse<C>, String>),
    /// The forwarded write is committed; its log index. `Err` when the receiver is not leader
    /// or lost leadership.
    Forwarded(Result<u64, String>),
    /// Touches recorded, and the leader's committed log index then: a follower that is not
    /// serving starts only once it has applied that much (issue 12 e).
    Touched {
        /// The leader's committed log index when it took the touches.
        committed: u64,
        /// Whether the leader took them within its lease: only then may the follower answer
        /// the pings they stand for (issue 12 hole o).
        promised: bool,
    },
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
    let body = frame::read_frame(reader, MAX_FRAME).await?;
    postcard::from_bytes(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads the greeting that opens a link: at most [`MAX_HELLO`] bytes, whoever is dialing.
pub async fn read_hello<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Hello> {
    let body = frame::read_frame(reader, MAX_HELLO).await?;
    Hello::from_body(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A greeting as it goes on the wire.
pub fn encode_hello(hello: &Hello) -> std::io::Result<Vec<u8>> {
    hello.to_frame().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
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
    async fn a_snapshot_chunk_round_trips_with_its_bytes() {
        let chunk = SnapshotChunk {
            transfer: 0xfeed,
            vote: VoteOf::<C>::new_committed(3, 2),
            meta: SnapshotMetaOf::<C> {
                last_log_id: Some(openraft::testing::log_id::<C>(3, 2, 77)),
                last_membership: Default::default(),
            },
            offset: 4,
            total: 9,
            data: vec![5, 6, 7, 8, 9],
        };
        let bytes = encode(&Frame { id: 1, body: PeerRequest::SnapshotChunk(chunk.clone()) }).expect("encode");
        let back: Frame<PeerRequest> = read(&mut bytes.as_slice()).await.expect("decode");
        let PeerRequest::SnapshotChunk(back) = back.body else { panic!("not a chunk: {:?}", back.body) };
        assert_eq!((back.transfer, back.vote, &back.meta), (chunk.transfer, chunk.vote, &chunk.meta));
        assert_eq!((back.offset, back.total, &back.data), (4, 9, &chunk.data));
    }

    #[tokio::test]
    async fn a_greeting_is_read_within_its_cap() {
        let hello = Hello { id: 2, admin_addr: "127.0.0.1:8081".into() };
        let bytes = encode_hello(&hello).expect("encode");
        assert_eq!(read_hello(&mut bytes.as_slice()).await.expect("decode"), hello);
        // A dialer's first frame announcing more than the cap is refused before it is read.
        let big = wire_prefix(MAX_HELLO + 1);
        assert!(read_hello(&mut big.as_slice()).await.is_err());
        // ... while later frames may be large.
        let frame = encode(&Frame { id: 1, body: PeerRequest::Touch(vec![0; 2 * MAX_HELLO]) }).expect("encode");
        assert!(frame.len() > MAX_HELLO && read::<PeerRequest, _>(&mut frame.as_slice()).await.is_ok());
    }

    fn wire_prefix(len: usize) -> Vec<u8> {
        let mut bytes = (len as u32).to_be_bytes().to_vec();
        bytes.resize(4 + len, 0);
        bytes
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut bytes = vec![0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(read::<PeerRequest, _>(&mut bytes.as_slice()).await.is_err());
        bytes = vec![0xff, 0xff, 0xff, 0xff];
        assert!(read::<PeerRequest, _>(&mut bytes.as_slice()).await.is_err());
    }
}
