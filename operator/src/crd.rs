//! The `CoordinationCluster` custom resource (group `paddock.dev`, version `v1alpha1`): its spec,
//! status and the OpenAPI schema with CEL rules the API server enforces. Validation the schema
//! cannot express lives in `validate`; what the operator builds from a spec lives in `resources`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Paddock resource.
pub const GROUP: &str = "paddock.dev";

/// Image used when the spec names none: the one image `make images` (or `docker build .`) makes,
/// holding the server, the sidecar and the operator; each container names its binary.
pub const DEFAULT_IMAGE: &str = concat!("paddock:", env!("CARGO_PKG_VERSION"));

/// A quantity of storage greater than zero (`1Gi`, `500Mi`, `0.5Ti`); the API server's own
/// quantity syntax is wider, but a data volume needs a positive size with a binary or decimal unit.
pub const STORAGE_SIZE_PATTERN: &str =
    r"^([1-9][0-9]*(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// An image reference: `[registry[:port]/]path[:tag][@digest]`, no spaces or upper-case path.
pub const IMAGE_PATTERN: &str = r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$";

/// A replicated Paddock (ZooKeeper-compatible) cluster run as a StatefulSet.
// clippy reads the repeated `type_` of the printcolumn arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "CoordinationCluster",
    namespaced,
    shortname = "pcc",
    status = "CoordinationClusterStatus",
    // `kubectl scale pcc NAME --replicas=N` (and an autoscaler) change spec.replicas.
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.readyReplicas"),
    doc = "A replicated Paddock (ZooKeeper-compatible) coordination cluster",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.replicas % 2 == 1").message("replicas must be odd: 1, 3, 5, 7 or 9"))]
#[serde(rename_all = "camelCase")]
pub struct CoordinationClusterSpec {
    /// Number of servers (Raft voters): odd, 1 to 9. Changing it adds or removes one member at a
    /// time without losing quorum.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// The paddock-server image.
    #[serde(default = "default_image")]
    #[schemars(regex(pattern = IMAGE_PATTERN), length(max = 512))]
    pub image: String,

    /// Image pull policy of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// CPU and memory of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// The data volume of every server (immutable).
    #[serde(default)]
    pub storage: Storage,

    /// Server settings; a change rolls the pods one at a time.
    #[serde(default)]
    pub config: ServerConfig,

    /// Scheduling and metadata of the server pods.
    #[serde(default, skip_serializing_if = "PodOverrides::is_empty")]
    pub pod: PodOverrides,

    /// Prometheus scraping.
    #[serde(default, skip_serializing_if = "MetricsSpec::is_default")]
    pub metrics: MetricsSpec,

    /// TLS on every port, with certificates the operator issues and renews (on unless turned
    /// off; immutable: members of one cluster all speak TLS or none does). Always stored (the
    /// schema's default), so that the immutability rule also sees a cluster created without it.
    #[serde(default)]
    pub tls: TlsSpec,

    /// NetworkPolicy for the servers: the peer port open to the cluster's own pods only, the
    /// admin port to the operator and the peers listed (on unless turned off).
    #[serde(default, skip_serializing_if = "NetworkPolicySpec::is_default")]
    pub network_policy: NetworkPolicySpec,

    /// One subtree per Kubernetes namespace, readable and writable by that namespace's
    /// ServiceAccounts alone (on unless turned off; takes effect with TLS, whose port carries
    /// the tokens).
    #[serde(default, skip_serializing_if = "TenancySpec::is_default")]
    pub tenancy: TenancySpec,

    /// What happens to the data volumes when the CoordinationCluster is deleted. Volumes of
    /// members removed by scaling down are always deleted, so a later scale-up never revives
    /// a stale member.
    #[serde(default)]
    pub pvc_retention: PvcRetention,
}

impl CoordinationClusterSpec {
    /// Whether namespaces are isolated: tenancy on, and TLS, whose port carries the tokens.
    pub fn isolated(&self) -> bool {
        self.tls.enabled && self.tenancy.enabled
    }
}

