//! Behaviour of [`DataTree::apply`] and the read API against ZooKeeper 3.9's rules.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::proto::{perms, Acl, CreateMode, ErrorCode, EventType, Id, Stat};

const S: i64 = 0x1000;
const S2: i64 = 0x2000;
const UNKNOWN: i64 = 0x9999;
/// The server the fixture's txns come from: it creates, and so owns, the sessions.
const HERE: Option<u64> = Some(1);

/// A tree with sessions `S` and `S2`, and a clock: each txn gets the next zxid and 10 ms more.
struct Fixture {
    tree: DataTree,
    zxid: i64,
    time: i64,
}

impl Fixture {
    fn new() -> Self {
        let mut f = Fixture { tree: DataTree::new(), zxid: 0, time: 1_000_000 };
        for id in [S, S2] {
            let applied = f.run(TxnKind::CreateSession { session_id: id, password: vec![7; 16], timeout_ms: 30_000 });
            assert_eq!(applied.result, TxnResult::SessionCreated);
        }
        f
    }

    fn run(&mut self, kind: TxnKind) -> Applied {
        self.run_from(HERE, kind)
    }

    fn run_from(&mut self, from: Option<u64>, kind: TxnKind) -> Applied {
        self.zxid += 1;
        self.time += 10;
        let applied = self.tree.apply(self.zxid, from, &Txn { time_ms: self.time, kind });
        assert_eq!(self.tree.last_zxid(), self.zxid);
        assert_consistent(&self.tree);
        applied
    }

