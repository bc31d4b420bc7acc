//! Replication: the openraft type configuration, the RocksDB log store, the state machine
//! adapter that feeds committed txns into the [`Store`](crate::store::Store), and the peer network.

pub mod keys;
pub mod log_store;
pub mod network;
pub mod state_machine;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::tree::Txn;

/// Which server submitted a write and its sequence number there, so the submitting server can
/// hand the applied result to the waiting client when the entry is applied locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The submitting server's Raft id.
    pub server: u64,
    /// The write's sequence number on that server.
    pub seq: u64,
}

/// The application payload of a Raft log entry: one txn for the data tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Who waits for the result; `None` for server-initiated txns nobody waits on.
    pub origin: Option<Origin>,
    /// The txn itself, stamped with the leader's time.
    pub txn: Txn,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.txn.kind)
    }
}

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
