//! The openraft state machine adapter. Thin: committed entries go to the [`Store`]; snapshots are
//! the tree serialized (postcard), lz4-compressed, and kept in the `snapshot` column family.
//!
//! The tree lives only in memory. After a restart it is rebuilt from the newest snapshot, and
//! openraft re-applies the committed log after it (the log store keeps the committed id).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use rocksdb::DB;

use super::log_store::{decode, encode};
use super::{keys, TypeConfig};
use crate::metrics;
use crate::store::Store;
use crate::tree::legacy::{DataTreeV1, DataTreeV2};
use crate::tree::DataTree;

type C = TypeConfig;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The state machine: the shared [`Store`] plus what openraft needs to know about it.
pub struct StateMachine {
    store: Arc<Store>,
    db: Arc<DB>,
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// Held while a snapshot is stored (see [`save_snapshot`]); shared with the builders.
    saving: Arc<Mutex<()>>,
}

/// Builds a snapshot from a copy of the tree taken when the builder was made, so building
/// (serializing, compressing, writing) runs beside further applies.
pub struct SnapshotBuilder {
    tree: DataTree,
    db: Arc<DB>,
    meta: SnapshotMetaOf<C>,
    saving: Arc<Mutex<()>>,
}

/// A snapshot of format 2 or later starts with these bytes and a format number. Format 1 (no
/// header) started with its lz4 block's uncompressed size as 32 bits, which is `u32::MAX` only
/// for a tree encoded in exactly 4 GiB − 1 bytes (the versions that wrote format 1 sent a
/// snapshot in one peer frame, of at most 1 GiB compressed).
const SNAPSHOT_MAGIC: [u8; 4] = [0xff; 4];

/// The format [`pack`] writes: 3, znode data that may be null ([`DataTree`] as it is now).
/// 2: sessions with their owner, no null data ([`DataTreeV2`]). 1: no header, sessions
/// without owner ([`DataTreeV1`]).
const SNAPSHOT_FORMAT: u8 = 3;

/// Serializes and compresses a tree: [`SNAPSHOT_MAGIC`], [`SNAPSHOT_FORMAT`], then the
/// lz4-compressed postcard encoding.
fn pack(tree: &DataTree) -> io::Result<Vec<u8>> {
    let mut data = SNAPSHOT_MAGIC.to_vec();
    data.push(SNAPSHOT_FORMAT);
    data.extend(lz4_flex::compress_prepend_size(&encode(tree)?));
    Ok(data)
}

/// The inverse of [`pack`], reading every earlier format too; a corrupt snapshot or an unknown
/// format is an error, not a panic.
fn unpack(data: &[u8]) -> io::Result<DataTree> {
    let Some(rest) = data.strip_prefix(&SNAPSHOT_MAGIC) else {
        let raw = lz4_flex::decompress_size_prepended(data).map_err(io_err)?;
        return Ok(decode::<DataTreeV1>(&raw)?.into());
    };
    let (&format, body) = rest.split_first().ok_or_else(|| io_err("snapshot header without a format"))?;
    if !(2..=SNAPSHOT_FORMAT).contains(&format) {
        return Err(io_err(format!("unknown snapshot format {format}")));
    }
    let raw = lz4_flex::decompress_size_prepended(body).map_err(io_err)?;
    match format {
        2 => Ok(decode::<DataTreeV2>(&raw)?.into()),
        _ => decode(&raw),
    }
}

/// Stores a snapshot — unless the stored one is newer: openraft builds snapshots in a task of
/// its own, and a build that copied the tree before a newer snapshot was installed finishes
/// after it (openraft ignores the older one; the log behind the newer one may already be
/// purged, so storing the older would leave a server that cannot restart). `saving` makes the
/// look and the write one step. Returns whether it stored.
fn save_snapshot(db: &DB, saving: &Mutex<()>, meta: &SnapshotMetaOf<C>, data: &[u8]) -> io::Result<bool> {
    let _one_at_a_time = saving.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(stored) = load_snapshot_meta(db)? {
        if stored.last_log_id > meta.last_log_id {
            tracing::info!(stored = ?stored.last_log_id, built = ?meta.last_log_id, "kept the newer stored snapshot");
            return Ok(false);
        }
    }
    let cf = db.cf_handle(keys::CF_SNAPSHOT).ok_or_else(|| io_err("snapshot column family missing"))?;
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(cf, keys::SNAPSHOT_DATA, data);
    batch.put_cf(cf, keys::SNAPSHOT_META, encode(meta)?);
    db.write(batch).map_err(io_err)?;
    // The log is purged behind a snapshot, so the snapshot must be durable first.
    db.flush_wal(true).map_err(io_err)?;
    Ok(true)
}

