//! The chart installed by helm, the operator running in its pods as the chart makes them (its
//! ServiceAccount and RBAC), and a CoordinationCluster run by it on the node agent's pods.

use std::time::Duration;

use paddock_testkit::kube::{self, ControlPlane, Forward};

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

fn root() -> std::path::PathBuf {
    paddock_testkit::package_dir(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A control plane with three nodes running the Paddock image, and the chart installed.
pub fn installed() -> ControlPlane {
    let mut plane = ControlPlane::start(&NODES).expect("control plane");
    let image = kube::image().expect("the Paddock image");
    let reference = format!("paddock:{}", env!("CARGO_PKG_VERSION"));
    plane.start_agent(&NODES, &[(&reference, &image)]).expect("node agent");
    let chart = root().join("charts/paddock");
    plane
        .helm(&[
            "install",
            "paddock",
            &chart.display().to_string(),
            "--namespace",
            "paddock-system",
            "--create-namespace",
            "--wait",
            "--timeout",
            "90s",
        ])
        .unwrap_or_else(|e| panic!("helm install: {e}\n{}", describe(&plane, "paddock-system")));
    plane
}

/// What a failing test prints: every pod with its status, and the events of `ns`.
pub fn describe(plane: &ControlPlane, ns: &str) -> String {
    let pods = plane.kubectl(&["get", "pods", "-A", "-o", "wide"]).unwrap_or_else(|e| e);
    let events = plane.kubectl(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]).unwrap_or_else(|e| e);
    let statuses = plane
        .kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses}{\"\\n\"}{end}",
        ])
        .unwrap_or_else(|e| e);
    format!("pods:\n{pods}\nstatuses:\n{statuses}\nevents in {ns}:\n{events}")
}

fn wait(plane: &ControlPlane, what: &str, args: &[&str]) {
    if let Err(e) = plane.kubectl(args) {
        panic!("{what}: {e}\n{}", describe(plane, "default"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_from_the_chart_forms_and_serves_zookeeper_clients() {
    let plane = installed();
    let operators = plane
        .kubectl(&["get", "deployment", "paddock", "-n", "paddock-system", "-o", "jsonpath={.status.readyReplicas}"])
        .expect("operator deployment");
    assert_eq!(operators.trim(), "2", "both operator replicas ready");
    let crd = std::fs::read_to_string(root().join("crds/coordinationclusters.paddock.dev.yaml")).expect("CRD");
    assert!(crd.contains("kind: CustomResourceDefinition"));
    plane
        .apply("apiVersion: paddock.dev/v1alpha1\nkind: CoordinationCluster\nmetadata: {name: zk, namespace: default}\nspec: {replicas: 3, storage: {size: 1Gi}, pvcRetention: Delete}\n")
        .expect("apply the cluster");
    wait(&plane, "the cluster becomes Available", &["wait", "--for=condition=Available", "--timeout=180s", "pcc/zk"]);
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
    for kind in ["statefulset", "service", "configmap", "poddisruptionbudget", "persistentvolumeclaim"] {
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

/// A ZooKeeper client of Service `service` in `default`, through a [`Forward`] into the
/// control plane's namespace (the Service's ClusterIP, so kube-proxy picks the pod).
pub async fn zk_client(plane: &ControlPlane, service: &str) -> (Forward, zookeeper_client::Client) {
    let ip = plane.kubectl(&["get", "service", service, "-o", "jsonpath={.spec.clusterIP}"]).expect("client service");
    let ip: std::net::Ipv4Addr = ip.trim().parse().expect("cluster IP");
    let forward = Forward::start(&plane.ns, (ip, 2181).into()).expect("forward");
    let client = paddock_testkit::zk::connect(&forward.addr.to_string(), Duration::from_secs(10))
        .await
        .expect("a ZooKeeper client connects through the Service");
    (forward, client)
}
