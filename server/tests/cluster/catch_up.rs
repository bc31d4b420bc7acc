//! A follower that was down while the log moved on and was compacted past its position catches
//! up through a snapshot install.

use std::time::Duration;

use futures::StreamExt;
use zookeeper_client::Error as ZkError;

use crate::harness::{
    assert_same_everywhere, ensure_node, retrying, start_cluster, wait_for, Bounded, Clients, PERSISTENT, WAIT,
};

const WRITES: usize = 10_000;

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

    // 10k creates, pipelined; a create retried after ConnectionLoss may find its node there.
    let paths: Vec<String> = (0..WRITES).map(|i| format!("/t4/n-{i:05}")).collect();
    let client = &client;
    let failures: Vec<String> = tokio::time::timeout(
        Duration::from_secs(300),
        futures::stream::iter(paths.iter())
            .map(|path| async move {
                match retrying(path, || client.create(path, path.as_bytes(), &PERSISTENT)).await {
                    Ok(_) | Err(ZkError::NodeExists) => None,
                    Err(e) => Some(format!("{path}: {e}")),
                }
            })
            .buffer_unordered(64)
            .filter_map(|failure| async move { failure })
            .collect(),
    )
    .await
    .expect("10k writes within 5 minutes");
    assert!(failures.is_empty(), "{} creates failed, e.g. {:?}", failures.len(), &failures[..failures.len().min(5)]);

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