    fn write_as(&mut self, session_id: i64, auth: &[Id], op: WriteOp) -> Result<OpResult, ErrorCode> {
        match self.run(TxnKind::Write { session_id, auth: auth.to_vec(), op }).result {
            TxnResult::Write(result) => result,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn write(&mut self, op: WriteOp) -> Result<OpResult, ErrorCode> {
        self.write_as(S, &[], op)
    }

    fn multi(&mut self, ops: Vec<WriteOp>) -> (Result<Vec<OpResult>, Vec<ErrorCode>>, Vec<WatchEvent>) {
        let applied = self.run(TxnKind::Multi { session_id: S, auth: vec![], ops });
        match applied.result {
            TxnResult::Multi(result) => (result, applied.events),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Creates a node and returns its path.
    fn create(&mut self, path: &str, mode: CreateMode) -> String {
        match self.write(create(path, mode)) {
            Ok(OpResult::Created { path, .. }) => path,
            other => panic!("create {path}: {other:?}"),
        }
    }

    fn stat(&self, path: &str) -> Stat {
        self.tree.stat(path).unwrap_or_else(|| panic!("no node {path}"))
    }

    /// Asserts a write fails with `code` and changes nothing but `last_zxid`.
    fn fails(&mut self, op: WriteOp, code: ErrorCode) {
        self.fails_as(S, &[], op, code);
    }

    fn fails_as(&mut self, session_id: i64, auth: &[Id], op: WriteOp, code: ErrorCode) {
        let mut before = self.tree.clone();
        let applied = self.run(TxnKind::Write { session_id, auth: auth.to_vec(), op: op.clone() });
        assert_eq!(applied.result, TxnResult::Write(Err(code)), "{op:?}");
        assert!(applied.events.is_empty());
        before.last_zxid = self.zxid;
        assert_eq!(self.tree, before, "failed write changed the tree: {op:?}");
    }
}

fn create(path: &str, mode: CreateMode) -> WriteOp {
    create_with(path, b"", Acl::open_unsafe(), mode)
}

fn create_with(path: &str, data: &[u8], acl: Vec<Acl>, mode: CreateMode) -> WriteOp {
    WriteOp::Create { path: path.into(), data: Some(data.to_vec()), acl, mode, ttl_ms: NO_TTL }
}

fn create_ttl(path: &str, mode: CreateMode, ttl_ms: i64) -> WriteOp {
    WriteOp::Create { path: path.into(), data: Some(vec![]), acl: Acl::open_unsafe(), mode, ttl_ms }
}

fn delete(path: &str, version: i32) -> WriteOp {
    WriteOp::Delete { path: path.into(), version }
}

fn set_data(path: &str, data: &[u8], version: i32) -> WriteOp {
    WriteOp::SetData { path: path.into(), data: Some(data.to_vec()), version }
}

fn set_acl(path: &str, acl: Vec<Acl>, version: i32) -> WriteOp {
    WriteOp::SetAcl { path: path.into(), acl, version }
}

fn check(path: &str, version: i32) -> WriteOp {
    WriteOp::Check { path: path.into(), version }
}

fn ev(path: &str, event: EventType) -> WatchEvent {
    WatchEvent { path: path.into(), event }
}

fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
    Acl { perms, id: Id::new(scheme, id) }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Every index and derived Stat field agrees with the nodes themselves.
fn assert_consistent(tree: &DataTree) {
    let mut size = 0;
    let mut containers = BTreeSet::new();
    let mut ttls = BTreeSet::new();
    let mut ephemerals: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (path, node) in &tree.nodes {
        size += (path.len() + node.data().len()) as u64;
        assert_eq!(node.stat.num_children as usize, node.children.len(), "{path}");
        assert_eq!(node.stat.data_length as usize, node.data().len(), "{path}");
        let expected_cversion = node.child_creates.wrapping_mul(2).wrapping_sub(node.children.len() as i32);
        assert_eq!(node.stat.cversion, expected_cversion, "{path}");
        for child in &node.children {
            let child_path = if path == "/" { format!("/{child}") } else { format!("{path}/{child}") };
            assert!(tree.nodes.contains_key(&child_path), "{child_path} listed but missing");
        }
        if path != "/" {
            let (parent, name) = path::split_parent(path).expect("parent");
            assert!(tree.nodes[parent].children.contains(name), "{path} not linked");
        }
        match node.kind {
            NodeKind::Persistent => {}
            NodeKind::Ephemeral { owner } => {
                assert_eq!(node.stat.ephemeral_owner, owner);
                ephemerals.entry(owner).or_default().insert(path.clone());
            }
            NodeKind::Container => {
                assert_eq!(node.stat.ephemeral_owner, 0);
                containers.insert(path.clone());
            }
            NodeKind::Ttl { .. } => {
                assert_eq!(node.stat.ephemeral_owner, 0);
                ttls.insert(path.clone());
            }
        }
    }
    assert_eq!(tree.data_size, size);
    assert_eq!(tree.containers, containers.into());
    assert_eq!(tree.ttls, ttls.into());
    for (id, session) in &tree.sessions {
        assert_eq!(session.ephemerals, ephemerals.remove(id).unwrap_or_default(), "session {id}");
    }
    assert!(ephemerals.is_empty(), "ephemerals of unknown sessions: {ephemerals:?}");
    // Every quota's usage is what its subtree holds.
    for (path, node) in &tree.nodes {
        let Some(subtree) = quota::subtree_of_stats(path) else { continue };
        let limits = format!("{}/{}", quota::quota_dir(subtree), quota::LIMITS);
        if tree.nodes.contains_key(&limits) {
            assert_eq!(StatsTrack::parse(node.data()), tree.usage_of(subtree), "usage of {subtree}");
        }
    }
}

// ---- the fresh tree ----

#[test]
fn fresh_tree_has_zookeepers_builtin_nodes() {
    let tree = DataTree::new();
    assert_consistent(&tree);
    assert_eq!(tree.node_count(), 4);
    assert_eq!(tree.last_zxid(), 0);
    assert_eq!(tree.children("/"), Some(names(&["zookeeper"])));
    assert_eq!(tree.children("/zookeeper"), Some(names(&["config", "quota"])));
    // ZooKeeper reports cversion = creates * 2 - numChildren, and nothing was "created".
    assert_eq!(tree.stat("/"), Some(Stat { cversion: -1, num_children: 1, ..Stat::default() }));
    assert_eq!(tree.stat("/zookeeper"), Some(Stat { cversion: -2, num_children: 2, ..Stat::default() }));
    assert_eq!(tree.stat("/zookeeper/quota"), Some(Stat::default()));
    assert_eq!(tree.stat("/zookeeper/config"), Some(Stat { aversion: -1, ..Stat::default() }));
    let config = tree.get("/zookeeper/config").expect("config");
    assert_eq!(config.acl(), [acl(perms::READ, "world", "anyone")]);
    assert_eq!(tree.get("/").expect("root").acl(), Acl::open_unsafe());
    assert_eq!(tree.all_children_number("/"), Some(3));
    assert_eq!(tree.all_children_number("/zookeeper"), Some(2));
    assert_eq!(tree.approximate_data_size(), (1 + 10 + 16 + 17) as u64);
    assert_eq!(tree.sessions().count(), 0);
    assert!(tree.reap_candidates(i64::MAX).is_empty());
}

// ---- create ----

#[test]
fn create_sets_stat_and_updates_parent() {
    let mut f = Fixture::new();
    let before_root = f.stat("/");
    let applied = f.run(TxnKind::Write {
        session_id: S,
        auth: vec![],
        op: create_with("/a", b"hello", Acl::open_unsafe(), CreateMode::Persistent),
    });
    let (zxid, time) = (f.zxid, f.time);
    let stat = Stat {
        czxid: zxid,
        mzxid: zxid,
        ctime: time,
        mtime: time,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 5,
        num_children: 0,
        pzxid: zxid,
    };
    assert_eq!(applied.result, TxnResult::Write(Ok(OpResult::Created { path: "/a".into(), stat })));
    assert_eq!(applied.events, vec![ev("/a", EventType::NodeCreated), ev("/", EventType::NodeChildrenChanged)]);
    assert_eq!(f.stat("/a"), stat);
    assert_eq!(f.tree.get("/a").expect("a").data(), b"hello");
    assert_eq!(f.tree.get("/a").expect("a").kind(), NodeKind::Persistent);
    let root = f.stat("/");
    assert_eq!(root.cversion, before_root.cversion + 1);
    assert_eq!(root.num_children, 2);
    assert_eq!(root.pzxid, zxid);
    assert_eq!(root.mzxid, before_root.mzxid);

    f.create("/a/b", CreateMode::Persistent);
    let a = f.stat("/a");
    assert_eq!((a.cversion, a.num_children, a.pzxid, a.mzxid), (1, 1, f.zxid, zxid));
    assert_eq!(f.tree.children("/a"), Some(names(&["b"])));
    assert_eq!(f.tree.node_count(), 6);
}

#[test]
fn create_modes_set_owner_and_kind() {
    let mut f = Fixture::new();
    f.create("/e", CreateMode::Ephemeral);
    assert_eq!(f.stat("/e").ephemeral_owner, S);
    assert_eq!(f.tree.get("/e").expect("e").ephemeral_owner(), Some(S));
    f.create("/c", CreateMode::Container);
    assert_eq!(f.stat("/c").ephemeral_owner, 0);
    assert_eq!(f.tree.get("/c").expect("c").kind(), NodeKind::Container);
    f.write(create_ttl("/t", CreateMode::PersistentWithTtl, 5000)).expect("ttl");
    assert_eq!(f.stat("/t").ephemeral_owner, 0);
    assert_eq!(f.tree.get("/t").expect("t").ttl_ms(), Some(5000));
    assert_eq!(f.tree.get("/t").expect("t").kind(), NodeKind::Ttl { ttl_ms: 5000 });
    assert_eq!(f.tree.ephemeral_count(), 1);
    assert_eq!(f.tree.session(S).expect("S").ephemerals, BTreeSet::from(["/e".to_owned()]));
    // Containers and TTL nodes may have children; ephemerals may not.
    f.create("/c/x", CreateMode::Persistent);
    f.create("/t/x", CreateMode::Ephemeral);
    f.fails(create("/e/x", CreateMode::Persistent), ErrorCode::NoChildrenForEphemerals);
    f.fails(create("/e/x", CreateMode::PersistentSequential), ErrorCode::NoChildrenForEphemerals);
}

#[test]
fn create_errors() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    f.fails(create("/missing/b", CreateMode::Persistent), ErrorCode::NoNode);
    f.fails(create("/a", CreateMode::Persistent), ErrorCode::NodeExists);
    f.fails(create("/a", CreateMode::Ephemeral), ErrorCode::NodeExists);
    f.fails(create("/", CreateMode::Persistent), ErrorCode::NodeExists);
    f.fails(create("/zookeeper", CreateMode::Persistent), ErrorCode::NodeExists);
    f.fails(create_with("/b", b"", vec![], CreateMode::Persistent), ErrorCode::InvalidAcl);
    f.fails(
        create_with("/b", b"", vec![acl(perms::ALL, "world", "everyone")], CreateMode::Persistent),
        ErrorCode::InvalidAcl,
    );
    // Ephemerals need a live session; so does every other write (ZooKeeper's checkSession).
    f.fails_as(UNKNOWN, &[], create("/b", CreateMode::Ephemeral), ErrorCode::SessionExpired);
    f.fails_as(UNKNOWN, &[], create("/b", CreateMode::Persistent), ErrorCode::SessionExpired);
    // The ACL of the parent governs.
    f.write(create_with(
        "/locked",
        b"",
        vec![acl(perms::ALL & !perms::CREATE, "world", "anyone")],
        CreateMode::Persistent,
    ))
    .expect("locked");
    f.fails(create("/locked/x", CreateMode::Persistent), ErrorCode::NoAuth);
}

#[test]
fn create_validates_paths_in_zookeepers_order() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    for bad in ["", "a", ".", "/.", "/..", "/a/.", "/a/..", "/a\0b", "/\u{1}", "/a/\u{f000}", "/a/😀"] {
        f.fails(create(bad, CreateMode::Persistent), ErrorCode::BadArguments);
    }
    // ZooKeeper looks the parent up before validating the whole path, so a bad path under a
    // missing parent is NoNode (the parent of "/a//b" is "/a/").
    for missing_parent in ["/a//b", "/x/./b", "/x/../b", "/x/", "a/b"] {
        f.fails(create(missing_parent, CreateMode::Persistent), ErrorCode::NoNode);
    }
    f.fails(create("/a/", CreateMode::Persistent), ErrorCode::BadArguments);
    // Sequential names are validated with the suffix appended.
    assert_eq!(f.create("/a/", CreateMode::PersistentSequential), "/a/0000000000");
    assert_eq!(f.create("/a/.", CreateMode::PersistentSequential), "/a/.0000000001");
    assert_eq!(f.create("/", CreateMode::PersistentSequential), "/0000000001");
}

#[test]
fn ttl_rules() {
    let mut f = Fixture::new();
    for mode in [CreateMode::PersistentWithTtl, CreateMode::PersistentSequentialWithTtl] {
        for bad in [0, -1, MAX_TTL_MS + 1, i64::MIN, i64::MAX] {
            f.fails(create_ttl("/t", mode, bad), ErrorCode::BadArguments);
        }
    }
    f.write(create_ttl("/max", CreateMode::PersistentWithTtl, MAX_TTL_MS)).expect("max ttl");
    let seq = f.write(create_ttl("/s-", CreateMode::PersistentSequentialWithTtl, 1)).expect("seq ttl");
    assert!(matches!(seq, OpResult::Created { ref path, .. } if path.starts_with("/s-")));
    // A TTL with any other mode is refused, as ZooKeeper's `validateTTL` does for ttl >= 0.
    for mode in [CreateMode::Persistent, CreateMode::Ephemeral, CreateMode::Container, CreateMode::PersistentSequential]
    {
        f.fails(create_ttl("/x", mode, 0), ErrorCode::BadArguments);
        f.fails(create_ttl("/x", mode, 1000), ErrorCode::BadArguments);
    }
    f.write(create_ttl("/neg", CreateMode::Persistent, -5)).expect("negative ttl means none");
    // The TTL is checked before the session.
    f.fails_as(UNKNOWN, &[], create_ttl("/x", CreateMode::PersistentWithTtl, 0), ErrorCode::BadArguments);
}

#[test]
fn sequential_numbering_counts_creates_across_deletes() {
    let mut f = Fixture::new();
    f.create("/q", CreateMode::Persistent);
    assert_eq!(f.create("/q/n-", CreateMode::PersistentSequential), "/q/n-0000000000");
    assert_eq!(f.create("/q/n-", CreateMode::EphemeralSequential), "/q/n-0000000001");
    f.write(delete("/q/n-0000000000", -1)).expect("delete");
    assert_eq!(f.create("/q/n-", CreateMode::PersistentSequential), "/q/n-0000000002");
    // Any create consumes a number; a failed one does not.
    f.create("/q/plain", CreateMode::Persistent);
    f.fails(create("/q/plain", CreateMode::Persistent), ErrorCode::NodeExists);
    assert_eq!(f.create("/q/other", CreateMode::PersistentSequential), "/q/other0000000004");
    // cversion as clients see it: 5 creates + 1 delete.
    let q = f.stat("/q");
    assert_eq!((q.cversion, q.num_children), (6, 4));
    // An existing name is NodeExists, without consuming the number.
    f.create("/r", CreateMode::Persistent);
    f.create("/r/x0000000001", CreateMode::Persistent);
    f.fails(create("/r/x", CreateMode::PersistentSequential), ErrorCode::NodeExists);
}

#[test]
fn sequential_suffix_formats_like_java() {
    let mut f = Fixture::new();
    f.create("/q", CreateMode::Persistent);
    f.tree.nodes.get_mut("/q").expect("q").child_creates = i32::MAX;
    assert_eq!(f.create("/q/a", CreateMode::PersistentSequential), "/q/a2147483647");
    assert_eq!(f.create("/q/a", CreateMode::PersistentSequential), "/q/a-2147483648");
}

// ---- delete ----

#[test]
fn delete_checks_and_updates_parent() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    f.create("/a/b", CreateMode::Persistent);
    f.write(set_data("/a/b", b"x", -1)).expect("set");
    f.fails(delete("/a/b", 0), ErrorCode::BadVersion);
    f.fails(delete("/a/missing", -1), ErrorCode::NoNode);
    f.fails(delete("/missing/x", -1), ErrorCode::NoNode);
    // The version is checked before emptiness.
    f.fails(delete("/a", 7), ErrorCode::BadVersion);
    f.fails(delete("/a", -1), ErrorCode::NotEmpty);
    f.fails(delete("/a", 0), ErrorCode::NotEmpty);
    f.fails_as(UNKNOWN, &[], delete("/a/b", -1), ErrorCode::SessionExpired);

    let before = f.stat("/a");
    let applied = f.run(TxnKind::Write { session_id: S, auth: vec![], op: delete("/a/b", 1) });
    assert_eq!(applied.result, TxnResult::Write(Ok(OpResult::Deleted)));
    assert_eq!(applied.events, vec![ev("/a/b", EventType::NodeDeleted), ev("/a", EventType::NodeChildrenChanged)]);
    assert_eq!(f.tree.get("/a/b"), None);
    let after = f.stat("/a");
    assert_eq!(after.cversion, before.cversion + 1);
    assert_eq!(after.num_children, 0);
    assert_eq!(after.pzxid, f.zxid);
    assert_eq!(after.mzxid, before.mzxid);
    f.write(delete("/a", 0)).expect("delete /a");
    assert_eq!(f.tree.node_count(), 4);
}

#[test]
fn builtin_nodes_cannot_be_deleted() {
    let mut f = Fixture::new();
    for special in ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        f.fails(delete(special, -1), ErrorCode::BadArguments);
    }
    f.fails(delete("", -1), ErrorCode::BadArguments);
    f.fails(delete("nothing", -1), ErrorCode::BadArguments);
    f.fails(delete("/a\0", -1), ErrorCode::BadArguments);
    // Below /zookeeper/quota clients may create and delete, as in ZooKeeper.
    f.create("/zookeeper/quota/app", CreateMode::Persistent);
    f.write(delete("/zookeeper/quota/app", -1)).expect("quota child");
    f.write(set_data("/zookeeper", b"x", -1)).expect("/zookeeper is open");
    // /zookeeper/config is world-readable only.
    f.fails(set_data("/zookeeper/config", b"x", -1), ErrorCode::NoAuth);
    f.fails(set_acl("/zookeeper/config", Acl::open_unsafe(), -1), ErrorCode::NoAuth);
    f.fails(create("/zookeeper/config/x", CreateMode::Persistent), ErrorCode::NoAuth);
    f.write(check("/zookeeper/config", 0)).expect("readable");
    let root = [Id::new("super", "")];
    f.write_as(S, &root, set_data("/zookeeper/config", b"x", -1)).expect("super");
}

