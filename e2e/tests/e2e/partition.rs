//! A network partition cuts two of five server pods (the leader among them) off from the other
//! three: the majority elects a leader and goes on, the minority acknowledges nothing, and after
//! the partition heals every node holds exactly what was acknowledged.

use std::time::Duration;

use paddock_testkit::zk::{assert_same_everywhere, PERSISTENT};

use crate::harness::{connect, ensure_node, start_partitionable_cluster, wait_for, Writer, CLIENT_SESSION, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_acknowledges_nothing_and_loses_nothing() {
    let cluster = start_partitionable_cluster(5).await;
    let all = cluster.ids();
    let leader = cluster.leader().await;
    let minority: Vec<u64> =
        std::iter::once(leader).chain(all.iter().copied().filter(|id| *id != leader).take(1)).collect();
    let majority: Vec<u64> = all.iter().copied().filter(|id| !minority.contains(id)).collect();

    let setup = connect(&cluster.connect_all(), CLIENT_SESSION).await.expect("client");
    ensure_node(&setup, "/split").await;
    let writer =
        Writer::spawn(connect(&cluster.connect_string(&majority), CLIENT_SESSION).await.expect("client"), "/split");
    // A client that can only reach the minority side.
    let stranded = connect(&cluster.connect_string(&minority), CLIENT_SESSION).await.expect("client");
    writer.wait_progress(20, WAIT).await;

    cluster.partition(&minority);
    let new_leader = cluster.wait_leader(&majority, None).await;
    assert!(majority.contains(&new_leader));
    // The old leader notices it lost its quorum: it stops being ready.
    let old = cluster.node(leader);
    wait_for(&format!("the old leader {leader} to turn unready"), || async { (!old.ready().await).then_some(()) })
        .await;
    writer.wait_progress(30, WAIT).await;
    // Writes through the minority side are never acknowledged while the partition lasts.
    for i in 0..5 {
        let path = format!("/split/stranded-{i}");
        let outcome = tokio::time::timeout(Duration::from_secs(2), stranded.create(&path, b"x", &PERSISTENT)).await;
        assert!(!matches!(outcome, Ok(Ok(_))), "the minority acknowledged {path}");
    }

    cluster.heal();
    cluster.wait_leader(&all, None).await;
    cluster.wait_ready(&all).await;
    writer.wait_progress(20, WAIT).await;
    let report = writer.finish().await;
    assert!(report.errors.is_empty(), "writer errors: {:?}", report.errors);
    for id in &minority {
        cluster.wait_caught_up(*id, &all).await;
    }
    assert_same_everywhere(&cluster, &all, "/split", &report.acked).await;
}
