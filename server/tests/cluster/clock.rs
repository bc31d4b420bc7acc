//! Time in the tree is the leader's (issue 12 i): a server whose clock is off must not stamp
//! its own time into the writes it takes, or ctime/mtime lie and TTL nodes are reaped by a
//! comparison of two machines' clocks. One follower runs an hour behind under libfaketime
//! (Debian's `faketime`, `make system-deps`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zookeeper_client::{Acls, CreateMode, EventType};

use crate::harness::{ensure_node, Bounded, Clients, Cluster, NodeSpec, PERSISTENT};

/// The node whose clock is skewed.
const SKEWED: u64 = 3;
/// Its clock runs this far behind.
const SKEW: &str = "-1h";
/// How far a stamped time may be from the test's (and the leader's) clock: far less than the
/// skew, far more than a slow debug build needs to commit.
const TOLERANCE_MS: i64 = 60_000;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

async fn start_with_a_skewed_follower() -> Cluster {
    assert!(Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing: install faketime (make system-deps)");
    let launcher = Arc::new(|spec: &NodeSpec| {
        let mut command = spec.server_command(Path::new(env!("CARGO_BIN_EXE_paddock-server")));
        command.args(["--tick-ms", "200", "--enable-fault-injection", "--reap-interval-ms", "200"]);
        if spec.id == SKEWED {
            // Only the wall clock: timers and Raft's timeouts run on the monotonic one.
            command.env("LD_PRELOAD", LIBFAKETIME).env("FAKETIME", SKEW).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        command
    });
    let cluster = Cluster::start(3, launcher).await;
    let leader = cluster.wait_leader(&[1, 2, 3], None).await;
    if leader == SKEWED {
        cluster.transfer_leader(1).await;
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_with_a_skewed_clock_carry_the_leaders_time() {
    let cluster = start_with_a_skewed_follower().await;
    let skewed = cluster.client(&[SKEWED]).await;
    ensure_node(&skewed, "/clock").await;

    let before = now_ms();
    let (created, _) = skewed.create("/clock/a", b"", &PERSISTENT).bounded().await.expect("create via the skewed node");
    let set = skewed.set_data("/clock/a", b"x", None).bounded().await.expect("set via the skewed node");
    let after = now_ms();
    for (what, stamped) in [("ctime", created.ctime), ("mtime", set.mtime)] {
        assert!(
            stamped >= before - TOLERANCE_MS && stamped <= after + TOLERANCE_MS,
            "{what} {stamped} of a write through node {SKEWED} is not the leader's time (between {before} and {after})"
        );
    }

    // A TTL node made through the skewed node lives its TTL by the leader's clock: not reaped
    // at once (its mtime an hour in the past), nor an hour late.
    let ttl = Duration::from_secs(4);
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(ttl);
    let made = Instant::now();
    skewed.create("/clock/ttl", b"", &options).bounded().await.expect("create a TTL node via the skewed node");
    let watcher = cluster.client(&[1]).await;
    watcher.sync("/clock").bounded().await.expect("sync on node 1");
    let (_, deleted) = watcher.check_and_watch_stat("/clock/ttl").bounded().await.expect("watch the TTL node");
    let event = tokio::time::timeout(ttl + Duration::from_secs(20), deleted.changed())
        .await
        .unwrap_or_else(|_| panic!("the TTL node made through node {SKEWED} was not reaped within {:?}", ttl * 6));
    let lived = made.elapsed();
    assert_eq!(event.event_type, EventType::NodeDeleted);
    assert!(
        lived >= ttl - Duration::from_millis(500),
        "the TTL node was reaped after {lived:?}, before its TTL {ttl:?}"
    );
}
