//! The StatefulSet running the servers: flags and env exactly as paddock-server takes them
//! (docs/server.md), probes on the admin port, one data volume per pod, and a config hash on the
//! pod template. Pods are never restarted by the StatefulSet controller (`OnDelete`): the
//! operator rolls them itself, one at a time and the leader last (see `membership`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapEnvSource, Container, EnvFromSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, SecretVolumeSource, Volume,
    VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::{
    container_port, downward, http_probe, https, owned_meta, restricted, selector_labels, server_ports, Names,
    ADMIN_CA_CERT, ADMIN_PORT, CA_CERT, CLIENT_PORT, PEER_PORT, SECURE_CLIENT_PORT, TLS_MOUNT,
};
use crate::crd::{CoordinationCluster, TlsSpec};

/// Pod-template annotation carrying the hash of everything that should restart a server when
/// it changes (image, resources, settings, overrides). Membership flags are left out: they only
/// matter on a pod's first boot.
pub const CONFIG_HASH_ANNOTATION: &str = "paddock.dev/config-hash";

/// Where the data volume is mounted.
pub const DATA_MOUNT: &str = "/var/lib/paddock";
/// The server's `--data-dir`, inside the data volume.
pub const DATA_DIR: &str = "/var/lib/paddock/data";

const SERVER_CONTAINER: &str = "server";
/// The server binary in the Paddock image.
const SERVER_COMMAND: &str = "/usr/local/bin/paddock-server";
const INITIAL_MEMBERS_FLAG: &str = "--initial-members=";
const JOIN_FLAG: &str = "--join";
const PEER_TLS_FLAG: &str = "--peer-tls-cert=";

/// How a pod that boots with an empty data directory becomes a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// A new cluster: every initial pod boots with the same `--initial-members` list and Raft's
    /// vote picks a leader. Used only until that cluster has formed.
    Initial(BTreeMap<u64, String>),
    /// Pods start empty (`--join`) and wait for the operator to add them as learners. Once a
    /// cluster has formed this is the only mode: a pod that lost its data must never bootstrap
    /// a second cluster.
    Join,
}

impl Membership {
    /// The initial voters of a new cluster of `replicas` servers.
    pub fn initial(names: &Names, replicas: u64) -> Self {
        Self::Initial((1..=replicas).map(|id| (id, names.peer_addr(id))).collect())
    }

    fn flag(&self) -> String {
        match self {
            Self::Initial(members) => {
                let list: Vec<String> = members.iter().map(|(id, addr)| format!("{id}={addr}")).collect();
                format!("{INITIAL_MEMBERS_FLAG}{}", list.join(","))
            }
            Self::Join => JOIN_FLAG.to_owned(),
        }
    }
}

fn args_of(statefulset: &StatefulSet) -> Option<&Vec<String>> {
    statefulset
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == SERVER_CONTAINER)?
        .args
        .as_ref()
}

/// Whether an existing StatefulSet's servers speak TLS to each other, read back from its args.
pub fn tls_of(statefulset: &StatefulSet) -> Option<bool> {
    Some(args_of(statefulset)?.iter().any(|arg| arg.starts_with(PEER_TLS_FLAG)))
}

/// The membership mode an existing StatefulSet's pod template uses, read back from its args.
pub fn membership_of(statefulset: &StatefulSet) -> Option<Membership> {
    let args = args_of(statefulset)?;
    for arg in args {
        if arg == JOIN_FLAG {
            return Some(Membership::Join);
        }
        if let Some(list) = arg.strip_prefix(INITIAL_MEMBERS_FLAG) {
            let mut members = BTreeMap::new();
            for entry in list.split(',') {
                let (id, addr) = entry.split_once('=')?;
                members.insert(id.parse().ok()?, addr.to_owned());
            }
            return Some(Membership::Initial(members));
        }
    }
    None
}

/// paddock-server's command line in a pod of this cluster. `$(POD_NAME)` is expanded by the
/// kubelet from the pod's env.
pub fn server_args(names: &Names, membership: &Membership, tls: &TlsSpec, isolated: bool) -> Vec<String> {
    let mut args = vec![
        "--id-from-hostname".to_owned(),
        format!("--data-dir={DATA_DIR}"),
        format!("--client-addr=0.0.0.0:{CLIENT_PORT}"),
        format!("--peer-addr=0.0.0.0:{PEER_PORT}"),
        format!("--admin-addr=0.0.0.0:{ADMIN_PORT}"),
        format!("--advertise-peer=$(POD_NAME).{}.{}.svc:{PEER_PORT}", names.peer_service(), names.namespace),
    ];
    if tls.enabled {
        let file = |name: &str| format!("{TLS_MOUNT}/{name}");
        args.extend([
            format!("--secure-client-addr=0.0.0.0:{SECURE_CLIENT_PORT}"),
            format!("--tls-cert={}", file("server.crt")),
            format!("--tls-key={}", file("server.key")),
            // Each member picks its own certificate by its id.
            format!("{PEER_TLS_FLAG}{}", file("member-{id}.crt")),
            format!("--peer-tls-key={}", file("member-{id}.key")),
            format!("--peer-tls-ca={}", file(CA_CERT)),
            format!("--admin-tls-cert={}", file("admin.crt")),
            format!("--admin-tls-key={}", file("admin.key")),
            format!("--admin-tls-ca={}", file(ADMIN_CA_CERT)),
        ]);
        if !tls.plain_clients() {
            args.push("--no-plain-client".to_owned());
        }
        // The operator, with its admin certificate, is the super user of the client port too:
        // it lays out the namespaces' subtrees (`tenancy`).
        args.extend([
            format!("--tls-ca={}", file(ADMIN_CA_CERT)),
            "--tls-client-auth=want".to_owned(),
            format!("--x509-super-user={}", crate::certs::OPERATOR_SUBJECT),
        ]);
        if isolated {
            // Against the API server of the pod's own cluster, with the pod's token.
            args.push("--k8s-token-review".to_owned());
        }
    }
    args.push(membership.flag());
    args
}