#[test]
fn delete_needs_delete_on_the_parent() {
    let mut f = Fixture::new();
    f.write(create_with("/p", b"", vec![acl(perms::ALL & !perms::DELETE, "world", "anyone")], CreateMode::Persistent))
        .expect("p");
    f.create("/p/c", CreateMode::Persistent);
    f.fails(delete("/p/c", -1), ErrorCode::NoAuth);
    // Even for a missing child: the parent's ACL is checked first.
    f.fails(delete("/p/missing", -1), ErrorCode::NoAuth);
    // The node's own ACL does not matter.
    f.write(create_with("/q", b"", Acl::open_unsafe(), CreateMode::Persistent)).expect("q");
    f.write(create_with("/q/c", b"", vec![acl(perms::READ, "world", "anyone")], CreateMode::Persistent)).expect("q/c");
    f.write(delete("/q/c", -1)).expect("delete read-only child");
}

// ---- setData, setACL, check ----

#[test]
fn set_data_bumps_version_and_mtime() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    let created = f.stat("/a");
    let applied = f.run(TxnKind::Write { session_id: S, auth: vec![], op: set_data("/a", b"abc", 0) });
    let stat = f.stat("/a");
    assert_eq!(applied.result, TxnResult::Write(Ok(OpResult::DataSet { stat })));
    assert_eq!(applied.events, vec![ev("/a", EventType::NodeDataChanged)]);
    assert_eq!(stat, Stat { version: 1, mzxid: f.zxid, mtime: f.time, data_length: 3, ..created });
    assert_eq!(f.tree.get("/a").expect("a").data(), b"abc");
    f.fails(set_data("/a", b"x", 0), ErrorCode::BadVersion);
    f.fails(set_data("/missing", b"x", -1), ErrorCode::NoNode);
    f.fails(set_data("/a/", b"x", -1), ErrorCode::BadArguments);
    f.fails(set_data("a", b"x", -1), ErrorCode::BadArguments);
    f.fails_as(UNKNOWN, &[], set_data("/a", b"x", -1), ErrorCode::SessionExpired);
    f.write(set_data("/a", b"", -1)).expect("any version");
    assert_eq!(f.stat("/a").version, 2);
    assert_eq!(f.stat("/a").data_length, 0);
}

#[test]
fn version_skips_minus_one_after_overflow() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    f.tree.nodes.get_mut("/a").expect("a").stat.version = i32::MAX;
    f.write(set_data("/a", b"", i32::MAX)).expect("set");
    assert_eq!(f.stat("/a").version, i32::MIN);
    f.tree.nodes.get_mut("/a").expect("a").stat.version = -2;
    f.write(set_data("/a", b"", -2)).expect("set");
    assert_eq!(f.stat("/a").version, 0, "ZOOKEEPER-4743: never -1");
}

#[test]
fn set_acl_checks_admin_and_aversion() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    let readers = vec![acl(perms::READ | perms::ADMIN, "world", "anyone")];
    let applied = f.run(TxnKind::Write { session_id: S, auth: vec![], op: set_acl("/a", readers.clone(), 0) });
    let stat = f.stat("/a");
    assert_eq!(applied.result, TxnResult::Write(Ok(OpResult::AclSet { stat })));
    assert!(applied.events.is_empty(), "setACL fires no watch");
    assert_eq!(stat.aversion, 1);
    assert_eq!(stat.version, 0);
    assert_eq!(stat.mzxid, stat.czxid, "setACL does not touch mzxid");
    assert_eq!(f.tree.get("/a").expect("a").acl(), readers);
    f.fails(set_acl("/a", Acl::open_unsafe(), 0), ErrorCode::BadVersion);
    f.fails(set_acl("/a", vec![], 1), ErrorCode::InvalidAcl);
    // ACL validation comes before the node lookup.
    f.fails(set_acl("/missing", vec![], -1), ErrorCode::InvalidAcl);
    f.fails(set_acl("/missing", Acl::open_unsafe(), -1), ErrorCode::NoNode);
    f.fails(set_data("/a", b"x", -1), ErrorCode::NoAuth);
    f.write(set_acl("/a", vec![acl(perms::READ, "world", "anyone")], 1)).expect("drop admin");
    f.fails(set_acl("/a", Acl::open_unsafe(), -1), ErrorCode::NoAuth);
}

#[test]
fn check_op() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    assert_eq!(f.write(check("/a", 0)), Ok(OpResult::Checked));
    assert_eq!(f.write(check("/a", -1)), Ok(OpResult::Checked));
    f.fails(check("/a", 1), ErrorCode::BadVersion);
    f.fails(check("/missing", -1), ErrorCode::NoNode);
    f.fails(check("/a/", -1), ErrorCode::BadArguments);
    f.write(set_acl("/a", vec![acl(perms::WRITE, "world", "anyone")], -1)).expect("no read");
    f.fails(check("/a", 0), ErrorCode::NoAuth);
}

