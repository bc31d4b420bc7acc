//! create / getData / setData / delete / exists / children: exact Stat fields, exact error codes,
//! path validation, sequential names, and the small read APIs (getAllChildrenNumber,
//! getEphemerals, sync).

use zookeeper_client::{Acl, AuthId, Error, Permission};

use crate::harness::{now_ms, Bounded, TestServer, EPHEMERAL, EPHEMERAL_SEQUENTIAL, PERSISTENT, SEQUENTIAL};
use paddock_testkit::raw::{self, code, op, Jute, RawConn};

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[tokio::test]
async fn create_get_set_delete_keep_exact_stats() {
    let server = TestServer::start().await;
    let zk = server.client().await;

    let before = now_ms();
    let (created, sequence) = zk.create("/stat", b"hello", &PERSISTENT).bounded().await.expect("create");
    let after = now_ms();
    assert_eq!(sequence.into_i64(), -1, "not sequential");
    assert!(created.czxid > 0);
    assert_eq!(created.mzxid, created.czxid);
    assert_eq!(created.pzxid, created.czxid, "a new node's pzxid is its czxid");
    assert!((before..=after).contains(&created.ctime), "ctime {} not in [{before}, {after}]", created.ctime);
    assert_eq!(created.mtime, created.ctime);
    assert_eq!((created.version, created.cversion, created.aversion), (0, 0, 0));
    assert_eq!(created.ephemeral_owner, 0);
    assert_eq!(created.data_length, 5);
    assert_eq!(created.num_children, 0);

    let (data, stat) = zk.get_data("/stat").bounded().await.expect("get");
    assert_eq!(data, b"hello");
    assert_eq!(stat, created);
    assert_eq!(zk.check_stat("/stat").bounded().await.expect("exists"), Some(created));

    let set = zk.set_data("/stat", b"hi", Some(0)).bounded().await.expect("set");
    assert_eq!(set.version, 1);
    assert_eq!(set.mzxid, created.czxid + 1, "the set is the next txn");
    assert_eq!((set.czxid, set.ctime, set.pzxid), (created.czxid, created.ctime, created.pzxid));
    assert!(set.mtime >= created.mtime);
    assert_eq!(set.data_length, 2);
    assert_eq!((set.cversion, set.aversion, set.num_children), (0, 0, 0));
    assert_eq!(zk.get_data("/stat").bounded().await.expect("get"), (b"hi".to_vec(), set));

    // Children move the parent's cversion, numChildren and pzxid, never its version or mzxid.
    let (child, _) = zk.create("/stat/child", b"", &PERSISTENT).bounded().await.expect("create child");
    assert_eq!(child.czxid, set.mzxid + 1);
    assert_eq!(child.data_length, 0);
    let parent = zk.check_stat("/stat").bounded().await.expect("exists").expect("parent");
    assert_eq!((parent.cversion, parent.num_children, parent.pzxid), (1, 1, child.czxid));
    assert_eq!((parent.version, parent.mzxid, parent.mtime), (1, set.mzxid, set.mtime));

    zk.delete("/stat/child", Some(0)).bounded().await.expect("delete child");
    let parent = zk.check_stat("/stat").bounded().await.expect("exists").expect("parent");
    assert_eq!(parent.cversion, 2, "cversion counts the create and the delete");
    assert_eq!(parent.num_children, 0);
    assert_eq!(parent.pzxid, child.czxid + 1, "pzxid is the delete's zxid");
    assert_eq!((parent.version, parent.mzxid), (1, set.mzxid));

    zk.delete("/stat", Some(1)).bounded().await.expect("delete");
    assert_eq!(zk.check_stat("/stat").bounded().await.expect("exists"), None);
    let (next, _) = zk.create("/next", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(next.czxid, parent.pzxid + 2, "zxids are consecutive");
}

#[tokio::test]
async fn errors_have_exact_codes_and_change_nothing() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/e", b"data", &PERSISTENT).bounded().await.expect("create");
    zk.create("/e/child", b"", &PERSISTENT).bounded().await.expect("create child");
    zk.create("/e/eph", b"", &EPHEMERAL).bounded().await.expect("create ephemeral");
    let before = zk.check_stat("/e").bounded().await.expect("exists").expect("node");

    assert_eq!(zk.create("/e", b"", &PERSISTENT).bounded().await.expect_err("exists"), Error::NodeExists);
    assert_eq!(zk.create("/missing/child", b"", &PERSISTENT).bounded().await.expect_err("no parent"), Error::NoNode);
    assert_eq!(zk.get_data("/missing").bounded().await.expect_err("get"), Error::NoNode);
    assert_eq!(zk.set_data("/missing", b"", None).bounded().await.expect_err("set"), Error::NoNode);
    assert_eq!(zk.delete("/missing", None).bounded().await.expect_err("delete"), Error::NoNode);
    assert_eq!(zk.list_children("/missing").bounded().await.expect_err("children"), Error::NoNode);
    assert_eq!(zk.get_children("/missing").bounded().await.expect_err("children2"), Error::NoNode);
    assert_eq!(zk.get_acl("/missing").bounded().await.expect_err("acl"), Error::NoNode);
    assert_eq!(zk.check_stat("/missing").bounded().await.expect("exists"), None);

    assert_eq!(zk.set_data("/e", b"x", Some(5)).bounded().await.expect_err("set"), Error::BadVersion);
    assert_eq!(zk.delete("/e/child", Some(3)).bounded().await.expect_err("delete"), Error::BadVersion);
    assert_eq!(zk.delete("/e", None).bounded().await.expect_err("delete"), Error::NotEmpty);
    assert_eq!(zk.delete("/e", Some(0)).bounded().await.expect_err("delete"), Error::NotEmpty);
    for options in [PERSISTENT, EPHEMERAL, SEQUENTIAL] {
        assert_eq!(
            zk.create("/e/eph/x", b"", &options).bounded().await.expect_err("child of ephemeral"),
            Error::NoChildrenForEphemerals
        );
    }

    let after = zk.check_stat("/e").bounded().await.expect("exists").expect("node");
    assert_eq!(
        (after.version, after.cversion, after.num_children, after.pzxid, after.mzxid),
        (before.version, before.cversion, before.num_children, before.pzxid, before.mzxid)
    );
    assert_eq!(zk.get_data("/e").bounded().await.expect("get").0, b"data");
}

