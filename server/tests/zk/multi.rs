//! multi and multiRead: all-or-nothing writes with per-op results, one zxid for the whole multi,
//! and consistent multi-reads.

use zookeeper_client::{Error, MultiReadResult, MultiWriteError, MultiWriteResult};

use crate::harness::{Bounded, TestServer, PERSISTENT, SEQUENTIAL};
use paddock_testkit::raw::{self, code, op, Jute, RawConn};

#[tokio::test]
async fn a_failed_multi_changes_nothing_and_reports_every_op() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/m", b"", &PERSISTENT).bounded().await.expect("create");
    zk.create("/m/existing", b"before", &PERSISTENT).bounded().await.expect("create");
    let parent_before = zk.check_stat("/m").bounded().await.expect("exists").expect("node");
    let existing_before = zk.get_data("/m/existing").bounded().await.expect("get");

    // Exact per-op results on the wire: 0 before the failing op, its code at it, -2 after.
    let mut raw = RawConn::connect(server.client_addr).await;
    let body = raw::multi_body(&[
        (op::CREATE, raw::create_body("/m/a", b"", 0)),
        (op::SET_DATA, Jute::new().str("/m/existing").buf(b"after").i32(-1).bytes()),
        (op::DELETE, Jute::new().str("/m/missing").i32(-1).bytes()),
        (op::CREATE, raw::create_body("/m/b", b"", 0)),
        (op::CHECK, Jute::new().str("/m").i32(-1).bytes()),
    ]);
    let reply = raw.request(op::MULTI, &body).await;
    assert_eq!(reply.err, code::OK, "a failed multi is an ok reply whose results are errors");
    assert_eq!(
        raw::multi_results(&reply.body),
        [
            (op::ERROR, code::OK),
            (op::ERROR, code::OK),
            (op::ERROR, code::NO_NODE),
            (op::ERROR, code::RUNTIME_INCONSISTENCY),
            (op::ERROR, code::RUNTIME_INCONSISTENCY),
        ]
    );

    // The same through the client crate.
    let mut multi = zk.new_multi_writer();
    multi.add_create("/m/a", b"", &PERSISTENT).expect("op");
    multi.add_set_data("/m/existing", b"after", None).expect("op");
    multi.add_check_version("/m/existing", 7).expect("op");
    multi.add_create("/m/b", b"", &PERSISTENT).expect("op");
    let failed = multi.commit().bounded().await.expect_err("multi fails");
    assert_eq!(failed, MultiWriteError::OperationFailed { index: 2, source: Error::BadVersion });

    assert_eq!(zk.check_stat("/m/a").bounded().await.expect("exists"), None);
    assert_eq!(zk.check_stat("/m/b").bounded().await.expect("exists"), None);
    assert_eq!(zk.get_data("/m/existing").bounded().await.expect("get"), existing_before);
    let parent_after = zk.check_stat("/m").bounded().await.expect("exists").expect("node");
    assert_eq!(parent_after, parent_before, "not even the parent's counters moved");
    let (_, sequence) = zk.create("/m/s-", b"", &SEQUENTIAL).bounded().await.expect("create");
    assert_eq!(sequence.into_i64(), 1, "the failed creates left no trace in the sequence counter");
}

#[tokio::test]
async fn a_successful_multi_applies_every_op_at_one_zxid() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/m", b"", &PERSISTENT).bounded().await.expect("create");
    zk.create("/m/old", b"", &PERSISTENT).bounded().await.expect("create");

    let mut multi = zk.new_multi_writer();
    multi.add_create("/m/x", b"one", &PERSISTENT).expect("op");
    multi.add_set_data("/m/x", b"two", Some(0)).expect("op");
    multi.add_check_version("/m/x", 1).expect("op");
    multi.add_create("/m/x/child", b"", &PERSISTENT).expect("op");
    multi.add_create("/m/seq-", b"", &SEQUENTIAL).expect("op");
    multi.add_delete("/m/old", Some(0)).expect("op");
    let results = multi.commit().bounded().await.expect("multi");
    assert_eq!(results.len(), 6);

    let MultiWriteResult::Create { path, stat: created } = &results[0] else {
        panic!("expected a create result, got {:?}", results[0]);
    };
    assert_eq!(path, "/m/x");
    let MultiWriteResult::SetData { stat: set } = &results[1] else {
        panic!("expected a setData result, got {:?}", results[1]);
    };
    assert!(matches!(results[2], MultiWriteResult::Check));
    let MultiWriteResult::Create { path: child_path, stat: child } = &results[3] else {
        panic!("expected a create result, got {:?}", results[3]);
    };
    assert_eq!(child_path, "/m/x/child");
    let MultiWriteResult::Create { path: seq_path, .. } = &results[4] else {
        panic!("expected a create result, got {:?}", results[4]);
    };
    assert_eq!(seq_path, "/m/seq-0000000002", "the parent counter counts old and x first");
    assert!(matches!(results[5], MultiWriteResult::Delete));

    assert_eq!(set.version, 1);
    assert_eq!(created.czxid, set.mzxid, "every op of a multi has the multi's zxid");
    assert_eq!(child.czxid, created.czxid);

    let (data, stat) = zk.get_data("/m/x").bounded().await.expect("get");
    assert_eq!(data, b"two");
    assert_eq!((stat.version, stat.num_children, stat.pzxid), (1, 1, created.czxid));
    assert_eq!(zk.check_stat("/m/old").bounded().await.expect("exists"), None);
    let parent = zk.check_stat("/m").bounded().await.expect("exists").expect("node");
    assert_eq!((parent.num_children, parent.cversion, parent.pzxid), (2, 4, created.czxid));
}

