//! Replication's storage side: the openraft type configuration, the RocksDB log store, and the
//! state machine adapter that feeds committed [`Command`]s into the
//! [`Store`](crate::store::Store). The network openraft talks through is the peer links'
//! business ([`crate::peer::network`]).

pub mod keys;
pub mod log_store;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;

use crate::store::Command;

openraft::declare_raft_types!(
    /// Paddock's openraft types: u64 node ids, `BasicNode` (the peer address), [`Command`]
    /// entries. Results reach clients through the [`Store`](crate::store::Store), not the
    /// openraft response, so followers can answer their own clients too.
    pub TypeConfig:
        D = Command,
        R = (),
);

/// The Raft handle with Paddock's state machine.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// How much write-ahead log, besides the file being written (up to a 64 MiB memtable), RocksDB
/// keeps before it flushes the column families that hold the oldest of it. Without a bound the
/// small `meta` column family, whose memtable never fills, pins every WAL file written since its
/// last flush: about 2 GB per server after the benchmark's write workloads (docs/benchmarks.md).
pub const MAX_WAL_BYTES: u64 = 256 << 20;

/// Opens (creating when missing) the RocksDB database in `dir` with every column family.
pub fn open_db(dir: &Path) -> Result<Arc<rocksdb::DB>, rocksdb::Error> {
    open_db_with(dir, MAX_WAL_BYTES)
}

/// [`open_db`] with at most `max_wal_bytes` of write-ahead log.
pub fn open_db_with(dir: &Path, max_wal_bytes: u64) -> Result<Arc<rocksdb::DB>, rocksdb::Error> {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Every durable write is an explicit WAL fsync (see log_store); memtables flush on their own,
    // and all of them once the WAL passes its bound.
    opts.set_max_background_jobs(2);
    opts.set_max_total_wal_size(max_wal_bytes);
    let db = rocksdb::DB::open_cf(&opts, dir, keys::ALL_CFS)?;
    Ok(Arc::new(db))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::StorageError;
    use tempfile::TempDir;

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::{keys, open_db, open_db_with, TypeConfig};
    use crate::store::Store;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = TempDir::new().expect("temp dir");
            let db = open_db(dir.path()).expect("open rocksdb");
            let state_machine = StateMachine::open(Arc::new(Store::new(1)), db.clone()).expect("open state machine");
            Ok((dir, LogStore::new(db).expect("log writer"), state_machine))
        }
    }

    /// The bytes of write-ahead log (`*.log`) in `dir`.
    fn wal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .expect("db dir")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Log entries written while the small column family holds one old record: the WAL stays
    /// within its bound plus the current file (up to one 64 MiB memtable: RocksDB counts only the
    /// files before it), the column families behind the older files flushed and those files
    /// deleted; without a bound it would keep all 160 MiB.
    #[test]
    fn the_write_ahead_log_stays_bounded_under_a_stream_of_log_writes() {
        const LIMIT: u64 = 4 << 20;
        const MEMTABLE: u64 = 64 << 20;
        let dir = TempDir::new().expect("temp dir");
        let db = open_db_with(dir.path(), LIMIT).expect("open rocksdb");
        let (logs, meta) = (db.cf_handle(keys::CF_LOGS).expect("logs"), db.cf_handle(keys::CF_META).expect("meta"));
        db.put_cf(&meta, keys::META_VOTE, b"an old vote").expect("meta");
        let entry = vec![7u8; 160 << 10];
        for index in 0..1024u64 {
            db.put_cf(&logs, keys::log_key(index), &entry).expect("append");
        }
        // Obsolete WAL files go once the flush they wait for is done: wait for it, bounded.
        let bound = MEMTABLE + 2 * LIMIT + (1 << 20);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while wal_bytes(dir.path()) > bound {
            assert!(std::time::Instant::now() < deadline, "WAL at {} bytes, bound {bound}", wal_bytes(dir.path()));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(db.get_cf(&meta, keys::META_VOTE).expect("read").as_deref(), Some(&b"an old vote"[..]));
    }

    /// Appends issued back to back, none awaited: each is readable as soon as it returns (from
    /// memory or the database), all are reported flushed, in as many synced writes as the log
    /// writer needed (at most one each), and they are in the database when reopened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_are_readable_at_once_and_made_durable_in_groups() {
        use openraft::storage::{IOFlushed, RaftLogStorage};
        use openraft::testing::blank_ent;
        use openraft::type_config::TypeConfigExt;
        use openraft::RaftLogReader;

        let dir = TempDir::new().expect("temp dir");
        let (appends, syncs) = (crate::metrics::RAFT_LOG_APPENDS.get(), crate::metrics::RAFT_LOG_SYNCS.get());
        {
            let db = open_db(dir.path()).expect("open rocksdb");
            let mut store = LogStore::new(db).expect("log writer");
            let mut flushed = Vec::new();
            for index in 1..=200u64 {
                let (tx, rx) = TypeConfig::oneshot();
                store.append([blank_ent::<TypeConfig>(1, 1, index)], IOFlushed::signal(tx)).await.expect("append");
                let read = store.try_get_log_entries(index..=index).await.expect("read");
                assert_eq!(read.len(), 1, "entry {index} readable once append returned");
                flushed.push(rx);
            }
            for rx in flushed {
                rx.await.expect("reported").expect("flushed");
            }
            let all = store.try_get_log_entries(1..=200).await.expect("read all");
            assert_eq!(all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
        }
        // Other tests of this process write logs too: counts only grow.
        let (appended, synced) =
            (crate::metrics::RAFT_LOG_APPENDS.get() - appends, crate::metrics::RAFT_LOG_SYNCS.get() - syncs);
        assert!(appended >= 200 && synced >= 1, "{appended} appends, {synced} syncs");
        let db = open_db(dir.path()).expect("reopen");
        let mut store = LogStore::new(db).expect("log writer");
        assert_eq!(store.try_get_log_entries(1..=200).await.expect("read").len(), 200, "durable");
        assert_eq!(store.get_log_state().await.expect("state").last_log_id.map(|id| id.index), Some(200));
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).await.expect("storage suite");
    }
}
