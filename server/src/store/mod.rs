//! The applied state this server serves: the data tree, the watches registered on it (they
//! belong to the applied state: a read and the watch it leaves are atomic with apply), and the
//! local writes waiting for their result. The Raft state machine applies committed
//! [`Command`]s here; request handlers read here. Replication and durability are `raft`'s
//! business, connections and sessions' liveness the client port's.

pub mod watch;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::tree::legacy::TxnV1;
use crate::tree::{DataTree, Txn, TxnKind, TxnResult};
use watch::WatchManager;

/// Which server submitted a write, in which run of its process, and its sequence number there,
/// so the submitting server can hand the applied result to the waiting client when the entry is
/// applied locally. The server is also what the tree checks a session's ownership against
/// (a write from a server that does not own its session fails with SessionMoved). An entry submitted before a restart and applied after it matches no write
/// of the new run: the run differs even though the sequence numbers start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The submitting server's Raft id.
    pub server: u64,
    /// The submitting process's run: random, drawn when its store is made.
    pub run: u64,
    /// The write's sequence number in that run.
    pub seq: u64,
}

/// What one Raft log entry asks of the applied state: one txn for the data tree, and who waits
/// for its result.
///
/// Encoded as the tuple `(format, origin, txn)` with [`COMMAND_FORMAT`] first. Format 1 had no
/// format number: it began with `origin`, whose encoding starts with 0 (`None`) or 1 (`Some`),
/// so a first element of 0 or 1 is read as a format 1 command ([`TxnV1`]), which log entries
/// written by earlier versions are.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Who submitted the txn and waits for its result; `None` for txns nobody waits on.
    pub origin: Option<Origin>,
    /// The txn itself, stamped with the leader's time.
    pub txn: Txn,
}

/// The command format written now: 2, create and setData data that may be null.
const COMMAND_FORMAT: u8 = 2;

impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (COMMAND_FORMAT, &self.origin, &self.txn).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Formats;

        impl<'de> serde::de::Visitor<'de> for Formats {
            type Value = Command;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command: its format, origin and txn")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                use serde::de::Error;
                let format: u8 = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let (origin, txn) = match format {
                    // Format 1: the first byte was the origin's `None` / `Some` tag.
                    0 => (None, seq.next_element::<TxnV1>()?.map(Txn::from)),
                    1 => {
                        let origin: Origin = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
                        (Some(origin), seq.next_element::<TxnV1>()?.map(Txn::from))
                    }
                    COMMAND_FORMAT => {
                        let origin = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(1, &self))?;
                        (origin, seq.next_element()?)
                    }
                    other => return Err(A::Error::custom(format!("unknown command format {other}"))),
                };
                let txn = txn.ok_or_else(|| A::Error::invalid_length(2, &self))?;
                Ok(Command { origin, txn })
            }
        }

        deserializer.deserialize_tuple(3, Formats)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.txn.kind)
    }
}

/// The result of a write, delivered to the server that submitted it once applied there.
#[derive(Debug)]
pub struct WriteOutcome {
    /// The write's zxid (its Raft log index).
    pub zxid: i64,
    /// What the data tree answered.
    pub result: TxnResult,
}

/// See the module docs.
pub struct Store {
    server_id: u64,
    run: u64,
    tree: RwLock<DataTree>,
    watches: Mutex<WatchManager>,
    pending: Mutex<HashMap<u64, oneshot::Sender<WriteOutcome>>>,
    next_seq: AtomicU64,
    applied: tokio::sync::watch::Sender<i64>,
    /// Counts applied session ends (closes, expiries, moves away) and tree replacements: a
    /// follower of a counter misses none, however many come at once (a broadcast of ids that
    /// lagged skipped some, issue 12 j).
    ended_sessions: tokio::sync::watch::Sender<u64>,
    session_changes: AtomicU64,
}

