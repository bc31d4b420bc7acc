//! Sidecar injection, as pure functions: from a pod's annotations to what the pod gets. A pod
//! annotated `paddock.dev/inject: <cluster>` (or `<namespace>/<cluster>`) gets the paddock-sidecar
//! as a native sidecar (an init container with `restartPolicy: Always`, so it starts before and
//! stops after the app), a shared emptyDir for the Unix socket mounted into every container, and
//! `PADDOCK_SOCKET` in the app's env. [`sidecar`] renders the container, [`inject`] the JSON
//! patch; answering the API server's AdmissionReviews over HTTPS is `admission`'s job.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, ProjectedVolumeSource, ResourceRequirements, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::resources::{container_port, downward, http_probe, restricted, CLIENT_PORT, SECURE_CLIENT_PORT};
use crate::validate::dns_label;

/// The variable carrying the cluster CA's PEM into the sidecar (`--tls-ca-pem`).
pub const TLS_CA_PEM_ENV: &str = "PADDOCK_TLS_CA_PEM";

/// The cluster a pod names in its inject annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// How the sidecar reaches the cluster, as the webhook found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterAccess {
    /// The cluster CA (PEM) when it serves clients over TLS; clear text otherwise.
    pub tls_ca: Option<String>,
    /// The cluster isolates namespaces: the sidecar authenticates with the pod's ServiceAccount
    /// token (a projected one, of the servers' audience).
    pub tokens: bool,
}

/// Names the cluster to inject for: `<cluster>` in the pod's namespace or `<namespace>/<cluster>`.
pub const INJECT_ANNOTATION: &str = "paddock.dev/inject";
/// Comma-separated groups the sidecar joins for the pod (`--join`, repeated).
pub const GROUPS_ANNOTATION: &str = "paddock.dev/groups";
/// The app's health URL the sidecar probes (`--app-health-url`).
pub const APP_HEALTH_ANNOTATION: &str = "paddock.dev/app-health-url";
/// The ZooKeeper session timeout (`--session-timeout-ms`).
pub const SESSION_TIMEOUT_ANNOTATION: &str = "paddock.dev/session-timeout-ms";
/// Set on pods the webhook mutated.
pub const INJECTED_ANNOTATION: &str = "paddock.dev/injected";

/// Name of the injected container.
pub const SIDECAR_CONTAINER: &str = "paddock-sidecar";
/// The sidecar binary in the Paddock image.
pub const SIDECAR_COMMAND: &str = "/usr/local/bin/paddock-sidecar";
/// Name of the socket volume.
pub const SOCKET_VOLUME: &str = "paddock-socket";
/// Where the socket volume is mounted in every container.
pub const SOCKET_DIR: &str = "/var/run/paddock";
/// The sidecar's Unix socket.
pub const SOCKET_PATH: &str = "/var/run/paddock/paddock.sock";
/// The sidecar's TCP port for /healthz, /readyz and /metrics.
pub const SIDECAR_PORT: i32 = 9464;
/// Name of the projected ServiceAccount token volume.
pub const TOKEN_VOLUME: &str = "paddock-token";
/// Where the token volume is mounted in the sidecar.
pub const TOKEN_DIR: &str = "/var/run/secrets/paddock";
/// The audience of the token (the servers' `--k8s-audience` default).
pub const TOKEN_AUDIENCE: &str = "paddock";
/// How long a projected token lives; kubelet renews it at 80% of that, the sidecar reads the
/// file again and sends the new one.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// Label set on injected pods: the cluster they use (with [`CLUSTER_NAMESPACE_LABEL`]), so the
/// operator finds the namespaces that use a cluster.
pub const CLUSTER_LABEL: &str = "paddock.dev/cluster";
pub use crate::resources::CLUSTER_NAMESPACE_LABEL;

/// What the injected container looks like.
#[derive(Clone, Debug, Default)]
pub struct InjectorConfig {
    /// paddock-sidecar image.
    pub image: String,
    /// Its pull policy.
    pub image_pull_policy: Option<String>,
    /// Its resources.
    pub resources: Option<ResourceRequirements>,
}