fn load_snapshot_meta(db: &DB) -> io::Result<Option<SnapshotMetaOf<C>>> {
    let cf = db.cf_handle(keys::CF_SNAPSHOT).ok_or_else(|| io_err("snapshot column family missing"))?;
    db.get_cf(cf, keys::SNAPSHOT_META).map_err(io_err)?.map(|meta| decode(&meta)).transpose()
}

fn load_snapshot(db: &DB) -> io::Result<Option<(SnapshotMetaOf<C>, Vec<u8>)>> {
    let cf = db.cf_handle(keys::CF_SNAPSHOT).ok_or_else(|| io_err("snapshot column family missing"))?;
    let meta = db.get_cf(cf, keys::SNAPSHOT_META).map_err(io_err)?;
    let data = db.get_cf(cf, keys::SNAPSHOT_DATA).map_err(io_err)?;
    match (meta, data) {
        (Some(meta), Some(data)) => Ok(Some((decode(&meta)?, data))),
        _ => Ok(None),
    }
}

fn zxid_of(log_id: &Option<LogIdOf<C>>) -> i64 {
    log_id.as_ref().map(|id| id.index() as i64).unwrap_or(0)
}

impl StateMachine {
    /// Opens the state machine, restoring the tree from the newest snapshot in `db`.
    pub fn open(store: Arc<Store>, db: Arc<DB>) -> io::Result<Self> {
        let mut sm = Self { store, db, last_applied: None, membership: Default::default(), saving: Arc::default() };
        if let Some((meta, data)) = load_snapshot(&sm.db)? {
            sm.restore(&meta, &data)?;
        }
        Ok(sm)
    }

