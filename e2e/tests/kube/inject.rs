//! The sidecar injected by the real API server calling the operator's webhook over TLS, apps
//! holding a lock over the socket, and the lock moving on when its holder's pod is deleted.

use crate::harness::{available, describe, installed, token, workers, zk_client_as};

/// The pod holding lock `demo` (the lowest sequence number) and how many wait for it.
async fn holder(client: &zookeeper_client::Client) -> Option<(String, usize)> {
    let dir = "/default/_paddock/locks/demo";
    let mut children = client.list_children(dir).await.ok()?;
    children.sort_by_key(|c| c.rsplit('-').next().and_then(|s| s.parse::<u64>().ok()));
    let first = children.first()?;
    let (data, _) = client.get_data(&format!("{dir}/{first}")).await.ok()?;
    let data: serde_json::Value = serde_json::from_slice(&data).ok()?;
    Some((data["pod"].as_str()?.to_owned(), children.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_pods_take_a_lock_and_a_deleted_holder_hands_it_on() {
    let plane = installed();
    // The sidecars speak TLS and authenticate with their pods' tokens (the defaults); the
    // clear-text port serves this test's own client.
    available(&plane, "{replicas: 1, tls: {plainClientPort: true}}");
    // The session timeout is longer than the test waits for the lock to move: it must move on
    // the release, not on the session's expiry.
    let workers = workers(2, r#"paddock.dev/inject: zk, paddock.dev/session-timeout-ms: "30000""#);
    plane.apply(&workers).expect("apply the workers");
    plane
        .kubectl(&["rollout", "status", "deployment/worker", "--timeout=120s"])
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));

    // The API server sent the pods to the webhook: each has the native sidecar.
    let sidecars = plane
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=worker",
            "-o",
            "jsonpath={range .items[*]}{.spec.initContainers[0].name}/{.spec.initContainers[0].restartPolicy} {end}",
        ])
        .expect("pods");
    assert_eq!(sidecars.split_whitespace().collect::<Vec<_>>(), ["paddock-sidecar/Always"; 2], "{sidecars}");

    // The locks are in /default, which namespace default's identities alone may read.
    let (_forward, client) = zk_client_as(&plane, "zk-client", Some(&token(&plane, "default"))).await;
    let first = paddock_testkit::wait_for("one worker holds the lock and the other waits", || async {
        holder(&client).await.filter(|(_, n)| *n == 2).map(|(pod, _)| pod)
    })
    .await;
    plane.kubectl(&["delete", "pod", &first, "--wait=false"]).expect("delete the holder");
    // The holder's app gets SIGTERM and lets go; the other worker (or the pod made in the
    // deleted one's place) holds the lock long before a 30 s session could have expired.
    let next = paddock_testkit::wait_for("another worker holds the lock", || async {
        holder(&client).await.map(|(pod, _)| pod).filter(|pod| *pod != first)
    })
    .await;
    assert_ne!(next, first);

    // With the default pvcRetention (Retain) the claim outlives the cluster.
    plane.kubectl(&["delete", "pcc", "zk", "--wait=true", "--timeout=60s"]).expect("delete the cluster");
    plane
        .wait_until("the StatefulSet is garbage-collected", || {
            plane.kubectl(&["get", "statefulset", "zk", "-o", "name"]).is_err()
        })
        .expect("gc");
    let claims = plane.kubectl(&["get", "pvc", "-o", "name"]).expect("claims");
    assert_eq!(claims.trim(), "persistentvolumeclaim/data-zk-0", "the claim is retained");
}
