//! What the scenarios share: a control plane with three nodes running the Paddock image and the
//! chart installed, a cluster made Available, a ZooKeeper client through a Service, and what a
//! failing test prints.

use std::time::Duration;

use paddock_testkit::kube::{self, ControlPlane, Forward};
use paddock_testkit::Bounded as _;

/// The nodes the node agent runs.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// The repository.
pub fn root() -> std::path::PathBuf {
    paddock_testkit::package_dir(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A control plane with three nodes running the Paddock image, and the chart installed.
pub fn installed() -> ControlPlane {
    installed_with(&[])
}

/// [`installed`], with more `helm install` arguments (`--set ...`).
pub fn installed_with(extra: &[&str]) -> ControlPlane {
    let mut plane = ControlPlane::start(&NODES).expect("control plane");
    let image = kube::image().expect("the Paddock image");
    let reference = format!("paddock:{}", env!("CARGO_PKG_VERSION"));
    plane.start_agent(&NODES, &[(&reference, &image)]).expect("node agent");
    let chart = root().join("charts/paddock");
    plane
        .helm(
            &[
                "install",
                "paddock",
                &chart.display().to_string(),
                "--namespace",
                "paddock-system",
                "--create-namespace",
                "--wait",
                "--timeout",
                "90s",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        )
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

/// Waits until all `n` members of cluster `zk` are ready (Available means a quorum serves; the
/// last member may still be starting).
pub fn all_ready(plane: &ControlPlane, n: usize) {
    let condition = format!("--for=jsonpath={{.status.readyReplicas}}={n}");
    wait(plane, &format!("all {n} members ready"), &["wait", &condition, "--timeout=120s", "pcc/zk"]);
}

/// A Deployment `worker` in `default` of `replicas` pods of the Paddock image, annotated
/// `annotations` (a YAML flow map's entries), whose app takes lock `demo` and then watches `/`.
pub fn workers(replicas: u32, annotations: &str) -> String {
    workers_in("default", replicas, annotations)
}

/// [`workers`] in namespace `ns`.
pub fn workers_in(ns: &str, replicas: u32, annotations: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: worker, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: worker}}}}
  template:
    metadata:
      labels: {{app: worker}}
      annotations: {{{annotations}}}
    spec:
      containers:
        - name: app
          image: paddock:{version}
          command: [/usr/local/bin/paddock, lock, demo, --, /usr/local/bin/paddock, watch, /]
"#,
        version = env!("CARGO_PKG_VERSION")
    )
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
    zk_client_as(plane, service, None).await
}

/// [`zk_client`] (the clear-text port: the test dials the Service's address, which the TLS
/// port's certificate does not name), authenticated with `token` (scheme `k8s`) when given.
pub async fn zk_client_as(
    plane: &ControlPlane,
    service: &str,
    token: Option<&str>,
) -> (Forward, zookeeper_client::Client) {
    let ip = plane.kubectl(&["get", "service", service, "-o", "jsonpath={.spec.clusterIP}"]).expect("client service");
    let ip: std::net::Ipv4Addr = ip.trim().parse().expect("cluster IP");
    let forward = Forward::start(&plane.ns, (ip, 2181).into()).expect("forward");
    let mut connector =
        zookeeper_client::Client::connector().with_session_timeout(Duration::from_secs(10)).with_fail_eagerly();
    if let Some(token) = token {
        connector = connector.with_auth("k8s", token.as_bytes());
    }
    let client = connector
        .connect(&forward.addr.to_string())
        .bounded()
        .await
        .expect("a ZooKeeper client connects through the Service");
    (forward, client)
}

/// A token of ServiceAccount `default` of namespace `ns` for the servers' audience: what kubelet
/// writes into a pod's projected token volume (TokenRequest), here for the test's own client.
pub fn token(plane: &ControlPlane, ns: &str) -> String {
    plane
        .wait_until(&format!("namespace {ns} has its default ServiceAccount"), || {
            plane.kubectl(&["get", "serviceaccount", "default", "-n", ns]).is_ok()
        })
        .expect("default ServiceAccount");
    let token = plane
        .kubectl(&["create", "token", "default", "-n", ns, "--audience", "paddock", "--duration", "1h"])
        .expect("a token");
    token.trim().to_owned()
}

/// Key `key` of Secret `name` in `ns`, decoded.
pub fn secret_value(plane: &ControlPlane, ns: &str, name: &str, key: &str) -> Result<String, String> {
    let template = format!("--template={{{{index .data \"{key}\" | base64decode}}}}");
    plane.kubectl(&["get", "secret", name, "-n", ns, &template])
}

