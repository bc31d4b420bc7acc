//! The data tree: the replicated state machine's pure core. It owns the znodes (data, Stat, ACL,
//! children), the session table with each session's ephemerals and owner server, the container
//! and TTL indexes, sequential counters and `last_zxid`. [`DataTree::apply`] is deterministic — no clock, no
//! randomness, no I/O — and validates every write the way ZooKeeper 3.9's `PrepRequestProcessor`
//! does, so all replicas compute the same results. Delivering watch events, session expiry and
//! durability are left to `zk/` and `raft/`.
//!
//! Stat follows ZooKeeper's `DataNode.copyStat`: the tree stores the number of child *creates*
//! (the sequential counter) and reports `cversion = creates * 2 - numChildren`, i.e. creates plus
//! deletes; `ephemeralOwner` is 0 for containers and TTL nodes.

mod acl;
pub mod legacy;
mod path;
mod quota;
mod shared_acl;
mod txn;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use imbl::{OrdMap, OrdSet};

use serde::{Deserialize, Serialize};

use crate::proto::{perms, Acl, CreateMode, ErrorCode, EventType, Id, Stat};

pub use acl::{acl_allows, digest_id, k8s_id_is_valid};
pub use path::{validate_path, CONFIG, QUOTA, ROOT, ZOOKEEPER};
use quota::StatsTrack;
use shared_acl::{AclCache, Interning, SharedAcl};
pub use txn::{OpResult, ReapCandidate, ReapKind, Txn, TxnKind, TxnResult, WriteOp, NO_TTL};

/// The largest TTL ZooKeeper accepts (`EphemeralType.TTL.maxValue()`, 2^40 - 1 ms ≈ 34 years).
pub const MAX_TTL_MS: i64 = 0xff_ffff_ffff;

/// What applying a [`Txn`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The answer for the requester.
    pub result: TxnResult,
    /// Watch triggers, in the order they happened (empty for failed writes and multis).
    pub events: Vec<WatchEvent>,
}

/// A change a watch may be waiting for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The znode that changed: the node itself, or the parent for `NodeChildrenChanged`.
    pub path: String,
    /// `NodeCreated`, `NodeDeleted`, `NodeDataChanged` or `NodeChildrenChanged`.
    pub event: EventType,
}

/// How a znode lives and dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    /// Until deleted.
    Persistent,
    /// Until its session ends.
    Ephemeral {
        /// The owning session.
        owner: i64,
    },
    /// Reaped once it had children and has none.
    Container,
    /// Reaped once childless and unmodified for `ttl_ms`.
    Ttl {
        /// The time to live.
        ttl_ms: i64,
    },
}

/// One znode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Znode {
    /// `None` for null data (length -1 on the wire), which clients tell apart from empty.
    /// One byte string when encoded (element by element is slow for ~1 MiB in a debug build);
    /// postcard's encoding is the same either way.
    #[serde(with = "serde_bytes")]
    data: Option<Vec<u8>>,
    /// Shared with every node of the tree that has the same list ([`shared_acl`]).
    #[serde(with = "shared_acl")]
    acl: SharedAcl,
    kind: NodeKind,
    /// The Stat a client sees, kept current on every change.
    stat: Stat,
    /// ZooKeeper's persisted `cversion`: children ever created. Drives sequential names.
    child_creates: i32,
    children: OrdSet<String>,
}

impl Znode {
    fn new(data: Option<Vec<u8>>, acl: SharedAcl, kind: NodeKind, zxid: i64, time_ms: i64) -> Self {
        let ephemeral_owner = match kind {
            NodeKind::Ephemeral { owner } => owner,
            _ => 0,
        };
        let stat = Stat {
            czxid: zxid,
            mzxid: zxid,
            ctime: time_ms,
            mtime: time_ms,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner,
            data_length: data_len(data.as_deref()),
            num_children: 0,
            pzxid: zxid,
        };
        Znode { data, acl, kind, stat, child_creates: 0, children: OrdSet::new() }
    }

    /// One of ZooKeeper's built-in nodes: zeroed Stat.
    fn builtin(acl: SharedAcl, children: &[&str]) -> Self {
        let mut node = Znode::new(Some(Vec::new()), acl, NodeKind::Persistent, 0, 0);
        node.children = children.iter().map(|c| (*c).to_owned()).collect();
        node.sync_child_stat();
        node
    }

    /// Recomputes the child part of the Stat as `DataNode.copyStat` does: `cversion` counts
    /// creates and deletes, i.e. `creates * 2 - numChildren`.
    fn sync_child_stat(&mut self) {
        let num_children = len_i32(self.children.len());
        self.stat.num_children = num_children;
        self.stat.cversion = self.child_creates.wrapping_mul(2).wrapping_sub(num_children);
    }

