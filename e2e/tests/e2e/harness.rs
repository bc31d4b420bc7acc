//! Pods as processes. A `paddock-server` "pod" runs the server container the operator renders
//! for a CoordinationCluster (its StatefulSet's pod template and ConfigMap), a sidecar "pod" runs
//! the container the operator's injector adds for the pod's annotations. The harness plays the
//! kubelet and the pod network: it expands `$(VAR)` from the container's env (Downward API and
//! ConfigMap), sets `HOSTNAME` to the pod name, mounts the data dir and socket dir under a temp
//! dir, and maps the cluster's DNS names and container ports to loopback addresses. Anything
//! host-specific left unmapped fails the test, so the operator and this suite cannot drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;
use paddock_operator::crd::CoordinationCluster;
use paddock_operator::injection::{
    sidecar, ClusterAccess, InjectorConfig, APP_HEALTH_ANNOTATION, GROUPS_ANNOTATION, INJECT_ANNOTATION,
    SESSION_TIMEOUT_ANNOTATION, SIDECAR_PORT, SOCKET_PATH,
};
use paddock_operator::resources::{
    config_map, statefulset, Membership, Names, ADMIN_PORT, CLIENT_PORT, DATA_DIR, PEER_PORT,
};
pub use paddock_testkit::cluster::{Cluster, NodeSpec};
pub use paddock_testkit::sidecar::{next, Sidecar};
pub use paddock_testkit::zk::{connect, ensure_node, lost_connection, StateLog, Writer};
use paddock_testkit::{binary, clean_env};
pub use paddock_testkit::{free_addrs, wait_for, wait_for_within, Process, WAIT};

/// The CoordinationCluster every scenario runs.
pub const CLUSTER: &str = "demo";
/// Its namespace.
pub const NAMESPACE: &str = "e2e";
/// The cluster's tick (`spec.config.tickMs`): sessions between 400 ms and 4 s.
pub const TICK_MS: u32 = 200;
/// The session timeout pods ask for (`paddock.dev/session-timeout-ms`): the longest the tick
/// allows. A sidecar's hold deadline (nine tenths of it after its last probe the leader
/// answered) must outlast a leader failover, which takes 1.2–1.6 s with no leader to answer;
/// with 2 s sessions a leader kill often ended every hold and watch stream of a pod
/// (docs/sidecar-api.md, "Hold deadlines").
pub const POD_SESSION_MS: u32 = 4000;
/// The session timeout test clients ask for.
pub const CLIENT_SESSION: std::time::Duration = std::time::Duration::from_secs(4);

fn names() -> Names {
    Names::new(CLUSTER, NAMESPACE)
}

/// The CoordinationCluster a user would apply, with a fast tick, and without TLS: the servers'
/// processes here get no certificate files (the kube suite runs the TLS default).
pub fn resource(replicas: u64) -> CoordinationCluster {
    let document = serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "CoordinationCluster",
        "metadata": { "name": CLUSTER, "namespace": NAMESPACE, "uid": "e2e-uid" },
        "spec": { "replicas": replicas, "config": { "tickMs": TICK_MS }, "tls": { "enabled": false } },
    });
    serde_json::from_value(document).expect("a valid CoordinationCluster")
}

/// What the Downward API tells a pod about itself.
struct PodFacts<'a> {
    name: &'a str,
    field: BTreeMap<&'static str, String>,
}

impl<'a> PodFacts<'a> {
    fn new(name: &'a str) -> Self {
        let field = BTreeMap::from([
            ("metadata.name", name.to_owned()),
            ("metadata.namespace", NAMESPACE.to_owned()),
            ("metadata.uid", format!("uid-{name}")),
            ("status.podIP", "127.0.0.1".to_owned()),
        ]);
        PodFacts { name, field }
    }
}

