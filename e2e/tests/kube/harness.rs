//! What the scenarios share: a control plane with three nodes running the Paddock image and the
//! chart installed, a cluster made Available, a ZooKeeper client through a Service, and what a
//! failing test prints.

use std::time::Duration;

use paddock_testkit::kube::{self, ControlPlane, Forward};

/// The nodes the node agent runs.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// The repository.
pub fn root() -> std::path::PathBuf {
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

/// Applies the CoordinationCluster `zk` in `default` with `spec` and waits until it is
/// Available.
pub fn available(plane: &ControlPlane, spec: &str) {
    plane
        .apply(&format!("apiVersion: paddock.dev/v1alpha1\nkind: CoordinationCluster\nmetadata: {{name: zk, namespace: default}}\nspec: {spec}\n"))
        .expect("apply the cluster");
    wait(plane, "the cluster becomes Available", &["wait", "--for=condition=Available", "--timeout=180s", "pcc/zk"]);
}

/// The reasons of the Events about CoordinationClusters, oldest first.
pub fn events(plane: &ControlPlane) -> Vec<String> {
    plane
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=CoordinationCluster",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
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

pub fn wait(plane: &ControlPlane, what: &str, args: &[&str]) {
    if let Err(e) = plane.kubectl(args) {
        panic!("{what}: {e}\n{}", describe(plane, "default"));
    }
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