fn default_replicas() -> i32 {
    3
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

/// Kubernetes image pull policies.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull when the node lacks the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl ImagePullPolicy {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The persistent volume of each server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable (size and storageClassName); resize volumes directly"))]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of each server's data volume, e.g. `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = STORAGE_SIZE_PATTERN))]
    pub size: String,

    /// Storage class of the data volumes; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    "1Gi".to_owned()
}

impl Default for Storage {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None }
    }
}

/// Server settings, passed to paddock-server as its `PADDOCK_*` environment variables.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.minSessionTimeoutMs) || !has(self.maxSessionTimeoutMs) || self.minSessionTimeoutMs <= self.maxSessionTimeoutMs").message("minSessionTimeoutMs must not exceed maxSessionTimeoutMs"))]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    /// ZooKeeper tickTime in milliseconds (`--tick-ms`).
    #[serde(default = "default_tick_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub tick_ms: u32,

    /// Smallest session timeout granted, in milliseconds (`--min-session-timeout-ms`; default 2 ticks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_session_timeout_ms: Option<u32>,

    /// Largest session timeout granted, in milliseconds (`--max-session-timeout-ms`; default 20 ticks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_session_timeout_ms: Option<u32>,

    /// Snapshot and compact the log every this many entries (`--snapshot-every`).
    #[serde(default = "default_snapshot_every")]
    #[schemars(range(min = 1000))]
    pub snapshot_every: u32,
}

fn default_tick_ms() -> u32 {
    2000
}

fn default_snapshot_every() -> u32 {
    100_000
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            tick_ms: default_tick_ms(),
            min_session_timeout_ms: None,
            max_session_timeout_ms: None,
            snapshot_every: default_snapshot_every(),
        }
    }
}

/// Scheduling and metadata applied to the server pods.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Affinity; when unset the servers prefer distinct nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Extra pod labels (the operator's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations (the operator's own annotations win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl PodOverrides {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Prometheus scraping of the servers' admin port.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Create a prometheus-operator ServiceMonitor (needs its CRD installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,
}

impl MetricsSpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// The ServiceMonitor to create.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create it.
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
    /// Labels the Prometheus instance selects ServiceMonitors by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// TLS of the servers' ports (docs/security.md).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self == oldSelf").message("tls is immutable: a cluster's members all speak TLS or none does"))]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Mutual TLS between members, TLS with the operator's client certificate on the admin
    /// port, and a TLS client port (2281).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Also serve clear-text clients on 2181 (with TLS on, 2281 alone serves clients otherwise).
    #[serde(default)]
    pub plain_client_port: bool,
    /// Who issues the servers' certificates (the operator's admin certificates are always its
    /// own).
    #[serde(default, skip_serializing_if = "TlsProvider::is_auto")]
    pub provider: TlsProvider,
    /// The cert-manager Issuer or ClusterIssuer that signs the servers' certificates; without
    /// one the operator makes a CA for the cluster through cert-manager (a self-signed Issuer,
    /// a CA Certificate, and a CA Issuer from it). cert-manager only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// Who issues a cluster's certificates.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsProvider {
    /// cert-manager when its Certificate resource is served as the cluster is first issued
    /// certificates, the operator otherwise; the choice stays with the cluster.
    #[default]
    Auto,
    /// The operator, from a CA of its own per cluster.
    Operator,
    /// cert-manager's Certificates; the cluster waits while cert-manager is not installed.
    CertManager,
}

impl TlsProvider {
    fn is_auto(&self) -> bool {
        *self == TlsProvider::Auto
    }
}

/// A cert-manager issuer, as a Certificate's `issuerRef` names it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Its name (an Issuer in the cluster's namespace, or a ClusterIssuer).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    #[serde(default = "issuer_kind")]
    pub kind: IssuerKind,
    /// Its API group: cert-manager.io, or that of an external issuer.
    #[serde(default = "issuer_group")]
    #[schemars(length(min = 1, max = 253))]
    pub group: String,
}

/// What kind of issuer an [`IssuerRef`] names.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerKind {
    /// In the cluster's namespace.
    Issuer,
    /// Cluster-scoped.
    ClusterIssuer,
}