#[tokio::test]
async fn failed_writes_consume_a_zxid() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let (first, _) = zk.create("/z1", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(zk.create("/z1", b"", &PERSISTENT).bounded().await.expect_err("dup"), Error::NodeExists);
    assert_eq!(zk.set_data("/z1", b"", Some(9)).bounded().await.expect_err("version"), Error::BadVersion);
    let (second, _) = zk.create("/z2", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(second.czxid, first.czxid + 3, "each failed write is a txn too, as in ZooKeeper");
}

#[tokio::test]
async fn invalid_paths_are_bad_arguments() {
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.client_addr).await;
    assert_eq!(raw.request(op::CREATE2, &raw::create_body("/a", b"", 0)).await.err, code::OK);
    // ZooKeeper looks the parent up before it validates the whole path, so every one of these
    // has an existing parent (`/` or `/a`) or no slash at all.
    let invalid = [
        "",
        "a",
        "/a/",
        "//a",
        "/.",
        "/..",
        "/a/.",
        "/a/..",
        "/a\u{0}b",
        "/a\u{1}b",
        "/a/b\u{7f}",
        "/a/\u{9f}",
        "/a/\u{e000}",
        "/a/x\u{fff0}",
        "/a/\u{1f600}",
    ];
    for path in invalid {
        let reply = raw.request(op::CREATE2, &raw::create_body(path, b"", 0)).await;
        assert_eq!(reply.err, code::BAD_ARGUMENTS, "create2 {path:?}");
        let reply = raw.request(op::CREATE, &raw::create_body(path, b"", 0)).await;
        assert_eq!(reply.err, code::BAD_ARGUMENTS, "create {path:?}");
        let reply = raw.request(op::SET_DATA, &Jute::new().str(path).buf(b"").i32(-1).bytes()).await;
        assert_eq!(reply.err, code::BAD_ARGUMENTS, "setData {path:?}");
    }
    for path in ["", "a", "/a\u{0}b", "/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"] {
        let reply = raw.request(op::DELETE, &Jute::new().str(path).i32(-1).bytes()).await;
        assert_eq!(reply.err, code::BAD_ARGUMENTS, "delete {path:?}");
    }
    let reply = raw.request(op::EXISTS, &Jute::new().str("/a\u{0}b").bool(false).bytes()).await;
    assert_eq!(reply.err, code::BAD_ARGUMENTS, "exists with NUL");

    // A sequential create may end in a slash: the suffix makes the name.
    let reply = raw.request(op::CREATE2, &raw::create_body("/a/", b"", 2)).await;
    assert_eq!(reply.err, code::OK);
    assert_eq!(raw::Reader(&reply.body).str(), "/a/0000000000");

    // The connection is still usable and the tree unharmed.
    let zk = server.client().await;
    assert_eq!(sorted(zk.list_children("/").bounded().await.expect("children")), ["a", "zookeeper"]);
    assert_eq!(zk.list_children("/a").bounded().await.expect("children"), ["0000000000"]);
}

