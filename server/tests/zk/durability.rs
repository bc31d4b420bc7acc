//! Durability: whatever the server acknowledged survives SIGKILL and a restart on the same data
//! dir (log replay, and snapshot + replay), and so do sessions and their ephemerals.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use zookeeper_client::{Client, Stat};

use crate::harness::{Bounded, TestServer, EPHEMERAL, PERSISTENT, SEQUENTIAL};

/// Every znode under `/d` with its data and Stat.
async fn snapshot_of(zk: &Client) -> BTreeMap<String, (Vec<u8>, Stat)> {
    let mut out = BTreeMap::new();
    let mut pending = vec!["/d".to_owned()];
    while let Some(path) = pending.pop() {
        let (data, stat) = zk.get_data(&path).bounded().await.expect("get");
        for child in zk.list_children(&path).bounded().await.expect("children") {
            pending.push(format!("{path}/{child}"));
        }
        out.insert(path, (data, stat));
    }
    out
}

/// Writes a mixed workload under `/d`: pipelined creates, nested nodes, updates, deletes and
/// sequential nodes. Every call here was acknowledged when it returns.
async fn workload(zk: &Client, round: u32) {
    if round == 0 {
        zk.create("/d", b"root", &PERSISTENT).bounded().await.expect("create");
    }
    let base = format!("/d/r{round}");
    zk.create(&base, b"", &PERSISTENT).bounded().await.expect("create");
    let paths: Vec<String> = (0..100).map(|i| format!("{base}/n{i:03}")).collect();
    let creates = paths.iter().enumerate().map(|(i, path)| {
        let data = format!("value-{round}-{i}").into_bytes();
        async move { zk.create(path, &data, &PERSISTENT).await }
    });
    for result in join_all(creates).bounded().await {
        result.expect("pipelined create");
    }
    for i in (0..100).step_by(7) {
        zk.set_data(&paths[i], format!("updated-{i}").as_bytes(), Some(0)).bounded().await.expect("set");
    }
    for i in (3..100).step_by(11) {
        zk.delete(&paths[i], None).bounded().await.expect("delete");
    }
    zk.create(&format!("{}/deep", paths[1]), b"deep", &PERSISTENT).bounded().await.expect("create");
    for _ in 0..3 {
        zk.create(&format!("{base}/seq-"), b"", &SEQUENTIAL).bounded().await.expect("create");
    }
}

#[tokio::test]
async fn acknowledged_znodes_survive_sigkill() {
    let mut server = TestServer::start().await;
    let zk = server.client().await;
    workload(&zk, 0).await;
    let holder = server.connect(Client::connector().with_session_timeout(Duration::from_secs(2)).with_detached()).await;
    let (held, _) = holder.create("/d/held", b"eph", &EPHEMERAL).bounded().await.expect("create ephemeral");
    let before = snapshot_of(&zk).await;
    assert_eq!(before.len(), 98, "/d, /d/r0, 91 surviving of 100, deep, 3 sequential, held");

    server.kill9();
    drop((zk, holder));
    server.restart().await;

    let zk = server.client().await;
    let after = snapshot_of(&zk).await;
    assert_eq!(after.len(), before.len(), "same znodes after the restart");
    for (path, (data, stat)) in &before {
        let (data_after, stat_after) = after.get(path).unwrap_or_else(|| panic!("{path} lost"));
        assert_eq!(data_after, data, "{path} data");
        assert_eq!(stat_after, stat, "{path} stat");
    }
    assert_eq!(after["/d/held"].1.ephemeral_owner, held.ephemeral_owner, "the ephemeral's session lives on");

    // Counters and zxids continue where they were.
    let (stat, sequence) = zk.create("/d/r0/seq-", b"", &SEQUENTIAL).bounded().await.expect("create");
    assert_eq!(sequence.to_string().len(), 10);
    let newest = before.values().map(|(_, s)| s.mzxid.max(s.pzxid)).max().unwrap_or(0);
    assert!(stat.czxid > newest, "zxid {} not after {newest}", stat.czxid);
    let (children, _) = zk.get_children("/d/r0").bounded().await.expect("children");
    let mut seqs: Vec<&String> = children.iter().filter(|c| c.starts_with("seq-")).collect();
    seqs.sort();
    assert_eq!(seqs.len(), 4);
    assert!(seqs[3].ends_with(&sequence.to_string()), "the sequence continues after {:?}", &seqs[..3]);
}

#[tokio::test]
async fn snapshots_and_compaction_survive_sigkill() {
    // A tiny snapshot interval: restarts restore a snapshot and replay the log after it.
    let mut server = TestServer::start_with(&["--snapshot-every", "25"]).await;
    let zk = server.client().await;
    workload(&zk, 0).await;
    let before = snapshot_of(&zk).await;
    server.kill9();
    drop(zk);
    server.restart().await;

    let zk = server.client().await;
    assert_eq!(snapshot_of(&zk).await, before, "after the first restart");
    workload(&zk, 1).await;
    let before = snapshot_of(&zk).await;
    server.kill9();
    drop(zk);
    server.restart().await;
    let zk = server.client().await;
    assert_eq!(snapshot_of(&zk).await, before, "after the second restart");
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let mut server = TestServer::start().await;
    let zk = server.connect(Client::connector().with_session_timeout(Duration::from_secs(2)).with_detached()).await;
    let (created, _) = zk.create("/held", b"mine", &EPHEMERAL).bounded().await.expect("create ephemeral");
    let session = zk.session().clone();
    server.kill9();
    drop(zk);
    server.restart().await;

    // The restarted server gives every session a fresh timeout; reconnect well within it.
    let resumed = server.connect(Client::connector().with_session(session.clone())).await;
    assert_eq!(resumed.session_id(), session.id());
    let stat = resumed.check_stat("/held").bounded().await.expect("exists").expect("the ephemeral survived");
    assert_eq!((stat.ephemeral_owner, stat.czxid), (session.id().0, created.czxid));
    assert_eq!(resumed.list_ephemerals("/").bounded().await.expect("ephemerals"), ["/held"]);
    resumed.set_data("/held", b"still mine", Some(0)).bounded().await.expect("set");

    // And it still ends like any session: closing it removes the ephemeral.
    let observer = server.client().await;
    let mut state = resumed.state_watcher();
    drop(resumed);
    let closed = async {
        loop {
            if state.changed().await.is_terminated() {
                return;
            }
        }
    };
    closed.bounded().await;
    assert_eq!(observer.check_stat("/held").bounded().await.expect("exists"), None);
}

#[tokio::test]
async fn an_unclaimed_session_expires_after_a_restart() {
    let mut server = TestServer::start().await;
    let zk = server.connect(Client::connector().with_session_timeout(Duration::from_secs(2)).with_detached()).await;
    zk.create("/orphan", b"", &EPHEMERAL).bounded().await.expect("create ephemeral");
    server.kill9();
    drop(zk);
    server.restart().await;
    let observer = server.client().await;
    crate::harness::eventually("the orphaned session to expire after the restart", || async {
        observer.check_stat("/orphan").await.expect("exists").is_none()
    })
    .await;
}