    fn set_data(&mut self, data: Option<Vec<u8>>) -> Option<Vec<u8>> {
        self.stat.data_length = data_len(data.as_deref());
        std::mem::replace(&mut self.data, data)
    }

    /// The data; empty when it is null.
    pub fn data(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }

    /// The data, `None` when it is null (as getData answers it).
    pub fn nullable_data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// The ACL.
    pub fn acl(&self) -> &[Acl] {
        &self.acl
    }

    /// Persistent, ephemeral, container or TTL.
    pub fn kind(&self) -> NodeKind {
        self.kind
    }

    /// The Stat a client sees (`ephemeralOwner` is 0 for containers and TTL nodes; `cversion`
    /// counts child creates and deletes).
    pub fn stat(&self) -> Stat {
        self.stat
    }

    /// The TTL of a TTL node.
    pub fn ttl_ms(&self) -> Option<i64> {
        match self.kind {
            NodeKind::Ttl { ttl_ms } => Some(ttl_ms),
            _ => None,
        }
    }

    /// The owning session of an ephemeral node.
    pub fn ephemeral_owner(&self) -> Option<i64> {
        match self.kind {
            NodeKind::Ephemeral { owner } => Some(owner),
            _ => None,
        }
    }

    /// The children's names, sorted.
    pub fn children(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.children.iter().map(String::as_str)
    }
}

/// The events that changes between two versions of a znode fire, as ZooKeeper's setWatches
/// judges a watch against the node's Stat: created, deleted, deleted and created again (a new
/// `czxid`), data changed (`mzxid`), children changed (`pzxid`). For a tree that moved on by
/// more than one txn at once (a snapshot install).
pub fn changes_between(old: Option<&Znode>, new: Option<&Znode>) -> Vec<EventType> {
    match (old.map(Znode::stat), new.map(Znode::stat)) {
        (None, None) => Vec::new(),
        (None, Some(_)) => vec![EventType::NodeCreated],
        (Some(_), None) => vec![EventType::NodeDeleted],
        (Some(old), Some(new)) if old.czxid != new.czxid => vec![EventType::NodeDeleted, EventType::NodeCreated],
        (Some(old), Some(new)) => {
            let mut events = Vec::new();
            if old.mzxid != new.mzxid {
                events.push(EventType::NodeDataChanged);
            }
            if old.pzxid != new.pzxid {
                events.push(EventType::NodeChildrenChanged);
            }
            events
        }
    }
}

/// A registered session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The password a reconnecting client must present.
    pub password: Vec<u8>,
    /// The negotiated timeout.
    pub timeout_ms: i32,
    /// Paths of the ephemerals it owns.
    pub ephemerals: BTreeSet<String>,
    /// The server the session is attached to (its Raft id): the one that created it, or the
    /// last one it moved to. Only that server's writes of the session are applied; 0 when not
    /// known (a session restored from a snapshot of a version that kept no owners), when any
    /// server's are, until the session re-attaches somewhere.
    pub owner: u64,
}

/// The whole replicated state: znodes, sessions and `last_zxid`. Serialize it for a snapshot.
/// The maps are persistent (`imbl`): cloning is O(1) and later writes copy only the paths they
/// touch, so a snapshot is taken from a clone without stalling writes. They are ordered, so
/// every replica serializes the same bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataTree {
    nodes: OrdMap<String, Znode>,
    sessions: OrdMap<i64, SessionInfo>,
    containers: OrdSet<String>,
    ttls: OrdSet<String>,
    last_zxid: i64,
    /// Sum of path and data lengths, kept up to date on every change.
    data_size: u64,
    /// The nodes' distinct ACL lists (not part of the state; not serialized).
    #[serde(skip)]
    acls: AclCache,
}

/// What a serialized [`DataTree`] holds, field for field.
#[derive(Deserialize)]
struct StoredTree {
    nodes: OrdMap<String, Znode>,
    sessions: OrdMap<i64, SessionInfo>,
    containers: OrdSet<String>,
    ttls: OrdSet<String>,
    last_zxid: i64,
    data_size: u64,
}

impl<'de> Deserialize<'de> for DataTree {
    /// Reads a tree, its nodes sharing their ACL lists as a tree built by writes does.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let interning = Interning::begin();
        let StoredTree { nodes, sessions, containers, ttls, last_zxid, data_size } =
            StoredTree::deserialize(deserializer)?;
        let acls = interning.finish();
        Ok(DataTree { nodes, sessions, containers, ttls, last_zxid, data_size, acls })
    }
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