#[tokio::test]
async fn multi_results_on_the_wire() {
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.client_addr).await;
    let body = raw::multi_body(&[
        (op::CREATE, raw::create_body("/w", b"", 0)),
        (op::CREATE2, raw::create_body("/w2", b"", 0)),
        (op::SET_DATA, Jute::new().str("/w").buf(b"x").i32(0).bytes()),
        (op::CHECK, Jute::new().str("/w").i32(1).bytes()),
        (op::DELETE, Jute::new().str("/w2").i32(0).bytes()),
    ]);
    let reply = raw.request(op::MULTI, &body).await;
    assert_eq!(reply.err, code::OK);
    assert_eq!(
        raw::multi_results(&reply.body),
        [(op::CREATE, 0), (op::CREATE2, 0), (op::SET_DATA, 0), (op::CHECK, 0), (op::DELETE, 0)]
    );
    let empty = raw.request(op::MULTI, &raw::multi_body(&[])).await;
    assert_eq!(empty.err, code::OK);
    assert!(raw::multi_results(&empty.body).is_empty());
}

#[tokio::test]
async fn multi_read_reads_each_op() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/mr", b"payload", &PERSISTENT).bounded().await.expect("create");
    zk.create("/mr/a", b"", &PERSISTENT).bounded().await.expect("create");
    let expected_stat = zk.check_stat("/mr").bounded().await.expect("exists").expect("node");

    let mut reader = zk.new_multi_reader();
    reader.add_get_data("/mr").expect("op");
    reader.add_get_children("/mr").expect("op");
    reader.add_get_data("/missing").expect("op");
    reader.add_get_children("/mr/a").expect("op");
    let results = reader.commit().bounded().await.expect("multiRead");
    assert_eq!(results.len(), 4);
    match &results[0] {
        MultiReadResult::Data { data, stat } => {
            assert_eq!(data, b"payload");
            assert_eq!(*stat, expected_stat);
        }
        other => panic!("expected data, got {other:?}"),
    }
    match &results[1] {
        MultiReadResult::Children { children } => assert_eq!(children, &["a"]),
        other => panic!("expected children, got {other:?}"),
    }
    match &results[2] {
        MultiReadResult::Error { err } => assert_eq!(*err, Error::NoNode),
        other => panic!("expected an error, got {other:?}"),
    }
    match &results[3] {
        MultiReadResult::Children { children } => assert!(children.is_empty()),
        other => panic!("expected children, got {other:?}"),
    }
}

#[tokio::test]
async fn standalone_check_reports_version_errors() {
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.client_addr).await;
    assert_eq!(raw.request(op::CREATE2, &raw::create_body("/c", b"", 0)).await.err, code::OK);
    assert_eq!(raw.request(op::CHECK, &Jute::new().str("/c").i32(0).bytes()).await.err, code::OK);
    assert_eq!(raw.request(op::CHECK, &Jute::new().str("/c").i32(-1).bytes()).await.err, code::OK);
    assert_eq!(raw.request(op::CHECK, &Jute::new().str("/c").i32(3).bytes()).await.err, code::BAD_VERSION);
    assert_eq!(raw.request(op::CHECK, &Jute::new().str("/nope").i32(0).bytes()).await.err, code::NO_NODE);
}
