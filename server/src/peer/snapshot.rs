//! Snapshots travel to a follower in chunks ([`SnapshotChunk`]), so no frame bounds a
//! snapshot's size (issue 12 k: a snapshot was one frame, and a tree whose snapshot passed the
//! frame limit could never reach a lagging or new member).
//!
//! The sender ([`super::network`]) sends the chunks of one transfer in order, each once the one
//! before is answered. The receiver ([`super::service`]) keeps one [`Assembly`] per link — a
//! link carries the calls of the one server that dialed it, so this is one per sender — and
//! installs the snapshot once its last chunk is in. A chunk that does not continue the transfer
//! being assembled is refused, and what was assembled is dropped: the sender's openraft then
//! sends the snapshot again, from its start.

use std::ops::Range;

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};

use super::wire::SnapshotChunk;
use crate::raft::TypeConfig;

type C = TypeConfig;

/// How many bytes of a snapshot one chunk carries: about an AppendEntries' budget, so a chunk
/// holds up the link no longer than a batch of entries does.
pub const SNAPSHOT_CHUNK: usize = 2 << 20;

/// The largest snapshot a receiver assembles. A snapshot is the tree's encoding in one lz4
/// block, whose size prefix has 32 bits, so none that this version writes is much over 4 GiB;
/// a transfer announcing more than twice that is refused before anything is allocated.
pub const MAX_SNAPSHOT: u64 = 8 << 30;

/// The byte ranges of a snapshot of `len` bytes, one a chunk, in order; an empty snapshot is
/// one empty chunk.
pub fn chunks(len: usize) -> impl Iterator<Item = Range<usize>> {
    let count = len.div_ceil(SNAPSHOT_CHUNK).max(1);
    (0..count).map(move |i| i * SNAPSHOT_CHUNK..((i + 1) * SNAPSHOT_CHUNK).min(len))
}

/// What a chunk brought.
#[derive(Debug)]
pub enum Taken {
    /// More chunks are to come.
    More,
    /// It was the last: the whole snapshot, to install under the sender's vote.
    Whole {
        /// The sender's vote.
        vote: VoteOf<C>,
        /// The snapshot.
        snapshot: SnapshotOf<C, Vec<u8>>,
    },
}

/// The snapshot a link is receiving, if any.
#[derive(Default)]
pub struct Assembly {
    partial: Option<Partial>,
}

/// A transfer under way: its first chunk's description and the bytes so far.
struct Partial {
    transfer: u64,
    vote: VoteOf<C>,
    meta: SnapshotMetaOf<C>,
    total: u64,
    data: Vec<u8>,
}

impl Assembly {
    /// Takes the next chunk. A chunk at offset 0 begins a transfer (dropping any other under
    /// way); any other must continue the one under way at its next byte, with the same
    /// transfer id, vote, meta and total. A refused chunk (the error is for the sender) drops
    /// the transfer under way too.
    pub fn take(&mut self, chunk: SnapshotChunk) -> Result<Taken, String> {
        let under_way = self.partial.take();
        let SnapshotChunk { transfer, vote, meta, offset, total, mut data } = chunk;
        let received = data.len() as u64;
        let partial = if offset == 0 {
            drop(under_way);
            if total > MAX_SNAPSHOT {
                return Err(format!("a snapshot of {total} bytes is over the limit of {MAX_SNAPSHOT}"));
            }
            if received > total {
                return Err(format!("a first chunk of {received} bytes for a snapshot of {total}"));
            }
            let rest = usize::try_from(total - received).map_err(|_| format!("a snapshot of {total} bytes"))?;
            data.try_reserve_exact(rest).map_err(|e| format!("no room for a snapshot of {total} bytes: {e}"))?;
            Partial { transfer, vote, meta, total, data }
        } else {
            let Some(mut partial) = under_way else {
                return Err(format!("a chunk at offset {offset} of transfer {transfer:x}, none under way"));
            };
            if (partial.transfer, &partial.vote, &partial.meta) != (transfer, &vote, &meta) {
                return Err(format!(
                    "a chunk of transfer {transfer:x} ({vote}, up to {:?}) while transfer {:x} ({}, up to {:?}) is \
                     under way",
                    meta.last_log_id, partial.transfer, partial.vote, partial.meta.last_log_id
                ));
            }
            if total != partial.total {
                return Err(format!("a chunk announcing {total} bytes for a transfer of {}", partial.total));
            }
            let expected = partial.data.len() as u64;
            if offset != expected {
                return Err(format!("a chunk at offset {offset}, not at the next byte {expected}"));
            }
            if received > total - offset {
                return Err(format!("a chunk of {received} bytes at offset {offset} of a snapshot of {total}"));
            }
            partial.data.extend_from_slice(&data);
            partial
        };
        if partial.data.len() as u64 == partial.total {
            let Partial { vote, meta, data, .. } = partial;
            return Ok(Taken::Whole { vote, snapshot: SnapshotOf::<C, Vec<u8>> { meta, snapshot: data } });
        }
        self.partial = Some(partial);
        Ok(Taken::More)
    }