    fn restore(&mut self, meta: &SnapshotMetaOf<C>, data: &[u8]) -> io::Result<()> {
        let started = Instant::now();
        let tree = unpack(data)?;
        self.store.replace_tree(tree, zxid_of(&meta.last_log_id));
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        metrics::SNAPSHOT_RESTORE_SECONDS.observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

impl RaftSnapshotBuilder<C> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let started = Instant::now();
        let tree = std::mem::take(&mut self.tree);
        let db = self.db.clone();
        let meta = self.meta.clone();
        let saving = self.saving.clone();
        // Serializing a large tree is CPU work: keep it off the async workers.
        let data = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let data = pack(&tree)?;
            save_snapshot(&db, &saving, &meta, &data)?;
            Ok(data)
        })
        .await
        .map_err(io_err)??;
        metrics::SNAPSHOT_BUILD_SECONDS.observe(started.elapsed().as_secs_f64());
        metrics::SNAPSHOT_BYTES.set(data.len() as i64);
        Ok(SnapshotOf::<C, Vec<u8>> { meta: self.meta.clone(), snapshot: data })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_id = entry.log_id();
            let zxid = log_id.index() as i64;
            match &entry.payload {
                EntryPayload::Normal(command) => self.store.apply(zxid, log_id.committed_leader_id().term, command),
                EntryPayload::Membership(membership) => {
                    self.membership = openraft::StoredMembership::new(Some(log_id), membership.clone());
                    self.store.advance(zxid);
                }
                EntryPayload::Blank => self.store.advance(zxid),
            }
            self.last_applied = Some(log_id);
            if let Some(responder) = responder {
                responder.send(());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            tree: self.store.clone_tree(),
            db: self.db.clone(),
            meta: SnapshotMetaOf::<C> { last_log_id: self.last_applied, last_membership: self.membership.clone() },
            saving: self.saving.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: Vec<u8>) -> Result<(), io::Error> {
        self.restore(meta, &snapshot)?;
        let db = self.db.clone();
        let meta = meta.clone();
        let saving = self.saving.clone();
        tokio::task::spawn_blocking(move || save_snapshot(&db, &saving, &meta, &snapshot).map(|_| ()))
            .await
            .map_err(io_err)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        Ok(load_snapshot(&self.db)?.map(|(meta, snapshot)| SnapshotOf::<C, Vec<u8>> { meta, snapshot }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hole g: openraft builds snapshots in a task of its own; a build that copied the tree at
    /// index 10 and finishes after a snapshot at index 20 was installed must not replace it —
    /// openraft purges the log up to 20, and a server whose stored snapshot says 10 could then
    /// never restart.
    #[tokio::test]
    async fn an_older_build_does_not_replace_a_newer_installed_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::raft::open_db(dir.path()).expect("db");
        let mut sm = StateMachine::open(Arc::new(Store::new(1)), db.clone()).expect("state machine");
        sm.last_applied = Some(openraft::testing::log_id::<C>(1, 1, 10));
        let mut builder = sm.get_snapshot_builder().await;
        let newer = SnapshotMetaOf::<C> {
            last_log_id: Some(openraft::testing::log_id::<C>(2, 2, 20)),
            last_membership: Default::default(),
        };
        sm.install_snapshot(&newer, pack(&DataTree::default()).expect("pack")).await.expect("install");
        builder.build_snapshot().await.expect("build");
        let (stored, _) = load_snapshot(&db).expect("load").expect("a snapshot");
        assert_eq!(stored.last_log_id, newer.last_log_id, "the older build replaced the installed snapshot");
        drop(sm);
        let reopened = StateMachine::open(Arc::new(Store::new(1)), db).expect("reopen");
        assert_eq!(reopened.last_applied, newer.last_log_id);
    }
    use crate::proto::CreateMode;
    use crate::tree::{Txn, TxnKind, TxnResult, WriteOp, NO_TTL};

    /// A tree with a session created on server 1 and moved to server 2, holding an ephemeral.
    fn tree_with_a_moved_session() -> DataTree {
        let mut tree = DataTree::new();
        let txn = |kind| Txn { time_ms: 5, kind };
        let create = TxnKind::CreateSession { session_id: 9, password: vec![1; 16], timeout_ms: 4000 };
        tree.apply(1, Some(1), &txn(create));
        assert_eq!(
            tree.apply(2, Some(2), &txn(TxnKind::MoveSession { session_id: 9 })).result,
            TxnResult::OwnerChanged { owner: 2 }
        );
        let op = WriteOp::Create {
            path: "/e".into(),
            data: Some(b"x".to_vec()),
            acl: crate::proto::Acl::open_unsafe(),
            mode: CreateMode::Ephemeral,
            ttl_ms: NO_TTL,
        };
        let applied = tree.apply(3, Some(2), &txn(TxnKind::Write { session_id: 9, auth: vec![], op }));
        assert!(matches!(applied.result, TxnResult::Write(Ok(_))), "{applied:?}");
        tree
    }

    #[test]
    fn a_snapshot_keeps_session_owners_and_null_data() {
        let mut tree = tree_with_a_moved_session();
        let null = WriteOp::Create {
            path: "/null".into(),
            data: None,
            acl: crate::proto::Acl::open_unsafe(),
            mode: CreateMode::Persistent,
            ttl_ms: NO_TTL,
        };
        let applied =
            tree.apply(4, Some(2), &Txn { time_ms: 6, kind: TxnKind::Write { session_id: 9, auth: vec![], op: null } });
        assert!(matches!(applied.result, TxnResult::Write(Ok(_))), "{applied:?}");
        let restored = unpack(&pack(&tree).expect("pack")).expect("unpack");
        assert_eq!(restored, tree);
        assert_eq!(restored.session(9).map(|s| s.owner), Some(2));
        assert_eq!(restored.get("/null").map(|n| n.nullable_data()), Some(None));
        assert_eq!(restored.get("/e").map(|n| n.nullable_data()), Some(Some(&b"x"[..])));
    }

    /// A format 2 snapshot (owners, no null data) restores with its owners.
    #[test]
    fn a_format_2_snapshot_restores() {
        let tree = tree_with_a_moved_session();
        let mut v2 = SNAPSHOT_MAGIC.to_vec();
        v2.push(2);
        v2.extend(lz4_flex::compress_prepend_size(&encode(&DataTreeV2::from(&tree)).expect("encode")));
        assert_eq!(unpack(&v2).expect("unpack format 2"), tree);
    }

    /// A snapshot written before sessions had owners (format 1, no header) still restores; its
    /// sessions' owners are unknown (0), so every server's writes of them are applied.
    #[test]
    fn a_format_1_snapshot_restores_with_unknown_owners() {
        let tree = tree_with_a_moved_session();
        let v1 = lz4_flex::compress_prepend_size(&encode(&DataTreeV1::from(&tree)).expect("encode"));
        let mut restored = unpack(&v1).expect("unpack format 1");
        assert_eq!(restored.session(9).map(|s| s.owner), Some(0));
        assert_eq!(restored.get("/e").and_then(|n| n.ephemeral_owner()), Some(9));
        let op = WriteOp::SetData { path: "/e".into(), data: Some(b"y".to_vec()), version: -1 };
        let applied =
            restored.apply(4, Some(3), &Txn { time_ms: 6, kind: TxnKind::Write { session_id: 9, auth: vec![], op } });
        assert!(matches!(applied.result, TxnResult::Write(Ok(_))), "{applied:?}");
    }

    #[test]
    fn an_unknown_snapshot_format_is_an_error() {
        let mut data = SNAPSHOT_MAGIC.to_vec();
        data.push(SNAPSHOT_FORMAT + 1);
        assert!(unpack(&data).is_err());
        assert!(unpack(&SNAPSHOT_MAGIC).is_err());
        assert!(unpack(&[1, 2]).is_err());
    }
}
