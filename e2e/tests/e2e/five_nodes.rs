//! A five-node cluster loses two server pods at once (the leader among them): it keeps
//! accepting writes, loses none, and the two catch up when they return.

use paddock_testkit::zk::assert_same_everywhere;

use crate::harness::{connect, ensure_node, start_cluster, StateLog, Writer, CLIENT_SESSION, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_survive_losing_two() {
    let mut cluster = start_cluster(5).await;
    let all = cluster.ids();
    let client = connect(&cluster.connect_all(), CLIENT_SESSION).await.expect("client");
    ensure_node(&client, "/five").await;
    let states = StateLog::watch(&client);
    let writer = Writer::spawn(client, "/five");
    writer.wait_progress(20, WAIT).await;

    let leader = cluster.leader().await;
    let follower = all.iter().copied().find(|id| *id != leader).expect("a follower");
    cluster.node_mut(leader).kill9();
    cluster.node_mut(follower).kill9();
    let rest: Vec<u64> = all.iter().copied().filter(|id| *id != leader && *id != follower).collect();
    cluster.wait_leader(&rest, None).await;
    writer.wait_progress(50, WAIT).await;

    for id in [leader, follower] {
        cluster.node_mut(id).start().await;
    }
    cluster.wait_ready(&all).await;
    writer.wait_progress(20, WAIT).await;
    let report = writer.finish().await;
    assert!(report.errors.is_empty(), "writer errors: {:?}", report.errors);
    states.assert_never_expired("the writer");
    for id in [leader, follower] {
        cluster.wait_caught_up(id, &all).await;
    }
    assert_same_everywhere(&cluster, &all, "/five", &report.acked).await;
}