    /// Whether a transfer is under way.
    #[cfg(test)]
    fn under_way(&self) -> bool {
        self.partial.is_some()
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    fn meta(index: u64) -> SnapshotMetaOf<C> {
        SnapshotMetaOf::<C> { last_log_id: Some(log_id::<C>(1, 1, index)), last_membership: Default::default() }
    }

    fn vote(term: u64) -> VoteOf<C> {
        VoteOf::<C>::new_committed(term, 1)
    }

    /// The chunks of `data` as the sender makes them, for transfer `transfer`.
    fn chunked(transfer: u64, data: &[u8]) -> Vec<SnapshotChunk> {
        chunks(data.len())
            .map(|range| SnapshotChunk {
                transfer,
                vote: vote(1),
                meta: meta(10),
                offset: range.start as u64,
                total: data.len() as u64,
                data: data[range].to_vec(),
            })
            .collect()
    }

    fn snapshot_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn whole(taken: Result<Taken, String>) -> (VoteOf<C>, SnapshotOf<C, Vec<u8>>) {
        match taken {
            Ok(Taken::Whole { vote, snapshot }) => (vote, snapshot),
            other => panic!("expected the whole snapshot, got {other:?}"),
        }
    }

    fn more(taken: Result<Taken, String>) {
        assert!(matches!(taken, Ok(Taken::More)), "expected more to come, got {taken:?}");
    }

    #[test]
    fn chunks_cover_a_snapshot_in_order() {
        assert_eq!(chunks(0).collect::<Vec<_>>(), vec![0..0]);
        assert_eq!(chunks(5).collect::<Vec<_>>(), vec![0..5]);
        assert_eq!(chunks(SNAPSHOT_CHUNK).collect::<Vec<_>>(), vec![0..SNAPSHOT_CHUNK]);
        let ranges: Vec<_> = chunks(2 * SNAPSHOT_CHUNK + 1).collect();
        assert_eq!(
            ranges,
            vec![0..SNAPSHOT_CHUNK, SNAPSHOT_CHUNK..2 * SNAPSHOT_CHUNK, 2 * SNAPSHOT_CHUNK..2 * SNAPSHOT_CHUNK + 1]
        );
    }

    #[test]
    fn chunks_in_order_make_the_snapshot() {
        let data = snapshot_bytes(2 * SNAPSHOT_CHUNK + 100);
        let mut assembly = Assembly::default();
        let mut pieces = chunked(7, &data);
        let last = pieces.pop().expect("chunks");
        for piece in pieces {
            more(assembly.take(piece));
        }
        let (got_vote, snapshot) = whole(assembly.take(last));
        assert_eq!(got_vote, vote(1));
        assert_eq!(snapshot.meta, meta(10));
        assert!(snapshot.snapshot == data, "the assembled bytes differ");
        assert!(!assembly.under_way());
        // One chunk alone, and an empty snapshot, are whole at once.
        assert!(whole(Assembly::default().take(chunked(8, b"tiny").remove(0))).1.snapshot == b"tiny");
        assert!(whole(Assembly::default().take(chunked(9, b"").remove(0))).1.snapshot.is_empty());
    }

    #[test]
    fn a_chunk_out_of_order_is_refused_and_drops_the_transfer() {
        let data = snapshot_bytes(3 * SNAPSHOT_CHUNK);
        let [first, second, third] = <[SnapshotChunk; 3]>::try_from(chunked(7, &data)).expect("three chunks");
        let mut assembly = Assembly::default();
        more(assembly.take(first));
        let refused = assembly.take(third).expect_err("a skipped chunk");
        assert!(refused.contains("not at the next byte"), "{refused}");
        assert!(!assembly.under_way(), "the partial snapshot stays");
        // The chunk that would have been next is refused as well: the transfer is gone.
        assert!(assembly.take(second).expect_err("nothing under way").contains("none under way"));
    }

    #[test]
    fn a_chunk_with_another_total_or_of_another_transfer_is_refused() {
        let data = snapshot_bytes(2 * SNAPSHOT_CHUNK);
        let mut assembly = Assembly::default();
        let mut pieces = chunked(7, &data);
        more(assembly.take(pieces.remove(0)));
        let mut wrong_total = pieces[0].clone();
        wrong_total.total += 1;
        assert!(assembly.take(wrong_total).expect_err("wrong total").contains("announcing"));
        assert!(!assembly.under_way());

        let mut pieces = chunked(7, &data);
        more(assembly.take(pieces.remove(0)));
        let mut other = pieces[0].clone();
        other.transfer = 8;
        assert!(assembly.take(other).expect_err("another transfer").contains("under way"));
        let mut pieces = chunked(7, &data);
        more(assembly.take(pieces.remove(0)));
        let mut newer_vote = pieces[0].clone();
        newer_vote.vote = vote(2);
        assert!(assembly.take(newer_vote).is_err(), "a chunk under another vote");
        let mut pieces = chunked(7, &data);
        more(assembly.take(pieces.remove(0)));
        let mut overrun = pieces[0].clone();
        overrun.data.push(0);
        assert!(assembly.take(overrun).expect_err("past the total").contains("of a snapshot of"));
    }

    #[test]
    fn a_transfer_starting_again_at_offset_zero_replaces_the_one_under_way() {
        let old = snapshot_bytes(2 * SNAPSHOT_CHUNK);
        let new: Vec<u8> = snapshot_bytes(SNAPSHOT_CHUNK + 5).into_iter().rev().collect();
        let mut assembly = Assembly::default();
        more(assembly.take(chunked(7, &old).remove(0)));
        let mut pieces = chunked(8, &new);
        more(assembly.take(pieces.remove(0)));
        // The old transfer's next chunk no longer fits.
        assert!(assembly.take(chunked(7, &old).remove(1)).is_err());
        // The same snapshot sent again from its start assembles.
        let mut pieces = chunked(8, &new);
        more(assembly.take(pieces.remove(0)));
        assert!(whole(assembly.take(pieces.remove(0))).1.snapshot == new);
    }

    #[test]
    fn an_absurd_total_is_refused_before_anything_is_allocated() {
        for total in [MAX_SNAPSHOT + 1, u64::MAX] {
            let chunk =
                SnapshotChunk { transfer: 1, vote: vote(1), meta: meta(10), offset: 0, total, data: vec![1; 10] };
            let refused = Assembly::default().take(chunk).expect_err("an absurd total");
            assert!(refused.contains("over the limit"), "{refused}");
        }
        let short =
            SnapshotChunk { transfer: 1, vote: vote(1), meta: meta(10), offset: 0, total: 3, data: vec![1; 10] };
        assert!(Assembly::default().take(short).is_err(), "a first chunk longer than its snapshot");
    }
}