/// Hash of the ConfigMap data and the pod template (without membership flags): 16 hex digits.
pub fn config_hash(config_map: &ConfigMap, template: &PodTemplateSpec) -> String {
    let mut hasher = Sha256::new();
    // Both serialize infallibly (maps of strings and k8s-openapi types).
    hasher.update(serde_json::to_vec(&config_map.data).unwrap_or_default());
    hasher.update(serde_json::to_vec(template).unwrap_or_default());
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The server's admin port by its container port name.
fn admin_port() -> IntOrString {
    IntOrString::String("admin".to_owned())
}

fn default_affinity(names: &Names) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(names)),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".to_owned(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The pod template, without membership flags and config hash.
fn pod_template(cluster: &CoordinationCluster, names: &Names) -> PodTemplateSpec {
    let spec = &cluster.spec;
    let mut labels = spec.pod.labels.clone();
    labels.extend(selector_labels(names));
    let tls = spec.tls.enabled;
    // With TLS the admin port, and with it the probes, speaks HTTPS.
    let probe = |p| if tls { https(p) } else { p };
    let mut mounts =
        vec![VolumeMount { name: "data".to_owned(), mount_path: DATA_MOUNT.to_owned(), ..VolumeMount::default() }];
    let mut volumes = Vec::new();
    if tls {
        mounts.push(VolumeMount {
            name: "tls".to_owned(),
            mount_path: TLS_MOUNT.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "tls".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names.tls_secret()),
                // Readable by the server's group only (fsGroup).
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let mut annotations = spec.pod.annotations.clone();
    annotations.insert("kubectl.kubernetes.io/default-container".to_owned(), SERVER_CONTAINER.to_owned());
    let server = Container {
        name: SERVER_CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec![SERVER_COMMAND.to_owned()]),
        env: Some(vec![downward("POD_NAME", "metadata.name")]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: names.config_map(), optional: Some(false) }),
            ..EnvFromSource::default()
        }]),
        ports: Some(server_ports(cluster).into_iter().map(|(name, port)| container_port(name, port)).collect()),
        // Recovery (snapshot + log replay) can take a while; liveness starts after it.
        startup_probe: Some(probe(http_probe(admin_port(), "/healthz", 5, 60, Some(2)))),
        liveness_probe: Some(probe(http_probe(admin_port(), "/healthz", 10, 6, Some(2)))),
        readiness_probe: Some(probe(http_probe(admin_port(), "/readyz", 5, 3, Some(2)))),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(restricted()),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels), annotations: Some(annotations), ..ObjectMeta::default() }),
        spec: Some(PodSpec {
            containers: vec![server],
            service_account_name: Some(names.service_account()),
            // The API token only where the servers review tokens with it.
            automount_service_account_token: Some(spec.isolated()),
            volumes: (!volumes.is_empty()).then_some(volumes),
            affinity: Some(spec.pod.affinity.clone().unwrap_or_else(|| default_affinity(names))),
            tolerations: (!spec.pod.tolerations.is_empty()).then(|| spec.pod.tolerations.clone()),
            node_selector: (!spec.pod.node_selector.is_empty()).then(|| spec.pod.node_selector.clone()),
            security_context: Some(PodSecurityContext {
                fs_group: Some(65532),
                fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                ..PodSecurityContext::default()
            }),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }),
    }
}

/// The cluster's StatefulSet with `replicas` pods.
pub fn statefulset(
    cluster: &CoordinationCluster,
    names: &Names,
    replicas: i32,
    membership: &Membership,
    config_map: &ConfigMap,
) -> StatefulSet {
    let mut template = pod_template(cluster, names);
    let hash = config_hash(config_map, &template);
    if let Some(meta) = template.metadata.as_mut() {
        meta.annotations.get_or_insert_with(Default::default).insert(CONFIG_HASH_ANNOTATION.to_owned(), hash);
    }
    if let Some(server) = template.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        server.args = Some(server_args(names, membership, &cluster.spec.tls, cluster.spec.isolated()));
    }
    let storage = &cluster.spec.storage;
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(selector_labels(names)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(storage.size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    StatefulSet {
        metadata: owned_meta(cluster, names, names.statefulset()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(names)), ..LabelSelector::default() },
            service_name: Some(names.peer_service()),
            // Members of a forming cluster must start together: none is ready before a quorum is up.
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(cluster.spec.pvc_retention.as_str().to_owned()),
                // A removed member's data must never come back under its id.
                when_scaled: Some("Delete".to_owned()),
            }),
            template,
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