#[tokio::test]
async fn sequential_names_follow_the_parent_counter() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/q", b"", &PERSISTENT).bounded().await.expect("create");
    for expected in 0..3 {
        let (stat, sequence) = zk.create("/q/n-", b"", &SEQUENTIAL).bounded().await.expect("create");
        assert_eq!(sequence.into_i64(), expected);
        assert_eq!(sequence.to_string(), format!("{expected:010}"));
        assert_eq!(stat.ephemeral_owner, 0);
    }
    zk.delete("/q/n-0000000001", None).bounded().await.expect("delete");
    let (_, sequence) = zk.create("/q/n-", b"", &SEQUENTIAL).bounded().await.expect("create");
    assert_eq!(sequence.into_i64(), 3, "numbering continues across deletes");
    let (stat, sequence) = zk.create("/q/e-", b"", &EPHEMERAL_SEQUENTIAL).bounded().await.expect("create");
    assert_eq!(sequence.into_i64(), 4, "one counter for every child kind");
    assert_eq!(stat.ephemeral_owner, zk.session_id().0);
    zk.create("/q/plain", b"", &PERSISTENT).bounded().await.expect("create");
    let (_, sequence) = zk.create("/q/", b"", &SEQUENTIAL).bounded().await.expect("create");
    assert_eq!(sequence.into_i64(), 6, "plain creates count too");

    let (children, stat) = zk.get_children("/q").bounded().await.expect("children");
    assert_eq!(
        sorted(children),
        ["0000000006", "e-0000000004", "n-0000000000", "n-0000000002", "n-0000000003", "plain"]
    );
    assert_eq!(stat.num_children, 6);
    assert_eq!(stat.cversion, 8, "7 creates and 1 delete");
    assert_eq!(zk.check_stat("/q").bounded().await.expect("exists"), Some(stat));
}

#[tokio::test]
async fn children_and_children2() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/p", b"", &PERSISTENT).bounded().await.expect("create");
    for name in ["b", "a", "c"] {
        zk.create(&format!("/p/{name}"), b"", &PERSISTENT).bounded().await.expect("create");
    }
    assert_eq!(sorted(zk.list_children("/p").bounded().await.expect("children")), ["a", "b", "c"]);
    let (children, stat) = zk.get_children("/p").bounded().await.expect("children2");
    assert_eq!(sorted(children), ["a", "b", "c"]);
    assert_eq!(Some(stat), zk.check_stat("/p").bounded().await.expect("exists"));
    assert_eq!(stat.num_children, 3);
    assert!(zk.list_children("/p/a").bounded().await.expect("children").is_empty());
}

