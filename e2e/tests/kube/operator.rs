//! The chart installed by helm, the operator running in its pods as the chart makes them (its
//! ServiceAccount and RBAC), and a CoordinationCluster run by it on the node agent's pods.

use paddock_testkit::kube::ControlPlane;

use crate::harness::{all_ready, available, describe, installed, root, wait, zk_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_from_the_chart_forms_and_serves_zookeeper_clients() {
    let plane = installed();
    let operators = plane
        .kubectl(&["get", "deployment", "paddock", "-n", "paddock-system", "-o", "jsonpath={.status.readyReplicas}"])
        .expect("operator deployment");
    assert_eq!(operators.trim(), "2", "both operator replicas ready");
    let crd = std::fs::read_to_string(root().join("crds/coordinationclusters.paddock.dev.yaml")).expect("CRD");
    assert!(crd.contains("kind: CustomResourceDefinition"));
    // TLS on every port (the default), and the clear-text client port too for this test's client.
    available(&plane, "{replicas: 3, storage: {size: 1Gi}, pvcRetention: Delete, tls: {plainClientPort: true}}");
    // Available means a quorum serves; a third member may still be starting (a CI run saw
    // zk-0 not ready yet): wait for all three before reading the status.
    all_ready(&plane, 3);
    let status = plane.kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.status}"]).expect("status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["readyReplicas"], 3, "{status}");
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3), "{status}");
    let leader = status["leader"].as_str().unwrap_or_default().to_owned();
    assert!(leader.starts_with("zk-"), "{status}");
    let table = plane.kubectl(&["get", "pcc", "zk"]).expect("get pcc");
    assert!(table.contains(&leader) && table.contains("Running"), "printer columns: {table}");

    // A ZooKeeper client through the client Service (kube-proxy's rules).
    let (_forward, client) = zk_client(&plane, "zk-client").await;
    client.create("/from-kube", b"hello", &paddock_testkit::zk::PERSISTENT).await.expect("create");
    let (data, _) = client.get_data("/from-kube").await.expect("get");
    assert_eq!(data, b"hello");
    // And Apache ZooKeeper's own CLI (Debian's zkCli) reads it through the same Service.
    let ip = plane.kubectl(&["get", "service", "zk-client", "-o", "jsonpath={.spec.clusterIP}"]).expect("service");
    let zkcli = plane
        .exec("/usr/share/zookeeper/bin/zkCli.sh", &["-server", &format!("{}:2181", ip.trim()), "get", "/from-kube"])
        .expect("zkCli");
    assert!(zkcli.lines().any(|l| l.trim() == "hello"), "zkCli printed: {zkcli}");

    // A server pod deleted: the StatefulSet controller makes it again on its claim, and it
    // rejoins with the data.
    let uid = |plane: &ControlPlane| {
        plane.kubectl(&["get", "pod", "zk-1", "-o", "jsonpath={.metadata.uid}"]).unwrap_or_default()
    };
    let before = uid(&plane);
    plane.kubectl(&["delete", "pod", "zk-1", "--wait=false"]).expect("delete zk-1");
    plane
        .wait_until("zk-1 is recreated", || {
            let now = uid(&plane);
            !now.is_empty() && now != before
        })
        .expect("recreated");
    wait(&plane, "zk-1 is Ready again", &["wait", "--for=condition=Ready", "--timeout=120s", "pod/zk-1"]);
    plane
        .wait_until("the cluster has 3 ready members again", || {
            plane
                .kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.status.readyReplicas}"])
                .is_ok_and(|r| r.trim() == "3")
        })
        .expect("rejoined");
    let claim = plane.kubectl(&[
        "get",
        "pod",
        "zk-1",
        "-o",
        "jsonpath={.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
    ]);
    assert_eq!(claim.as_deref().map(str::trim), Ok("data-zk-1"), "the new pod mounts the old claim");
    let (data, _) = client.get_data("/from-kube").await.expect("get after the pod came back");
    assert_eq!(data, b"hello");
    drop(client);

    // The cluster deleted: what it owns is garbage-collected by the API server's owner
    // references, and with pvcRetention: Delete the claims and their volumes go too.
    plane.kubectl(&["delete", "pcc", "zk", "--wait=true", "--timeout=60s"]).expect("delete the cluster");
    for kind in [
        "statefulset",
        "service",
        "configmap",
        "poddisruptionbudget",
        "persistentvolumeclaim",
        "secret",
        "networkpolicy",
    ] {
        plane
            .wait_until(&format!("every {kind} of the cluster is gone"), || {
                plane
                    .kubectl(&["get", kind, "-l", "app.kubernetes.io/instance=zk", "-o", "name"])
                    .is_ok_and(|out| out.trim().is_empty())
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    }
    plane
        .wait_until("the volumes are deleted", || {
            plane.kubectl(&["get", "pv", "-o", "name"]).is_ok_and(|o| o.trim().is_empty())
        })
        .expect("volumes reclaimed");
}