/// A client of the servers' admin ports with TLS, as the operator is one: a client certificate
/// issued for the test from the operator's admin CA (its Secret), used by curl inside the
/// control plane's namespace.
pub struct AdminClient {
    dir: tempfile::TempDir,
}

impl AdminClient {
    /// Issues the certificate from the admin CA the chart's operator made.
    pub fn new(plane: &ControlPlane) -> AdminClient {
        let secret = |key| {
            secret_value(plane, "paddock-system", paddock_operator::tls::ADMIN_CA_SECRET, key).expect("admin CA Secret")
        };
        let (cert, key) = (secret("ca.crt"), secret("ca.key"));
        let authority = paddock_operator::certs::Authority::from_pem("admin CA", &cert, &key).expect("admin CA");
        let issued = paddock_operator::certs::admin_client(&authority, Duration::from_secs(3600)).expect("client cert");
        let dir = tempfile::tempdir().expect("temp dir");
        for (file, text) in [("ca.crt", &cert), ("client.crt", &issued.cert_pem), ("client.key", &issued.key_pem)] {
            std::fs::write(dir.path().join(file), text).expect("write");
        }
        AdminClient { dir }
    }

    /// `GET path` on the admin port of the pod at `ip` of cluster `zk` in `default`, with the
    /// client certificate or without one: the status code and body, or `None` without an answer.
    pub fn get(&self, plane: &ControlPlane, ip: &str, path: &str, with_cert: bool) -> Option<(u16, String)> {
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        // The admin certificate names the pods (`*.zk-peers.default.svc`): any of those names,
        // resolved to the pod's address, is verified as a pod's.
        let host = "admin.zk-peers.default.svc";
        let resolve = format!("{host}:8080:{ip}");
        let url = format!("https://{host}:8080{path}");
        let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
        let mut args = vec!["-sS", "--max-time", "3", "--cacert", &ca, "--resolve", &resolve, "-w", "\n%{http_code}"];
        if with_cert {
            args.extend(["--cert", &cert, "--key", &key]);
        }
        args.push(&url);
        let out = plane.exec("curl", &args).ok()?;
        let (body, code) = out.trim_end().rsplit_once('\n')?;
        Some((code.trim().parse().ok()?, body.to_owned()))
    }
}

/// Apache ZooKeeper's CLI over TLS (the Netty socket) to `server`, trusting `ca`, running
/// `command`: what it printed.
pub fn zkcli_tls(plane: &ControlPlane, ca: &std::path::Path, server: &str, command: &[&str]) -> Result<String, String> {
    let flags = [
        // Debian's zookeeper.jar lacks netty's resolver and codec on its manifest class path.
        "-cp",
        "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/netty-resolver.jar:/usr/share/java/netty-codec.jar",
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        "-Dzookeeper.client.secure=true",
        &format!("-Dzookeeper.ssl.trustStore.location={}", ca.display()),
        "-Dzookeeper.ssl.trustStore.type=PEM",
        // Dialed by the Service's address, which the certificate does not name (it names the
        // Service's DNS names; the sidecar below checks those).
        "-Dzookeeper.ssl.hostnameVerification=false",
    ]
    .join(" ");
    let env = format!("CLIENT_JVMFLAGS={flags}");
    let mut args = vec![env.as_str(), "/usr/share/zookeeper/bin/zkCli.sh", "-server", server];
    args.extend(command);
    plane.exec("env", &args)
}

/// The addresses of cluster `zk`'s server pods.
pub fn pod_ips(plane: &ControlPlane) -> Vec<String> {
    plane
        .kubectl(&["get", "pods", "-l", "app.kubernetes.io/instance=zk", "-o", "jsonpath={.items[*].status.podIP}"])
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The certificate (PEM) the TLS client port of the pod at `ip` shows.
pub fn served_certificate(plane: &ControlPlane, ip: &str) -> Option<String> {
    let out = plane.exec("openssl", &["s_client", "-connect", &format!("{ip}:2281"), "-showcerts"]).ok()?;
    let start = out.find("-----BEGIN CERTIFICATE-----")?;
    let end = out[start..].find("-----END CERTIFICATE-----")? + start + "-----END CERTIFICATE-----".len();
    Some(format!("{}\n", &out[start..end]))
}

/// Each server pod of cluster `zk` with its container's restart count, `name=count ...`.
pub fn restarts(plane: &ControlPlane) -> String {
    plane
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/instance=zk",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}",
        ])
        .unwrap_or_default()
}
