//! Membership changes through the admin API under a steady write load: grow 3 → 5 (learners,
//! then joint consensus to five voters) and shrink back to 3 (voters, then removal).

use std::collections::BTreeSet;

use serde_json::json;

use crate::harness::{
    assert_same_everywhere, ensure_node, http, poll_for, retrying, start_cluster, wait_for, Bounded, Clients, Cluster,
    StateLog, Writer, PERSISTENT, WAIT,
};

/// `(id, role)` of every member in a node's view, `None` when it does not answer.
async fn roles(cluster: &Cluster, id: u64) -> Option<BTreeSet<(u64, String)>> {
    let view = cluster.node(id).view().await?;
    Some(view.members.into_iter().map(|m| (m.id, m.role.as_str().to_owned())).collect())
}

/// Whether `roles` lists exactly `voters` as leader/follower and nothing else.
fn exactly_voters(roles: &BTreeSet<(u64, String)>, voters: &[u64]) -> bool {
    roles.len() == voters.len()
        && roles.iter().all(|(id, role)| voters.contains(id) && (role == "leader" || role == "follower"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_and_shrink_to_three_under_load() {
    let mut cluster = start_cluster(3, &[]).await;
    let first = [1, 2, 3];
    let everyone = [1, 2, 3, 4, 5];
    let setup = cluster.client(&first).await;
    ensure_node(&setup, "/t5").await;
    ensure_node(&setup, "/t5/load").await;

    // Nodes 4 and 5 start empty and are not members yet: they turn clients away.
    cluster.start_joiner(4).await;
    cluster.start_joiner(5).await;
    for id in [4, 5] {
        wait_for(&format!("joiner {id} to refuse clients"), WAIT, || async {
            cluster.try_client(&[id]).await.is_err().then_some(())
        })
        .await;
    }

    // The writer knows all five servers and may land on any of them.
    let writer_client = cluster.client(&everyone).await;
    let writer_states = StateLog::watch(&writer_client);
    let writer = Writer::spawn(writer_client, "/t5/load");
    writer.wait_progress(20, WAIT).await;

    // A follower turns membership changes away with 421 and the leader's admin address.
    let leader = cluster.wait_leader(&first, None).await;
    let follower = first.into_iter().find(|id| *id != leader).expect("a follower");
    let misdirected =
        http(cluster.node(follower).admin_addr, "POST", "/v1/cluster/voters", Some(&json!({ "ids": first })))
            .bounded()
            .await
            .expect("follower answers");
    assert_eq!(misdirected.status, 421, "{misdirected:?}");
    assert_eq!(misdirected.json()["leader"], json!(leader), "{misdirected:?}");
    assert_eq!(
        misdirected.json()["leader_admin"],
        json!(cluster.node(leader).admin_addr.to_string()),
        "{misdirected:?}"
    );

    // Grow: learners first (the call returns once each has caught up), then five voters.
    for id in [4, 5] {
        let addr = cluster.node(id).peer_addr.to_string();
        let answer =
            cluster.admin_on_leader("POST", "/v1/cluster/learners", Some(&json!({ "id": id, "addr": addr }))).await;
        assert_eq!(answer.status, 200, "adding learner {id}: {answer:?}");
        writer.wait_progress(10, WAIT).await;
    }
    let leader = cluster.wait_leader(&first, None).await;
    wait_for("the leader to list 4 and 5 as learners", WAIT, || async {
        let roles = roles(&cluster, leader).await?;
        (roles.contains(&(4, "learner".to_owned())) && roles.contains(&(5, "learner".to_owned()))).then_some(())
    })
    .await;
    let answer = cluster.admin_on_leader("POST", "/v1/cluster/voters", Some(&json!({ "ids": everyone }))).await;
    assert_eq!(answer.status, 200, "five voters: {answer:?}");
    for id in everyone {
        wait_for(&format!("node {id} to list five voters"), WAIT, || async {
            exactly_voters(&roles(&cluster, id).await?, &everyone).then_some(())
        })
        .await;
    }
    cluster.wait_leader(&everyone, None).await;
    cluster.wait_ready(&everyone).await;
    writer.wait_progress(20, WAIT).await;

    // The new voters serve clients with everything written so far.
    for id in [4, 5] {
        let client = cluster.client(&[id]).await;
        let path = format!("/t5/via-{id}");
        retrying(&path, || client.create(&path, b"", &PERSISTENT)).await.expect("write through a new voter");
        client.sync("/t5/load").bounded().await.expect("sync");
        let seen = client.list_children("/t5/load").bounded().await.expect("list").len();
        assert!(seen >= 20, "node {id} sees only {seen} writes");
    }

    // Shrink: never remove the leader itself; hand leadership over first if it is 4 or 5.
    let leader = cluster.wait_leader(&everyone, None).await;
    if leader > 3 {
        let answer = cluster.admin_on_leader("POST", "/v1/cluster/leader", Some(&json!({ "id": 1 }))).await;
        assert_eq!(answer.status, 200, "leader transfer: {answer:?}");
        cluster.wait_leader(&everyone, Some(leader)).await;
    }
    // A client pinned to node 4, to see what it gets once 4 is removed.
    let pinned = cluster.client(&[4]).await;
    let answer = cluster.admin_on_leader("POST", "/v1/cluster/voters", Some(&json!({ "ids": first }))).await;
    assert_eq!(answer.status, 200, "three voters: {answer:?}");
    writer.wait_progress(10, WAIT).await;
    for id in [4, 5] {
        let answer = cluster.admin_on_leader("DELETE", &format!("/v1/cluster/members/{id}"), None).await;
        assert_eq!(answer.status, 200, "removing {id}: {answer:?}");
    }
    for id in first {
        wait_for(&format!("node {id} to list three voters"), WAIT, || async {
            exactly_voters(&roles(&cluster, id).await?, &first).then_some(())
        })
        .await;
    }
    writer.wait_progress(20, WAIT).await;

    // Removed nodes stop serving. What goes wrong is collected so the rest still runs.
    let mut problems: Vec<String> = Vec::new();
    // A write through a client pinned to removed node 4 is not acknowledged, and since its
    // client could not be told, it must not take effect either.
    let through_removed = tokio::time::timeout(WAIT, pinned.create("/t5/via-removed", b"", &PERSISTENT)).await;
    eprintln!("write through removed node 4: {through_removed:?}");
    if matches!(through_removed, Ok(Ok(_))) {
        problems.push("a write through removed node 4 was acknowledged".to_owned());
    }
    retrying("sync", || setup.sync("/t5")).await.expect("sync");
    if retrying("exists", || setup.check_stat("/t5/via-removed")).await.expect("exists").is_some() {
        problems.push(format!(
            "a write sent through removed node 4 was applied by the cluster, while its client got {through_removed:?}"
        ));
    }
    for id in [4, 5] {
        let node = cluster.node(id);
        if poll_for(WAIT, || async { (!node.ready().await).then_some(()) }).await.is_none() {
            problems.push(format!("removed node {id} still answers /readyz with 200: {:?}", node.view().await));
        }
        if poll_for(WAIT, || async { cluster.try_client(&[id]).await.is_err().then_some(()) }).await.is_none() {
            problems.push(format!("removed node {id} still accepts new clients"));
        }
    }

    let report = writer.finish().await;
    eprintln!("writer: {} acknowledged, {} lost-connection retries", report.acked.len(), report.retries);
    assert!(report.errors.is_empty(), "writer errors: {:?}", report.errors);
    writer_states.assert_never_expired("the writer");
    assert_same_everywhere(&cluster, &first, "/t5", &report.acked).await;
    assert!(problems.is_empty(), "removed nodes keep serving: {problems:#?}");
}