// ---- ACLs ----

#[test]
fn digest_acls_and_super() {
    let mut f = Fixture::new();
    let bob = Id::new("digest", digest_id("bob:secret"));
    let eve = Id::new("digest", digest_id("bob:wrong"));
    let only_bob = vec![Acl { perms: perms::ALL, id: bob.clone() }];
    f.write(create_with("/bob", b"", only_bob.clone(), CreateMode::Persistent)).expect("create");
    f.fails_as(S, std::slice::from_ref(&eve), create("/bob/x", CreateMode::Persistent), ErrorCode::NoAuth);
    f.fails(set_data("/bob", b"x", -1), ErrorCode::NoAuth);
    f.write_as(S, &[Id::new("ip", "127.0.0.1"), bob.clone()], create("/bob/x", CreateMode::Persistent)).expect("bob");
    f.write_as(S, &[Id::new("super", "")], set_data("/bob", b"x", -1)).expect("super");
    assert_eq!(f.tree.check_acl("/bob", perms::READ, std::slice::from_ref(&bob)), Ok(()));
    assert_eq!(f.tree.check_acl("/bob", perms::READ, &[eve]), Err(ErrorCode::NoAuth));
    assert_eq!(f.tree.check_acl("/bob", perms::READ, &[]), Err(ErrorCode::NoAuth));
    assert_eq!(f.tree.check_acl("/bob", perms::READ, &[Id::new("super", "")]), Ok(()));
    assert_eq!(f.tree.check_acl("/nope", perms::READ, &[bob]), Err(ErrorCode::NoNode));
}

#[test]
fn auth_scheme_expands_to_the_requesters_digest_ids() {
    let mut f = Fixture::new();
    let bob = Id::new("digest", digest_id("bob:pw"));
    let auth = [Id::new("ip", "10.0.0.1"), bob.clone()];
    let creator_all = vec![acl(perms::ALL, "auth", "")];
    f.write_as(S, &auth, create_with("/mine", b"", creator_all.clone(), CreateMode::Persistent)).expect("create");
    assert_eq!(f.tree.get("/mine").expect("mine").acl(), [Acl { perms: perms::ALL, id: bob.clone() }]);
    // Without an authenticated (digest) id there is nothing to expand to.
    f.fails_as(
        S,
        &[Id::new("ip", "10.0.0.1")],
        create_with("/x", b"", creator_all.clone(), CreateMode::Persistent),
        ErrorCode::InvalidAcl,
    );
    f.fails_as(
        S,
        &[Id::new("super", "")],
        create_with("/x", b"", creator_all.clone(), CreateMode::Persistent),
        ErrorCode::InvalidAcl,
    );
    f.fails(set_acl("/mine", creator_all, -1), ErrorCode::InvalidAcl);
}

#[test]
fn ip_acls_match_cidr_ranges() {
    let mut f = Fixture::new();
    let subnet = vec![acl(perms::ALL, "ip", "10.0.0.0/8"), acl(perms::READ, "ip", "fd00::/8")];
    f.write(create_with("/net", b"", subnet, CreateMode::Persistent)).expect("create");
    let inside = [Id::new("ip", "10.1.2.3")];
    let outside = [Id::new("ip", "192.168.0.1")];
    let v6 = [Id::new("ip", "fd12::1")];
    f.write_as(S, &inside, set_data("/net", b"x", -1)).expect("inside");
    f.fails_as(S, &outside, set_data("/net", b"x", -1), ErrorCode::NoAuth);
    f.fails_as(S, &v6, set_data("/net", b"x", -1), ErrorCode::NoAuth);
    assert_eq!(f.tree.check_acl("/net", perms::READ, &v6), Ok(()));
    assert_eq!(f.tree.check_acl("/net", perms::READ, &outside), Err(ErrorCode::NoAuth));
    f.fails(
        create_with("/bad", b"", vec![acl(perms::ALL, "ip", "10.0.0.0/99")], CreateMode::Persistent),
        ErrorCode::InvalidAcl,
    );
}

// ---- multi ----

#[test]
fn multi_applies_all_ops_with_one_zxid() {
    let mut f = Fixture::new();
    let (result, events) = f.multi(vec![
        create_with("/m", b"d", Acl::open_unsafe(), CreateMode::Persistent),
        create("/m/s-", CreateMode::PersistentSequential),
        create("/m/s-", CreateMode::EphemeralSequential),
        set_data("/m", b"dd", 0),
        check("/m", 1),
        delete("/m/s-0000000000", 0),
        set_acl("/m", Acl::open_unsafe(), 0),
    ]);
    let zxid = f.zxid;
    let results = result.expect("multi succeeds");
    assert_eq!(results.len(), 7);
    assert!(matches!(&results[0], OpResult::Created { path, stat } if path == "/m" && stat.czxid == zxid));
    assert!(matches!(&results[1], OpResult::Created { path, .. } if path == "/m/s-0000000000"));
    assert!(
        matches!(&results[2], OpResult::Created { path, stat } if path == "/m/s-0000000001" && stat.ephemeral_owner == S)
    );
    assert!(matches!(&results[3], OpResult::DataSet { stat } if stat.version == 1 && stat.mzxid == zxid));
    assert_eq!(results[4], OpResult::Checked);
    assert_eq!(results[5], OpResult::Deleted);
    assert!(matches!(&results[6], OpResult::AclSet { stat } if stat.aversion == 1));
    assert_eq!(
        events,
        vec![
            ev("/m", EventType::NodeCreated),
            ev("/", EventType::NodeChildrenChanged),
            ev("/m/s-0000000000", EventType::NodeCreated),
            ev("/m", EventType::NodeChildrenChanged),
            ev("/m/s-0000000001", EventType::NodeCreated),
            ev("/m", EventType::NodeChildrenChanged),
            ev("/m", EventType::NodeDataChanged),
            ev("/m/s-0000000000", EventType::NodeDeleted),
            ev("/m", EventType::NodeChildrenChanged),
        ]
    );
    assert_eq!(f.tree.children("/m"), Some(names(&["s-0000000001"])));
    assert_eq!(f.stat("/m").cversion, 3);
    assert_eq!(f.tree.ephemerals(S, "/"), names(&["/m/s-0000000001"]));
}

#[test]
fn failed_multi_reports_per_op_codes_and_changes_nothing() {
    let mut f = Fixture::new();
    f.create("/p", CreateMode::Persistent);
    f.create("/p/x", CreateMode::Ephemeral);
    f.create("/p/y", CreateMode::Persistent);
    let mut before = f.tree.clone();
    let (result, events) = f.multi(vec![
        create("/p/s-", CreateMode::PersistentSequential),
        create("/p/e", CreateMode::Ephemeral),
        delete("/p/x", -1),
        set_data("/p/y", b"new", -1),
        create("/p/y/child", CreateMode::Container),
        delete("/p/y/child", -1),
        set_acl("/p/y", vec![acl(perms::READ, "world", "anyone")], -1),
        check("/p", 99),
        create("/never", CreateMode::Persistent),
        delete("/p", -1),
    ]);
    use ErrorCode::{BadVersion, Ok as Fine, RuntimeInconsistency as After};
    assert_eq!(result, Err(vec![Fine, Fine, Fine, Fine, Fine, Fine, Fine, BadVersion, After, After]));
    assert!(events.is_empty());
    before.last_zxid = f.zxid;
    assert_eq!(f.tree, before);
    // The sequential counter was restored too.
    assert_eq!(f.create("/p/s-", CreateMode::PersistentSequential), "/p/s-0000000002");
}

#[test]
fn multi_edge_cases() {
    let mut f = Fixture::new();
    assert_eq!(f.multi(vec![]).0, Ok(vec![]));
    let (result, _) = f.multi(vec![create("/a", CreateMode::Persistent), create("/a", CreateMode::Persistent)]);
    assert_eq!(result, Err(vec![ErrorCode::Ok, ErrorCode::NodeExists]));
    assert_eq!(f.tree.get("/a"), None);
    let (result, _) = f.multi(vec![delete("/zookeeper", -1)]);
    assert_eq!(result, Err(vec![ErrorCode::BadArguments]));
    let applied =
        f.run(TxnKind::Multi { session_id: UNKNOWN, auth: vec![], ops: vec![check("/", -1), check("/", -1)] });
    assert_eq!(applied.result, TxnResult::Multi(Err(vec![ErrorCode::SessionExpired, ErrorCode::RuntimeInconsistency])));
}