/// Why a pod is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The inject annotation does not name a cluster.
    #[error("annotation {INJECT_ANNOTATION}: {0:?} is not <cluster> or <namespace>/<cluster> (DNS labels)")]
    BadClusterRef(String),
    /// The session timeout is not a number.
    #[error("annotation {SESSION_TIMEOUT_ANNOTATION}: {0:?} is not a number of milliseconds")]
    BadSessionTimeout(String),
    /// A group name cannot be used.
    #[error("annotation {GROUPS_ANNOTATION}: {0:?} is not a group name (letters, digits, '-', '_', '.')")]
    BadGroup(String),
}

fn socket_mount() -> VolumeMount {
    VolumeMount { name: SOCKET_VOLUME.to_owned(), mount_path: SOCKET_DIR.to_owned(), ..VolumeMount::default() }
}

/// The cluster a pod in `namespace` with these annotations asks for, if it asks.
pub fn cluster_ref(
    annotations: &std::collections::BTreeMap<String, String>,
    namespace: &str,
) -> Result<Option<ClusterRef>, InjectError> {
    let Some(target) = annotations.get(INJECT_ANNOTATION) else { return Ok(None) };
    let target = target.trim();
    let (cluster_ns, cluster) = match target.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (namespace, target),
    };
    if !dns_label(cluster) || !dns_label(cluster_ns) {
        return Err(InjectError::BadClusterRef(target.to_owned()));
    }
    Ok(Some(ClusterRef { namespace: cluster_ns.to_owned(), name: cluster.to_owned() }))
}

/// The sidecar container for a pod in `namespace` with these annotations, reaching its
/// cluster as `access` says.
pub fn sidecar(
    annotations: &std::collections::BTreeMap<String, String>,
    namespace: &str,
    config: &InjectorConfig,
    access: &ClusterAccess,
) -> Result<Option<Container>, InjectError> {
    let Some(ClusterRef { namespace: cluster_ns, name: cluster }) = cluster_ref(annotations, namespace)? else {
        return Ok(None);
    };
    let port = if access.tls_ca.is_some() { SECURE_CLIENT_PORT } else { CLIENT_PORT };
    let mut args = vec![
        format!("--socket={SOCKET_PATH}"),
        format!("--cluster={cluster}-client.{cluster_ns}.svc:{port}"),
        format!("--listen-addr=0.0.0.0:{SIDECAR_PORT}"),
    ];
    for group in annotations.get(GROUPS_ANNOTATION).into_iter().flat_map(|g| g.split(',')).map(str::trim) {
        if group.is_empty() {
            continue;
        }
        let ok = group.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok || group.starts_with('.') {
            return Err(InjectError::BadGroup(group.to_owned()));
        }
        args.push(format!("--join={group}"));
    }
    if let Some(url) = annotations.get(APP_HEALTH_ANNOTATION) {
        args.push(format!("--app-health-url={}", url.trim()));
    }
    if let Some(timeout) = annotations.get(SESSION_TIMEOUT_ANNOTATION) {
        let ms: u32 = timeout.trim().parse().map_err(|_| InjectError::BadSessionTimeout(timeout.clone()))?;
        args.push(format!("--session-timeout-ms={ms}"));
    }
    let mut mounts = vec![socket_mount()];
    if access.tokens {
        args.push(format!("--k8s-token-file={TOKEN_DIR}/token"));
        mounts.push(VolumeMount {
            name: TOKEN_VOLUME.to_owned(),
            mount_path: TOKEN_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    Ok(Some(Container {
        name: SIDECAR_CONTAINER.to_owned(),
        image: Some(config.image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        // A native sidecar: runs for the pod's lifetime, started before the app containers.
        restart_policy: Some("Always".to_owned()),
        command: Some(vec![SIDECAR_COMMAND.to_owned()]),
        args: Some(args),
        env: Some(
            [
                downward("POD_NAME", "metadata.name"),
                downward("POD_NAMESPACE", "metadata.namespace"),
                downward("POD_IP", "status.podIP"),
                downward("POD_UID", "metadata.uid"),
            ]
            .into_iter()
            .chain(access.tls_ca.as_ref().map(|ca| EnvVar {
                name: TLS_CA_PEM_ENV.to_owned(),
                value: Some(ca.clone()),
                ..EnvVar::default()
            }))
            .collect(),
        ),
        ports: Some(vec![container_port("paddock-http", SIDECAR_PORT)]),
        // The app starts once the sidecar answers; it is ready once it holds a session.
        startup_probe: Some(http_probe(IntOrString::Int(SIDECAR_PORT), "/healthz", 1, 30, None)),
        liveness_probe: Some(http_probe(IntOrString::Int(SIDECAR_PORT), "/healthz", 10, 3, None)),
        readiness_probe: Some(http_probe(IntOrString::Int(SIDECAR_PORT), "/readyz", 5, 3, None)),
        resources: config.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(restricted()),
        ..Container::default()
    }))
}

/// The projected ServiceAccount token the sidecar authenticates with.
fn token_volume() -> Volume {
    Volume {
        name: TOKEN_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(TOKEN_AUDIENCE.to_owned()),
                    expiration_seconds: Some(TOKEN_LIFETIME_SECS),
                    path: "token".to_owned(),
                }),
                ..VolumeProjection::default()
            }]),
            default_mode: None,
        }),
        ..Volume::default()
    }
}