/// Who is asking and when, for one write.
struct Ctx<'a> {
    zxid: i64,
    time_ms: i64,
    session_id: i64,
    /// The server that submitted the write.
    from: Option<u64>,
    auth: &'a [Id],
}

/// How to take back one change of a multi that later fails.
enum Undo {
    Created {
        path: String,
        parent_creates: i32,
        parent_pzxid: i64,
    },
    Deleted {
        path: String,
        node: Znode,
        parent_pzxid: i64,
    },
    DataSet {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
        mzxid: i64,
        mtime: i64,
    },
    AclSet {
        path: String,
        acl: SharedAcl,
        aversion: i32,
    },
    /// A quota's usage, changed in place.
    StatsSet {
        path: String,
        data: Option<Vec<u8>>,
    },
}

/// Where a write records its effects: watch events always, undo steps inside a multi.
struct Effects<'a> {
    events: &'a mut Vec<WatchEvent>,
    undo: Option<&'a mut Vec<Undo>>,
}

impl Effects<'_> {
    fn event(&mut self, path: &str, event: EventType) {
        self.events.push(WatchEvent { path: path.to_owned(), event });
    }

    fn undo(&mut self, step: impl FnOnce() -> Undo) {
        if let Some(undo) = self.undo.as_deref_mut() {
            undo.push(step());
        }
    }
}

impl DataTree {
    /// A fresh tree with ZooKeeper's built-in nodes: `/`, `/zookeeper`, `/zookeeper/quota` (open
    /// ACLs) and `/zookeeper/config` (world-readable only, aversion -1), all with zeroed Stats.
    pub fn new() -> Self {
        let acls = AclCache::default();
        let read_only = acls.intern(&[Acl { perms: perms::READ, id: Id::anyone() }]);
        let open = acls.intern(&Acl::open_unsafe());
        let mut config = Znode::builtin(read_only, &[]);
        // ZooKeeper installs this ACL with `setACL(..., -1)`, which stores -1 as the aversion.
        config.stat.aversion = -1;
        let mut tree = DataTree {
            nodes: OrdMap::new(),
            sessions: OrdMap::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            last_zxid: 0,
            data_size: 0,
            acls,
        };
        for (path, node) in [
            (ROOT, Znode::builtin(open.clone(), &["zookeeper"])),
            (ZOOKEEPER, Znode::builtin(open.clone(), &["config", "quota"])),
            (QUOTA, Znode::builtin(open, &[])),
            (CONFIG, config),
        ] {
            tree.data_size += node_size(path, node.data());
            tree.nodes.insert(path.to_owned(), node);
        }
        tree
    }

    /// Applies one committed log entry that server `from` submitted (`None`: nobody's, such
    /// as a txn a previous leader proposed for itself). Never panics; every outcome, including
    /// a failed write, advances `last_zxid` to `zxid`, and a failed write or multi changes
    /// nothing else.
    ///
    /// Sessions have an owner: creating a session makes `from` its owner, a
    /// [`TxnKind::MoveSession`] makes `from` the new one, and a write or multi of the session
    /// that another server submitted fails with `SessionMoved` (ZooKeeper's
    /// `SessionTracker.checkSession`). Closing is not checked, as in ZooKeeper: the leader
    /// expires sessions it does not own, and a close is the session's last word wherever it
    /// was sent.
    pub fn apply(&mut self, zxid: i64, from: Option<u64>, txn: &Txn) -> Applied {
        let mut events = Vec::new();
        let result = match &txn.kind {
            TxnKind::CreateSession { session_id, password, timeout_ms } => {
                self.sessions.entry(*session_id).or_insert_with(|| SessionInfo {
                    password: password.clone(),
                    timeout_ms: *timeout_ms,
                    ephemerals: BTreeSet::new(),
                    owner: from.unwrap_or(0),
                });
                TxnResult::SessionCreated
            }
            TxnKind::CloseSession { session_id } | TxnKind::ExpireSession { session_id, .. } => {
                self.close_session(*session_id, zxid, &mut events)
            }
            TxnKind::MoveSession { session_id } => match (self.sessions.get_mut(session_id), from) {
                (Some(session), Some(owner)) => {
                    session.owner = owner;
                    TxnResult::OwnerChanged { owner }
                }
                _ => TxnResult::Noop,
            },
            TxnKind::Write { session_id, auth, op } => {
                let ctx = Ctx { zxid, time_ms: txn.time_ms, session_id: *session_id, from, auth };
                let mut fx = Effects { events: &mut events, undo: None };
                TxnResult::Write(self.apply_op(&ctx, op, &mut fx))
            }
            TxnKind::Multi { session_id, auth, ops } => {
                let ctx = Ctx { zxid, time_ms: txn.time_ms, session_id: *session_id, from, auth };
                TxnResult::Multi(self.apply_multi(&ctx, ops, &mut events))
            }
            TxnKind::Reap { nodes } => TxnResult::Reaped(self.reap(nodes, zxid, txn.time_ms, &mut events)),
            TxnKind::Noop => TxnResult::Noop,
        };
        self.last_zxid = self.last_zxid.max(zxid);
        Applied { result, events }
    }