// ---- sessions ----

#[test]
fn close_session_deletes_its_ephemerals() {
    let mut f = Fixture::new();
    f.create("/app", CreateMode::Persistent);
    f.create("/app/a", CreateMode::Ephemeral);
    f.create("/app/b", CreateMode::EphemeralSequential);
    f.create("/top", CreateMode::Ephemeral);
    f.write_as(S2, &[], create("/app/other", CreateMode::Ephemeral)).expect("S2");
    assert_eq!(f.tree.ephemeral_count(), 4);
    assert_eq!(f.tree.ephemerals(S, "/app"), names(&["/app/a", "/app/b0000000001"]));
    assert_eq!(f.tree.ephemerals(S, ""), names(&["/app/a", "/app/b0000000001", "/top"]));
    assert_eq!(f.tree.ephemerals(S, " / "), names(&["/app/a", "/app/b0000000001", "/top"]));
    assert_eq!(f.tree.ephemerals(S, "/ap"), names(&["/app/a", "/app/b0000000001"]));
    assert_eq!(f.tree.ephemerals(S, "/to"), names(&["/top"]));
    assert_eq!(f.tree.ephemerals(UNKNOWN, "/"), Vec::<String>::new());

    let applied = f.run(TxnKind::CloseSession { session_id: S });
    assert_eq!(applied.result, TxnResult::SessionClosed);
    assert_eq!(
        applied.events,
        vec![
            ev("/app/a", EventType::NodeDeleted),
            ev("/app", EventType::NodeChildrenChanged),
            ev("/app/b0000000001", EventType::NodeDeleted),
            ev("/app", EventType::NodeChildrenChanged),
            ev("/top", EventType::NodeDeleted),
            ev("/", EventType::NodeChildrenChanged),
        ]
    );
    assert_eq!(f.tree.session(S), None);
    assert_eq!(f.tree.children("/app"), Some(names(&["other"])));
    assert_eq!(f.stat("/app").pzxid, f.zxid);
    assert_eq!(f.tree.ephemeral_count(), 1);
    assert_eq!(f.tree.sessions().map(|(id, _)| id).collect::<Vec<_>>(), vec![S2]);
    // The session is gone for good.
    f.fails(create("/again", CreateMode::Ephemeral), ErrorCode::SessionExpired);
    let applied = f.run(TxnKind::CloseSession { session_id: S });
    assert_eq!(applied, Applied { result: TxnResult::Noop, events: vec![] });
}

#[test]
fn create_session_registers_once() {
    let mut f = Fixture::new();
    let session = f.tree.session(S).expect("S").clone();
    assert_eq!(session.password, vec![7; 16]);
    assert_eq!(session.timeout_ms, 30_000);
    f.create("/e", CreateMode::Ephemeral);
    let applied = f.run(TxnKind::CreateSession { session_id: S, password: vec![1], timeout_ms: 1 });
    assert_eq!(applied.result, TxnResult::SessionCreated);
    let again = f.tree.session(S).expect("S");
    assert_eq!((again.password.clone(), again.timeout_ms), (vec![7; 16], 30_000));
    assert_eq!(again.ephemerals.len(), 1);
}

#[test]
fn every_txn_advances_last_zxid() {
    let mut tree = DataTree::new();
    let applied = tree.apply(5, HERE, &Txn { time_ms: 1, kind: TxnKind::Noop });
    assert_eq!(applied, Applied { result: TxnResult::Noop, events: vec![] });
    assert_eq!(tree.last_zxid(), 5);
    let op = create("/a", CreateMode::Persistent);
    let applied = tree.apply(6, HERE, &Txn { time_ms: 1, kind: TxnKind::Write { session_id: 1, auth: vec![], op } });
    assert_eq!(applied.result, TxnResult::Write(Err(ErrorCode::SessionExpired)));
    assert_eq!(tree.last_zxid(), 6);
    tree.apply(7, HERE, &Txn { time_ms: 1, kind: TxnKind::Reap { nodes: vec![] } });
    assert_eq!(tree.last_zxid(), 7);
}

// ---- containers and TTL nodes ----

#[test]
fn containers_are_reaped_once_emptied() {
    let mut f = Fixture::new();
    f.create("/c", CreateMode::Container);
    assert!(f.tree.reap_candidates(i64::MAX).is_empty(), "never-used containers stay");
    f.create("/c/x", CreateMode::Persistent);
    assert!(f.tree.reap_candidates(i64::MAX).is_empty(), "not empty");
    f.write(delete("/c/x", -1)).expect("delete");
    let candidates = f.tree.reap_candidates(0);
    assert_eq!(candidates, vec![ReapCandidate { path: "/c".into(), kind: ReapKind::Container }]);

    let applied = f.run(TxnKind::Reap { nodes: candidates });
    assert_eq!(applied.result, TxnResult::Reaped(1));
    assert_eq!(applied.events, vec![ev("/c", EventType::NodeDeleted), ev("/", EventType::NodeChildrenChanged)]);
    assert_eq!(f.tree.get("/c"), None);
    assert!(f.tree.reap_candidates(i64::MAX).is_empty());
}

#[test]
fn reap_rechecks_eligibility() {
    let mut f = Fixture::new();
    f.create("/c", CreateMode::Container);
    f.create("/c/x", CreateMode::Ephemeral);
    f.run(TxnKind::CloseSession { session_id: S });
    let candidates = f.tree.reap_candidates(0);
    assert_eq!(candidates.len(), 1);
    // A child arrives before the reap commits.
    f.write_as(S2, &[], create("/c/y", CreateMode::Persistent)).expect("y");
    assert_eq!(f.run(TxnKind::Reap { nodes: candidates.clone() }).result, TxnResult::Reaped(0));
    assert!(f.tree.get("/c").is_some());
    // Wrong kind, missing node, persistent node, never-used container: all skipped.
    f.write_as(S2, &[], create("/fresh", CreateMode::Container)).expect("fresh");
    let bogus = vec![
        ReapCandidate { path: "/c".into(), kind: ReapKind::Ttl },
        ReapCandidate { path: "/missing".into(), kind: ReapKind::Container },
        ReapCandidate { path: "/zookeeper/quota".into(), kind: ReapKind::Container },
        ReapCandidate { path: "/fresh".into(), kind: ReapKind::Container },
        ReapCandidate { path: "/".into(), kind: ReapKind::Container },
    ];
    let mut before = f.tree.clone();
    assert_eq!(f.run(TxnKind::Reap { nodes: bogus }).result, TxnResult::Reaped(0));
    before.last_zxid = f.zxid;
    assert_eq!(f.tree, before);
}

#[test]
fn ttl_nodes_expire_when_childless_and_unmodified() {
    let mut f = Fixture::new();
    f.write(create_ttl("/t", CreateMode::PersistentWithTtl, 100)).expect("t");
    let created = f.time;
    assert!(f.tree.reap_candidates(created + 100).is_empty(), "mtime + ttl must be < now");
    assert_eq!(f.tree.reap_candidates(created + 101), vec![ReapCandidate { path: "/t".into(), kind: ReapKind::Ttl }]);
    // A modification restarts the clock.
    f.write(set_data("/t", b"x", -1)).expect("touch");
    let touched = f.time;
    assert!(f.tree.reap_candidates(created + 101).is_empty());
    // Children keep it alive.
    f.create("/t/c", CreateMode::Persistent);
    assert!(f.tree.reap_candidates(touched + 1000).is_empty());
    f.write(delete("/t/c", -1)).expect("delete child");
    let candidates = f.tree.reap_candidates(touched + 1000);
    assert_eq!(candidates.len(), 1);
    // Apply re-checks against the txn's own time.
    let early = Txn { time_ms: touched + 50, kind: TxnKind::Reap { nodes: candidates.clone() } };
    f.zxid += 1;
    assert_eq!(f.tree.apply(f.zxid, HERE, &early).result, TxnResult::Reaped(0));
    let late = Txn { time_ms: touched + 101, kind: TxnKind::Reap { nodes: candidates } };
    f.zxid += 1;
    let applied = f.tree.apply(f.zxid, HERE, &late);
    assert_eq!(applied.result, TxnResult::Reaped(1));
    assert_eq!(applied.events, vec![ev("/t", EventType::NodeDeleted), ev("/", EventType::NodeChildrenChanged)]);
    assert_consistent(&f.tree);
    // No overflow at the extremes.
    f.write(create_ttl("/big", CreateMode::PersistentWithTtl, MAX_TTL_MS)).expect("big");
    assert!(f.tree.reap_candidates(i64::MIN).is_empty());
    assert_eq!(f.tree.reap_candidates(i64::MAX).len(), 1);
}

