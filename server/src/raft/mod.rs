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

/// Opens (creating when missing) the RocksDB database in `dir` with every column family.
pub fn open_db(dir: &Path) -> Result<Arc<rocksdb::DB>, rocksdb::Error> {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Every durable write is an explicit WAL fsync (see log_store); memtables flush on their own.
    opts.set_max_background_jobs(2);
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
    use super::{open_db, TypeConfig};
    use crate::store::Store;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = TempDir::new().expect("temp dir");
            let db = open_db(dir.path()).expect("open rocksdb");
            let state_machine = StateMachine::open(Arc::new(Store::new(1)), db.clone()).expect("open state machine");
            Ok((dir, LogStore::new(db), state_machine))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).await.expect("storage suite");
    }
}