/// A read view: the tree and the watch table, locked together so that a read and the watch it
/// leaves are atomic with respect to applying txns (no event can slip between them).
pub struct ReadView<'a> {
    /// The data tree.
    pub tree: RwLockReadGuard<'a, DataTree>,
    /// The watch table.
    pub watches: MutexGuard<'a, WatchManager>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere already; the data is still consistent for us
    // because every mutation completes before the guard drops.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// An empty store for server `server_id`.
    pub fn new(server_id: u64) -> Self {
        Self {
            server_id,
            run: rand::random(),
            tree: RwLock::new(DataTree::new()),
            watches: Mutex::new(WatchManager::default()),
            pending: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
            applied: tokio::sync::watch::channel(0).0,
            ended_sessions: tokio::sync::watch::channel(0).0,
            session_changes: AtomicU64::new(0),
        }
    }

    /// This server's id.
    pub fn server_id(&self) -> u64 {
        self.server_id
    }

    /// Read access to the tree and the watches.
    pub fn read(&self) -> ReadView<'_> {
        let tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        let watches = lock(&self.watches);
        ReadView { tree, watches }
    }

    /// The tree alone, for reads that leave no watch.
    pub fn tree(&self) -> RwLockReadGuard<'_, DataTree> {
        self.tree.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The watch table alone.
    pub fn watches(&self) -> MutexGuard<'_, WatchManager> {
        lock(&self.watches)
    }

    fn tree_mut(&self) -> RwLockWriteGuard<'_, DataTree> {
        self.tree.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves an origin for a write this server is about to submit, and the receiver its
    /// result arrives on once the write is applied here.
    pub fn register_write(&self) -> (Origin, oneshot::Receiver<WriteOutcome>) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(seq, tx);
        (Origin { server: self.server_id, run: self.run, seq }, rx)
    }

    /// Forgets a registered write that could not be submitted; its receiver sees a closed channel.
    pub fn abandon_write(&self, origin: Origin) {
        lock(&self.pending).remove(&origin.seq);
    }

    /// Applies one committed command at `zxid`, from a log entry of `term`: updates the tree,
    /// fires watches (before the submitter hears the result, so a client sees its event before
    /// its response), and hands the result to the waiting submitter. An expiry decided in
    /// another term than `term` applies as nothing ([`TxnKind::expiry_is_stale`]).
    pub fn apply(&self, zxid: i64, term: u64, command: &Command) {
        const NOTHING: Txn = Txn { time_ms: 0, kind: TxnKind::Noop };
        let txn = if command.txn.kind.expiry_is_stale(term) { &NOTHING } else { &command.txn };
        let applied = {
            let mut tree = self.tree_mut();
            let applied = tree.apply(zxid, command.origin.map(|o| o.server), txn);
            lock(&self.watches).trigger(zxid, &applied.events);
            applied
        };
        if matches!(
            txn.kind,
            TxnKind::CreateSession { .. } | TxnKind::CloseSession { .. } | TxnKind::ExpireSession { .. }
        ) {
            self.session_changes.fetch_add(1, Ordering::Relaxed);
        }
        let ended = match (&txn.kind, &applied.result) {
            (TxnKind::CloseSession { .. } | TxnKind::ExpireSession { .. }, TxnResult::SessionClosed) => true,
            // The session moved to another server: its connections here are stale.
            (TxnKind::MoveSession { .. }, TxnResult::OwnerChanged { owner }) => *owner != self.server_id,
            _ => false,
        };
        if ended {
            self.ended_sessions.send_modify(|n| *n += 1);
        }
        if let Some(origin) = command.origin.filter(|o| o.server == self.server_id && o.run == self.run) {
            if let Some(tx) = lock(&self.pending).remove(&origin.seq) {
                // The client may have gone; its result is then simply dropped.
                let _ = tx.send(WriteOutcome { zxid, result: applied.result });
            }
        }
        self.applied.send_replace(zxid);
    }

    /// Counts session creates and closes applied (and snapshot restores), so the leader knows
    /// when to re-read the session table.
    pub fn session_changes(&self) -> u64 {
        self.session_changes.load(Ordering::Relaxed)
    }

    /// Changes whenever sessions may have ended here: a close, expiry or move to another
    /// server applied, or the tree replaced (a snapshot install may skip over session ends). It
    /// names no session: a receiver checks its connections' sessions with
    /// [`Store::serves_session`], so none is missed when many end at once.
    pub fn ended_sessions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ended_sessions.subscribe()
    }

    /// Whether this server may serve `session_id`: it exists and is owned here (or its owner is
    /// not known).
    pub fn serves_session(&self, session_id: i64) -> bool {
        self.tree().session(session_id).is_some_and(|s| s.owner == 0 || s.owner == self.server_id)
    }

    /// Records that the log advanced to `zxid` without a txn for the tree (blank or membership
    /// entries), so waiters on the applied index move on.
    pub fn advance(&self, zxid: i64) {
        self.applied.send_replace(zxid);
    }

    /// Replaces the whole tree (snapshot restore or install), firing the watches the skipped
    /// txns would have fired. Tree and watches are locked together, as for one applied txn: no
    /// read can leave a watch on the old tree that this misses.
    pub fn replace_tree(&self, tree: DataTree, zxid: i64) {
        {
            let mut current = self.tree_mut();
            let mut watches = lock(&self.watches);
            watches.trigger_replaced(zxid, &current, &tree);
            *current = tree;
        }
        self.session_changes.fetch_add(1, Ordering::Relaxed);
        self.ended_sessions.send_modify(|n| *n += 1);
        self.applied.send_replace(zxid);
    }

    /// A copy of the tree for a snapshot: O(1), the tree's maps are persistent (copy-on-write),
    /// so building a snapshot never holds up applying writes.
    pub fn clone_tree(&self) -> DataTree {
        self.tree().clone()
    }

    /// The last applied log index.
    pub fn applied_zxid(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until the log index `zxid` has been applied here.
    pub async fn wait_applied(&self, zxid: i64) {
        let mut rx = self.applied.subscribe();
        // The sender lives as long as the store, which outlives every waiter.
        let _ = rx.wait_for(|&applied| applied >= zxid).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Txn, TxnKind};

    fn close(session_id: i64, origin: Origin) -> Command {
        Command { origin: Some(origin), txn: Txn { time_ms: 0, kind: TxnKind::CloseSession { session_id } } }
    }

    /// Log entries hold commands: every format must decode to the same command.
    #[test]
    fn commands_round_trip_and_format_1_commands_still_decode() {
        use crate::tree::WriteOp;
        let origin = Origin { server: 2, run: 77, seq: 5 };
        let set = |data: Option<&[u8]>| Txn {
            time_ms: 9,
            kind: TxnKind::Write {
                session_id: 3,
                auth: vec![],
                op: WriteOp::SetData { path: "/a".into(), data: data.map(<[u8]>::to_vec), version: -1 },
            },
        };
        for command in [
            Command { origin: Some(origin), txn: set(None) },
            Command { origin: Some(origin), txn: set(Some(b"")) },
            Command { origin: None, txn: Txn { time_ms: 1, kind: TxnKind::Noop } },
        ] {
            let bytes = postcard::to_stdvec(&command).expect("encode");
            assert_eq!(bytes[0], COMMAND_FORMAT);
            assert_eq!(postcard::from_bytes::<Command>(&bytes).expect("decode"), command);
        }

        // Format 1, as earlier versions wrote it: the struct, origin first, no format number.
        #[derive(Serialize)]
        struct CommandV1 {
            origin: Option<Origin>,
            txn: TxnV1,
        }
        for (origin, txn) in [(Some(origin), set(Some(b"v"))), (None, Txn { time_ms: 1, kind: TxnKind::Noop })] {
            let v1 = CommandV1 { origin, txn: TxnV1::try_from(&txn).expect("format 1 has no null data") };
            let bytes = postcard::to_stdvec(&v1).expect("encode format 1");
            assert_eq!(postcard::from_bytes::<Command>(&bytes).expect("decode format 1"), Command { origin, txn });
        }
        assert!(postcard::from_bytes::<Command>(&[COMMAND_FORMAT + 1, 0]).is_err(), "an unknown format");
        assert!(postcard::from_bytes::<Command>(&[]).is_err());
    }

    #[test]
    fn an_applied_write_reaches_the_server_and_write_that_submitted_it() {
        let store = Store::new(1);
        let (first, mut first_rx) = store.register_write();
        let (second, mut second_rx) = store.register_write();
        store.apply(5, 1, &close(7, second));
        assert!(first_rx.try_recv().is_err(), "not the first write's result");
        assert_eq!(second_rx.try_recv().expect("the second write's result").zxid, 5);
        let other = Store::new(2);
        let (_, mut other_rx) = other.register_write();
        other.apply(6, 1, &close(7, first));
        assert!(other_rx.try_recv().is_err(), "another server's write");
    }

    /// Found by the soak (docs/reliability.md, round 67 at 1f34fe6): a leader cut off from its
    /// quorum expired every session it no longer heard of; once it learnt of the new leader,
    /// its expiry of a session that had pinged the new leader all along was forwarded there and
    /// committed (entry T70-N3.21025 carried server 2's CloseSession). An expiry now names the
    /// term it was decided in and does nothing in an entry of another term.
    #[test]
    fn an_expiry_decided_in_another_term_does_nothing() {
        let store = Store::new(1);
        let origin = |seq| Some(Origin { server: 2, run: 1, seq });
        let create = TxnKind::CreateSession { session_id: 7, password: vec![0; 16], timeout_ms: 4000 };
        store.apply(1, 69, &Command { origin: origin(1), txn: Txn { time_ms: 0, kind: create } });
        let (waiting, mut result) = store.register_write();
        let stale = TxnKind::ExpireSession { session_id: 7, term: 69 };
        store.apply(2, 70, &Command { origin: Some(waiting), txn: Txn { time_ms: 0, kind: stale } });
        assert!(store.tree().session(7).is_some(), "an expiry of term 69 in an entry of term 70 closed the session");
        assert_eq!(result.try_recv().expect("its submitter hears").result, TxnResult::Noop);
        assert_eq!(store.applied_zxid(), 2);
        let ended = *store.ended_sessions().borrow();
        let current = TxnKind::ExpireSession { session_id: 7, term: 70 };
        store.apply(3, 70, &Command { origin: origin(2), txn: Txn { time_ms: 0, kind: current } });
        assert!(store.tree().session(7).is_none(), "the expiry of the entry's own term");
        assert_eq!(*store.ended_sessions().borrow(), ended + 1, "an expiry ends the session's connections");
        // The expiry is a log entry like any: it decodes as it was written.
        let txn = Txn { time_ms: 3, kind: TxnKind::ExpireSession { session_id: 7, term: 70 } };
        let command = Command { origin: origin(3), txn };
        let bytes = postcard::to_stdvec(&command).expect("encode");
        assert_eq!(postcard::from_bytes::<Command>(&bytes).expect("decode"), command);
    }

    /// An entry a previous run of this server submitted (it crashed before the entry was
    /// applied) is applied after the restart: it must not hand its result to a write the new
    /// run submitted (issue 12 h: the sequence numbers restarted at 1).
    #[test]
    fn a_previous_runs_entry_does_not_answer_a_write_of_this_run() {
        let before_crash = Store::new(1);
        let (old, _) = before_crash.register_write();
        let after_restart = Store::new(1);
        let (_, mut new_rx) = after_restart.register_write();
        after_restart.apply(9, 1, &close(7, old));
        assert!(new_rx.try_recv().is_err(), "an earlier run's entry answered this run's write");
    }
}