// ---- reads ----

#[test]
fn all_children_number_counts_descendants() {
    let mut f = Fixture::new();
    for p in ["/a", "/a/b", "/a/b/c", "/a/d", "/ab", "/a-"] {
        f.create(p, CreateMode::Persistent);
    }
    assert_eq!(f.tree.all_children_number("/a"), Some(3));
    assert_eq!(f.tree.all_children_number("/a/b"), Some(1));
    assert_eq!(f.tree.all_children_number("/a/b/c"), Some(0));
    assert_eq!(f.tree.all_children_number("/"), Some(9));
    assert_eq!(f.tree.all_children_number("/nope"), None);
    assert_eq!(f.tree.children("/a"), Some(names(&["b", "d"])));
    assert_eq!(f.tree.children("/nope"), None);
    assert_eq!(f.tree.get("/a").expect("a").children().collect::<Vec<_>>(), ["b", "d"]);
}

#[test]
fn approximate_data_size_tracks_paths_and_data() {
    let mut f = Fixture::new();
    let base = f.tree.approximate_data_size();
    f.write(create_with("/abc", b"12345", Acl::open_unsafe(), CreateMode::Persistent)).expect("create");
    assert_eq!(f.tree.approximate_data_size(), base + 4 + 5);
    f.write(set_data("/abc", b"1", -1)).expect("set");
    assert_eq!(f.tree.approximate_data_size(), base + 4 + 1);
    f.write(delete("/abc", -1)).expect("delete");
    assert_eq!(f.tree.approximate_data_size(), base);
}

// ---- snapshots and determinism ----

#[test]
fn serde_round_trip_preserves_the_tree() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    f.write(create_with("/a/d", &[0, 1, 255], vec![acl(perms::ALL, "ip", "10.0.0.0/8")], CreateMode::Persistent))
        .expect("d");
    f.create("/a/e", CreateMode::EphemeralSequential);
    f.create("/c", CreateMode::Container);
    f.write(create_ttl("/t", CreateMode::PersistentWithTtl, 1234)).expect("ttl");
    f.write(set_data("/a", b"data", -1)).expect("set");
    let json = serde_json::to_string(&f.tree).expect("serialize");
    let back: DataTree = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, f.tree);
    let bytes = postcard::to_allocvec(&f.tree).expect("postcard");
    let back: DataTree = postcard::from_bytes(&bytes).expect("postcard back");
    assert_eq!(back, f.tree);
    // Txns and results round-trip too (they travel in the log and to followers).
    let txn = Txn {
        time_ms: 3,
        kind: TxnKind::Multi {
            session_id: S,
            auth: vec![Id::anyone()],
            ops: vec![
                create_ttl("/x", CreateMode::PersistentSequentialWithTtl, 5),
                delete("/x", 2),
                set_data("/x", b"1", 1),
                set_acl("/x", Acl::open_unsafe(), 0),
                check("/x", 1),
            ],
        },
    };
    let back: Txn = postcard::from_bytes(&postcard::to_allocvec(&txn).expect("txn")).expect("txn back");
    assert_eq!(back, txn);
    let result = TxnResult::Multi(Err(vec![ErrorCode::Ok, ErrorCode::NoNode, ErrorCode::RuntimeInconsistency]));
    let back: TxnResult = postcard::from_bytes(&postcard::to_allocvec(&result).expect("result")).expect("result back");
    assert_eq!(back, result);
}

/// A small deterministic generator, so the test needs no randomness crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn random_txn(rng: &mut Lcg) -> TxnKind {
    const PATHS: &[&str] = &[
        "/",
        "/a",
        "/a/b",
        "/a/b/c",
        "/b",
        "/c",
        "/c/d",
        "/zookeeper",
        "/zookeeper/config",
        "/zookeeper/quota",
        "/zookeeper/quota/q",
        "",
        "a",
        "/a/",
        "//",
        "/a/.",
        "/\u{0}",
        "/é",
        "/😀",
        "/a/b0000000001",
    ];
    const MODES: &[CreateMode] = &[
        CreateMode::Persistent,
        CreateMode::PersistentSequential,
        CreateMode::Ephemeral,
        CreateMode::EphemeralSequential,
        CreateMode::Container,
        CreateMode::PersistentWithTtl,
        CreateMode::PersistentSequentialWithTtl,
    ];
    let acls = [
        Acl::open_unsafe(),
        vec![],
        vec![acl(perms::READ, "world", "anyone")],
        vec![acl(perms::ALL, "auth", "")],
        vec![acl(perms::ALL, "ip", "127.0.0.0/8")],
        vec![acl(perms::ALL, "bogus", "x")],
    ];
    let auths = [
        vec![],
        vec![Id::new("digest", digest_id("u:p"))],
        vec![Id::new("ip", "127.0.0.1")],
        vec![Id::new("super", "")],
    ];
    let sessions = [S, S2, UNKNOWN];
    let path = |rng: &mut Lcg| PATHS[rng.next(PATHS.len())].to_owned();
    let version = |rng: &mut Lcg| [-1, 0, 1, 2][rng.next(4)];
    let op = |rng: &mut Lcg| match rng.next(5) {
        0 => WriteOp::Create {
            path: path(rng),
            data: (rng.next(5) > 0).then(|| vec![1; rng.next(4)]),
            acl: acls[rng.next(acls.len())].clone(),
            mode: MODES[rng.next(MODES.len())],
            ttl_ms: [-1, 0, 5, 50][rng.next(4)],
        },
        1 => WriteOp::Delete { path: path(rng), version: version(rng) },
        2 => WriteOp::SetData {
            path: path(rng),
            data: (rng.next(5) > 0).then(|| vec![2; rng.next(4)]),
            version: version(rng),
        },
        3 => WriteOp::SetAcl { path: path(rng), acl: acls[rng.next(acls.len())].clone(), version: version(rng) },
        _ => WriteOp::Check { path: path(rng), version: version(rng) },
    };
    match rng.next(20) {
        0 => TxnKind::CloseSession { session_id: sessions[rng.next(3)] },
        1 => TxnKind::CreateSession { session_id: sessions[rng.next(3)], password: vec![], timeout_ms: 1 },
        2 => TxnKind::Reap {
            nodes: vec![ReapCandidate {
                path: path(rng),
                kind: if rng.next(2) == 0 { ReapKind::Container } else { ReapKind::Ttl },
            }],
        },
        3 => TxnKind::Noop,
        4..=7 => {
            let n = rng.next(4);
            let session_id = sessions[rng.next(3)];
            let auth = auths[rng.next(auths.len())].clone();
            TxnKind::Multi { session_id, auth, ops: (0..n).map(|_| op(rng)).collect() }
        }
        _ => TxnKind::Write {
            session_id: sessions[rng.next(3)],
            auth: auths[rng.next(auths.len())].clone(),
            op: op(rng),
        },
    }
}

#[test]
fn random_txns_keep_the_tree_consistent_and_deterministic() {
    let mut rng = Lcg(42);
    let mut a = DataTree::new();
    let mut b = DataTree::new();
    let mut failures = 0;
    for zxid in 1..=3000 {
        let kind = random_txn(&mut rng);
        let time_ms = zxid * 7;
        let txn = Txn { time_ms, kind };
        let mut before = a.clone();
        let ra = a.apply(zxid, HERE, &txn);
        let rb = b.apply(zxid, HERE, &txn);
        assert_eq!(ra, rb);
        if matches!(ra.result, TxnResult::Multi(Err(_)) | TxnResult::Write(Err(_))) {
            failures += 1;
            before.last_zxid = zxid;
            assert_eq!(a, before, "a failed write changed the tree: {txn:?}");
        }
        if zxid % 10 == 0 {
            let candidates = a.reap_candidates(time_ms + 100);
            a.apply(zxid, HERE, &Txn { time_ms: time_ms + 100, kind: TxnKind::Reap { nodes: candidates.clone() } });
            b.apply(zxid, HERE, &Txn { time_ms: time_ms + 100, kind: TxnKind::Reap { nodes: candidates } });
        }
        assert_consistent(&a);
    }
    assert_eq!(a, b);
    assert!(a.node_count() > 4, "the generator should build something");
    assert!(failures > 100, "the generator should exercise failures too");
    let back: DataTree = postcard::from_bytes(&postcard::to_allocvec(&a).expect("ser")).expect("de");
    assert_eq!(back, a);
}