/// JSON-pointer escaping of one path segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The JSON patch injecting the sidecar into `pod`, or `None` when the pod does not ask for it
/// or already has it.
pub fn inject(
    pod: &Pod,
    namespace: &str,
    config: &InjectorConfig,
    access: &ClusterAccess,
) -> Result<Option<json_patch::Patch>, InjectError> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let Some(sidecar) = sidecar(&annotations, namespace, config, access)? else { return Ok(None) };
    let Some(spec) = pod.spec.as_ref() else { return Ok(None) };
    let has_sidecar =
        spec.init_containers.iter().flatten().chain(&spec.containers).any(|c| c.name == SIDECAR_CONTAINER);
    let has_volume = spec.volumes.iter().flatten().any(|v| v.name == SOCKET_VOLUME);
    if has_sidecar || has_volume {
        return Ok(None);
    }
    let mut ops: Vec<Value> = Vec::new();
    let sidecar = to_value(&sidecar);
    match &spec.init_containers {
        // First, so that other init containers can use the socket too.
        Some(list) if !list.is_empty() => {
            ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": sidecar}))
        }
        _ => ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [sidecar]})),
    }
    let mut volumes = vec![to_value(&Volume {
        name: SOCKET_VOLUME.to_owned(),
        empty_dir: Some(Default::default()),
        ..Volume::default()
    })];
    if access.tokens {
        volumes.push(to_value(&token_volume()));
    }
    match &spec.volumes {
        Some(_) => {
            for volume in volumes {
                ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": volume}));
            }
        }
        None => ops.push(json!({"op": "add", "path": "/spec/volumes", "value": volumes})),
    }
    let mount = to_value(&socket_mount());
    let env = to_value(&EnvVar {
        name: "PADDOCK_SOCKET".to_owned(),
        value: Some(SOCKET_PATH.to_owned()),
        ..EnvVar::default()
    });
    for (i, container) in spec.containers.iter().enumerate() {
        match &container.volume_mounts {
            Some(_) => {
                ops.push(json!({"op": "add", "path": format!("/spec/containers/{i}/volumeMounts/-"), "value": mount}))
            }
            None => {
                ops.push(json!({"op": "add", "path": format!("/spec/containers/{i}/volumeMounts"), "value": [mount]}))
            }
        }
        let already = container.env.iter().flatten().any(|e| e.name == "PADDOCK_SOCKET");
        match &container.env {
            _ if already => {}
            Some(_) => ops.push(json!({"op": "add", "path": format!("/spec/containers/{i}/env/-"), "value": env})),
            None => ops.push(json!({"op": "add", "path": format!("/spec/containers/{i}/env"), "value": [env]})),
        }
    }
    ops.push(
        json!({"op": "add", "path": format!("/metadata/annotations/{}", escape(INJECTED_ANNOTATION)), "value": "true"}),
    );
    // Labels name the cluster; `cluster_ref` checked both are DNS labels, so valid label values.
    let cluster = cluster_ref(&annotations, namespace)?;
    let labels =
        cluster.map(|c| [(CLUSTER_LABEL, c.name), (CLUSTER_NAMESPACE_LABEL, c.namespace)]).into_iter().flatten();
    if pod.metadata.labels.is_none() {
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
    }
    for (key, value) in labels {
        ops.push(json!({"op": "add", "path": format!("/metadata/labels/{}", escape(key)), "value": value}));
    }
    // Well-formed by construction: every op above is an add with a path and a value.
    Ok(serde_json::from_value(Value::Array(ops)).ok())
}

