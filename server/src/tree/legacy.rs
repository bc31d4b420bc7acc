//! Shapes of the tree and of txns that earlier versions serialized, so that their snapshots
//! still restore and their log entries still apply. The current shapes are [`DataTree`] and
//! [`Txn`] themselves; which shape a snapshot or an entry holds is said by its format number
//! (`raft::state_machine` for snapshots, `store::Command` for entries).
//!
//! - Snapshot format 1: sessions kept no owner, znode data no null ([`DataTreeV1`]).
//! - Snapshot format 2: sessions with their owner, znode data no null ([`DataTreeV2`]).
//! - Txn format 1: create and setData data no null ([`TxnV1`]).
//!
//! Data an earlier version kept is never null: those versions read null as empty.

use std::collections::BTreeSet;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use super::shared_acl::AclCache;
use super::{DataTree, NodeKind, ReapCandidate, SessionInfo, Txn, TxnKind, WriteOp, Znode};
use crate::proto::{Acl, CreateMode, Id, Stat};

/// The tree as snapshot formats 1 and 2 kept it, with sessions of shape `S`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldDataTree<S: Clone> {
    nodes: OrdMap<String, ZnodeV1>,
    sessions: OrdMap<i64, S>,
    containers: OrdSet<String>,
    ttls: OrdSet<String>,
    last_zxid: i64,
    data_size: u64,
}

/// Snapshot format 1.
pub type DataTreeV1 = OldDataTree<SessionInfoV1>;
/// Snapshot format 2.
pub type DataTreeV2 = OldDataTree<SessionInfo>;

/// A znode of snapshot formats 1 and 2: data never null.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ZnodeV1 {
    data: Vec<u8>,
    acl: Vec<Acl>,
    kind: NodeKind,
    stat: Stat,
    child_creates: i32,
    children: OrdSet<String>,
}

/// A session of snapshot format 1: no owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfoV1 {
    password: Vec<u8>,
    timeout_ms: i32,
    ephemerals: BTreeSet<String>,
}

impl From<SessionInfoV1> for SessionInfo {
    /// The owner is not known (0): any server's writes of such a session are applied until it
    /// re-attaches somewhere, which records its owner.
    fn from(v1: SessionInfoV1) -> Self {
        let SessionInfoV1 { password, timeout_ms, ephemerals } = v1;
        SessionInfo { password, timeout_ms, ephemerals, owner: 0 }
    }
}

impl From<&SessionInfo> for SessionInfoV1 {
    fn from(s: &SessionInfo) -> Self {
        SessionInfoV1 { password: s.password.clone(), timeout_ms: s.timeout_ms, ephemerals: s.ephemerals.clone() }
    }
}

impl From<&SessionInfo> for SessionInfo {
    fn from(s: &SessionInfo) -> Self {
        s.clone()
    }
}

impl<S: Into<SessionInfo> + Clone> From<OldDataTree<S>> for DataTree {
    fn from(old: OldDataTree<S>) -> Self {
        let OldDataTree { nodes, sessions, containers, ttls, last_zxid, data_size } = old;
        let acls = AclCache::default();
        let nodes = nodes
            .into_iter()
            .map(|(path, ZnodeV1 { data, acl, kind, stat, child_creates, children })| {
                let acl = acls.intern(&acl);
                (path, Znode { data: Some(data), acl, kind, stat, child_creates, children })
            })
            .collect();
        let sessions = sessions.into_iter().map(|(id, s)| (id, s.into())).collect();
        DataTree { nodes, sessions, containers, ttls, last_zxid, data_size, acls }
    }
}

impl<S: for<'a> From<&'a SessionInfo> + Clone> From<&DataTree> for OldDataTree<S> {
    /// What an earlier format kept of a tree (null data as empty), for tests of reading it.
    fn from(tree: &DataTree) -> Self {
        let nodes = tree
            .nodes
            .iter()
            .map(|(path, n)| {
                let node = ZnodeV1 {
                    data: n.data().to_vec(),
                    acl: n.acl.to_vec(),
                    kind: n.kind,
                    stat: n.stat,
                    child_creates: n.child_creates,
                    children: n.children.clone(),
                };
                (path.clone(), node)
            })
            .collect();
        OldDataTree {
            nodes,
            sessions: tree.sessions.iter().map(|(id, s)| (*id, S::from(s))).collect(),
            containers: tree.containers.clone(),
            ttls: tree.ttls.clone(),
            last_zxid: tree.last_zxid,
            data_size: tree.data_size,
        }
    }
}

/// A txn of format 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnV1 {
    time_ms: i64,
    kind: TxnKindV1,
}

