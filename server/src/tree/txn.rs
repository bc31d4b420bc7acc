//! Transactions: the replicated inputs of the data tree (they are the Raft log's payload) and what
//! applying one returns. The leader stamps time and ids into a [`Txn`]; nothing here reads a clock.

use serde::{Deserialize, Serialize};

use crate::proto::{Acl, CreateMode, ErrorCode, Id, Stat};

/// The `ttl_ms` of a create that carries no TTL. ZooKeeper passes -1 for create, create2 and
/// createContainer, and rejects a non-TTL mode whose ttl is `>= 0` with `BadArguments`.
pub const NO_TTL: i64 = -1;

/// One log entry for the state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Wall-clock time in milliseconds, stamped by the leader; becomes ctime / mtime.
    pub time_ms: i64,
    /// What to do.
    pub kind: TxnKind,
}

impl Txn {
    /// A txn of `kind` before the leader stamped its time into it (as it appends the entry).
    pub fn unstamped(kind: TxnKind) -> Self {
        Txn { time_ms: 0, kind }
    }
}

/// What a [`Txn`] does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnKind {
    /// Register a session, owned by the server that submitted the txn. Re-creating an id that
    /// already exists leaves it untouched (its owner too).
    CreateSession {
        /// The id the leader chose.
        session_id: i64,
        /// The session password the client must present to reconnect.
        password: Vec<u8>,
        /// The negotiated timeout.
        timeout_ms: i32,
    },
    /// Close (or expire) a session: deletes all its ephemerals atomically and forgets it.
    CloseSession {
        /// The session.
        session_id: i64,
    },
    /// One client write.
    Write {
        /// The requesting session; it must exist, or the write fails with `SessionExpired`.
        session_id: i64,
        /// The connection's authenticated ids (`ip:…`, `digest:user:hash`, `super:`).
        auth: Vec<Id>,
        /// The operation.
        op: WriteOp,
    },
    /// An all-or-nothing batch of writes.
    Multi {
        /// The requesting session.
        session_id: i64,
        /// The connection's authenticated ids.
        auth: Vec<Id>,
        /// The operations, applied in order; later ones see the effects of earlier ones.
        ops: Vec<WriteOp>,
    },
    /// Leader-proposed container / TTL cleanup. Apply re-checks each candidate and skips the ones
    /// no longer eligible.
    Reap {
        /// The candidates, from [`super::DataTree::reap_candidates`].
        nodes: Vec<ReapCandidate>,
    },
    /// Nothing (a leader's first entry, a barrier).
    Noop,
    /// A client re-attached the session on the server that submitted this txn: that server
    /// becomes the session's owner, and writes of the session that other servers submit from
    /// now on fail with `SessionMoved`. (Appended last: earlier log entries decode unchanged.)
    MoveSession {
        /// The session.
        session_id: i64,
    },
    /// The leader of `term` expired the session: applied as [`TxnKind::CloseSession`], but only
    /// when the log entry is of that same term (the caller of [`super::DataTree::apply`] checks,
    /// see [`TxnKind::expiry_is_stale`]). openraft keeps a leader cut off from its quorum a
    /// leader until it hears of a newer term; hearing no touches, it finds every session expired,
    /// and its expiries, forwarded to the new leader once it learnt of it, closed sessions that
    /// had pinged the new leader all along. (Appended last: earlier log entries decode unchanged.)
    ExpireSession {
        /// The session.
        session_id: i64,
        /// The term of the leader that decided the expiry.
        term: u64,
    },
}

impl TxnKind {
    /// Whether this is an expiry decided by the leader of another term than the one of the log
    /// entry `entry_term` that carries it: such an expiry does nothing.
    pub fn expiry_is_stale(&self, entry_term: u64) -> bool {
        matches!(self, TxnKind::ExpireSession { term, .. } if *term != entry_term)
    }
}

