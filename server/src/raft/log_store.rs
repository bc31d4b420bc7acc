//! The Raft log and vote, durable in RocksDB. Owns the `logs` and `meta` column families; the
//! state machine and snapshots live in `state_machine`.
//!
//! Durability: an append is acknowledged to openraft (its `IOFlushed` callback) only after the
//! RocksDB WAL is fsynced, so an entry counted towards a commit survives SIGKILL and power loss.
//! Votes are synced before `save_vote` returns.
//!
//! Group commit: `append` only encodes the entries and hands them to the log writer, one thread
//! per server, which takes every append queued while it was busy, writes them in one batch with
//! one fdatasync (RocksDB's synced write), and reports each flushed to openraft itself — no
//! blocking task per append and no database write on the Raft core. Until the writer has
//! written them, appended entries are read from memory ([`Pending`]), as openraft may read them
//! as soon as `append` returns. Truncation and purging wait until the writer has written
//! everything queued before them, so they never race an append.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys;
use super::TypeConfig;

type C = TypeConfig;

/// The RocksDB-backed log store. Cheap to clone: clones share the database and the log writer.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// Entries appended but not written yet, by index.
    pending: Pending,
    /// The log writer, shared by the clones.
    writer: Arc<Writer>,
}

/// The log writer thread and its queue. When the last log store lets go of it, the queue closes
/// and the thread is waited for, so the database is closed when the store is gone (a server
/// reopening it in the same process finds it free).
struct Writer {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn send(&self, job: Job) -> io::Result<()> {
        let stopped = || io_err("the log writer stopped");
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Appended entries the log writer has not written yet, by index: always above every index in
/// the database (appends come in index order, and truncation waits for the writer first).
type Pending = Arc<Mutex<BTreeMap<u64, EntryOf<C>>>>;

/// Work for the log writer, done in order.
enum Job {
    /// Entries to write (index, encoded), reported flushed through `callback`.
    Append { entries: Vec<(u64, Vec<u8>)>, callback: IOFlushed<C> },
    /// Says when everything queued before it is written.
    Barrier(tokio::sync::oneshot::Sender<io::Result<()>>),
}

/// The log writer: takes every job queued while it was writing, writes their entries in one
/// synced batch, forgets them from `pending` and reports each job done. Ends with the last
/// sender of its queue.
fn log_writer(db: Arc<DB>, pending: Pending, jobs: std::sync::mpsc::Receiver<Job>) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        group.extend(jobs.try_iter());
        let mut batch = WriteBatch::default();
        let mut written = Vec::new();
        let result = match db.cf_handle(keys::CF_LOGS) {
            Some(cf) => {
                for job in &group {
                    if let Job::Append { entries, .. } = job {
                        for (index, bytes) in entries {
                            batch.put_cf(cf, keys::log_key(*index), bytes);
                            written.push(*index);
                        }
                    }
                }
                if batch.is_empty() {
                    Ok(())
                } else {
                    let appends = group.iter().filter(|job| matches!(job, Job::Append { .. })).count();
                    let written = db.write_opt(batch, &sync).map_err(|e| e.to_string());
                    if written.is_ok() {
                        crate::metrics::RAFT_LOG_SYNCS.inc();
                        crate::metrics::RAFT_LOG_APPENDS.inc_by(appends as u64);
                    }
                    written
                }
            }
            None => Err(format!("column family {} missing", keys::CF_LOGS)),
        };
        if result.is_ok() {
            // In the database now: readers find them there (they look here first).
            let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
            for index in written {
                pending.remove(&index);
            }
        }
        for job in group {
            let outcome = result.clone().map_err(io_err);
            match job {
                Job::Append { callback, .. } => callback.io_completed(outcome),
                Job::Barrier(done) => {
                    let _ = done.send(outcome);
                }
            }
        }
    }
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
    /// A log store over an opened database that has every column family of [`keys::ALL_CFS`],
    /// with its log writer thread.
    pub fn new(db: Arc<DB>) -> io::Result<Self> {
        let pending = Pending::default();
        let (sender, jobs) = std::sync::mpsc::channel();
        let (for_writer, written) = (db.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".to_owned())
            .spawn(move || log_writer(for_writer, written, jobs))?;
        let writer = Arc::new(Writer { jobs: Some(sender), thread: Some(thread) });
        Ok(Self { db, pending, writer })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, EntryOf<C>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the log writer has written everything queued so far.
    async fn written(&self) -> io::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.writer.send(Job::Barrier(done))?;
        wait.await.map_err(|_| io_err("the log writer stopped"))?
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
        // Unwritten entries first: the writer puts an entry in the database before it drops it
        // from memory, so one read in between is found in one place or the other.
        let unwritten: Vec<EntryOf<C>> =
            self.pending().range(start..).map(|(_, e)| e).filter(|e| range.contains(&e.index())).cloned().collect();
        let below = unwritten.first().map_or(u64::MAX, |e| e.index());
        let cf = self.cf(keys::CF_LOGS)?;
        let mut entries = Vec::new();
        let from = keys::log_key(start);
        for item in self.db.iterator_cf(cf, IteratorMode::From(&from, Direction::Forward)) {
            let (key, value) = item.map_err(io_err)?;
            let index = keys::log_index(&key).ok_or_else(|| io_err("corrupt log key"))?;
            if !range.contains(&index) || index >= below {
                break;
            }
            let entry: EntryOf<C> = decode(&value)?;
            if entry.index() != index {
                return Err(io_err(format!("log entry at key {index} has index {}", entry.index())));
            }
            entries.push(entry);
        }
        entries.extend(unwritten);
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.get_meta(keys::META_VOTE)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let unwritten = self.pending().last_key_value().map(|(_, e)| e.log_id());
        let cf = self.cf(keys::CF_LOGS)?;
        let last = match (unwritten, self.db.iterator_cf(cf, IteratorMode::End).next()) {
            (Some(log_id), _) => Some(log_id),
            (None, Some(item)) => {
                let (_, value) = item.map_err(io_err)?;
                Some(decode::<EntryOf<C>>(&value)?.log_id())
            }
            (None, None) => None,
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
        let mut encoded = Vec::new();
        let mut unwritten = Vec::new();
        for entry in entries {
            encoded.push((entry.index(), encode(&entry)?));
            unwritten.push(entry);
        }
        // Readable from memory at once (openraft may read them right away), written and
        // reported flushed by the log writer.
        self.pending().extend(unwritten.into_iter().map(|e| (e.index(), e)));
        self.writer.send(Job::Append { entries: encoded, callback })?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        // Nothing queued may be written after the truncation: wait for it first.
        self.written().await?;
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
        // Everything queued is written (and, the write being synced, the purge point with it).
        self.written().await?;
        self.sync_wal().await?;
        let cf = self.cf(keys::CF_LOGS)?;
        self.db.delete_range_cf(cf, keys::log_key(0), keys::log_key(log_id.index() + 1)).map_err(io_err)
    }
}
