//! Scaling 3 → 5 (`kubectl scale`) → 3 (`kubectl patch`) while a ZooKeeper client writes, with
//! the operator replica holding the Lease killed in the middle of the scale-up: learners first,
//! then promotion, and on the way down every member leaves the Raft configuration before the
//! StatefulSet shrinks past its pod — checked by sampling the StatefulSet and then the leader's
//! own view of the membership throughout; Events for each step; no acknowledged write lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_testkit::kube::ControlPlane;

use crate::harness::{available, describe, events, installed, zk_client, AdminClient};

/// `GET /v1/cluster` of the server at `ip`, over the admin port's TLS with a client certificate
/// of the operator's admin CA.
fn admin_view(plane: &ControlPlane, admin: &AdminClient, ip: &str) -> Option<serde_json::Value> {
    let (code, body) = admin.get(plane, ip, "/v1/cluster", true)?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// The leader's view of the membership: the Raft ids in its configuration.
fn leader_members(plane: &ControlPlane, admin: &AdminClient) -> Option<Vec<u64>> {
    let ips = plane
        .kubectl(&["get", "pods", "-l", "app.kubernetes.io/instance=zk", "-o", "jsonpath={.items[*].status.podIP}"])
        .ok()?;
    ips.split_whitespace().find_map(|ip| {
        let view = admin_view(plane, admin, ip)?;
        (view["leader"] == view["id"])
            .then(|| view["members"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_u64()).collect())
    })
}

fn replicas(plane: &ControlPlane) -> Option<u64> {
    plane.kubectl(&["get", "statefulset", "zk", "-o", "jsonpath={.spec.replicas}"]).ok()?.trim().parse().ok()
}

fn lease_holder(plane: &ControlPlane) -> String {
    plane
        .kubectl(&["get", "lease", "paddock-operator", "-n", "paddock-system", "-o", "jsonpath={.spec.holderIdentity}"])
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn settled(plane: &ControlPlane, n: usize) -> bool {
    let Ok(status) = plane.kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.status}"]) else { return false };
    let Ok(status) = serde_json::from_str::<serde_json::Value>(&status) else { return false };
    let members = status["members"].as_array().cloned().unwrap_or_default();
    status["readyReplicas"] == n
        && members.len() == n
        && members.iter().all(|m| m["role"] != "learner" && m["healthy"] == true)
        && replicas(plane) == Some(n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_3_5_3_under_writes_with_the_operator_killed_midway_loses_nothing() {
    let plane = Arc::new(installed());
    // TLS on every port (the default); the test's writer uses the clear-text client port.
    available(&plane, "{replicas: 3, tls: {plainClientPort: true}}");
    let admin = Arc::new(AdminClient::new(&plane));

    // The writer: sequential creates, each acknowledged one recorded.
    let (_forward, client) = zk_client(&plane, "zk-client").await;
    client.create("/w", b"", &paddock_testkit::zk::PERSISTENT).await.expect("create /w");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, client) = (acked.clone(), stop.clone(), client.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.create("/w/n-", b"x", &paddock_testkit::zk::SEQUENTIAL).await {
                    Ok((_, sequence)) => acked.lock().unwrap_or_else(|e| e.into_inner()).push(format!("n-{sequence}")),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    };

    // Up to five; the operator leader dies once the first learner is in.
    let first_operator = lease_holder(&plane);
    // Through the scale subresource, as `kubectl scale` of a StatefulSet.
    plane.kubectl(&["scale", "pcc", "zk", "--replicas=5"]).expect("scale up");
    plane
        .wait_until("a learner joins", || leader_members(&plane, &admin).is_some_and(|m| m.len() > 3))
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    plane
        .kubectl(&["delete", "pod", &first_operator, "-n", "paddock-system", "--grace-period=0", "--force"])
        .expect("kill the operator leader");
    plane
        .wait_until("another operator replica takes the Lease", || {
            let holder = lease_holder(&plane);
            !holder.is_empty() && holder != first_operator
        })
        .expect("lease moved");
    plane
        .wait_until("five voters, all ready", || settled(&plane, 5))
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    let seen = events(&plane);
    for reason in ["ScaleStatefulSet", "AddLearner", "PromoteVoters"] {
        assert!(seen.iter().any(|r| r == reason), "no {reason} event: {seen:?}");
    }

    // Down to three, sampling the order of removal and shrinking throughout.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (plane, violations, sampling, admin) = (plane.clone(), violations.clone(), sampling.clone(), admin.clone());
        std::thread::spawn(move || {
            let mut samples = 0;
            while sampling.load(Ordering::Relaxed) {
                // The StatefulSet first, then the leader's view: removals only shrink the
                // membership, so a member seen after a smaller StatefulSet was there before it.
                let (Some(r), Some(members)) = (replicas(&plane), leader_members(&plane, &admin)) else { continue };
                samples += 1;
                for id in members.iter().filter(|id| **id > r) {
                    violations.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                        "StatefulSet at {r} replicas while member {id} (zk-{}) was in the Raft configuration",
                        id - 1
                    ));
                }
            }
            samples
        })
    };
    plane.kubectl(&["patch", "pcc", "zk", "--type=merge", "-p", "{\"spec\":{\"replicas\":3}}"]).expect("scale down");
    plane
        .wait_until("three voters, all ready", || settled(&plane, 3))
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    assert!(samples > 3, "only {samples} samples of the scale-down");
    let violations = violations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(violations.is_empty(), "{violations:?}");
    assert!(events(&plane).iter().any(|r| r == "RemoveMember"), "no RemoveMember event");

    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(acked.len() > 10, "the writer got {} writes through", acked.len());
    let stored = client.list_children("/w").await.expect("list /w");
    let lost: Vec<&String> = acked.iter().filter(|p| !stored.contains(p)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}
