//! Group membership of ten app pods (`paddock.dev/groups: workers`) while pods churn: some are
//! deleted (SIGTERM: they leave at once), some die (SIGKILL: they leave when their session
//! expires), new ones start. The group and a watcher's view of it end up as exactly the live
//! pods.

use std::collections::BTreeSet;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;

use crate::harness::{next, pods_dir, start_cluster, wait_for_within, Pod, PodSpec};

/// The member ids of the group as `pod` reads it.
async fn members(pod: &Pod) -> BTreeSet<String> {
    let reply = pod.sidecar.call(Method::GET, "/v1/groups/workers", None).await;
    reply.body["members"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect()
}

/// Applies one watch event to `view`.
fn apply(view: &mut BTreeSet<String>, event: &Value) {
    match event["type"].as_str() {
        Some("snapshot") => {
            *view = event["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect();
        }
        Some("joined") => {
            view.insert(event["member"]["id"].as_str().unwrap_or_default().to_owned());
        }
        Some("left") => {
            view.remove(event["id"].as_str().unwrap_or_default());
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_follows_pods_that_come_and_go() {
    let cluster = start_cluster(3).await;
    let dir = pods_dir();
    let spec = PodSpec { groups: Some("workers".to_owned()), ..PodSpec::default() };
    let mut pods = Vec::new();
    for i in 0..10 {
        pods.push(Pod::start(&cluster, dir.path(), &format!("worker-{i}"), &spec).await);
    }
    // The watcher is a pod outside the group.
    let watcher = Pod::start(&cluster, dir.path(), "watcher", &PodSpec::default()).await;
    let all: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    wait_for_within("all ten workers in the group", Duration::from_secs(20), || async {
        (members(&watcher).await == all).then_some(())
    })
    .await;
    let mut stream = watcher.sidecar.stream(Method::GET, "/v1/groups/workers?watch", None).await;
    let mut view = BTreeSet::new();
    apply(&mut view, &next(&mut stream).await.expect("snapshot"));
    assert_eq!(view, all);

    // Three pods are deleted, three die, four new ones start.
    let mut gone = Vec::new();
    for _ in 0..3 {
        let mut pod = pods.remove(0);
        pod.sidecar.sigterm();
        assert!(pod.sidecar.exited().await.success(), "{} did not drain cleanly", pod.name);
        gone.push(pod);
    }
    for _ in 0..3 {
        let mut pod = pods.remove(0);
        pod.sidecar.kill9();
        gone.push(pod);
    }
    for i in 10..14 {
        pods.push(Pod::start(&cluster, dir.path(), &format!("worker-{i}"), &spec).await);
    }
    let live: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();

    // The killed pods leave once their sessions expire (2 s); follow the watcher's events.
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while view != live {
            match next(&mut stream).await {
                Some(event) => apply(&mut view, &event),
                None => break,
            }
        }
        view.clone()
    })
    .await
    .unwrap_or_else(|_| panic!("the watcher's view did not reach the live pods; at {view:?}, want {live:?}"));
    assert_eq!(seen, live, "the watch stream ended early");
    assert_eq!(members(&watcher).await, live);
    // And every live pod comes to see the same group (a pod's reads may lag behind the
    // watcher's by a moment: each is served by the server its session is on).
    for pod in &pods {
        wait_for_within(&format!("{}'s view of the group", pod.name), Duration::from_secs(10), || async {
            (members(pod).await == live).then_some(())
        })
        .await;
    }
    drop(gone);
}