/// [`TxnKind`] of format 1: the same variants, in the same order, with [`WriteOpV1`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum TxnKindV1 {
    CreateSession { session_id: i64, password: Vec<u8>, timeout_ms: i32 },
    CloseSession { session_id: i64 },
    Write { session_id: i64, auth: Vec<Id>, op: WriteOpV1 },
    Multi { session_id: i64, auth: Vec<Id>, ops: Vec<WriteOpV1> },
    Reap { nodes: Vec<ReapCandidate> },
    Noop,
    MoveSession { session_id: i64 },
}

/// [`WriteOp`] of format 1: data never null.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum WriteOpV1 {
    Create { path: String, data: Vec<u8>, acl: Vec<Acl>, mode: CreateMode, ttl_ms: i64 },
    Delete { path: String, version: i32 },
    SetData { path: String, data: Vec<u8>, version: i32 },
    SetAcl { path: String, acl: Vec<Acl>, version: i32 },
    Check { path: String, version: i32 },
}

impl From<WriteOpV1> for WriteOp {
    fn from(op: WriteOpV1) -> Self {
        match op {
            WriteOpV1::Create { path, data, acl, mode, ttl_ms } => {
                WriteOp::Create { path, data: Some(data), acl, mode, ttl_ms }
            }
            WriteOpV1::Delete { path, version } => WriteOp::Delete { path, version },
            WriteOpV1::SetData { path, data, version } => WriteOp::SetData { path, data: Some(data), version },
            WriteOpV1::SetAcl { path, acl, version } => WriteOp::SetAcl { path, acl, version },
            WriteOpV1::Check { path, version } => WriteOp::Check { path, version },
        }
    }
}

impl From<TxnV1> for Txn {
    fn from(v1: TxnV1) -> Self {
        let kind = match v1.kind {
            TxnKindV1::CreateSession { session_id, password, timeout_ms } => {
                TxnKind::CreateSession { session_id, password, timeout_ms }
            }
            TxnKindV1::CloseSession { session_id } => TxnKind::CloseSession { session_id },
            TxnKindV1::Write { session_id, auth, op } => TxnKind::Write { session_id, auth, op: op.into() },
            TxnKindV1::Multi { session_id, auth, ops } => {
                TxnKind::Multi { session_id, auth, ops: ops.into_iter().map(WriteOp::from).collect() }
            }
            TxnKindV1::Reap { nodes } => TxnKind::Reap { nodes },
            TxnKindV1::Noop => TxnKind::Noop,
            TxnKindV1::MoveSession { session_id } => TxnKind::MoveSession { session_id },
        };
        Txn { time_ms: v1.time_ms, kind }
    }
}

impl TryFrom<&Txn> for TxnV1 {
    type Error = ();

    /// How format 1 wrote a txn without null data (for tests of reading old entries).
    fn try_from(txn: &Txn) -> Result<Self, ()> {
        let op = |op: &WriteOp| -> Result<WriteOpV1, ()> {
            Ok(match op.clone() {
                WriteOp::Create { path, data, acl, mode, ttl_ms } => {
                    WriteOpV1::Create { path, data: data.ok_or(())?, acl, mode, ttl_ms }
                }
                WriteOp::Delete { path, version } => WriteOpV1::Delete { path, version },
                WriteOp::SetData { path, data, version } => WriteOpV1::SetData { path, data: data.ok_or(())?, version },
                WriteOp::SetAcl { path, acl, version } => WriteOpV1::SetAcl { path, acl, version },
                WriteOp::Check { path, version } => WriteOpV1::Check { path, version },
            })
        };
        let kind = match txn.kind.clone() {
            TxnKind::CreateSession { session_id, password, timeout_ms } => {
                TxnKindV1::CreateSession { session_id, password, timeout_ms }
            }
            TxnKind::CloseSession { session_id } => TxnKindV1::CloseSession { session_id },
            // Format 1 had no expiry of its own (nor terms).
            TxnKind::ExpireSession { .. } => return Err(()),
            TxnKind::Write { session_id, auth, op: o } => TxnKindV1::Write { session_id, auth, op: op(&o)? },
            TxnKind::Multi { session_id, auth, ops } => {
                TxnKindV1::Multi { session_id, auth, ops: ops.iter().map(op).collect::<Result<_, _>>()? }
            }
            TxnKind::Reap { nodes } => TxnKindV1::Reap { nodes },
            TxnKind::Noop => TxnKindV1::Noop,
            TxnKind::MoveSession { session_id } => TxnKindV1::MoveSession { session_id },
        };
        Ok(TxnV1 { time_ms: txn.time_ms, kind })
    }
}