/// One client write operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// create / create2 / createContainer / createTTL.
    Create {
        /// The path; for sequential modes, the prefix the counter is appended to.
        path: String,
        /// The data; `None` for null, kept apart from empty.
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        /// The ACL as the client sent it (`auth` entries are expanded on apply).
        acl: Vec<Acl>,
        /// The mode.
        mode: CreateMode,
        /// The TTL for TTL modes, in `1..=2^40-1`; [`NO_TTL`] for every other mode.
        ttl_ms: i64,
    },
    /// delete.
    Delete {
        /// The path.
        path: String,
        /// The expected data version, or -1 for any.
        version: i32,
    },
    /// setData.
    SetData {
        /// The path.
        path: String,
        /// The new data; `None` for null.
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        /// The expected data version, or -1 for any.
        version: i32,
    },
    /// setACL.
    SetAcl {
        /// The path.
        path: String,
        /// The new ACL as the client sent it.
        acl: Vec<Acl>,
        /// The expected ACL version (aversion), or -1 for any.
        version: i32,
    },
    /// check (only inside multi on the wire, but valid on its own here).
    Check {
        /// The path.
        path: String,
        /// The expected data version, or -1 for any.
        version: i32,
    },
}

impl WriteOp {
    /// The path the operation names, as the client sent it.
    pub fn path(&self) -> &str {
        match self {
            WriteOp::Create { path, .. }
            | WriteOp::Delete { path, .. }
            | WriteOp::SetData { path, .. }
            | WriteOp::SetAcl { path, .. }
            | WriteOp::Check { path, .. } => path,
        }
    }
}

/// A node the leader believes can be reaped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapCandidate {
    /// The node.
    pub path: String,
    /// Why it can go.
    pub kind: ReapKind,
}

/// Which cleanup rule a [`ReapCandidate`] falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReapKind {
    /// A container that had children and has none now.
    Container,
    /// A childless TTL node not modified for its TTL.
    Ttl,
}

/// The outcome of applying a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    /// The session is registered (also when it already was).
    SessionCreated,
    /// The session and its ephemerals are gone. Closing an unknown session gives [`TxnResult::Noop`].
    SessionClosed,
    /// A single write's result or its ZooKeeper error code.
    Write(Result<OpResult, ErrorCode>),
    /// A multi: every op's result, or one code per op when it failed: [`ErrorCode::Ok`] (encoded
    /// as 0) for the ops before the failing one, the failing op's own code at it, and
    /// [`ErrorCode::RuntimeInconsistency`] (-2) for the ops after it — exactly the `ErrorResult`
    /// codes ZooKeeper puts in a failed multi response.
    Multi(Result<Vec<OpResult>, Vec<ErrorCode>>),
    /// How many of the candidates were deleted.
    Reaped(usize),
    /// Nothing happened.
    Noop,
    /// The session's owner is now `owner` (a [`TxnKind::MoveSession`]; moving an unknown
    /// session gives [`TxnResult::Noop`]).
    OwnerChanged {
        /// The server the session is attached to from now on.
        owner: u64,
    },
}

impl TxnResult {
    /// Whether the write was refused because its session is owned by another server than the
    /// one that submitted it: that server's connection of the session is stale.
    pub fn is_session_moved(&self) -> bool {
        match self {
            TxnResult::Write(Err(code)) => *code == ErrorCode::SessionMoved,
            TxnResult::Multi(Err(codes)) => codes.contains(&ErrorCode::SessionMoved),
            _ => false,
        }
    }
}

/// The result of one successful [`WriteOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// The node was created; `path` carries the sequence suffix, if any.
    Created {
        /// The created path.
        path: String,
        /// The new node's Stat (create2 / createContainer / createTTL return it).
        stat: Stat,
    },
    /// The node was deleted.
    Deleted,
    /// The data was replaced.
    DataSet {
        /// The node's Stat afterwards.
        stat: Stat,
    },
    /// The ACL was replaced.
    AclSet {
        /// The node's Stat afterwards.
        stat: Stat,
    },
    /// The version check passed.
    Checked,
}