#[tokio::test]
async fn builtin_zookeeper_nodes() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    assert_eq!(sorted(zk.list_children("/").bounded().await.expect("children")), ["zookeeper"]);
    assert_eq!(sorted(zk.list_children("/zookeeper").bounded().await.expect("children")), ["config", "quota"]);
    zk.get_config().bounded().await.expect("the config node is world-readable");
    let (acl, _) = zk.get_acl("/zookeeper/config").bounded().await.expect("acl");
    assert_eq!(acl, [Acl::new(Permission::READ, AuthId::new("world", "anyone"))]);
    assert_eq!(zk.set_data("/zookeeper/config", b"x", None).bounded().await.expect_err("read-only"), Error::NoAuth);
    let (_, root) = zk.get_data("/").bounded().await.expect("root");
    assert_eq!((root.czxid, root.num_children), (0, 1));
}

#[tokio::test]
async fn get_all_children_number_counts_descendants() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    for path in ["/cnt", "/cnt/a", "/cnt/a/b", "/cnt/a/b/d", "/cnt/c", "/cntx"] {
        zk.create(path, b"", &PERSISTENT).bounded().await.expect("create");
    }
    assert_eq!(zk.count_descendants_number("/cnt").bounded().await.expect("count"), 4);
    assert_eq!(zk.count_descendants_number("/cnt/a").bounded().await.expect("count"), 2);
    assert_eq!(zk.count_descendants_number("/cnt/c").bounded().await.expect("count"), 0);
    // The root counts /zookeeper, /zookeeper/quota and /zookeeper/config too.
    assert_eq!(zk.count_descendants_number("/").bounded().await.expect("count"), 3 + 6);
    assert_eq!(zk.count_descendants_number("/missing").bounded().await.expect_err("count"), Error::NoNode);
}

#[tokio::test]
async fn get_ephemerals_lists_the_sessions_own() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let other = server.client().await;
    zk.create("/eph", b"", &PERSISTENT).bounded().await.expect("create");
    zk.create("/eph/sub", b"", &PERSISTENT).bounded().await.expect("create");
    for path in ["/eph/a", "/eph/b", "/eph/sub/c", "/other"] {
        zk.create(path, b"", &EPHEMERAL).bounded().await.expect("create");
    }
    other.create("/eph/x", b"", &EPHEMERAL).bounded().await.expect("create");

    let all = zk.list_ephemerals("/").bounded().await.expect("ephemerals");
    assert_eq!(sorted(all), ["/eph/a", "/eph/b", "/eph/sub/c", "/other"]);
    let under = zk.list_ephemerals("/eph").bounded().await.expect("ephemerals");
    assert_eq!(sorted(under), ["/eph/a", "/eph/b", "/eph/sub/c"]);
    let prefix = zk.list_ephemerals("/eph/s").bounded().await.expect("ephemerals");
    assert_eq!(prefix, ["/eph/sub/c"], "the prefix is a plain string prefix");
    assert_eq!(other.list_ephemerals("/").bounded().await.expect("ephemerals"), ["/eph/x"]);
    assert!(zk.list_ephemerals("/nothing").bounded().await.expect("ephemerals").is_empty());
}

#[tokio::test]
async fn sync_answers_for_any_path() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/s", b"", &PERSISTENT).bounded().await.expect("create");
    zk.sync("/").bounded().await.expect("sync root");
    zk.sync("/s").bounded().await.expect("sync node");
    zk.sync("/missing").bounded().await.expect("sync does not check existence");
    let other = server.client().await;
    other.set_data("/s", b"new", None).bounded().await.expect("set");
    zk.sync("/s").bounded().await.expect("sync");
    assert_eq!(zk.get_data("/s").bounded().await.expect("get").0, b"new");
}

#[tokio::test]
async fn large_data_up_to_the_frame_limit() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (stat, _) = zk.create("/big", &data, &PERSISTENT).bounded().await.expect("create");
    assert_eq!(stat.data_length, 1_000_000);
    let (read, _) = zk.get_data("/big").bounded().await.expect("get");
    assert!(read == data, "data differs");
}

