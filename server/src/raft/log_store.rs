//! The Raft log and vote, durable in RocksDB. Owns the `logs` and `meta` column families; the
//! state machine and snapshots live in `state_machine`.
//!
//! Durability: an append is acknowledged to openraft (its `IOFlushed` callback) only after the
//! RocksDB WAL is fsynced, so an entry counted towards a commit survives SIGKILL and power loss.
//! Votes are synced before `save_vote` returns.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys;
use super::TypeConfig;

type C = TypeConfig;

/// The RocksDB-backed log store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Encodes a record for the database (postcard: compact, and every log entry passes through it).
pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl LogStore {
    /// A log store over an opened database that has every column family of [`keys::ALL_CFS`].
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn cf(&self, name: &str) -> io::Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| io_err(format!("column family {name} missing")))
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        let cf = self.cf(keys::CF_META)?;
        match self.db.get_cf(cf, key).map_err(io_err)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        let cf = self.cf(keys::CF_META)?;
        self.db.put_cf(cf, key, encode(value)?).map_err(io_err)
    }

    /// Fsyncs the WAL on a blocking thread, so the async runtime is not stalled by the disk.
    async fn sync_wal(&self) -> io::Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush_wal(true).map_err(io_err)).await.map_err(io_err)?
    }
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let cf = self.cf(keys::CF_LOGS)?;
        let mut entries = Vec::new();
        let from = keys::log_key(start);
        for item in self.db.iterator_cf(cf, IteratorMode::From(&from, Direction::Forward)) {
            let (key, value) = item.map_err(io_err)?;
            let index = keys::log_index(&key).ok_or_else(|| io_err("corrupt log key"))?;
            if !range.contains(&index) {
                break;
            }
            let entry: EntryOf<C> = decode(&value)?;
            if entry.index() != index {
                return Err(io_err(format!("log entry at key {index} has index {}", entry.index())));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.get_meta(keys::META_VOTE)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let cf = self.cf(keys::CF_LOGS)?;
        let last = match self.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item.map_err(io_err)?;
                Some(decode::<EntryOf<C>>(&value)?.log_id())
            }
            None => None,
        };
        let last_purged_log_id: Option<LogIdOf<C>> = self.get_meta(keys::META_LAST_PURGED)?;
        let last_log_id = last.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.put_meta(keys::META_VOTE, vote)?;
        // A vote must never be forgotten: granting two votes in one term splits the brain.
        self.sync_wal().await
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Not synced: after a crash openraft only re-applies less, and the log entries themselves
        // are durable. Keeping it lets a restarted node replay its state machine from the log.
        self.put_meta(keys::META_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.get_meta::<Option<LogIdOf<C>>>(keys::META_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let cf = self.cf(keys::CF_LOGS)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(cf, keys::log_key(entry.index()), encode(&entry)?);
        }
        // Written here, before returning, because openraft may read the entries right away;
        // made durable on a blocking thread, and only then reported as flushed.
        self.db.write(batch).map_err(io_err)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let synced = db.flush_wal(true).map_err(io_err);
            callback.io_completed(synced);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        let cf = self.cf(keys::CF_LOGS)?;
        // Not synced: a truncated entry that reappears after a crash is uncommitted and will be
        // truncated again by the leader.
        self.db.delete_range_cf(cf, keys::log_key(from), keys::log_key(u64::MAX)).map_err(io_err)?;
        // delete_range excludes its end; u64::MAX itself is never a real index.
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // Record the purge point first: entries at or before it are ignored from then on, so a
        // crash between the two steps leaves only garbage, never a hole.
        self.put_meta(keys::META_LAST_PURGED, &log_id)?;
        self.sync_wal().await?;
        let cf = self.cf(keys::CF_LOGS)?;
        self.db.delete_range_cf(cf, keys::log_key(0), keys::log_key(log_id.index() + 1)).map_err(io_err)
    }
}