    fn close_session(&mut self, session_id: i64, zxid: i64, events: &mut Vec<WatchEvent>) -> TxnResult {
        let Some(session) = self.sessions.remove(&session_id) else {
            return TxnResult::Noop;
        };
        let mut fx = Effects { events, undo: None };
        for path in &session.ephemerals {
            if self.nodes.contains_key(path) {
                self.delete_node(path, zxid, &mut fx);
            }
        }
        TxnResult::SessionClosed
    }

    fn apply_multi(
        &mut self,
        ctx: &Ctx<'_>,
        ops: &[WriteOp],
        events: &mut Vec<WatchEvent>,
    ) -> Result<Vec<OpResult>, Vec<ErrorCode>> {
        let mut undo = Vec::new();
        let mut staged = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let mut fx = Effects { events: &mut staged, undo: Some(&mut undo) };
            match self.apply_op(ctx, op, &mut fx) {
                Ok(result) => results.push(result),
                Err(code) => {
                    self.rollback(undo);
                    let codes = (0..ops.len())
                        .map(|j| match j.cmp(&i) {
                            std::cmp::Ordering::Less => ErrorCode::Ok,
                            std::cmp::Ordering::Equal => code,
                            std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                        })
                        .collect();
                    return Err(codes);
                }
            }
        }
        events.append(&mut staged);
        Ok(results)
    }

    /// Validates one op in ZooKeeper's order and, when it passes, performs it.
    fn apply_op(&mut self, ctx: &Ctx<'_>, op: &WriteOp, fx: &mut Effects<'_>) -> Result<OpResult, ErrorCode> {
        match op {
            WriteOp::Create { path, data, acl, mode, ttl_ms } => {
                self.create(ctx, path, data.as_deref(), acl, *mode, *ttl_ms, fx)
            }
            WriteOp::Delete { path, version } => self.delete(ctx, path, *version, fx),
            WriteOp::SetData { path, data, version } => self.set_data(ctx, path, data.as_deref(), *version, fx),
            WriteOp::SetAcl { path, acl, version } => self.set_acl(ctx, path, acl, *version, fx),
            WriteOp::Check { path, version } => self.check(ctx, path, *version),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        mode: CreateMode,
        ttl_ms: i64,
        fx: &mut Effects<'_>,
    ) -> Result<OpResult, ErrorCode> {
        let ttl_ok = if mode.is_ttl() { (1..=MAX_TTL_MS).contains(&ttl_ms) } else { ttl_ms < 0 };
        if !ttl_ok {
            return Err(ErrorCode::BadArguments);
        }
        self.require_session(ctx)?;
        if path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let (parent_path, _) = path::split_parent(path).ok_or(ErrorCode::BadArguments)?;
        let acl = acl::fixup_acl(acl, ctx.auth)?;
        let parent = self.nodes.get(parent_path).ok_or(ErrorCode::NoNode)?;
        if !acl_allows(&parent.acl, perms::CREATE, ctx.auth) {
            return Err(ErrorCode::NoAuth);
        }
        let path = if mode.is_sequential() { format!("{path}{:010}", parent.child_creates) } else { path.to_owned() };
        validate_path(&path)?;
        if self.nodes.contains_key(&path) {
            return Err(ErrorCode::NodeExists);
        }
        if matches!(parent.kind, NodeKind::Ephemeral { .. }) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let bytes = data.map_or(0, <[u8]>::len) as i64;
        self.check_quota(&path, 1, bytes)?;

        let kind = match mode {
            CreateMode::Persistent | CreateMode::PersistentSequential => NodeKind::Persistent,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential => NodeKind::Ephemeral { owner: ctx.session_id },
            CreateMode::Container => NodeKind::Container,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl => NodeKind::Ttl { ttl_ms },
        };
        let acl = self.acls.intern(&acl);
        let node = Znode::new(data.map(<[u8]>::to_vec), acl, kind, ctx.zxid, ctx.time_ms);
        let stat = node.stat;
        let (parent_path, _) = path::split_parent(&path).ok_or(ErrorCode::BadArguments)?;
        let parent = self.nodes.get_mut(parent_path).ok_or(ErrorCode::NoNode)?;
        let (parent_creates, parent_pzxid) = (parent.child_creates, parent.stat.pzxid);
        parent.child_creates = parent.child_creates.wrapping_add(1);
        parent.stat.pzxid = ctx.zxid;
        let parent_path = parent_path.to_owned();
        self.link(&path, node);
        fx.undo(|| Undo::Created { path: path.clone(), parent_creates, parent_pzxid });
        self.account(&path, 1, bytes, fx);
        if let Some(subtree) = quota::subtree_of_stats(&path) {
            // A new quota: its usage is what the subtree holds now (whatever the client wrote).
            let usage = self.usage_of(subtree).render().into_bytes();
            self.set_in_place(&path, Some(usage));
        }
        fx.event(&path, EventType::NodeCreated);
        fx.event(&parent_path, EventType::NodeChildrenChanged);
        Ok(OpResult::Created { path, stat })
    }

    fn delete(&mut self, ctx: &Ctx<'_>, path: &str, version: i32, fx: &mut Effects<'_>) -> Result<OpResult, ErrorCode> {
        self.require_session(ctx)?;
        if path.contains('\0') || path::is_special(path) {
            return Err(ErrorCode::BadArguments);
        }
        let (parent_path, _) = path::split_parent(path).ok_or(ErrorCode::BadArguments)?;
        let parent = self.nodes.get(parent_path).ok_or(ErrorCode::NoNode)?;
        if !acl_allows(&parent.acl, perms::DELETE, ctx.auth) {
            return Err(ErrorCode::NoAuth);
        }
        let node = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        next_version(node.stat.version, version)?;
        if !node.children.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        self.delete_node(path, ctx.zxid, fx);
        Ok(OpResult::Deleted)
    }

    fn set_data(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
        fx: &mut Effects<'_>,
    ) -> Result<OpResult, ErrorCode> {
        self.require_session(ctx)?;
        validate_path(path)?;
        let node = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        if !acl_allows(&node.acl, perms::WRITE, ctx.auth) {
            return Err(ErrorCode::NoAuth);
        }
        // As ZooKeeper: the quota before the version.
        let bytes = data.map_or(0, <[u8]>::len) as i64 - node.data().len() as i64;
        self.check_quota(path, 0, bytes)?;
        let node = self.nodes.get_mut(path).ok_or(ErrorCode::NoNode)?;
        let new_version = next_version(node.stat.version, version)?;
        let old_data = node.set_data(data.map(<[u8]>::to_vec));
        let (old_version, old_mzxid, old_mtime) = (node.stat.version, node.stat.mzxid, node.stat.mtime);
        node.stat.version = new_version;
        node.stat.mzxid = ctx.zxid;
        node.stat.mtime = ctx.time_ms;
        let stat = node.stat;
        let (old_len, new_len) = (old_data.as_ref().map_or(0, Vec::len), node.data().len());
        self.data_size = self.data_size.saturating_sub(old_len as u64) + new_len as u64;
        fx.undo(|| Undo::DataSet {
            path: path.to_owned(),
            data: old_data,
            version: old_version,
            mzxid: old_mzxid,
            mtime: old_mtime,
        });
        self.account(path, 0, bytes, fx);
        fx.event(path, EventType::NodeDataChanged);
        Ok(OpResult::DataSet { stat })
    }

    fn set_acl(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        acl: &[Acl],
        version: i32,
        fx: &mut Effects<'_>,
    ) -> Result<OpResult, ErrorCode> {
        self.require_session(ctx)?;
        validate_path(path)?;
        let acl = acl::fixup_acl(acl, ctx.auth)?;
        let acl = self.acls.intern(&acl);
        let node = self.nodes.get_mut(path).ok_or(ErrorCode::NoNode)?;
        if !acl_allows(&node.acl, perms::ADMIN, ctx.auth) {
            return Err(ErrorCode::NoAuth);
        }
        let new_aversion = next_version(node.stat.aversion, version)?;
        let old_acl = std::mem::replace(&mut node.acl, acl);
        let old_aversion = std::mem::replace(&mut node.stat.aversion, new_aversion);
        let stat = node.stat;
        fx.undo(|| Undo::AclSet { path: path.to_owned(), acl: old_acl, aversion: old_aversion });
        Ok(OpResult::AclSet { stat })
    }

    fn check(&self, ctx: &Ctx<'_>, path: &str, version: i32) -> Result<OpResult, ErrorCode> {
        self.require_session(ctx)?;
        validate_path(path)?;
        let node = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        if !acl_allows(&node.acl, perms::READ, ctx.auth) {
            return Err(ErrorCode::NoAuth);
        }
        next_version(node.stat.version, version)?;
        Ok(OpResult::Checked)
    }

    /// The write's session exists (else `SessionExpired`) and the server that submitted the
    /// write owns it (else `SessionMoved`: the write was sent before the session moved).
    fn require_session(&self, ctx: &Ctx<'_>) -> Result<(), ErrorCode> {
        match self.sessions.get(&ctx.session_id) {
            None => Err(ErrorCode::SessionExpired),
            Some(session) if session.owner != 0 && ctx.from != Some(session.owner) => Err(ErrorCode::SessionMoved),
            Some(_) => Ok(()),
        }
    }

    fn reap(&mut self, candidates: &[ReapCandidate], zxid: i64, now_ms: i64, events: &mut Vec<WatchEvent>) -> usize {
        let mut fx = Effects { events, undo: None };
        let mut reaped = 0;
        for candidate in candidates {
            let eligible = self.nodes.get(&candidate.path).is_some_and(|node| reapable(node, candidate.kind, now_ms));
            if eligible {
                self.delete_node(&candidate.path, zxid, &mut fx);
                reaped += 1;
            }
        }
        reaped
    }

    /// Deletes an existing, childless node: unlinks it, bumps the parent's pzxid (not its
    /// create counter, as in ZooKeeper) and records the events.
    fn delete_node(&mut self, path: &str, zxid: i64, fx: &mut Effects<'_>) {
        let Some((parent_path, _)) = path::split_parent(path) else {
            return;
        };
        let Some(node) = self.unlink(path) else {
            return;
        };
        let bytes = node.data().len() as i64;
        let mut parent_pzxid = 0;
        if let Some(parent) = self.nodes.get_mut(parent_path) {
            parent_pzxid = parent.stat.pzxid;
            parent.stat.pzxid = parent.stat.pzxid.max(zxid);
        }
        fx.undo(|| Undo::Deleted { path: path.to_owned(), node, parent_pzxid });
        self.account(path, -1, -bytes, fx);
        fx.event(path, EventType::NodeDeleted);
        fx.event(parent_path, EventType::NodeChildrenChanged);
    }

    /// The deepest quota over `path` that has both its nodes: the stats node's path, the
    /// limits and the usage (see `quota`). Cheap when there are no quotas.
    fn quota_over(&self, path: &str) -> Option<(String, StatsTrack, StatsTrack)> {
        if self.nodes.get(QUOTA).is_none_or(|dir| dir.children.is_empty()) {
            return None;
        }
        for subtree in quota::quota_candidates(path) {
            let dir = quota::quota_dir(subtree);
            if let Some(limits) = self.nodes.get(&format!("{dir}/{}", quota::LIMITS)) {
                // Limits without a stats node count nothing and refuse nothing, as in ZooKeeper.
                let stats_path = format!("{dir}/{}", quota::STATS);
                let usage = StatsTrack::parse(self.nodes.get(&stats_path)?.data());
                return Some((stats_path, StatsTrack::parse(limits.data()), usage));
            }
        }
        None
    }

    /// `QuotaExceeded` when adding `count` znodes and `bytes` bytes at `path` passes a hard
    /// limit of its quota.
    fn check_quota(&self, path: &str, count: i64, bytes: i64) -> Result<(), ErrorCode> {
        match self.quota_over(path) {
            Some((_, limits, usage)) if quota::exceeds(&limits, &usage, count, bytes) => Err(ErrorCode::QuotaExceeded),
            _ => Ok(()),
        }
    }

    /// Records `count` znodes and `bytes` bytes more (or fewer) at `path` in its quota's usage.
    fn account(&mut self, path: &str, count: i64, bytes: i64, fx: &mut Effects<'_>) {
        let Some((stats_path, _, mut usage)) = self.quota_over(path) else { return };
        usage.add(count, bytes);
        let old = self.set_in_place(&stats_path, Some(usage.render().into_bytes()));
        fx.undo(|| Undo::StatsSet { path: stats_path, data: old });
    }

    /// The usage of the subtree at `root`: its znodes (itself included) and their data bytes.
    fn usage_of(&self, root: &str) -> StatsTrack {
        let (mut count, mut bytes) = (0i64, 0i64);
        for path in self.subtree(root) {
            count += 1;
            bytes += self.nodes.get(path).map_or(0, |n| n.data().len() as i64);
        }
        StatsTrack::usage(count, bytes)
    }

    /// Replaces a node's data without a version, zxid or event (a quota's usage); the old data.
    fn set_in_place(&mut self, path: &str, data: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let node = self.nodes.get_mut(path)?;
        let new_len = data.as_ref().map_or(0, Vec::len);
        let old = node.set_data(data);
        self.data_size = self.data_size.saturating_sub(old.as_ref().map_or(0, Vec::len) as u64) + new_len as u64;
        old
    }

    /// Inserts a node whose parent exists: the parent's child set, the indexes and the size.
    /// Parent Stat is the caller's business.
    fn link(&mut self, path: &str, node: Znode) {
        let Some((parent_path, name)) = path::split_parent(path) else {
            return;
        };
        let Some(parent) = self.nodes.get_mut(parent_path) else {
            return;
        };
        parent.children.insert(name.to_owned());
        parent.sync_child_stat();
        match node.kind {
            NodeKind::Persistent => {}
            NodeKind::Ephemeral { owner } => {
                if let Some(session) = self.sessions.get_mut(&owner) {
                    session.ephemerals.insert(path.to_owned());
                }
            }
            NodeKind::Container => {
                self.containers.insert(path.to_owned());
            }
            NodeKind::Ttl { .. } => {
                self.ttls.insert(path.to_owned());
            }
        }
        self.data_size += node_size(path, node.data());
        self.nodes.insert(path.to_owned(), node);
    }

    /// The inverse of [`DataTree::link`].
    fn unlink(&mut self, path: &str) -> Option<Znode> {
        let node = self.nodes.remove(path)?;
        if let Some((parent_path, name)) = path::split_parent(path) {
            if let Some(parent) = self.nodes.get_mut(parent_path) {
                parent.children.remove(name);
                parent.sync_child_stat();
            }
        }
        match node.kind {
            NodeKind::Persistent => {}
            NodeKind::Ephemeral { owner } => {
                if let Some(session) = self.sessions.get_mut(&owner) {
                    session.ephemerals.remove(path);
                }
            }
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl { .. } => {
                self.ttls.remove(path);
            }
        }
        self.data_size = self.data_size.saturating_sub(node_size(path, node.data()));
        Some(node)
    }

    /// Takes back a failed multi's changes, newest first.
    fn rollback(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Created { path, parent_creates, parent_pzxid } => {
                    self.unlink(&path);
                    if let Some(parent) = path::split_parent(&path).and_then(|(p, _)| self.nodes.get_mut(p)) {
                        parent.child_creates = parent_creates;
                        parent.stat.pzxid = parent_pzxid;
                        parent.sync_child_stat();
                    }
                }
                Undo::Deleted { path, node, parent_pzxid } => {
                    self.link(&path, node);
                    if let Some(parent) = path::split_parent(&path).and_then(|(p, _)| self.nodes.get_mut(p)) {
                        parent.stat.pzxid = parent_pzxid;
                    }
                }
                Undo::DataSet { path, data, version, mzxid, mtime } => {
                    if let Some(node) = self.nodes.get_mut(&path) {
                        let (new_len, old_len) = (node.data().len(), data.as_ref().map_or(0, Vec::len));
                        self.data_size = self.data_size.saturating_sub(new_len as u64) + old_len as u64;
                        node.set_data(data);
                        node.stat.version = version;
                        node.stat.mzxid = mzxid;
                        node.stat.mtime = mtime;
                    }
                }
                Undo::AclSet { path, acl, aversion } => {
                    if let Some(node) = self.nodes.get_mut(&path) {
                        node.acl = acl;
                        node.stat.aversion = aversion;
                    }
                }
                Undo::StatsSet { path, data } => {
                    self.set_in_place(&path, data);
                }
            }
        }
    }

    // ---- reads ----

    /// The znode at `path`.
    pub fn get(&self, path: &str) -> Option<&Znode> {
        self.nodes.get(path)
    }

    /// `root` (if it exists) and every znode under it, in path order.
    pub fn subtree<'a>(&'a self, root: &str) -> impl Iterator<Item = &'a str> + 'a {
        // Descendants of `/a` sort between `/a/` and `/a0` ('0' follows '/').
        let (below, end) =
            if root == ROOT { (String::from(ROOT), None) } else { (format!("{root}/"), Some(format!("{root}0"))) };
        let this = (root != ROOT).then(|| self.nodes.get_key_value(root).map(|(k, _)| k.as_str())).flatten();
        let rest = match end {
            Some(end) => self.nodes.range(below..end),
            None => self.nodes.range(below..),
        };
        this.into_iter().chain(rest.map(|(k, _)| k.as_str()))
    }

    /// The Stat of the znode at `path`.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.nodes.get(path).map(|n| n.stat)
    }

    /// The children's names, sorted.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.nodes.get(path).map(|n| n.children.iter().cloned().collect())
    }

    /// Whether `auth` holds one of the bits of `perm` on `path`: `NoNode` when it does not exist,
    /// `NoAuth` when it is refused.
    pub fn check_acl(&self, path: &str, perm: i32, auth: &[Id]) -> Result<(), ErrorCode> {
        let node = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        if acl_allows(&node.acl, perm, auth) {
            Ok(())
        } else {
            Err(ErrorCode::NoAuth)
        }
    }

    /// The session's ephemerals whose path starts with `prefix` (plain string prefix, as
    /// ZooKeeper's getEphemerals; an empty or `/` prefix means all), sorted.
    pub fn ephemerals(&self, session_id: i64, prefix: &str) -> Vec<String> {
        let Some(session) = self.sessions.get(&session_id) else {
            return Vec::new();
        };
        let prefix = prefix.trim();
        let all = prefix.is_empty() || prefix == ROOT;
        session.ephemerals.iter().filter(|p| all || p.starts_with(prefix)).cloned().collect()
    }

    /// How many descendants `path` has (not counting itself); for `/` that includes the
    /// `/zookeeper` subtree, as in ZooKeeper.
    pub fn all_children_number(&self, path: &str) -> Option<i32> {
        self.nodes.get(path)?;
        let count = if path == ROOT {
            self.nodes.len() - 1
        } else {
            let prefix = format!("{path}/");
            self.nodes.range(prefix.clone()..).take_while(|(p, _)| p.starts_with(&prefix)).count()
        };
        Some(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// A registered session.
    pub fn session(&self, session_id: i64) -> Option<&SessionInfo> {
        self.sessions.get(&session_id)
    }

    /// Every registered session, by id.
    pub fn sessions(&self) -> impl ExactSizeIterator<Item = (i64, &SessionInfo)> + '_ {
        self.sessions.iter().map(|(id, s)| (*id, s))
    }

    /// Number of znodes, the built-in ones included (4 in a fresh tree; ZooKeeper's
    /// `zk_znode_count` says 5 because it also counts its `""` alias of the root).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Sum of path lengths and data lengths over all znodes (`zk_approximate_data_size`).
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// Number of ephemeral znodes.
    pub fn ephemeral_count(&self) -> usize {
        self.sessions.values().map(|s| s.ephemerals.len()).sum()
    }

    /// The zxid of the last applied txn (0 for a fresh tree).
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The nodes a leader may propose to reap at `now_ms`: containers that have had a child
    /// (persisted cversion > 0) and have none now, and childless TTL nodes whose
    /// `mtime + ttl < now_ms`. Scans only the container and TTL indexes.
    pub fn reap_candidates(&self, now_ms: i64) -> Vec<ReapCandidate> {
        let scan = |paths: &OrdSet<String>, kind: ReapKind| -> Vec<ReapCandidate> {
            paths
                .iter()
                .filter(|p| self.nodes.get(*p).is_some_and(|n| reapable(n, kind, now_ms)))
                .map(|p| ReapCandidate { path: p.clone(), kind })
                .collect()
        };
        let mut candidates = scan(&self.containers, ReapKind::Container);
        candidates.extend(scan(&self.ttls, ReapKind::Ttl));
        candidates
    }
}

/// ZooKeeper's `ContainerManager` rules.
fn reapable(node: &Znode, kind: ReapKind, now_ms: i64) -> bool {
    if !node.children.is_empty() {
        return false;
    }
    match (kind, node.kind) {
        (ReapKind::Container, NodeKind::Container) => node.child_creates > 0,
        (ReapKind::Ttl, NodeKind::Ttl { ttl_ms }) => {
            i128::from(now_ms) - i128::from(node.stat.mtime) > i128::from(ttl_ms)
        }
        _ => false,
    }
}

/// `PrepRequestProcessor.checkAndIncVersion`: `BadVersion` unless `expected` is -1 or the
/// current version; the next version skips -1 (ZOOKEEPER-4743) so it never reads as "any".
fn next_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}

/// Stat's dataLength: 0 for null data, as ZooKeeper's `DataNode.copyStat` says.
fn data_len(data: Option<&[u8]>) -> i32 {
    len_i32(data.map_or(0, <[u8]>::len))
}

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn node_size(path: &str, data: &[u8]) -> u64 {
    (path.len() + data.len()) as u64
}
