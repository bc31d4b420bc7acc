//! Containers and TTL nodes: their Stat, and the leader's reaper deleting them once emptied
//! (containers) or childless and unmodified for their TTL.

use std::time::Duration;

use zookeeper_client::{Acls, CreateMode, EventType};

use crate::harness::{eventually, Bounded, TestServer, CONTAINER, PERSISTENT};
use paddock_testkit::raw::{self, code, op, Jute, RawConn};

fn ttl(millis: u64) -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(millis))
}

#[tokio::test]
async fn container_is_deleted_after_its_last_child() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let (stat, _) = zk.create("/ctr", b"", &CONTAINER).bounded().await.expect("create container");
    assert_eq!(stat.ephemeral_owner, 0, "containers show no owner");
    zk.create("/ctr/a", b"", &PERSISTENT).bounded().await.expect("create child");
    zk.create("/ctr/b", b"", &PERSISTENT).bounded().await.expect("create child");
    zk.create("/never-filled", b"", &CONTAINER).bounded().await.expect("create container");
    zk.delete("/ctr/a", None).bounded().await.expect("delete");

    let (_, watch) = zk.check_and_watch_stat("/ctr").bounded().await.expect("watch");
    zk.delete("/ctr/b", None).bounded().await.expect("delete last child");
    let fired = watch.changed().bounded().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (EventType::NodeDeleted, "/ctr"));
    assert_eq!(zk.check_stat("/ctr").bounded().await.expect("exists"), None);
    // The reaper ran, and spared the container that never had a child.
    assert!(zk.check_stat("/never-filled").bounded().await.expect("exists").is_some());
}

#[tokio::test]
async fn ttl_node_expires_when_childless() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let (stat, _) = zk.create("/ttl", b"", &ttl(200)).bounded().await.expect("create ttl node");
    assert_eq!(stat.ephemeral_owner, 0, "TTL nodes show no owner");
    let (stat, sequence) = zk
        .create(
            "/ttl-seq-",
            b"",
            &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(200)),
        )
        .bounded()
        .await
        .expect("create sequential ttl node");
    assert_eq!(stat.ephemeral_owner, 0);
    let seq_path = format!("/ttl-seq-{sequence}");
    eventually("TTL nodes to expire", || async {
        zk.check_stat("/ttl").await.expect("exists").is_none()
            && zk.check_stat(&seq_path).await.expect("exists").is_none()
    })
    .await;
}

#[tokio::test]
async fn ttl_node_with_a_child_is_kept() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/parent", b"", &ttl(200)).bounded().await.expect("create ttl node");
    zk.create("/parent/child", b"", &PERSISTENT).bounded().await.expect("create child");
    zk.create("/probe", b"", &ttl(200)).bounded().await.expect("create probe");
    // Once the probe (same TTL, created later) has expired, the parent's TTL has passed too.
    let (probe, watch) = zk.check_and_watch_stat("/probe").bounded().await.expect("watch");
    if probe.is_some() {
        assert_eq!(watch.changed().bounded().await.event_type, EventType::NodeDeleted);
    }
    assert!(zk.check_stat("/parent").bounded().await.expect("exists").is_some(), "a TTL node with a child stays");

    zk.delete("/parent/child", None).bounded().await.expect("delete child");
    eventually("the emptied TTL node to expire", || async {
        zk.check_stat("/parent").await.expect("exists").is_none()
    })
    .await;
}

#[tokio::test]
async fn invalid_ttl_creates_are_bad_arguments() {
    let server = TestServer::start().await;
    let mut raw = RawConn::connect(server.client_addr).await;
    const CREATE_TTL: i32 = 21;
    // (flags, ttl): a zero or negative TTL, a TTL beyond 2^40-1 ms, and TTL on a non-TTL mode.
    for (flags, ttl_ms) in [(5, 0), (5, -1), (5, 1 << 40), (6, 0), (0, 1000), (1, 1000), (4, 1000)] {
        let body = Jute::new().str("/t").buf(b"").open_acl().i32(flags).i64(ttl_ms).bytes();
        let reply = raw.request(CREATE_TTL, &body).await;
        assert_eq!(reply.err, code::BAD_ARGUMENTS, "createTTL flags {flags} ttl {ttl_ms}");
    }
    let body = Jute::new().str("/t").buf(b"").open_acl().i32(5).i64(60_000).bytes();
    assert_eq!(raw.request(CREATE_TTL, &body).await.err, code::OK);
    let reply = raw.request(op::EXISTS, &Jute::new().str("/t").bool(false).bytes()).await;
    assert_eq!(reply.err, code::OK);
    assert_eq!(raw::Reader(&reply.body).rest(), 68, "a Stat");
}
