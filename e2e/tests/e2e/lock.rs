//! A distributed lock held in turn by three app pods, each writing to a shared fenced resource
//! while it holds the lock, while server pods are killed and restarted: no two holds overlap,
//! fencing tokens only go up, and every acknowledged write is in the resource.

use std::time::Duration;

use nix::sys::signal::Signal;
use paddock_e2e::fence;
use paddock_e2e::history::check_fenced;

use hyper::Method;
use paddock_testkit::poll_for;

use crate::harness::{pods_dir, start_cluster, Pod, PodSpec};

/// Waits until the resource shows `more` further holds (distinct tokens); on failure, says who
/// stands in the lock's line.
async fn wait_holds(resource: &std::path::Path, more: usize, pods: &[Pod]) {
    let count = || {
        let entries = fence::read(resource).unwrap_or_default();
        let mut tokens: Vec<i64> = entries.iter().map(|e| e.token).collect();
        tokens.dedup();
        tokens.len()
    };
    let target = count() + more;
    let reached = poll_for(Duration::from_secs(30), || async { (count() >= target).then_some(()) }).await;
    if reached.is_none() {
        let line = pods[0].sidecar.call(Method::GET, "/v1/nodes/_paddock/locks/migrate?children", None).await;
        let mut owners = Vec::new();
        for name in line.body["children"].as_array().into_iter().flatten().filter_map(|c| c.as_str()) {
            let node =
                pods[0].sidecar.call(Method::GET, &format!("/v1/nodes/_paddock/locks/migrate/{name}"), None).await;
            owners.push(format!("{name}: {}", node.body["data"]));
        }
        panic!("gave up waiting for {target} holds of the lock (at {}); the line: {owners:#?}", count());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_lock_holds_never_overlap_while_servers_fail() {
    let mut cluster = start_cluster(3).await;
    let dir = pods_dir();
    let resource = dir.path().join("resource");
    let mut pods = Vec::new();
    for i in 0..3 {
        let mut pod = Pod::start(&cluster, dir.path(), &format!("worker-{i}"), &PodSpec::default()).await;
        pod.start_app(&resource, &["lock", "--name", "migrate", "--writes", "3"]).await;
        pods.push(pod);
    }
    wait_holds(&resource, 5, &pods).await;

    // The leader dies and comes back; then a follower; then the new leader again.
    for round in 0..3 {
        let victim = if round == 1 {
            let leader = cluster.leader().await;
            cluster.ids().into_iter().find(|id| *id != leader).expect("a follower")
        } else {
            cluster.leader().await
        };
        cluster.node_mut(victim).kill9();
        let rest: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != victim).collect();
        cluster.wait_leader(&rest, None).await;
        wait_holds(&resource, 3, &pods).await;
        cluster.node_mut(victim).start().await;
        cluster.wait_ready(&[victim]).await;
        wait_holds(&resource, 2, &pods).await;
    }

    // Freeze the apps (a holder keeps its lock while frozen, so nobody else writes), then judge.
    for pod in &pods {
        pod.app().signal(Signal::SIGSTOP);
    }
    let entries = fence::read(&resource).expect("read the resource");
    let mut acked = Vec::new();
    for pod in &pods {
        let (ok, fenced) = pod.acks();
        assert!(fenced.is_empty(), "{} had writes fenced off, so it wrote while not holding: {fenced:?}", pod.name);
        acked.extend(ok);
    }
    let summary =
        check_fenced(&entries, &acked).unwrap_or_else(|problems| panic!("lock history broken: {problems:#?}"));
    assert!(summary.tokens.len() >= 20, "only {} holds", summary.tokens.len());
    let holders: std::collections::BTreeSet<&String> = summary.holders.iter().collect();
    assert!(holders.len() >= 2, "the lock never changed hands between pods: {holders:?}");
}