/// The command a kubelet would run for `container` in pod `pod`, with `rewrites` (in-cluster
/// text → loopback text) applied to args and env values.
fn container_command(
    program: &Path,
    container: &Container,
    pod: &PodFacts,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
    rewrites: &[(String, String)],
) -> Command {
    let mut env: BTreeMap<String, String> = BTreeMap::from([("HOSTNAME".to_owned(), pod.name.to_owned())]);
    for source in container.env_from.iter().flatten() {
        let name = source.config_map_ref.as_ref().map(|r| r.name.clone()).expect("only ConfigMap envFrom");
        let data = config_maps.get(&name).unwrap_or_else(|| panic!("pod refers to a ConfigMap {name} not rendered"));
        env.extend(data.clone());
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, var.value_from.as_ref().and_then(|f| f.field_ref.as_ref())) {
            (Some(value), _) => value.clone(),
            (None, Some(field)) => pod
                .field
                .get(field.field_path.as_str())
                .unwrap_or_else(|| panic!("Downward API field {} is not played", field.field_path))
                .clone(),
            (None, None) => panic!("env {} has a source the harness does not play", var.name),
        };
        env.insert(var.name.clone(), value);
    }
    let localize = |text: &str| -> String {
        let mut text = text.to_owned();
        for (from, to) in rewrites {
            text = text.replace(from.as_str(), to);
        }
        assert!(!text.contains(".svc") && !text.contains("0.0.0.0"), "unmapped in-cluster address in {text:?}");
        text
    };
    let mut command = Command::new(program);
    clean_env(&mut command);
    for (key, value) in &env {
        command.env(key, localize(value));
    }
    for arg in container.args.iter().flatten() {
        let mut arg = arg.clone();
        // Kubernetes expands $(VAR) in args from the container's env.
        for (key, value) in &env {
            arg = arg.replace(&format!("$({key})"), value);
        }
        command.arg(localize(&arg));
    }
    command
}

/// A launcher that starts each node as the server container of the operator's StatefulSet.
fn server_launcher(replicas: u64) -> paddock_testkit::cluster::Launcher {
    Arc::new(move |spec: &NodeSpec| {
        let names = names();
        let cr = resource(replicas);
        let membership = match &spec.initial_members {
            Some(members) => Membership::initial(&names, members.len() as u64),
            None => Membership::Join,
        };
        let config = config_map(&cr, &names);
        let sts = statefulset(&cr, &names, replicas as i32, &membership, &config);
        let container = sts
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.containers.into_iter().next())
            .expect("the StatefulSet has a server container");
        let mut rewrites = vec![
            (DATA_DIR.to_owned(), spec.data_dir().display().to_string()),
            (format!("0.0.0.0:{CLIENT_PORT}"), spec.client_addr.to_string()),
            (format!("0.0.0.0:{PEER_PORT}"), spec.peer_addr.to_string()),
            (format!("0.0.0.0:{ADMIN_PORT}"), spec.admin_addr.to_string()),
            (names.peer_addr(spec.id), spec.advertise_peer.to_string()),
        ];
        for (id, addr) in spec.initial_members.iter().flatten() {
            rewrites.push((names.peer_addr(*id), addr.to_string()));
        }
        let config_maps = BTreeMap::from([(names.config_map(), config.data.clone().unwrap_or_default())]);
        let pod = names.pod(spec.id);
        container_command(&binary("paddock-server"), &container, &PodFacts::new(&pod), &config_maps, &rewrites)
    })
}

/// A CoordinationCluster of `replicas` server pods, every one ready and agreeing on a leader.
pub async fn start_cluster(replicas: u64) -> Cluster {
    Cluster::start(replicas, server_launcher(replicas)).await
}

/// [`start_cluster`] with the peer network under the test's control (partitions).
pub async fn start_partitionable_cluster(replicas: u64) -> Cluster {
    Cluster::start_partitionable(replicas, server_launcher(replicas)).await
}

/// An app pod: the injected sidecar and, optionally, the app container.
pub struct Pod {
    /// Pod name.
    pub name: String,
    /// The sidecar.
    pub sidecar: Sidecar,
    /// The app process (`paddock-e2e-app`), if the pod runs one.
    pub app: Option<Process>,
    dir: PathBuf,
}

/// How a pod is annotated, beyond `paddock.dev/inject`.
#[derive(Default, Clone)]
pub struct PodSpec {
    /// `paddock.dev/groups`.
    pub groups: Option<String>,
    /// The app's health port, for `paddock.dev/app-health-url`.
    pub health_port: Option<u16>,
}

