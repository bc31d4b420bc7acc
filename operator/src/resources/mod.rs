//! Pure builders: from a validated `CoordinationCluster` to the Kubernetes objects the operator
//! owns (headless and client Services, ConfigMap, StatefulSet, PodDisruptionBudget, optional
//! ServiceMonitor), the names and labels they share, and the container pieces (probes, ports, Downward API env, security context) the sidecar injection
//! uses too. No I/O here; applying them is `reconcile`'s job, the spec's checks `validate`'s.

mod configmap;
mod container;
mod identity;
mod networkpolicy;
mod pdb;
mod service;
mod servicemonitor;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

pub use configmap::{config_map, server_env};
pub use container::{container_port, downward, http_probe, https, restricted};
pub use identity::{binding_owner, service_account, token_review_binding, AUTH_DELEGATOR, CLUSTER_NAMESPACE_LABEL};
pub use networkpolicy::network_policy;
pub use pdb::pod_disruption_budget;
pub use service::{client_service, peer_service};
pub use servicemonitor::{service_monitor, SERVICE_MONITOR_API_VERSION};
pub use statefulset::{
    config_hash, membership_of, server_args, statefulset, tls_of, Membership, CONFIG_HASH_ANNOTATION, DATA_DIR,
};

use crate::crd::CoordinationCluster;

/// Ports of paddock-server (the server's defaults, see docs/server.md).
pub const CLIENT_PORT: i32 = 2181;
/// The TLS client port (ZooKeeper's customary secureClientPort).
pub const SECURE_CLIENT_PORT: i32 = 2281;
/// Raft and server-to-server port.
pub const PEER_PORT: i32 = 2888;
/// Admin HTTP port: /healthz, /readyz, /metrics, /v1/cluster.
pub const ADMIN_PORT: i32 = 8080;

/// Where the servers mount `<cluster>-tls` (its content is `tls`'s business).
pub const TLS_MOUNT: &str = "/etc/paddock/tls";
/// Key of a CA's certificate in its Secret (and of the cluster CA in `<cluster>-tls`).
pub const CA_CERT: &str = "ca.crt";
/// Key of the admin CA's certificate in `<cluster>-tls`.
pub const ADMIN_CA_CERT: &str = "admin-ca.crt";

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "paddock-operator";

/// Names of a cluster's objects and addresses of its members, derived from the CR's name and
/// namespace alone so that every part of the operator agrees on them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The CoordinationCluster's name (also the StatefulSet's).
    pub cluster: String,
    /// Its namespace.
    pub namespace: String,
}

impl Names {
    /// Names for a cluster.
    pub fn new(cluster: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self { cluster: cluster.into(), namespace: namespace.into() }
    }

    /// Names of a CR; `None` when it has no name or namespace.
    pub fn of(cluster: &CoordinationCluster) -> Option<Self> {
        Some(Self::new(cluster.metadata.name.clone()?, cluster.metadata.namespace.clone()?))
    }

    /// The StatefulSet (and PodDisruptionBudget).
    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }

    /// The headless Service that gives every pod a stable DNS name.
    pub fn peer_service(&self) -> String {
        format!("{}-peers", self.cluster)
    }

    /// The Service ZooKeeper clients connect to.
    pub fn client_service(&self) -> String {
        format!("{}-client", self.cluster)
    }

    /// The ConfigMap with the server's settings.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }

    /// The Secret with the cluster's CA (never mounted).
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }

    /// The servers' ServiceAccount.
    pub fn service_account(&self) -> String {
        format!("{}-server", self.cluster)
    }

    /// The ClusterRoleBinding that lets the servers review tokens (cluster-scoped: the
    /// namespace is in the name; `:` cannot be in either, so no two clusters share one).
    pub fn token_review_binding(&self) -> String {
        format!("paddock:{}:{}:token-review", self.namespace, self.cluster)
    }

    /// The Secret with the servers' certificates, mounted in every server pod.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.cluster)
    }

    /// The pod of Raft member `id` (`--id-from-hostname`: ordinal + 1 = id).
    pub fn pod(&self, id: u64) -> String {
        format!("{}-{}", self.cluster, id.saturating_sub(1))
    }

    /// Raft id of a pod of this cluster, from its name.
    pub fn id_of_pod(&self, pod: &str) -> Option<u64> {
        let ordinal = pod.strip_prefix(&self.cluster)?.strip_prefix('-')?;
        ordinal.parse::<u64>().ok()?.checked_add(1)
    }

    /// Stable DNS name of member `id`'s pod.
    pub fn pod_host(&self, id: u64) -> String {
        format!("{}.{}.{}.svc", self.pod(id), self.peer_service(), self.namespace)
    }

    /// The peer address member `id` advertises (`--advertise-peer`).
    pub fn peer_addr(&self, id: u64) -> String {
        format!("{}:{PEER_PORT}", self.pod_host(id))
    }

    /// Member `id`'s admin API.
    pub fn admin_addr(&self, id: u64) -> String {
        format!("{}:{ADMIN_PORT}", self.pod_host(id))
    }

    /// Where ZooKeeper clients connect: the TLS port when `tls`, else the plain one.
    pub fn client_endpoint(&self, tls: bool) -> String {
        let port = if tls { SECURE_CLIENT_PORT } else { CLIENT_PORT };
        format!("{}.{}.svc:{port}", self.client_service(), self.namespace)
    }

    /// The persistent volume claim of member `id` (StatefulSet naming: template-pod).
    pub fn data_claim(&self, id: u64) -> String {
        format!("data-{}", self.pod(id))
    }
}