// ---- session ownership (SessionMoved) ----

#[test]
fn a_session_is_owned_by_the_server_that_created_it() {
    let mut f = Fixture::new();
    assert_eq!(f.tree.session(S).map(|s| s.owner), Some(1));
    f.create("/a", CreateMode::Persistent);
    let before = f.tree.clone();
    let applied = f.run_from(Some(2), TxnKind::Write { session_id: S, auth: vec![], op: set_data("/a", b"x", -1) });
    assert_eq!(applied.result, TxnResult::Write(Err(ErrorCode::SessionMoved)));
    assert!(applied.result.is_session_moved());
    assert!(applied.events.is_empty());
    assert_eq!(f.tree.get("/a").map(|n| n.data().to_vec()), before.get("/a").map(|n| n.data().to_vec()));
    let applied = f.run_from(None, TxnKind::Write { session_id: S, auth: vec![], op: set_data("/a", b"x", -1) });
    assert_eq!(applied.result, TxnResult::Write(Err(ErrorCode::SessionMoved)), "a write nobody submitted");
}

/// Issue 12 d: once the session moved, a write the old server still submits is refused and
/// changes nothing, while the new owner's writes apply.
#[test]
fn after_a_move_only_the_new_owners_writes_apply() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    let moved = f.run_from(Some(2), TxnKind::MoveSession { session_id: S });
    assert_eq!(moved.result, TxnResult::OwnerChanged { owner: 2 });
    assert_eq!(f.tree.session(S).map(|s| s.owner), Some(2));

    let v2 = f.run_from(Some(2), TxnKind::Write { session_id: S, auth: vec![], op: set_data("/a", b"v2", -1) });
    assert!(matches!(v2.result, TxnResult::Write(Ok(_))), "{v2:?}");
    let mut before = f.tree.clone();
    let v1 = f.run_from(Some(1), TxnKind::Write { session_id: S, auth: vec![], op: set_data("/a", b"v1", -1) });
    assert_eq!(v1.result, TxnResult::Write(Err(ErrorCode::SessionMoved)));
    before.last_zxid = f.zxid;
    assert_eq!(f.tree, before, "the stale write changed the tree");

    let ops = vec![set_data("/a", b"v1", -1), create("/b", CreateMode::Persistent)];
    let multi = f.run_from(Some(1), TxnKind::Multi { session_id: S, auth: vec![], ops });
    assert_eq!(multi.result, TxnResult::Multi(Err(vec![ErrorCode::SessionMoved, ErrorCode::RuntimeInconsistency])));
    assert!(multi.result.is_session_moved());
    assert!(f.tree.get("/b").is_none());
    assert_eq!(f.tree.get("/a").map(|n| n.data().to_vec()), Some(b"v2".to_vec()));

    // Another session's writes are not affected.
    let other = f.run_from(Some(1), TxnKind::Write { session_id: S2, auth: vec![], op: set_data("/a", b"s2", -1) });
    assert!(matches!(other.result, TxnResult::Write(Ok(_))), "{other:?}");
}

#[test]
fn moving_an_unknown_session_changes_nothing() {
    let mut f = Fixture::new();
    let mut before = f.tree.clone();
    assert_eq!(f.run_from(Some(2), TxnKind::MoveSession { session_id: UNKNOWN }).result, TxnResult::Noop);
    assert_eq!(f.run(TxnKind::MoveSession { session_id: S }).result, TxnResult::OwnerChanged { owner: 1 });
    assert_eq!(f.run_from(None, TxnKind::MoveSession { session_id: S }).result, TxnResult::Noop);
    before.last_zxid = f.zxid;
    assert_eq!(f.tree, before);
}

/// A close is not owner-checked (the leader expires sessions it does not own; a close is the
/// session's last word), and a close or re-create never moves the session back.
#[test]
fn closes_and_re_creates_from_the_old_owner_do_not_move_the_session_back() {
    let mut f = Fixture::new();
    f.run_from(Some(2), TxnKind::MoveSession { session_id: S });
    let again = TxnKind::CreateSession { session_id: S, password: vec![7; 16], timeout_ms: 30_000 };
    assert_eq!(f.run_from(Some(1), again).result, TxnResult::SessionCreated);
    assert_eq!(f.tree.session(S).map(|s| s.owner), Some(2));
    f.write_as(S, &[], create("/e", CreateMode::Ephemeral)).expect_err("server 1 no longer owns S");
    f.run_from(Some(2), TxnKind::Write { session_id: S, auth: vec![], op: create("/e", CreateMode::Ephemeral) });
    assert!(f.tree.get("/e").is_some());
    assert_eq!(f.run_from(Some(3), TxnKind::CloseSession { session_id: S }).result, TxnResult::SessionClosed);
    assert!(f.tree.get("/e").is_none() && f.tree.session(S).is_none());
}

// ---- null data ----

/// Null data (length -1 on the wire) is kept apart from empty data: create and setData keep
/// it, Stat says dataLength 0 for it (as ZooKeeper's `DataNode.copyStat`), and a failed multi
/// restores it.
#[test]
fn null_data_is_kept_apart_from_empty() {
    let mut f = Fixture::new();
    let null_create = WriteOp::Create {
        path: "/n".into(),
        data: None,
        acl: Acl::open_unsafe(),
        mode: CreateMode::Persistent,
        ttl_ms: NO_TTL,
    };
    f.write(null_create).expect("create with null data");
    f.create("/e", CreateMode::Persistent);
    let node =
        |f: &Fixture, p: &str| f.tree.get(p).map(|n| (n.nullable_data().map(<[u8]>::to_vec), n.stat().data_length));
    assert_eq!(node(&f, "/n"), Some((None, 0)));
    assert_eq!(node(&f, "/e"), Some((Some(vec![]), 0)));

    f.write(WriteOp::SetData { path: "/e".into(), data: None, version: -1 }).expect("set null");
    assert_eq!(node(&f, "/e"), Some((None, 0)));
    f.write(set_data("/n", b"ab", -1)).expect("set data");
    assert_eq!(node(&f, "/n"), Some((Some(b"ab".to_vec()), 2)));

    // A failed multi puts the null back.
    let (result, _) = f.multi(vec![set_data("/e", b"x", -1), set_data("/missing", b"y", -1)]);
    assert!(result.is_err());
    assert_eq!(node(&f, "/e"), Some((None, 0)));
}

/// Data fields are encoded with serde_bytes (one byte string, fast in debug builds); postcard
/// writes exactly what it wrote for the plain field, so logs and snapshots written before read
/// the same.
#[test]
fn byte_string_data_is_encoded_as_the_plain_field_was() {
    for data in [None, Some(Vec::new()), Some(vec![0u8, 1, 255]), Some(vec![7u8; 300])] {
        let plain = postcard::to_allocvec(&data).expect("encode");
        let bytes = postcard::to_allocvec(&data.clone().map(serde_bytes::ByteBuf::from)).expect("encode");
        assert_eq!(plain, bytes, "{data:?}");
    }
}

#[test]
fn a_subtree_is_its_root_and_every_path_under_it() {
    let mut f = Fixture::new();
    for path in ["/p", "/p/a", "/p/a/b", "/pa", "/p0", "/q"] {
        f.create(path, CreateMode::Persistent);
    }
    assert_eq!(f.tree.subtree("/p").collect::<Vec<_>>(), ["/p", "/p/a", "/p/a/b"]);
    assert_eq!(f.tree.subtree("/p/a/b").collect::<Vec<_>>(), ["/p/a/b"]);
    assert_eq!(f.tree.subtree("/missing").count(), 0);
    assert_eq!(f.tree.subtree("/").count(), f.tree.node_count());
}

#[test]
fn changes_between_two_versions_of_a_node() {
    let mut f = Fixture::new();
    f.create("/n", CreateMode::Persistent);
    let first = f.tree.get("/n").cloned();
    f.write(set_data("/n", b"x", -1)).expect("set");
    let changed = f.tree.get("/n").cloned();
    f.create("/n/c", CreateMode::Persistent);
    let parent = f.tree.get("/n").cloned();
    assert_eq!(changes_between(None, None), []);
    assert_eq!(changes_between(None, first.as_ref()), [EventType::NodeCreated]);
    assert_eq!(changes_between(first.as_ref(), None), [EventType::NodeDeleted]);
    assert_eq!(changes_between(first.as_ref(), first.as_ref()), []);
    assert_eq!(changes_between(first.as_ref(), changed.as_ref()), [EventType::NodeDataChanged]);
    assert_eq!(changes_between(changed.as_ref(), parent.as_ref()), [EventType::NodeChildrenChanged]);
    f.write(delete("/n/c", -1)).expect("delete child");
    f.write(delete("/n", -1)).expect("delete");
    f.create("/n", CreateMode::Persistent);
    assert_eq!(changes_between(first.as_ref(), f.tree.get("/n")), [EventType::NodeDeleted, EventType::NodeCreated]);
}

