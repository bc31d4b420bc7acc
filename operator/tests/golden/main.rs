//! Golden tests of every object the operator builds, from small inline CoordinationClusters.
//! The expected YAML lives beside this file; `UPDATE_GOLDEN=1 cargo test -p paddock-operator
//! --test golden` rewrites it after an intended change (review the diff).

use paddock_operator::crd::CoordinationCluster;
use paddock_operator::resources::{
    cluster_resources, config_hash, ClusterResources, Membership, Names, CONFIG_HASH_ANNOTATION,
};

fn cluster(yaml: &str) -> CoordinationCluster {
    serde_yaml::from_str(yaml).expect("inline CR parses")
}

/// All objects as one multi-document YAML, in apply order.
fn render(resources: &ClusterResources) -> String {
    let ClusterResources {
        config_map,
        peer_service,
        client_service,
        pod_disruption_budget,
        statefulset,
        service_monitor,
        network_policy,
        service_account,
        token_review_binding,
    } = resources;
    let mut docs = vec![
        serde_yaml::to_string(config_map),
        serde_yaml::to_string(service_account),
        serde_yaml::to_string(peer_service),
        serde_yaml::to_string(client_service),
        serde_yaml::to_string(pod_disruption_budget),
        serde_yaml::to_string(statefulset),
    ];
    if let Some(monitor) = service_monitor {
        docs.push(serde_yaml::to_string(monitor));
    }
    if let Some(policy) = network_policy {
        docs.push(serde_yaml::to_string(policy));
    }
    if let Some(binding) = token_review_binding {
        docs.push(serde_yaml::to_string(binding));
    }
    let docs: Vec<String> = docs.into_iter().map(|d| d.expect("object serializes")).collect();
    format!("---\n{}", docs.join("---\n"))
}

fn check_golden(name: &str, actual: &str) {
    let path =
        paddock_testkit::package_dir(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("golden file written");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a);
        panic!(
            "{} differs from the built objects (first differing line {:?}); rerun with UPDATE_GOLDEN=1 if intended.\n--- built ---\n{actual}",
            path.display(),
            first.map(|l| l + 1)
        );
    }
}

const MINIMAL: &str = r#"
apiVersion: paddock.dev/v1alpha1
kind: CoordinationCluster
metadata: {name: zk, namespace: apps, uid: 8e0b6c2e-0000-4000-8000-000000000001}
spec: {}
"#;

const FULL: &str = r#"
apiVersion: paddock.dev/v1alpha1
kind: CoordinationCluster
metadata: {name: coord, namespace: prod, uid: 8e0b6c2e-0000-4000-8000-000000000002}
spec:
  replicas: 5
  image: registry.example:5000/paddock/paddock-server:1.4.2
  imagePullPolicy: IfNotPresent
  resources:
    requests: {cpu: 500m, memory: 1Gi}
    limits: {memory: 2Gi}
  storage: {size: 20Gi, storageClassName: fast-ssd}
  config: {tickMs: 1000, minSessionTimeoutMs: 4000, maxSessionTimeoutMs: 60000, snapshotEvery: 50000}
  pod:
    tolerations: [{key: dedicated, operator: Equal, value: coordination, effect: NoSchedule}]
    nodeSelector: {disktype: ssd}
    labels: {team: platform}
    annotations: {example.com/owner: platform}
    affinity:
      podAntiAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: topology.kubernetes.io/zone
          labelSelector: {matchLabels: {app.kubernetes.io/instance: coord}}
  metrics:
    serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
  pvcRetention: Delete
  tls: {plainClientPort: true}
  networkPolicy:
    adminFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
"#;

#[test]
fn minimal_cluster_on_first_boot() {
    let cr = cluster(MINIMAL);
    let names = Names::of(&cr).expect("named");
    let resources = cluster_resources(&cr, &names, 3, &Membership::initial(&names, 3));
    check_golden("minimal", &render(&resources));
}

#[test]
fn full_cluster_after_bootstrap() {
    let cr = cluster(FULL);
    let names = Names::of(&cr).expect("named");
    let resources = cluster_resources(&cr, &names, 5, &Membership::Join);
    check_golden("full", &render(&resources));
}

#[test]
fn single_server() {
    let cr = cluster(
        r#"
apiVersion: paddock.dev/v1alpha1
kind: CoordinationCluster
metadata: {name: solo, namespace: dev, uid: 8e0b6c2e-0000-4000-8000-000000000003}
spec: {replicas: 1, storage: {size: 512Mi}, tls: {enabled: false}, networkPolicy: {enabled: false}}
"#,
    );
    let names = Names::of(&cr).expect("named");
    let resources = cluster_resources(&cr, &names, 1, &Membership::initial(&names, 1));
    check_golden("single", &render(&resources));
}

fn hash_of(cr: &CoordinationCluster, replicas: i32, membership: &Membership) -> String {
    let names = Names::of(cr).expect("named");
    let sts = cluster_resources(cr, &names, replicas, membership).statefulset;
    let template = sts.spec.expect("spec").template;
    template.metadata.and_then(|m| m.annotations).and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned()).expect("hash")
}

/// Settings, image and overrides roll the pods; scaling and the bootstrap → join switch do not.
#[test]
fn config_hash_tracks_what_should_restart_a_server() {
    let cr = cluster(MINIMAL);
    let names = Names::of(&cr).expect("named");
    let base = hash_of(&cr, 3, &Membership::initial(&names, 3));
    assert_eq!(base, hash_of(&cr, 5, &Membership::Join), "scaling and membership mode must not roll pods");
    for change in [
        "spec: {config: {tickMs: 3000}}",
        "spec: {image: 'registry.example/paddock:0.2.0'}",
        "spec: {resources: {limits: {memory: 1Gi}}}",
        "spec: {pod: {nodeSelector: {a: b}}}",
    ] {
        let mut changed = cluster(MINIMAL);
        let patch: serde_yaml::Value = serde_yaml::from_str(change).expect("patch parses");
        let mut value = serde_json::to_value(&changed).expect("serializes");
        let patch = serde_json::to_value(patch).expect("patch converts");
        json_merge(&mut value, &patch);
        changed = serde_json::from_value(value).expect("patched CR parses");
        assert_ne!(base, hash_of(&changed, 3, &Membership::initial(&names, 3)), "{change} must roll pods");
    }
    // The ConfigMap's content is part of the hash.
    let resources = cluster_resources(&cr, &names, 3, &Membership::Join);
    let template = resources.statefulset.spec.expect("spec").template;
    let mut stripped = template.clone();
    if let Some(annotations) = stripped.metadata.as_mut().and_then(|m| m.annotations.as_mut()) {
        annotations.remove(CONFIG_HASH_ANNOTATION);
    }
    if let Some(spec) = stripped.spec.as_mut() {
        spec.containers[0].args = None;
    }
    assert_eq!(config_hash(&resources.config_map, &stripped), base);
}

fn json_merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                json_merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}