/// Labels that select a cluster's server pods.
pub fn selector_labels(names: &Names) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "paddock".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), names.cluster.clone()),
        ("app.kubernetes.io/component".to_owned(), "server".to_owned()),
    ])
}

/// Labels on every object the operator creates for a cluster.
pub fn common_labels(names: &Names) -> BTreeMap<String, String> {
    let mut labels = selector_labels(names);
    labels.insert("app.kubernetes.io/managed-by".to_owned(), "paddock-operator".to_owned());
    labels
}

/// Metadata of an owned object: name, namespace, labels and the controller owner reference (so
/// deleting the CR deletes it, and changes to it wake the controller).
pub fn owned_meta(cluster: &CoordinationCluster, names: &Names, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(common_labels(names)),
        owner_references: owner_reference(cluster).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(cluster: &CoordinationCluster) -> Option<OwnerReference> {
    cluster.controller_owner_ref(&())
}

/// Everything the operator applies for one cluster. Destructure it without `..` where it is
/// used, so a new object cannot be forgotten.
#[derive(Clone, Debug)]
pub struct ClusterResources {
    /// Server settings as `PADDOCK_*` variables.
    pub config_map: ConfigMap,
    /// Headless, publishes not-ready addresses (peers must find each other before they are ready).
    pub peer_service: Service,
    /// Client port 2181 across ready servers.
    pub client_service: Service,
    /// maxUnavailable 1.
    pub pod_disruption_budget: PodDisruptionBudget,
    /// The servers.
    pub statefulset: StatefulSet,
    /// A prometheus-operator ServiceMonitor, when the spec asks for one.
    pub service_monitor: Option<serde_json::Value>,
    /// The servers' NetworkPolicy, unless turned off.
    pub network_policy: Option<NetworkPolicy>,
    /// The servers' ServiceAccount.
    pub service_account: ServiceAccount,
    /// With namespace isolation: the binding that lets the servers review tokens.
    pub token_review_binding: Option<ClusterRoleBinding>,
}

/// Every port a server listens on: the client ports, then peer and admin.
pub fn server_ports(cluster: &CoordinationCluster) -> Vec<(&'static str, i32)> {
    let mut ports = client_ports(cluster);
    ports.extend([("peer", PEER_PORT), ("admin", ADMIN_PORT)]);
    ports
}

/// The client ports a cluster serves: (port name, number), clear text first.
pub fn client_ports(cluster: &CoordinationCluster) -> Vec<(&'static str, i32)> {
    let tls = &cluster.spec.tls;
    let mut ports = Vec::new();
    if tls.plain_clients() {
        ports.push(("client", CLIENT_PORT));
    }
    if tls.enabled {
        ports.push(("client-tls", SECURE_CLIENT_PORT));
    }
    ports
}

/// Builds every object of a cluster. `replicas` is the StatefulSet size the membership plan
/// allows this pass; `membership` says how new pods join.
pub fn cluster_resources(
    cluster: &CoordinationCluster,
    names: &Names,
    replicas: i32,
    membership: &Membership,
) -> ClusterResources {
    let config_map = config_map(cluster, names);
    ClusterResources {
        peer_service: peer_service(cluster, names),
        client_service: client_service(cluster, names),
        pod_disruption_budget: pod_disruption_budget(cluster, names),
        statefulset: statefulset(cluster, names, replicas, membership, &config_map),
        service_monitor: service_monitor(cluster, names),
        network_policy: network_policy(cluster, names),
        service_account: service_account(cluster, names),
        token_review_binding: cluster.spec.isolated().then(|| token_review_binding(names)),
        config_map,
    }
}
