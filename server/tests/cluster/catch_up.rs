//! A follower that was down while the log moved on and was compacted past its position catches
//! up through a snapshot install — also when the snapshot is larger than a peer frame.

use std::time::{Duration, Instant};

use futures::StreamExt;
use paddock_server::peer::wire::MAX_FRAME;
use rand::{RngCore, SeedableRng};
use zookeeper_client::{Client, Error as ZkError};

use crate::harness::{
    assert_same_everywhere, ensure_node, poll_for, retrying, start_cluster, wait_for, Bounded, Clients, StateLog,
    PERSISTENT, WAIT,
};

const WRITES: usize = 10_000;

/// Creates every `(path, data)` through `client`, `parallel` at a time (a create retried after
/// ConnectionLoss may find its node there); fails the test if any create fails.
async fn create_all(client: &Client, nodes: &[(String, Vec<u8>)], parallel: usize) {
    let failures: Vec<String> = futures::stream::iter(nodes)
        .map(|(path, data)| async move {
            match retrying(path, || client.create(path, data, &PERSISTENT)).await {
                Ok(_) | Err(ZkError::NodeExists) => None,
                Err(e) => Some(format!("{path}: {e}")),
            }
        })
        .buffer_unordered(parallel)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    let some = &failures[..failures.len().min(5)];
    assert!(failures.is_empty(), "{} of {} creates failed, e.g. {some:?}", failures.len(), nodes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_restarted_after_compaction_catches_up_from_a_snapshot() {
    let mut cluster = start_cluster(3, &["--snapshot-every", "1000"]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let follower = all.into_iter().find(|id| *id != leader).expect("a follower");
    let client = cluster.client(&[leader]).await;
    ensure_node(&client, "/t4").await;
    cluster.wait_caught_up(follower, &all).await;

    let down_at = cluster.node(follower).view().bounded().await.expect("follower answers").applied;
    cluster.node_mut(follower).kill9();

    // 10k creates, pipelined.
    let paths: Vec<String> = (0..WRITES).map(|i| format!("/t4/n-{i:05}")).collect();
    let nodes: Vec<(String, Vec<u8>)> = paths.iter().map(|path| (path.clone(), path.as_bytes().to_vec())).collect();
    tokio::time::timeout(Duration::from_secs(300), create_all(&client, &nodes, 64))
        .await
        .expect("10k writes within 5 minutes");

    // The leader's log no longer reaches back to where the follower stopped.
    let leader_node = cluster.node(leader);
    let purged = wait_for("the leader to compact its log", WAIT, || async {
        let purged = leader_node.metric("paddock_raft_purged_index").await?;
        (purged > down_at as f64 + 1000.0).then_some(purged)
    })
    .await;
    eprintln!("follower {follower} stopped at index {down_at}; leader purged up to {purged}");

    cluster.node_mut(follower).start().await;
    cluster.wait_ready(&all).await;
    cluster.wait_caught_up(follower, &all).await;
    let snapshot = cluster.node(follower).metric("paddock_snapshot_last_index").bounded().await.expect("metric");
    assert!(
        snapshot >= purged,
        "the follower's newest snapshot is at {snapshot}, below the leader's purge point {purged}: it cannot have \
         caught up from the log"
    );

    let tree = assert_same_everywhere(&cluster, &all, "/t4", &paths).await;
    assert_eq!(tree.len(), WRITES);
    assert!(tree.iter().all(|(path, data)| path.as_bytes() == data.as_slice()), "data differs from what was written");
}

/// Writes `count` nodes of `size` bytes under `parent` through `client`, pipelined.
async fn fill(client: &Client, parent: &str, count: usize, size: usize) {
    ensure_node(client, parent).await;
    let nodes: Vec<(String, Vec<u8>)> = (0..count).map(|i| (format!("{parent}/n-{i:05}"), vec![7; size])).collect();
    tokio::time::timeout(Duration::from_secs(120), create_all(client, &nodes, 32))
        .await
        .expect("fill writes within 2 minutes");
}

/// Waits until the leader's log is purged past `index` (so a follower at `index` can only catch
/// up by a snapshot install); the purge point.
async fn purged_past(cluster: &paddock_testkit::cluster::Cluster, leader: u64, index: u64) -> f64 {
    let node = cluster.node(leader);
    wait_for("the leader to compact its log", WAIT, || async {
        let purged = node.metric("paddock_raft_purged_index").await?;
        (purged > index as f64).then_some(purged)
    })
    .await
}

/// Hole e: a follower that installs a snapshot skips every txn the snapshot covers — and with
/// them the watch events those txns would have fired for its connections. A client that stayed
/// connected to the follower (frozen for a moment, as a pod under memory pressure or a long GC
/// pause is) must still be told of every change its watches were set on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fire_for_changes_a_snapshot_install_skipped() {
    // Sessions of 20 s, so the watching client rides out the freeze without a reconnect (a
    // reconnect would re-set its watches through setWatches, not this path).
    let flags = ["--max-session-timeout-ms", "20000", "--snapshot-every", "100", "--snapshot-keep", "10"];
    let cluster = start_cluster(3, &flags).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let follower = all.into_iter().find(|id| *id != leader).expect("a follower");
    let writer = cluster.client(&[leader]).await;
    ensure_node(&writer, "/t5").await;
    ensure_node(&writer, "/t5/parent").await;
    writer.create("/t5/data", b"0", &PERSISTENT).bounded().await.expect("create /t5/data");
    writer.create("/t5/gone", b"0", &PERSISTENT).bounded().await.expect("create /t5/gone");
    cluster.wait_caught_up(follower, &all).await;

    let watcher = paddock_testkit::zk::connect(&cluster.connect_string(&[follower]), Duration::from_secs(20))
        .await
        .expect("a client of the follower");
    let states = StateLog::watch(&watcher);
    let (_, _, data) = watcher.get_and_watch_data("/t5/data").bounded().await.expect("data watch");
    let (_, _, gone) = watcher.get_and_watch_data("/t5/gone").bounded().await.expect("data watch");
    let (_, _, children) = watcher.get_and_watch_children("/t5/parent").bounded().await.expect("child watch");
    let (_, created) = watcher.check_and_watch_stat("/t5/new").bounded().await.expect("exists watch");
    let mut recursive =
        watcher.watch("/t5", zookeeper_client::AddWatchMode::PersistentRecursive).bounded().await.expect("addWatch");

    let at = cluster.node(follower).view().bounded().await.expect("follower answers").applied;
    cluster.node(follower).freeze().await;
    writer.set_data("/t5/data", b"1", None).bounded().await.expect("set /t5/data");
    writer.delete("/t5/gone", None).bounded().await.expect("delete /t5/gone");
    writer.create("/t5/parent/child", b"", &PERSISTENT).bounded().await.expect("create a child");
    writer.create("/t5/new", b"", &PERSISTENT).bounded().await.expect("create /t5/new");
    // Megabytes: more than the kernel buffers between the leader and the frozen follower can
    // hold, so the follower cannot catch up from appends queued in its socket before it froze.
    fill(&writer, "/t5fill", 400, 16 << 10).await;
    let purged = purged_past(&cluster, leader, at).await;
    cluster.node(follower).thaw();
    cluster.wait_caught_up(follower, &all).await;
    let snapshot = cluster.node(follower).metric("paddock_snapshot_last_index").bounded().await.expect("metric");
    assert!(snapshot >= purged, "the follower did not install a snapshot (newest {snapshot}, purged {purged})");

    let within = Duration::from_secs(10);
    let event = |e: zookeeper_client::WatchedEvent| (e.event_type, e.path);
    use zookeeper_client::EventType::*;
    let fired = tokio::time::timeout(within, data.changed()).await.ok().map(event);
    assert_eq!(fired, Some((NodeDataChanged, "/t5/data".into())), "data watch");
    let fired = tokio::time::timeout(within, gone.changed()).await.ok().map(event);
    assert_eq!(fired, Some((NodeDeleted, "/t5/gone".into())), "data watch on a deleted node");
    let fired = tokio::time::timeout(within, children.changed()).await.ok().map(event);
    assert_eq!(fired, Some((NodeChildrenChanged, "/t5/parent".into())), "child watch");
    let fired = tokio::time::timeout(within, created.changed()).await.ok().map(event);
    assert_eq!(fired, Some((NodeCreated, "/t5/new".into())), "exists watch");
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match tokio::time::timeout(within, recursive.changed()).await.ok() {
            Some(e) if e.event_type == Session => {}
            Some(e) => seen.push((e.event_type, e.path)),
            None => break,
        }
    }
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    let expected = [
        (NodeDataChanged, "/t5/data"),
        (NodeDeleted, "/t5/gone"),
        (NodeCreated, "/t5/new"),
        (NodeCreated, "/t5/parent/child"),
    ]
    .map(|(t, p)| (t, p.to_owned()));
    assert_eq!(seen, expected, "the recursive watch on /t5");
    let states = states.states();
    assert!(
        !states.contains(&zookeeper_client::SessionState::Disconnected),
        "the watching client lost its connection, so its watches went through setWatches: {states:?}"
    );
}

/// Hole e: a follower that restarts far behind must not serve (nor say ready) on its first
/// contact with the leader, while the leader is still sending it the snapshot it lacks: until
/// it has applied what the leader had committed, its clients would read a past the cluster left
/// long ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_far_behind_is_not_ready_before_it_caught_up() {
    let mut cluster = start_cluster(3, &["--snapshot-every", "100", "--snapshot-keep", "10"]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let follower = all.into_iter().find(|id| *id != leader).expect("a follower");
    let writer = cluster.client(&[leader]).await;
    cluster.wait_caught_up(follower, &all).await;
    let at = cluster.node(follower).view().bounded().await.expect("follower answers").applied;
    cluster.node_mut(follower).kill9();
    fill(&writer, "/t6fill", 1000, 64).await;
    purged_past(&cluster, leader, at).await;
    let committed = cluster.node(leader).view().bounded().await.expect("leader answers").committed;

    cluster.node_mut(follower).start().await;
    let node = cluster.node(follower);
    // The first moment it says ready, it has applied what the leader had committed (ready is
    // read before applied: applied only grows).
    let applied = wait_for("the follower to be ready", WAIT, || async {
        if !node.ready().await {
            return None;
        }
        node.view().await.map(|view| view.applied)
    })
    .await;
    assert!(
        applied >= committed,
        "the follower said ready at applied index {applied}, behind the {committed} the leader had committed"
    );
}

/// The size of the big values: under the default `--max-buffer` (1 MiB) with the request's own
/// fields.
const VALUE: usize = 1_000_000;

/// How long the restarted follower gets to catch up.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Hole k (issue 12): a snapshot travelled as one peer frame, so a tree whose snapshot is larger
/// than a frame could never reach a follower that lags behind the snapshot point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_a_peer_frame_reaches_a_lagging_follower() {
    let started = Instant::now();
    // One snapshot, after the big values and enough small writes that the leader compacts its
    // log (it keeps the last 1000 entries) past the stopped follower.
    let mut cluster = start_cluster(3, &["--snapshot-every", "1200"]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let follower = all.into_iter().find(|id| *id != leader).expect("a follower");
    let client = cluster.client(&[leader]).await;
    ensure_node(&client, "/big").await;
    ensure_node(&client, "/small").await;
    cluster.wait_caught_up(follower, &all).await;
    let down_at = cluster.node(follower).view().bounded().await.expect("follower answers").applied;
    cluster.node_mut(follower).kill9();

    // Random values, so the lz4-compressed snapshot stays as large as they are: together a few
    // MB more than a peer frame.
    let values: Vec<(String, Vec<u8>)> = (0..MAX_FRAME / VALUE + 4)
        .map(|i| {
            let mut value = vec![0u8; VALUE];
            rand::rngs::StdRng::seed_from_u64(i as u64).fill_bytes(&mut value);
            (format!("/big/v-{i:03}"), value)
        })
        .collect();
    create_all(&client, &values, 4).await;
    let small: Vec<(String, Vec<u8>)> = (0..1300).map(|i| (format!("/small/n-{i:04}"), Vec::new())).collect();
    create_all(&client, &small, 64).await;
    eprintln!("{} writes done after {:?}", values.len() + small.len(), started.elapsed());

    let leader_node = cluster.node(leader);
    let purged = wait_for("the leader to snapshot and compact its log past the follower", 4 * WAIT, || async {
        let purged = leader_node.metric("paddock_raft_purged_index").await?;
        (purged > down_at as f64).then_some(purged)
    })
    .await;
    let snapshot_bytes = leader_node.metric("paddock_snapshot_bytes").bounded().await.expect("metric");
    assert!(
        snapshot_bytes > MAX_FRAME as f64,
        "the leader's snapshot is {snapshot_bytes} bytes, not over the peer frame limit of {MAX_FRAME}: the test \
         proves nothing"
    );
    eprintln!(
        "follower {follower} stopped at index {down_at}; leader purged up to {purged}, snapshot {snapshot_bytes} \
         bytes; after {:?}",
        started.elapsed()
    );

    cluster.node_mut(follower).start().await;
    let target = cluster.node(leader).view().bounded().await.expect("leader answers").committed;
    let node = cluster.node(follower);
    let caught_up = poll_for(CATCH_UP, || async { (node.view().await?.applied >= target).then_some(()) }).await;
    if caught_up.is_none() {
        let applied = node.view().await.map(|v| v.applied);
        panic!(
            "follower {follower} did not catch up within {CATCH_UP:?}: applied {applied:?} of {target}; the log it \
             needs is compacted, so it needs the leader's snapshot of {snapshot_bytes} bytes, over the peer frame \
             limit of {MAX_FRAME}"
        );
    }
    eprintln!("follower {follower} caught up after {:?}", started.elapsed());
    let installed = node.metric("paddock_snapshot_last_index").bounded().await.expect("metric");
    assert!(installed >= purged, "the follower's snapshot is at {installed}, below the leader's purge point {purged}");

    // Every big value, read through the follower after sync.
    cluster.wait_ready(&[follower]).await;
    let reader = cluster.client(&[follower]).await;
    reader.sync("/big").bounded().await.expect("sync");
    for (path, value) in &values {
        let (data, _) = reader.get_data(path).bounded().await.unwrap_or_else(|e| panic!("{path} on the follower: {e}"));
        assert!(data == *value, "{path} on the follower: {} bytes, not the {} written", data.len(), value.len());
    }
    let children = reader.list_children("/small").bounded().await.expect("list");
    assert_eq!(children.len(), small.len(), "small nodes on the follower");
    eprintln!("done after {:?}", started.elapsed());
}
