//! Leader failure: SIGKILL of the leader under write load, once and repeatedly with restarts.
//! A new leader takes over quickly, sessions on the survivors live on (with their ephemerals
//! and watches), and no acknowledged write is lost.

use std::time::{Duration, Instant};

use zookeeper_client::{EventType, OneshotWatcher};

use crate::harness::{
    assert_same_everywhere, ensure_node, retrying, start_cluster, Bounded, Clients, StateLog, Writer, EPHEMERAL,
    PERSISTENT, WAIT,
};

/// How soon the survivors must agree on a new leader after the old one dies.
const ELECTION_BOUND: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_under_load_loses_no_session_and_no_write() {
    let mut cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let survivors: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();

    let setup = cluster.client(&survivors).await;
    for path in ["/t2", "/t2/load", "/t2/watched"] {
        ensure_node(&setup, path).await;
    }

    // A client per survivor, each with an ephemeral znode and a data watch.
    struct Survivor {
        id: u64,
        client: zookeeper_client::Client,
        states: StateLog,
        watcher: OneshotWatcher,
    }
    let mut clients = Vec::new();
    for id in &survivors {
        let client = cluster.client(&[*id]).await;
        let states = StateLog::watch(&client);
        client.create(&format!("/t2/eph-{id}"), b"", &EPHEMERAL).bounded().await.expect("ephemeral");
        let watched = format!("/t2/watched/{id}");
        ensure_node(&client, &watched).await;
        let (_, _, watcher) = client.get_and_watch_data(&watched).bounded().await.expect("watch");
        clients.push(Survivor { id: *id, client, states, watcher });
    }

    // Steady writes through a follower.
    let writer_client = cluster.client(&[survivors[0]]).await;
    let writer_states = StateLog::watch(&writer_client);
    let writer = Writer::spawn(writer_client, "/t2/load");
    writer.wait_progress(50, WAIT).await;

    let killed_at = Instant::now();
    cluster.node_mut(leader).kill9();
    let new_leader = cluster.wait_leader(&survivors, Some(leader)).await;
    let elected_in = killed_at.elapsed();
    eprintln!("node {new_leader} took over from node {leader} {elected_in:?} after the SIGKILL");
    assert!(elected_in < ELECTION_BOUND, "a new leader took {elected_in:?} (bound {ELECTION_BOUND:?})");

    writer.wait_progress(100, WAIT).await;
    let report = writer.finish().await;
    eprintln!("writer: {} acknowledged, {} lost-connection retries", report.acked.len(), report.retries);
    assert!(report.errors.is_empty(), "writer errors: {:?}", report.errors);
    writer_states.assert_never_expired("the writer");

    // Every acknowledged write is on both survivors, and they agree.
    assert_same_everywhere(&cluster, &survivors, "/t2", &report.acked).await;

    // Sessions, ephemerals and watches survived.
    for survivor in &clients {
        let path = format!("/t2/eph-{}", survivor.id);
        let stat = setup
            .check_stat(&path)
            .bounded()
            .await
            .expect("exists")
            .unwrap_or_else(|| panic!("ephemeral {path} of the client on node {} is gone", survivor.id));
        assert_eq!(stat.ephemeral_owner, survivor.client.session_id().0, "owner of {path}");
    }
    for survivor in clients {
        let watched = format!("/t2/watched/{}", survivor.id);
        retrying("set data", || setup.set_data(&watched, b"after the failover", None)).await.expect("set data");
        let event = survivor.watcher.changed().bounded().await;
        assert_eq!(event.event_type, EventType::NodeDataChanged, "watch on node {}: {event:?}", survivor.id);
        assert_eq!(event.path, watched);
        survivor.client.get_data(&watched).bounded().await.expect("the session still works");
        survivor.states.assert_never_expired(&format!("the client on node {}", survivor.id));
    }

    // The old leader comes back as a follower with everything.
    cluster.node_mut(leader).start().await;
    cluster.wait_ready(&all).await;
    cluster.wait_caught_up(leader, &all).await;
    assert_same_everywhere(&cluster, &all, "/t2/load", &report.acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_leader_kills_and_restarts_lose_no_write() {
    let mut cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let setup = cluster.client(&all).await;
    for path in ["/t3", "/t3/load", "/t3/rounds"] {
        ensure_node(&setup, path).await;
    }
    drop(setup);

    // One client over all three nodes writes throughout; it must ride every failover.
    let writer_client = cluster.client(&all).await;
    let writer_states = StateLog::watch(&writer_client);
    let writer = Writer::spawn(writer_client, "/t3/load");
    let mut acked = Vec::new();
    let mut leaders = Vec::new();

    for round in 0..3 {
        writer.wait_progress(30, WAIT).await;
        let leader = cluster.wait_leader(&all, None).await;
        leaders.push(leader);
        cluster.node_mut(leader).kill9();
        let survivors: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();
        let new_leader = cluster.wait_leader(&survivors, Some(leader)).await;
        eprintln!("round {round}: killed leader {leader}, node {new_leader} took over");

        // A write through each survivor while the old leader is down.
        for id in &survivors {
            let client = cluster.client(&[*id]).await;
            let path = format!("/t3/rounds/r{round}-via-{id}");
            retrying(&path, || client.create(&path, b"", &PERSISTENT)).await.expect("create while a node is down");
            acked.push(path);
        }
        writer.wait_progress(30, WAIT).await;

        cluster.node_mut(leader).start().await;
        cluster.wait_ready(&all).await;
        cluster.wait_caught_up(leader, &all).await;
    }

    let report = writer.finish().await;
    eprintln!(
        "leaders killed: {leaders:?}; writer: {} acknowledged, {} lost-connection retries",
        report.acked.len(),
        report.retries
    );
    assert!(report.errors.is_empty(), "writer errors: {:?}", report.errors);
    writer_states.assert_never_expired("the writer");
    acked.extend(report.acked);
    assert_same_everywhere(&cluster, &all, "/t3", &acked).await;
}