impl Pod {
    /// Starts pod `name`'s sidecar as injected for `spec`'s annotations, connected to `cluster`'s
    /// client Service (every node), with its socket and logs in `dir`.
    pub async fn start(cluster: &Cluster, dir: &Path, name: &str, spec: &PodSpec) -> Pod {
        let names = names();
        let mut annotations = BTreeMap::from([
            (INJECT_ANNOTATION.to_owned(), CLUSTER.to_owned()),
            (SESSION_TIMEOUT_ANNOTATION.to_owned(), POD_SESSION_MS.to_string()),
        ]);
        if let Some(groups) = &spec.groups {
            annotations.insert(GROUPS_ANNOTATION.to_owned(), groups.clone());
        }
        if let Some(port) = spec.health_port {
            annotations.insert(APP_HEALTH_ANNOTATION.to_owned(), format!("http://127.0.0.1:{port}/"));
        }
        let injector =
            InjectorConfig { image: "paddock-sidecar:e2e".to_owned(), image_pull_policy: None, resources: None };
        // The e2e servers run without TLS (the kube suite covers it).
        let plain = ClusterAccess::default();
        let container =
            sidecar(&annotations, NAMESPACE, &injector, &plain).expect("valid annotations").expect("injected");
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("pod dir");
        let socket = dir.join("paddock.sock");
        let rewrites = vec![
            (SOCKET_PATH.to_owned(), socket.display().to_string()),
            (format!("{}.{NAMESPACE}.svc:{CLIENT_PORT}", names.client_service()), cluster.connect_all()),
            (format!("0.0.0.0:{SIDECAR_PORT}"), "127.0.0.1:0".to_owned()),
        ];
        let mut command = container_command(
            &binary("paddock-sidecar"),
            &container,
            &PodFacts::new(name),
            &BTreeMap::new(),
            &rewrites,
        );
        // Not from the injector: probe a paused app every 200 ms (3 misses make it unhealthy)
        // rather than every 5 s, to keep the suite short.
        command.env("PADDOCK_APP_HEALTH_INTERVAL_MS", "200");
        let sidecar = Sidecar::launch(command, name, &socket, &dir.join("sidecar.log")).await;
        Pod { name: name.to_owned(), sidecar, app: None, dir }
    }

    /// Starts the app container: `paddock-e2e-app` with `mode` args, writing to `resource`.
    pub async fn start_app(&mut self, resource: &Path, mode: &[&str]) {
        let mut command = Command::new(binary("paddock-e2e-app"));
        clean_env(&mut command);
        command
            .arg("--socket")
            .arg(&self.sidecar.socket)
            .args(["--pod", &self.name])
            .arg("--resource")
            .arg(resource)
            .arg("--acks")
            .arg(self.acks_path())
            .args(mode);
        let log = self.dir.join("app.log");
        self.app = Some(Process::start(&format!("app {}", self.name), command, "paddock-e2e-app ready", &log).await);
    }

    /// Where the app records its writes' outcomes.
    pub fn acks_path(&self) -> PathBuf {
        self.dir.join("acks")
    }

    /// The app's records: `(accepted, fenced)` entries.
    pub fn acks(&self) -> (Vec<paddock_e2e::fence::Entry>, Vec<paddock_e2e::fence::Entry>) {
        let text = std::fs::read_to_string(self.acks_path()).unwrap_or_default();
        let (mut ok, mut fenced) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let Some((word, rest)) = line.split_once(' ') else { continue };
            let entry = paddock_e2e::fence::parse(rest).expect("an acks line").into_iter().next().expect("one entry");
            if word == "ok" {
                ok.push(entry)
            } else {
                fenced.push(entry)
            }
        }
        (ok, fenced)
    }

    /// The app, which must run.
    pub fn app(&self) -> &Process {
        self.app.as_ref().expect("the pod runs an app")
    }
}

/// A temp dir for a scenario's pods; kept when `PADDOCK_KEEP_TEST_DIR` is set.
pub fn pods_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("PADDOCK_KEEP_TEST_DIR").is_some();
    let dir = tempfile::Builder::new().prefix("paddock-e2e").disable_cleanup(keep).tempdir().expect("temp dir");
    if keep {
        eprintln!("pods in {}", dir.path().display());
    }
    dir
}

/// A free loopback port.
pub fn free_port() -> u16 {
    free_addrs(1)[0].port()
}
