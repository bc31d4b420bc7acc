//! A configuration change rolls the server pods one at a time, the leader last after its
//! leadership moved, never with more than one server down (what the PodDisruptionBudget allows)
//! — checked by sampling the pods throughout the rollout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use paddock_testkit::kube::ControlPlane;

use crate::harness::{available, describe, events, installed};

/// Each server pod's uid and whether it is Ready.
fn pods(plane: &ControlPlane) -> Option<BTreeMap<String, (String, bool)>> {
    let out = plane
        .kubectl(&[
            "get", "pods", "-l", "app.kubernetes.io/instance=zk", "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])
        .ok()?;
    Some(
        out.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_owned(), (f.next()?.to_owned(), f.next() == Some("True"))))
            })
            .collect(),
    )
}

fn leader(plane: &ControlPlane) -> String {
    plane.kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.status.leader}"]).unwrap_or_default().trim().to_owned()
}

#[test]
fn a_config_change_rolls_one_pod_at_a_time_and_the_leader_last() {
    let plane = Arc::new(installed());
    available(&plane, "{replicas: 3}");
    let before = pods(&plane).expect("pods");
    assert_eq!(before.len(), 3);
    let first_leader = leader(&plane);
    assert!(before.contains_key(&first_leader), "leader {first_leader:?}");
    let pdb = plane.kubectl(&["get", "pdb", "zk", "-o", "jsonpath={.spec.maxUnavailable}"]).expect("the PDB");
    assert_eq!(pdb.trim(), "1");

    // Restarts in the order they were seen, and any moment with more than one server down.
    let order = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (plane, order, violations, sampling, before) =
            (plane.clone(), order.clone(), violations.clone(), sampling.clone(), before.clone());
        std::thread::spawn(move || {
            let mut samples = 0;
            while sampling.load(Ordering::Relaxed) {
                let Some(now) = pods(&plane) else { continue };
                samples += 1;
                let down = before.keys().filter(|name| !now.get(*name).is_some_and(|(_, ready)| *ready)).count();
                if down > 1 {
                    violations.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{down} servers down: {now:?}"));
                }
                let mut order = order.lock().unwrap_or_else(|e| e.into_inner());
                for (name, (uid, _)) in &now {
                    let restarted = before.get(name).is_some_and(|(old, _)| old != uid);
                    if restarted && !order.iter().any(|(n, _)| n == name) {
                        // Who led when this pod's restart was first seen.
                        order.push((name.clone(), leader(&plane)));
                    }
                }
            }
            samples
        })
    };
    plane
        .kubectl(&["patch", "pcc", "zk", "--type=merge", "-p", "{\"spec\":{\"config\":{\"tickMs\":2500}}}"])
        .expect("change the configuration");
    plane
        .wait_until("every server pod restarted and the cluster settled", || {
            let restarted = order.lock().unwrap_or_else(|e| e.into_inner()).len() == 3;
            restarted
                && plane
                    .kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.status.phase} {.status.readyReplicas}"])
                    .is_ok_and(|s| s.trim() == "Running 3")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    assert!(samples > 3, "only {samples} samples of the rollout");
    let violations = violations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(violations.is_empty(), "{violations:?}");
    let order = order.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&first_leader.as_str()), "the leader restarts last: {order:?}");
    let (_, led_by) = &order[2];
    assert_ne!(led_by, &first_leader, "leadership moved before the leader's restart: {order:?}");
    let reasons = events(&plane);
    assert!(
        reasons.iter().any(|r| r == "TransferLeader") && reasons.iter().any(|r| r == "RestartPod"),
        "events: {reasons:?}"
    );
    // The new setting reached the servers' configuration.
    let config =
        plane.kubectl(&["get", "configmap", "-l", "app.kubernetes.io/instance=zk", "-o", "yaml"]).expect("configmap");
    assert!(config.contains("2500"), "{config}");
}
