//! Steady state: every node serves reads and writes, and a write acknowledged anywhere is read
//! everywhere after `sync`.

use zookeeper_client::Client;

use crate::harness::{assert_same_everywhere, ensure_node, start_cluster, Bounded, Clients, PERSISTENT, SEQUENTIAL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_are_read_through_every_node() {
    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let view = cluster.node(leader).view().bounded().await.expect("leader answers");
    let roles: Vec<&str> = view.members.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(view.members.len(), 3, "{view:?}");
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{view:?}");

    let mut clients: Vec<(u64, Client)> = Vec::new();
    for id in all {
        clients.push((id, cluster.client(&[id]).await));
    }
    ensure_node(&clients[0].1, "/t1").await;

    // Each node's client writes; every client reads it after sync. The writer reads its own
    // write at once, without sync (a session reads its own writes, on a follower too).
    for (writer_id, writer) in &clients {
        let path = format!("/t1/from-{writer_id}");
        writer.create(&path, b"v1", &PERSISTENT).bounded().await.expect("create");
        let stat = writer.set_data(&path, format!("v2 from {writer_id}").as_bytes(), Some(0)).bounded().await;
        assert_eq!(stat.expect("set data").version, 1);
        let (own, _) = writer.get_data(&path).bounded().await.expect("own read");
        assert_eq!(own, format!("v2 from {writer_id}").as_bytes(), "node {writer_id} reads its own write");
        for (reader_id, reader) in &clients {
            reader.sync(&path).bounded().await.expect("sync");
            let (data, stat) = reader.get_data(&path).bounded().await.unwrap_or_else(|e| {
                panic!("node {reader_id} cannot read {path} written through node {writer_id}: {e}")
            });
            assert_eq!(data, format!("v2 from {writer_id}").as_bytes(), "read through node {reader_id}");
            assert_eq!(stat.version, 1, "read through node {reader_id}");
        }
    }

    // One znode updated in turn through every node, each update conditional on the version the
    // node read after sync: no update is lost or applied twice.
    ensure_node(&clients[0].1, "/t1/shared").await;
    for round in 0..12usize {
        let (id, client) = &clients[round % clients.len()];
        client.sync("/t1/shared").bounded().await.expect("sync");
        let (_, stat) = client.get_data("/t1/shared").bounded().await.expect("read");
        assert_eq!(stat.version as usize, round, "node {id} sees every earlier update");
        client
            .set_data("/t1/shared", format!("round {round}").as_bytes(), Some(stat.version))
            .bounded()
            .await
            .unwrap_or_else(|e| panic!("conditional update through node {id}: {e}"));
    }

    // Sequential names handed out through different nodes never collide.
    ensure_node(&clients[0].1, "/t1/seq").await;
    let mut names = Vec::new();
    for round in 0..9usize {
        let (_, client) = &clients[round % clients.len()];
        let (_, seq) = client.create("/t1/seq/n-", b"", &SEQUENTIAL).bounded().await.expect("sequential create");
        names.push(seq.into_i64());
    }
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase: {names:?}");

    assert_same_everywhere(&cluster, &all, "/t1", &[]).await;
}