/// A k8s-openapi value as JSON (infallible for these types).
fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod parses")
    }

    fn config() -> InjectorConfig {
        InjectorConfig { image: "paddock:0.1.0".to_owned(), ..InjectorConfig::default() }
    }

    fn patched(pod: &Pod) -> Value {
        let patch = inject(pod, "shop", &config(), &ClusterAccess::default()).expect("accepted").expect("injected");
        let mut value = serde_json::to_value(pod).expect("pod json");
        json_patch::patch(&mut value, &patch).expect("patch applies");
        value
    }

    #[test]
    fn injects_native_sidecar_socket_and_env() {
        let app = pod(r#"
metadata:
  name: cart
  annotations: {paddock.dev/inject: zk, paddock.dev/groups: "cart, workers", paddock.dev/app-health-url: "http://127.0.0.1:8080/health"}
spec:
  containers:
  - {name: app, image: shop/cart:1, env: [{name: A, value: b}]}
  - {name: proxy, image: envoy:1, volumeMounts: [{name: certs, mountPath: /certs}]}
  volumes: [{name: certs, secret: {secretName: certs}}]
"#);
        let out = patched(&app);
        let sidecar = &out["spec"]["initContainers"][0];
        assert_eq!(sidecar["name"], "paddock-sidecar");
        assert_eq!(sidecar["restartPolicy"], "Always");
        assert_eq!(
            sidecar["args"],
            json!([
                "--socket=/var/run/paddock/paddock.sock",
                "--cluster=zk-client.shop.svc:2181",
                "--listen-addr=0.0.0.0:9464",
                "--join=cart",
                "--join=workers",
                "--app-health-url=http://127.0.0.1:8080/health",
            ])
        );
        let env: Vec<&str> =
            sidecar["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_IP", "POD_UID"]);
        assert_eq!(out["spec"]["volumes"][1], json!({"name": "paddock-socket", "emptyDir": {}}));
        for c in 0..2 {
            let mounts = out["spec"]["containers"][c]["volumeMounts"].as_array().expect("mounts");
            assert!(mounts.contains(&json!({"name": "paddock-socket", "mountPath": "/var/run/paddock"})));
            let env = out["spec"]["containers"][c]["env"].as_array().expect("env");
            assert!(env.contains(&json!({"name": "PADDOCK_SOCKET", "value": "/var/run/paddock/paddock.sock"})));
        }
        assert_eq!(out["metadata"]["annotations"]["paddock.dev/injected"], "true");
        // Existing init containers run after the sidecar.
        let with_init = pod(r#"
metadata: {annotations: {paddock.dev/inject: other-ns/zk}}
spec:
  initContainers: [{name: migrate, image: m:1}]
  containers: [{name: app, image: a:1}]
"#);
        let out = patched(&with_init);
        let names: Vec<&str> =
            out["spec"]["initContainers"].as_array().expect("init").iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["paddock-sidecar", "migrate"]);
        assert_eq!(out["spec"]["initContainers"][0]["args"][1], "--cluster=zk-client.other-ns.svc:2181");
    }

    #[test]
    fn a_tls_cluster_is_reached_on_its_tls_port_with_its_ca() {
        let app =
            pod("{metadata: {annotations: {paddock.dev/inject: zk}}, spec: {containers: [{name: app, image: a:1}]}}");
        let access = ClusterAccess { tls_ca: Some("-----BEGIN CERTIFICATE-----\n...".to_owned()), tokens: false };
        let patch = inject(&app, "shop", &config(), &access).expect("accepted").expect("injected");
        let mut out = serde_json::to_value(&app).expect("pod json");
        json_patch::patch(&mut out, &patch).expect("patch applies");
        let sidecar = &out["spec"]["initContainers"][0];
        assert_eq!(sidecar["args"][1], "--cluster=zk-client.shop.svc:2281");
        let env = sidecar["env"].as_array().expect("env");
        assert!(env.contains(&json!({"name": "PADDOCK_TLS_CA_PEM", "value": "-----BEGIN CERTIFICATE-----\n..."})));
    }

    #[test]
    fn an_isolating_cluster_gets_the_pods_token_and_every_injected_pod_names_its_cluster() {
        let app = pod("{metadata: {labels: {app: cart}, annotations: {paddock.dev/inject: infra/zk}}, spec: {containers: [{name: app, image: a:1}]}}");
        let access = ClusterAccess { tls_ca: Some("ca".to_owned()), tokens: true };
        let patch = inject(&app, "shop", &config(), &access).expect("accepted").expect("injected");
        let mut out = serde_json::to_value(&app).expect("pod json");
        json_patch::patch(&mut out, &patch).expect("patch applies");
        let sidecar = &out["spec"]["initContainers"][0];
        assert!(sidecar["args"]
            .as_array()
            .expect("args")
            .contains(&json!("--k8s-token-file=/var/run/secrets/paddock/token")));
        assert!(sidecar["volumeMounts"]
            .as_array()
            .expect("mounts")
            .contains(&json!({"name": "paddock-token", "mountPath": "/var/run/secrets/paddock", "readOnly": true})));
        assert_eq!(
            out["spec"]["volumes"][1],
            json!({"name": "paddock-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "paddock", "expirationSeconds": 3600, "path": "token"}}]}})
        );
        // The app's containers never see the token.
        assert_eq!(out["spec"]["containers"][0]["volumeMounts"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "cart", "paddock.dev/cluster": "zk", "paddock.dev/cluster-namespace": "infra"})
        );
        // Without isolation: no token, the labels all the same (also on a pod without labels).
        let plain =
            pod("{metadata: {annotations: {paddock.dev/inject: zk}}, spec: {containers: [{name: app, image: a:1}]}}");
        let out = patched(&plain);
        assert_eq!(out["spec"]["volumes"].as_array().map(Vec::len), Some(1));
        assert!(!out["spec"]["initContainers"][0]["args"].to_string().contains("token"));
        assert_eq!(
            out["metadata"]["labels"],
            json!({"paddock.dev/cluster": "zk", "paddock.dev/cluster-namespace": "shop"})
        );
    }

    #[test]
    fn sidecar_is_probed_on_its_own_port() {
        let app =
            pod("{metadata: {annotations: {paddock.dev/inject: zk}}, spec: {containers: [{name: app, image: a:1}]}}");
        let sidecar = &patched(&app)["spec"]["initContainers"][0];
        let probe = |path: &str, period: i32, failures: i32| json!({"httpGet": {"path": path, "port": 9464}, "periodSeconds": period, "failureThreshold": failures});
        assert_eq!(sidecar["startupProbe"], probe("/healthz", 1, 30));
        assert_eq!(sidecar["livenessProbe"], probe("/healthz", 10, 3));
        assert_eq!(sidecar["readinessProbe"], probe("/readyz", 5, 3));
    }

    #[test]
    fn skips_unannotated_and_already_injected_pods() {
        let plain = pod("{metadata: {name: a}, spec: {containers: [{name: app, image: a:1}]}}");
        assert_eq!(inject(&plain, "shop", &config(), &ClusterAccess::default()), Ok(None));
        let once =
            pod("{metadata: {annotations: {paddock.dev/inject: zk}}, spec: {containers: [{name: app, image: a:1}]}}");
        let twice: Pod = serde_json::from_value(patched(&once)).expect("pod");
        assert_eq!(inject(&twice, "shop", &config(), &ClusterAccess::default()), Ok(None));
    }

    #[test]
    fn denies_bad_annotations_with_a_reason() {
        let bad = |annotations: &str| {
            let p =
                pod(&format!("{{metadata: {{annotations: {annotations}}}, spec: {{containers: [{{name: app}}]}}}}"));
            inject(&p, "shop", &config(), &ClusterAccess::default()).expect_err("denied").to_string()
        };
        assert!(bad("{paddock.dev/inject: 'Not_A_Name'}").contains("is not <cluster>"));
        assert!(bad("{paddock.dev/inject: 'a/b/c'}").contains("is not <cluster>"));
        assert!(
            bad("{paddock.dev/inject: zk, paddock.dev/session-timeout-ms: soon}").contains("number of milliseconds")
        );
        assert!(bad("{paddock.dev/inject: zk, paddock.dev/groups: 'a b'}").contains("not a group name"));
    }
}