// ---- quotas ----

/// zkCli's `setquota`: the quota directory, the limits, then the stats node.
fn set_quota(f: &mut Fixture, subtree: &str, limits: &str) {
    let mut dir = String::from(QUOTA);
    for part in subtree.trim_start_matches('/').split('/') {
        dir = format!("{dir}/{part}");
        if f.tree.get(&dir).is_none() {
            f.create(&dir, CreateMode::Persistent);
        }
    }
    f.write(create_with(
        &format!("{dir}/zookeeper_limits"),
        limits.as_bytes(),
        Acl::open_unsafe(),
        CreateMode::Persistent,
    ))
    .expect("limits");
    f.write(create_with(
        &format!("{dir}/zookeeper_stats"),
        b"count=0,bytes=0",
        Acl::open_unsafe(),
        CreateMode::Persistent,
    ))
    .expect("stats");
}

fn usage(f: &Fixture, subtree: &str) -> String {
    let stats = format!("{QUOTA}{subtree}/zookeeper_stats");
    String::from_utf8_lossy(f.tree.get(&stats).expect("stats node").data()).into_owned()
}

#[test]
fn a_quota_counts_its_subtree_and_hard_limits_refuse_as_zookeeper() {
    let mut f = Fixture::new();
    f.create("/app", CreateMode::Persistent);
    f.write(create_with("/app/a", b"12345", Acl::open_unsafe(), CreateMode::Persistent)).expect("a");
    // Counted from what is there when the stats node appears: /app itself and /app/a.
    set_quota(&mut f, "/app", "count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=3");
    assert_eq!(usage(&f, "/app"), "count=2,bytes=5");
    let stats_before = f.stat(&format!("{QUOTA}/app/zookeeper_stats"));

    f.write(create_with("/app/b", b"123", Acl::open_unsafe(), CreateMode::Persistent)).expect("the third znode");
    assert_eq!(usage(&f, "/app"), "count=3,bytes=8");
    // In place: no new version or zxid on the stats node.
    let stats_after = f.stat(&format!("{QUOTA}/app/zookeeper_stats"));
    assert_eq!((stats_after.version, stats_after.mzxid), (stats_before.version, stats_before.mzxid));
    f.fails(create("/app/c", CreateMode::Persistent), ErrorCode::QuotaExceeded);
    f.fails(create("/app/b/deeper", CreateMode::Ephemeral), ErrorCode::QuotaExceeded);
    // Bytes: up to the limit passes, past it fails (also before a bad version, as ZooKeeper).
    f.write(set_data("/app/b", b"12345", -1)).expect("exactly 10 bytes");
    f.fails(set_data("/app/b", b"123456", 7), ErrorCode::QuotaExceeded);
    // A delete frees room; ephemerals leave with their session.
    f.write(delete("/app/a", -1)).expect("delete");
    assert_eq!(usage(&f, "/app"), "count=2,bytes=5");
    f.write_as(S2, &[], create("/app/e", CreateMode::Ephemeral)).expect("ephemeral");
    assert_eq!(usage(&f, "/app"), "count=3,bytes=5");
    f.run(TxnKind::CloseSession { session_id: S2 });
    assert_eq!(usage(&f, "/app"), "count=2,bytes=5");
    // Outside the subtree nothing is counted.
    f.create("/other", CreateMode::Persistent);
    f.create("/application", CreateMode::Persistent);
    assert_eq!(usage(&f, "/app"), "count=2,bytes=5");
}

#[test]
fn soft_limits_count_but_never_refuse_and_the_deepest_quota_counts() {
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    f.create("/a/b", CreateMode::Persistent);
    set_quota(&mut f, "/a", "count=1,bytes=1");
    set_quota(&mut f, "/a/b", "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=1");
    f.create("/a/x", CreateMode::Persistent);
    assert_eq!(usage(&f, "/a"), "count=3,bytes=0", "past the soft limit: counted, not refused");
    f.fails(create("/a/b/c", CreateMode::Persistent), ErrorCode::QuotaExceeded);
    // Without its stats node a quota neither counts nor refuses.
    f.create("/free", CreateMode::Persistent);
    f.create(&format!("{QUOTA}/free"), CreateMode::Persistent);
    f.write(create_with(
        &format!("{QUOTA}/free/zookeeper_limits"),
        b"count=-1,bytes=-1=;countHardLimit=1",
        Acl::open_unsafe(),
        CreateMode::Persistent,
    ))
    .expect("limits only");
    f.create("/free/x", CreateMode::Persistent);
}

#[test]
fn a_failed_multi_takes_back_the_usage_it_counted() {
    let mut f = Fixture::new();
    f.create("/q", CreateMode::Persistent);
    set_quota(&mut f, "/q", "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=3");
    let (result, _) = f.multi(vec![
        create("/q/a", CreateMode::Persistent),
        create("/q/b", CreateMode::Persistent),
        create("/q/c", CreateMode::Persistent),
    ]);
    assert_eq!(
        result.expect_err("the third is one too many"),
        [ErrorCode::Ok, ErrorCode::Ok, ErrorCode::QuotaExceeded]
    );
    assert_eq!(usage(&f, "/q"), "count=1,bytes=0");
    let (result, _) = f.multi(vec![create("/q/a", CreateMode::Persistent), create("/q/a", CreateMode::Persistent)]);
    assert!(result.is_err());
    assert_eq!(usage(&f, "/q"), "count=1,bytes=0");
    let (result, _) = f.multi(vec![
        create("/q/a", CreateMode::Persistent),
        delete("/q/a", -1),
        create("/q/b", CreateMode::Persistent),
    ]);
    assert!(result.is_ok());
    assert_eq!(usage(&f, "/q"), "count=2,bytes=0");
}

/// Nodes with the same ACL list share one allocation, made by writes, restored from a snapshot
/// (postcard and the JSON of tests alike) or converted from an earlier snapshot format; a node
/// given a list no other node has gets its own.
#[test]
fn nodes_with_the_same_acl_share_one_list_also_after_a_restore() {
    let shared = |tree: &DataTree, a: &str, b: &str| {
        std::sync::Arc::ptr_eq(&tree.get(a).expect("a").acl, &tree.get(b).expect("b").acl)
    };
    let mut f = Fixture::new();
    f.create("/a", CreateMode::Persistent);
    f.create("/a/b", CreateMode::Persistent);
    f.create("/c", CreateMode::EphemeralSequential);
    let ip = vec![acl(perms::ALL, "ip", "10.0.0.0/8")];
    f.write(create_with("/d", b"", ip.clone(), CreateMode::Persistent)).expect("d");
    f.write(create_with("/e", b"", ip.clone(), CreateMode::Persistent)).expect("e");
    assert!(shared(&f.tree, "/a", "/a/b"));
    assert!(shared(&f.tree, "/a", "/"), "the built-in nodes' open ACL too");
    assert!(shared(&f.tree, "/d", "/e"));
    assert!(!shared(&f.tree, "/a", "/d"));
    f.write(set_acl("/a/b", ip.clone(), -1)).expect("setACL");
    assert!(shared(&f.tree, "/a/b", "/d"), "a list set later is the shared one");

    let restored: DataTree = postcard::from_bytes(&postcard::to_allocvec(&f.tree).expect("encode")).expect("decode");
    assert_eq!(restored, f.tree);
    assert!(shared(&restored, "/a", "/") && shared(&restored, "/d", "/e") && shared(&restored, "/a/b", "/d"));
    assert!(!shared(&restored, "/a", "/d"));
    // The restored tree's cache is the one its writes use.
    let mut g = Fixture { tree: restored, zxid: f.zxid, time: f.time };
    g.write(create_with("/f", b"", ip, CreateMode::Persistent)).expect("f");
    assert!(shared(&g.tree, "/f", "/d"));

    let json: DataTree = serde_json::from_str(&serde_json::to_string(&f.tree).expect("json")).expect("back");
    assert!(shared(&json, "/d", "/e"));
    let old: legacy::DataTreeV2 = (&f.tree).into();
    let converted: DataTree = old.into();
    assert!(shared(&converted, "/a", "/") && shared(&converted, "/d", "/e"));
}