fn issuer_kind() -> IssuerKind {
    IssuerKind::Issuer
}

fn issuer_group() -> String {
    "cert-manager.io".to_owned()
}

fn yes() -> bool {
    true
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self { enabled: true, plain_client_port: false, provider: TlsProvider::Auto, issuer_ref: None }
    }
}

impl TlsSpec {
    /// Whether clients are served in clear text on 2181.
    pub fn plain_clients(&self) -> bool {
        !self.enabled || self.plain_client_port
    }
}

/// The servers' NetworkPolicy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Who else may reach the admin port (its `/metrics`): a Prometheus, say. The operator's
    /// pods always may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_from: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true, admin_from: Vec::new() }
    }
}

impl NetworkPolicySpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// Namespace isolation (docs/security.md, "Kubernetes identities"). With TLS and this on:
/// injected sidecars authenticate with their pod's ServiceAccount token, the servers check
/// tokens with the API server's TokenReview, `/zookeeper` and its quotas are read-only to all
/// but the operator, and every namespace with injected pods (or listed here) gets `/<namespace>`
/// with an ACL naming `k8s:ns:<namespace>` alone — also for a pod that dials the client port
/// itself.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenancySpec {
    /// Lay out and guard the namespaces' subtrees.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Also make `/` read-only to all but the operator: nothing is created outside the
    /// namespaces' subtrees, so no namespace's name can be taken before it first uses the
    /// cluster (otherwise the operator takes such a subtree back, ACLs of every node in it
    /// included). Off by default: ZooKeeper clients outside Kubernetes (Kafka, say) create
    /// their own top-level nodes.
    #[serde(default)]
    pub guard_root: bool,
    /// Namespaces laid out before any of their pods asks, with optional hard quotas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub namespaces: Vec<NamespaceSpec>,
}

impl Default for TenancySpec {
    fn default() -> Self {
        Self { enabled: true, guard_root: false, namespaces: Vec::new() }
    }
}

impl TenancySpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// One namespace's subtree and its quota: ZooKeeper's hard quota (`setquota -N -B`), enforced;
/// a write past it fails with `QuotaExceeded`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSpec {
    /// The namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Most znodes in `/<namespace>`, itself included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_znodes: Option<i64>,
    /// Most bytes of data in `/<namespace>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_bytes: Option<i64>,
}

/// Fate of the data volumes when the CoordinationCluster is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PvcRetention {
    /// Keep them (the default): recreating the cluster under the same name finds the data.
    #[default]
    Retain,
    /// Delete them with the cluster.
    Delete,
}

impl PvcRetention {
    /// The StatefulSet `persistentVolumeClaimRetentionPolicy.whenDeleted` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "Retain",
            Self::Delete => "Delete",
        }
    }
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CoordinationClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary.
    #[serde(default)]
    pub phase: Phase,
    /// Available, Progressing and Degraded, each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Servers that are ready (members of a cluster with a leader, caught up).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Raft members as the leader reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Pod name of the Raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Where ZooKeeper clients connect, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_endpoint: Option<String>,
}

/// One-word summary of a cluster's state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Nothing observed yet.
    #[default]
    Pending,
    /// The first members are forming the cluster.
    Bootstrapping,
    /// Membership and pods match the spec.
    Running,
    /// Members are being added or removed.
    Scaling,
    /// Pods are being restarted onto a new image or configuration.
    Upgrading,
    /// The spec is invalid, quorum is lost, or a member is unhealthy.
    Degraded,
}

/// One Raft member.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Raft id (StatefulSet ordinal + 1).
    pub id: u64,
    /// Pod name.
    pub pod: String,
    /// leader, follower or learner.
    pub role: String,
    /// Pod ready and replication caught up.
    pub healthy: bool,
}

impl CoordinationCluster {
    /// The CRD as `crdgen` writes it.
    pub fn crd_yaml() -> String {
        let crd = Self::crd();
        // A CRD always serializes; this is generated from our own types.
        serde_yaml::to_string(&crd).unwrap_or_default()
    }
}