#[tokio::test]
async fn reconfig_is_disabled() {
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.client_addr).await;
    let body = Jute::new().str("").str("").str("server.2=127.0.0.1:2888:3888;2181").i64(-1).bytes();
    let reply = raw.request(op::RECONFIG, &body).await;
    assert_eq!(reply.err, code::RECONFIG_DISABLED);
    assert_eq!(raw.request(op::EXISTS, &Jute::new().str("/").bool(false).bytes()).await.err, code::OK);
}

/// A getData reply's data length as sent (-1 for null) and the Stat's dataLength.
async fn data_length(raw: &mut RawConn, path: &str) -> (i32, i32) {
    let reply = raw.request(op::GET_DATA, &Jute::new().str(path).bool(false).bytes()).await;
    assert_eq!(reply.err, code::OK, "getData {path}");
    let mut r = raw::Reader(&reply.body);
    let len = r.i32();
    if len > 0 {
        r.0 = &r.0[len as usize..];
    }
    // Stat: czxid, mzxid, ctime, mtime (8 bytes each), version, cversion, aversion (4 each),
    // ephemeralOwner (8), then dataLength.
    r.0 = &r.0[8 * 4 + 4 * 3 + 8..];
    (len, r.i32())
}

/// Null data (length -1 on the wire) stays null, apart from empty data, as in ZooKeeper, whose
/// clients (kazoo, aiozk) tell the two apart (issue 12 l): through create, setData, multi and
/// multiRead. A null node's Stat says dataLength 0, as ZooKeeper's does.
#[tokio::test]
async fn null_data_reads_back_as_null_and_empty_data_as_empty() {
    const MULTI_READ: i32 = 22;
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.client_addr).await;
    let null_create = |path: &str| Jute::new().str(path).i32(-1).open_acl().i32(0).bytes();

    assert_eq!(raw.request(op::CREATE, &null_create("/null")).await.err, code::OK);
    assert_eq!(raw.request(op::CREATE, &raw::create_body("/empty", b"", 0)).await.err, code::OK);
    assert_eq!(data_length(&mut raw, "/null").await, (-1, 0), "created with null data");
    assert_eq!(data_length(&mut raw, "/empty").await, (0, 0), "created with empty data");

    // setData with null, and with empty data on a null node.
    assert_eq!(raw.request(op::CREATE, &raw::create_body("/set", b"x", 0)).await.err, code::OK);
    let set_null = Jute::new().str("/set").i32(-1).i32(-1).bytes();
    assert_eq!(raw.request(op::SET_DATA, &set_null).await.err, code::OK);
    assert_eq!(data_length(&mut raw, "/set").await, (-1, 0), "set to null data");
    let set_empty = Jute::new().str("/null").buf(b"").i32(-1).bytes();
    assert_eq!(raw.request(op::SET_DATA, &set_empty).await.err, code::OK);
    assert_eq!(data_length(&mut raw, "/null").await, (0, 0), "set from null to empty data");

    // Inside a multi, and read back through multiRead.
    let multi = raw::multi_body(&[(op::CREATE, null_create("/multi-null"))]);
    let reply = raw.request(op::MULTI, &multi).await;
    assert_eq!((reply.err, raw::multi_results(&reply.body)), (code::OK, vec![(op::CREATE, 0)]));
    assert_eq!(data_length(&mut raw, "/multi-null").await, (-1, 0), "created with null data in a multi");
    let reads = raw::multi_body(&[
        (op::GET_DATA, Jute::new().str("/multi-null").bool(false).bytes()),
        (op::GET_DATA, Jute::new().str("/empty").bool(false).bytes()),
    ]);
    let reply = raw.request(MULTI_READ, &reads).await;
    assert_eq!(reply.err, code::OK);
    let mut r = raw::Reader(&reply.body);
    let mut lengths = Vec::new();
    for _ in 0..2 {
        let (ty, done, err) = (r.i32(), r.bool(), r.i32());
        assert_eq!((ty, done, err), (op::GET_DATA, false, 0), "multiRead result header");
        let len = r.i32();
        r.0 = &r.0[len.max(0) as usize + 68..];
        lengths.push(len);
    }
    assert_eq!(lengths, [-1, 0], "multiRead's getData results");
}
