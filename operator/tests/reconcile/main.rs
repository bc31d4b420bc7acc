//! Reconcile passes against a tower-test mock Kubernetes API server and a fake admin API: the
//! order of requests (objects applied with server-side apply, the membership step, the Event,
//! the status patched with server-side apply), membership removed before the StatefulSet
//! shrinks, bootstrap, and invalid specs reported as Degraded without touching anything.
//!
//! The mock API server is a small model of a namespace: it keeps the StatefulSet, creates and
//! deletes pods as the StatefulSet controller would, and logs every request in one log shared
//! with the fake admin API, so the test asserts the global order of what the operator did.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::Client;
use paddock_contract::admin::{ClusterView, MemberView, Role};
use paddock_operator::admin::{AdminApi, AdminError, Change};
use paddock_operator::certs::Authority;
use paddock_operator::crd::CoordinationCluster;
use paddock_operator::metrics::Metrics;
use paddock_operator::reconcile::{reconcile, Context};
use paddock_operator::resources::{cluster_resources, Membership, Names, CONFIG_HASH_ANNOTATION};
use paddock_operator::tenancy::{limits_data, Layout, TenancyError, Tenants};
use paddock_operator::tls::{Certificates, Lifetimes};
use serde_json::{json, Value};

/// The model both fakes share.
#[derive(Default)]
struct Model {
    cluster: Value,
    statefulset: Option<Value>,
    /// Pods by member id, with whether the server holds Raft state.
    pods: BTreeMap<u64, bool>,
    /// Raft membership: id → voter?
    members: BTreeMap<u64, bool>,
    /// Config hash each pod was created with.
    pod_hash: BTreeMap<u64, String>,
    leader: u64,
    /// Secrets by name, as the API server stores them (base64 data).
    secrets: BTreeMap<String, Value>,
    /// Namespaces of the pods the webhook labelled as using the cluster.
    injected: Vec<String>,
    /// Whether laying out namespaces fails.
    tenancy_fails: bool,
    /// Whether cert-manager's resources are served.
    cert_manager: bool,
    /// The Certificates applied, by name: their specs.
    certificates: BTreeMap<String, Value>,
    log: Vec<String>,
}

type Shared = Arc<Mutex<Model>>;

fn lock(model: &Shared) -> std::sync::MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const NAME: &str = "zk";
const NS: &str = "apps";

fn names() -> Names {
    Names::new(NAME, NS)
}

fn cr(spec: &str) -> CoordinationCluster {
    let yaml = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: CoordinationCluster\nmetadata: {{name: {NAME}, namespace: {NS}, uid: 6f1c-1, generation: 2}}\nspec: {spec}\n"
    );
    serde_yaml::from_str(&yaml).expect("inline CR parses")
}

fn template_hash(statefulset: &Value) -> String {
    statefulset["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].as_str().unwrap_or("").to_owned()
}

/// A pod as the StatefulSet controller and kubelet leave it: running, ready when it is a member
/// of a cluster with a leader.
fn pod(id: u64, hash: &str, ready: bool) -> Value {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(names().pod(id)),
            namespace: Some(NS.to_owned()),
            annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash.to_owned())])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    };
    serde_json::to_value(pod).expect("pod serializes")
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder().status(status).body(Body::from(serde_json::to_vec(body).expect("json"))).expect("response")
}

fn not_found() -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// Serves one request from the model and logs it.
async fn serve(model: &Shared, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let content_type =
        request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = request.into_body().collect_bytes().await.expect("request body");
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).expect("json body") };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Namespaced: /api/v1/namespaces/NS/RESOURCE/NAME/SUB; cluster-scoped or across namespaces:
    // /api/v1/RESOURCE/NAME or /apis/GROUP/VERSION/RESOURCE/NAME.
    let at = match segments.iter().position(|s| *s == "namespaces") {
        Some(i) => i + 2,
        None if segments.first() == Some(&"api") => 2,
        None => 3,
    };
    let (resource, name, sub) =
        (segments.get(at).copied().unwrap_or(""), segments.get(at + 1).copied(), segments.get(at + 2).copied());
    let namespaced = segments.contains(&"namespaces");
    let mut model = lock(model);
    if method == http::Method::PATCH {
        let ssa = content_type == "application/apply-patch+yaml"
            && query.contains("fieldManager=paddock-operator")
            && query.contains("force=true");
        assert!(ssa, "PATCH {path} is not a forced server-side apply by paddock-operator ({content_type}, {query})");
    }
    match (method.as_str(), resource, name, sub) {
        ("GET", "statefulsets", Some(_), None) => {
            model.log.push("GET statefulset".to_owned());
            match model.statefulset.clone() {
                Some(sts) => respond(StatusCode::OK, &sts),
                None => not_found(),
            }
        }
        ("GET", "pods", None, None) if !namespaced => {
            // The injected pods using the cluster, in every namespace (metadata only).
            assert!(query.contains("paddock.dev%2Fcluster%3Dzk"), "{query}");
            assert!(query.contains("paddock.dev%2Fcluster-namespace%3Dapps"), "{query}");
            model.log.push("LIST injected pods".to_owned());
            let items: Vec<Value> = model
                .injected
                .iter()
                .enumerate()
                .map(|(i, ns)| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": format!("app-{i}"), "namespace": ns}}))
                .collect();
            respond(
                StatusCode::OK,
                &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items}),
            )
        }
        ("GET", "pods", None, None) => {
            assert!(query.contains("labelSelector="), "pods are listed by label");
            model.log.push("LIST pods".to_owned());
            let leader_exists = model.members.contains_key(&model.leader);
            let items: Vec<Value> = model
                .pods
                .keys()
                .map(|&id| {
                    let hash = model.pod_hash.get(&id).cloned().unwrap_or_default();
                    pod(id, &hash, leader_exists && model.members.contains_key(&id))
                })
                .collect();
            respond(StatusCode::OK, &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
        }
        ("PATCH", "statefulsets", Some(_), None) => {
            let replicas = body["spec"]["replicas"].as_u64().expect("replicas applied");
            let args =
                body["spec"]["template"]["spec"]["containers"][0]["args"].as_array().cloned().unwrap_or_default();
            let mode = args.last().and_then(Value::as_str).unwrap_or("").split('=').next().unwrap_or("").to_owned();
            model.log.push(format!("APPLY statefulset replicas={replicas} {mode}"));
            // The StatefulSet controller: pods 1..=replicas exist; removed pods lose their volume.
            model.pods.retain(|&id, _| id <= replicas);
            let hash = template_hash(&body);
            for id in 1..=replicas {
                model.pods.entry(id).or_insert(false);
                model.pod_hash.entry(id).or_insert_with(|| hash.clone());
            }
            model.pod_hash.retain(|&id, _| id <= replicas);
            model.statefulset = Some(body.clone());
            respond(StatusCode::OK, &body)
        }
        ("PATCH", "coordinationclusters", Some(_), Some("status")) => {
            let status = body["status"].clone();
            let reasons: Vec<String> = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}={}:{}",
                        c["type"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            model.log.push(format!("STATUS {} {}", status["phase"].as_str().unwrap_or(""), reasons.join(",")));
            model.cluster["status"] = status;
            let cluster = model.cluster.clone();
            respond(StatusCode::OK, &cluster)
        }
        // API discovery of cert-manager's group (not logged: asked of new TLS clusters alone).
        ("GET", "", None, None) if path == "/apis/cert-manager.io/v1" => {
            if !model.cert_manager {
                return not_found();
            }
            let resources: Vec<Value> = ["certificates", "issuers", "clusterissuers", "certificaterequests"]
                .iter()
                .map(|name| json!({"name": name, "singularName": "", "namespaced": true, "kind": "", "verbs": ["get"]}))
                .collect();
            respond(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "cert-manager.io/v1", "resources": resources}),
            )
        }
        ("GET", "secrets", None, None) => {
            let selector = query.split('&').find_map(|q| q.strip_prefix("labelSelector=")).expect("listed by label");
            assert_eq!(selector, "paddock.dev%2Fcertificate-of%3Dzk");
            model.log.push("LIST certificate secrets".to_owned());
            let items: Vec<Value> = model
                .secrets
                .values()
                .filter(|s| s["metadata"]["labels"]["paddock.dev/certificate-of"] == "zk")
                .cloned()
                .collect();
            respond(StatusCode::OK, &json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {}, "items": items}))
        }
        ("PATCH", "certificates" | "issuers", Some(_), None) if !model.cert_manager => not_found(),
        ("PATCH", "certificates", Some(name), None) => {
            model.log.push(format!("APPLY certificates/{name}"));
            model.certificates.insert(name.to_owned(), body["spec"].clone());
            respond(StatusCode::OK, &body)
        }
        ("GET", "secrets", Some(name), None) => match model.secrets.get(name) {
            Some(secret) => respond(StatusCode::OK, secret),
            None => not_found(),
        },
        ("POST", "secrets", None, None) => {
            let name = body["metadata"]["name"].as_str().expect("named").to_owned();
            model.log.push(format!("CREATE secrets/{name}"));
            model.secrets.insert(name, body.clone());
            respond(StatusCode::CREATED, &body)
        }
        // Owning a Secret cert-manager wrote: only its owner references are applied.
        ("PATCH", "secrets", Some(name), None) if body.get("data").is_none() => {
            model.log.push(format!("OWN secrets/{name}"));
            let secret = model.secrets.get_mut(name).expect("owns a Secret that is there");
            secret["metadata"]["ownerReferences"] = body["metadata"]["ownerReferences"].clone();
            let secret = secret.clone();
            respond(StatusCode::OK, &secret)
        }
        ("PATCH", "secrets", Some(name), None) => {
            model.log.push(format!("APPLY secrets/{name}"));
            model.secrets.insert(name.to_owned(), body.clone());
            respond(StatusCode::OK, &body)
        }
        ("PATCH", kind, Some(name), None) => {
            model.log.push(format!("APPLY {kind}/{name}"));
            respond(StatusCode::OK, &body)
        }
        ("POST", "events", None, None) => {
            model.log.push(format!(
                "EVENT {} {}",
                body["type"].as_str().unwrap_or(""),
                body["reason"].as_str().unwrap_or("")
            ));
            respond(StatusCode::CREATED, &body)
        }
        ("DELETE", "pods", Some(name), None) => {
            model.log.push(format!("DELETE pod/{name}"));
            let id = names().id_of_pod(name).expect("a server pod");
            // Recreated at once by the StatefulSet controller, on the current template, same volume.
            let state = model.pods.get(&id).copied().unwrap_or(false);
            model.pods.insert(id, state);
            let hash = model.statefulset.as_ref().map(template_hash).unwrap_or_default();
            model.pod_hash.insert(id, hash);
            respond(StatusCode::OK, &pod(id, "", false))
        }
        ("DELETE", "clusterrolebindings", Some(name), None) => {
            model.log.push(format!("DELETE clusterrolebindings/{name}"));
            not_found()
        }
        ("DELETE", "persistentvolumeclaims", Some(name), None) => {
            model.log.push(format!("DELETE pvc/{name}"));
            respond(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}}),
            )
        }
        _ => panic!("unexpected request {method} {path}?{query}"),
    }
}

/// The admin API of the modelled servers.
struct FakeAdmin(Shared);

fn id_of_addr(addr: &str) -> Option<u64> {
    // Clusters with TLS (the default) are reached over https.
    let host = addr.strip_prefix("https://")?;
    names().id_of_pod(host.split('.').next()?)
}

impl AdminApi for FakeAdmin {
    fn cluster<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<ClusterView, AdminError>> {
        Box::pin(async move {
            let model = lock(&self.0);
            let id = id_of_addr(addr).filter(|id| model.pods.contains_key(id));
            let Some(id) = id else {
                return Err(AdminError::Unreachable { addr: addr.to_owned(), message: "no such pod".to_owned() });
            };
            let has_state = model.pods[&id];
            let members = if has_state {
                model
                    .members
                    .iter()
                    .map(|(&m, &voter)| MemberView {
                        id: m,
                        addr: names().peer_addr(m),
                        role: if m == model.leader {
                            Role::Leader
                        } else if voter {
                            Role::Follower
                        } else {
                            Role::Learner
                        },
                        matched: (id == model.leader).then_some(100),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let leader = (has_state && model.members.contains_key(&model.leader)).then_some(model.leader);
            Ok(ClusterView { id, leader, term: 3, committed: 100, applied: 100, members })
        })
    }

    fn change<'a>(&'a self, addr: &'a str, change: &'a Change) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            let mut model = lock(&self.0);
            assert_eq!(id_of_addr(addr), Some(model.leader), "membership changes go to the leader");
            model.log.push(format!("ADMIN {change:?}"));
            match change {
                Change::AddLearner { id, addr } => {
                    assert_eq!(*addr, names().peer_addr(*id));
                    model.members.insert(*id, false);
                    model.pods.insert(*id, true);
                }
                Change::SetVoters { ids } => {
                    for (id, voter) in model.members.iter_mut() {
                        *voter = ids.contains(id);
                    }
                }
                Change::Remove { id } => {
                    assert_ne!(*id, model.leader);
                    model.members.remove(id);
                }
                Change::TransferLeader { id } => model.leader = *id,
            }
            Ok(())
        })
    }
}

/// Lays namespaces out in the model's log.
struct FakeTenants(Shared);

impl Tenants for FakeTenants {
    fn lay_out<'a>(
        &'a self,
        endpoint: &'a str,
        cluster_ca: &'a str,
        layout: &'a Layout,
    ) -> BoxFuture<'a, Result<(), TenancyError>> {
        Box::pin(async move {
            assert_eq!(endpoint, "zk-client.apps.svc:2281", "the TLS client port");
            assert!(cluster_ca.starts_with("-----BEGIN CERTIFICATE-----"), "the cluster CA: {cluster_ca}");
            let mut model = lock(&self.0);
            let list: Vec<String> = layout
                .namespaces
                .iter()
                .map(|(ns, quota)| match limits_data(quota) {
                    Some(limits) => format!("{ns}[{limits}]"),
                    None => ns.clone(),
                })
                .collect();
            let root = if layout.guard_root { "/ " } else { "" };
            model.log.push(format!("LAYOUT {root}{}", list.join(" ")));
            if model.tenancy_fails {
                return Err(TenancyError::Unreachable { endpoint: endpoint.to_owned(), message: "refused".to_owned() });
            }
            Ok(())
        })
    }
}

/// A running cluster of `n` voters on the current template.
fn running(cluster: &CoordinationCluster, n: u64) -> Model {
    let names = names();
    let sts =
        serde_json::to_value(cluster_resources(cluster, &names, n as i32, &Membership::Join).statefulset).expect("sts");
    let hash = template_hash(&sts);
    Model {
        pod_hash: (1..=n).map(|id| (id, hash.clone())).collect(),
        cluster: serde_json::to_value(cluster).expect("cr"),
        statefulset: Some(sts),
        pods: (1..=n).map(|id| (id, true)).collect(),
        members: (1..=n).map(|id| (id, true)).collect(),
        leader: 1,
        secrets: BTreeMap::new(),
        injected: Vec::new(),
        tenancy_fails: false,
        cert_manager: false,
        certificates: BTreeMap::new(),
        log: Vec::new(),
    }
}

struct Harness {
    model: Shared,
    ctx: Arc<Context>,
    server: tokio::task::JoinHandle<()>,
}

fn harness(model: Model) -> Harness {
    let model: Shared = Arc::new(Mutex::new(model));
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let served = model.clone();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            send.send_response(serve(&served, request).await);
        }
    });
    let ctx = Arc::new(Context {
        client: Client::new(service, NS),
        admin: Arc::new(FakeAdmin(model.clone())),
        metrics: Metrics::new(&prometheus::Registry::new()).expect("metrics register"),
        reporter: Reporter { controller: "paddock-operator".to_owned(), instance: None },
        certificates: Some(Arc::new(Certificates {
            admin_ca: Arc::new(
                Authority::generate("admin CA", time::OffsetDateTime::now_utc(), Duration::from_secs(86_400))
                    .expect("admin CA"),
            ),
            lifetimes: Lifetimes::default(),
        })),
        tenants: Some(Arc::new(FakeTenants(model.clone()))),
        watch_namespace: None,
        laid_out: Default::default(),
    });
    Harness { model, ctx, server }
}

impl Harness {
    /// One pass with the CR as the model holds it (status included); returns its log lines.
    async fn pass(&self) -> (Action, Vec<String>) {
        let cluster: CoordinationCluster = serde_json::from_value(lock(&self.model).cluster.clone()).expect("cr");
        let start = lock(&self.model).log.len();
        let action = reconcile(Arc::new(cluster), self.ctx.clone()).await.expect("pass succeeds");
        (action, lock(&self.model).log[start..].to_vec())
    }

    fn log(&self) -> Vec<String> {
        lock(&self.model).log.clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[tokio::test]
async fn one_pass_in_order_member_removed_before_statefulset_shrinks() {
    let cluster = cr("{replicas: 3}");
    let h = harness(running(&cluster, 5));
    let (_, log) = h.pass().await;
    assert_eq!(
        log,
        [
            "GET statefulset",
            "LIST pods",
            "CREATE secrets/zk-ca",
            "APPLY secrets/zk-tls",
            "EVENT Normal CertificatesIssued",
            "APPLY configmaps/zk-config",
            "APPLY serviceaccounts/zk-server",
            "APPLY clusterrolebindings/paddock:apps:zk:token-review",
            "APPLY services/zk-peers",
            "APPLY services/zk-client",
            "APPLY poddisruptionbudgets/zk",
            "APPLY statefulset replicas=5 --join",
            "APPLY networkpolicies/zk",
            "ADMIN Remove { id: 5 }",
            "EVENT Normal RemoveMember",
            "LIST injected pods",
            "LAYOUT ",
            "EVENT Normal NamespacesLaidOut",
            "STATUS Scaling Available=True:QuorumAvailable,Progressing=True:RemoveMember,Degraded=False:Healthy",
        ]
    );
}

#[tokio::test]
async fn scale_down_5_to_3_removes_members_first_then_shrinks() {
    let cluster = cr("{replicas: 3}");
    let h = harness(running(&cluster, 5));
    for _ in 0..10 {
        let (action, _) = h.pass().await;
        if action == Action::requeue(std::time::Duration::from_secs(300)) {
            break;
        }
    }
    let log = h.log();
    let steps: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("ADMIN") || (l.starts_with("APPLY statefulset") && !l.contains("replicas=5")))
        .collect();
    assert_eq!(
        steps,
        [
            "ADMIN Remove { id: 5 }",
            "ADMIN Remove { id: 4 }",
            "APPLY statefulset replicas=3 --join",
            "APPLY statefulset replicas=3 --join"
        ]
    );
    assert_eq!(lock(&h.model).members.keys().copied().collect::<BTreeSet<u64>>(), BTreeSet::from([1, 2, 3]));
    assert!(log.last().is_some_and(|l| l.starts_with("STATUS Running")), "{log:?}");
}

#[tokio::test]
async fn scale_up_3_to_5_grows_adds_learners_and_promotes() {
    let cluster = cr("{replicas: 5}");
    let mut model = running(&cluster, 3);
    model.cluster = serde_json::to_value(&cluster).expect("cr");
    let h = harness(model);
    for _ in 0..10 {
        h.pass().await;
    }
    let log = h.log();
    let steps: Vec<&str> =
        log.iter().map(String::as_str).filter(|l| l.starts_with("ADMIN") || l.starts_with("EVENT")).collect();
    assert_eq!(
        steps,
        [
            "EVENT Normal CertificatesIssued",
            "EVENT Normal ScaleStatefulSet",
            "ADMIN AddLearner { id: 4, addr: \"zk-3.zk-peers.apps.svc:2888\" }",
            "EVENT Normal AddLearner",
            "ADMIN AddLearner { id: 5, addr: \"zk-4.zk-peers.apps.svc:2888\" }",
            "EVENT Normal AddLearner",
            "ADMIN SetVoters { ids: {1, 2, 3, 4, 5} }",
            "EVENT Normal PromoteVoters",
        ]
        .into_iter()
        .flat_map(|e| {
            // Namespaces are laid out in the first pass, where a leader is known.
            let first = (e == "EVENT Normal ScaleStatefulSet").then_some("EVENT Normal NamespacesLaidOut");
            std::iter::once(e).chain(first)
        })
        .collect::<Vec<_>>()
    );
    // The StatefulSet grew before any learner was added.
    let grow = log.iter().position(|l| l == "APPLY statefulset replicas=5 --join").expect("grown");
    let add = log.iter().position(|l| l.starts_with("ADMIN AddLearner")).expect("added");
    assert!(grow < add);
    assert!(log.last().is_some_and(|l| l.starts_with("STATUS Running")), "{log:?}");
}

#[tokio::test]
async fn new_cluster_bootstraps_with_initial_members_then_switches_to_join() {
    let cluster = cr("{replicas: 3}");
    let h = harness(Model { cluster: serde_json::to_value(&cluster).expect("cr"), leader: 1, ..Model::default() });
    let (_, log) = h.pass().await;
    assert_eq!(log[0], "GET statefulset");
    // The certificates before the StatefulSet that mounts them.
    assert_eq!(log[2..5], ["CREATE secrets/zk-ca", "APPLY secrets/zk-tls", "EVENT Normal CertificatesIssued"]);
    // No leader yet: no namespaces laid out.
    assert!(!log.iter().any(|l| l.starts_with("LAYOUT")), "{log:?}");
    assert!(log.contains(&"APPLY statefulset replicas=3 --initial-members".to_owned()), "{log:?}");
    assert!(log.last().is_some_and(|l| l.starts_with("STATUS Bootstrapping")), "{log:?}");
    // The initial members elect a leader.
    {
        let mut model = lock(&h.model);
        model.members = (1..=3).map(|id| (id, true)).collect();
        for id in 1..=3 {
            model.pods.insert(id, true);
        }
    }
    let (_, log) = h.pass().await;
    assert!(log.contains(&"APPLY statefulset replicas=3 --join".to_owned()), "{log:?}");
    assert!(log.last().is_some_and(|l| l.starts_with("STATUS Running")), "{log:?}");
}

#[tokio::test]
async fn config_change_rolls_pods_leader_last() {
    let old = cr("{replicas: 3}");
    let mut model = running(&old, 3);
    let new = cr("{replicas: 3, config: {tickMs: 1000}}");
    model.cluster = serde_json::to_value(&new).expect("cr");
    model.leader = 2;
    let h = harness(model);
    for _ in 0..10 {
        h.pass().await;
    }
    let log = h.log();
    let steps: Vec<&str> =
        log.iter().map(String::as_str).filter(|l| l.starts_with("ADMIN") || l.starts_with("DELETE")).collect();
    // Followers from the highest ordinal, then leadership moves, then the old leader restarts.
    assert_eq!(steps, ["DELETE pod/zk-2", "DELETE pod/zk-0", "ADMIN TransferLeader { id: 1 }", "DELETE pod/zk-1"]);
    assert!(log.last().is_some_and(|l| l.starts_with("STATUS Running")), "{log:?}");
    let upgrading = log.iter().filter(|l| l.starts_with("STATUS Upgrading")).count();
    assert_eq!(upgrading, 4, "{log:?}");
}

#[tokio::test]
async fn certificates_are_issued_once_mounted_and_a_broken_ca_is_never_replaced() {
    let cluster = cr("{replicas: 3}");
    let h = harness(running(&cluster, 3));
    h.pass().await;
    let data = |name: &str| lock(&h.model).secrets.get(name).map(|s| s["data"].clone()).unwrap_or_default();
    assert!(data("zk-ca").get("ca.key").is_some());
    let tls = data("zk-tls");
    for key in ["ca.crt", "admin-ca.crt", "server.crt", "admin.key", "member-1.crt", "member-9.key"] {
        assert!(tls.get(key).is_some(), "zk-tls has no {key}");
    }
    assert!(tls.get("ca.key").is_none(), "the CA's key is not mounted");
    let sts = lock(&h.model).statefulset.clone().expect("statefulset");
    let args = sts["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--peer-tls-cert=/etc/paddock/tls/member-{id}.crt"), "{args}");
    assert_eq!(sts["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"], "zk-tls");

    // Nothing is due: the next pass issues nothing.
    let (_, log) = h.pass().await;
    assert!(!log.iter().any(|l| l.contains("secrets")), "{log:?}");

    // A CA that cannot be read fails the pass before anything is applied (only read), and
    // stays as it was.
    let broken = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "zk-ca"},
                        "data": {"ca.crt": "bm90IGEgY2VydA==", "ca.key": "bm90IGEga2V5"}});
    lock(&h.model).secrets.insert("zk-ca".to_owned(), broken.clone());
    let cluster: CoordinationCluster = serde_json::from_value(lock(&h.model).cluster.clone()).expect("cr");
    let start = lock(&h.model).log.len();
    let error = reconcile(Arc::new(cluster), h.ctx.clone()).await.expect_err("the pass fails");
    assert!(error.to_string().contains("zk-ca"), "{error}");
    assert_eq!(lock(&h.model).log[start..], ["GET statefulset", "LIST pods"], "nothing applied after a broken CA");
    assert_eq!(lock(&h.model).secrets["zk-ca"], broken);
}

#[tokio::test]
async fn a_running_cluster_is_never_switched_between_tls_and_clear_text() {
    // Made before TLS was the default: its servers run without TLS.
    let plain = cr("{replicas: 3, tls: {enabled: false}}");
    let mut model = running(&plain, 3);
    model.cluster = serde_json::to_value(cr("{replicas: 3}")).expect("cr");
    let h = harness(model);
    let (action, log) = h.pass().await;
    assert_eq!(action, Action::await_change());
    assert_eq!(
        log,
        [
            "GET statefulset",
            "LIST pods",
            "EVENT Warning InvalidSpec",
            "STATUS Degraded Progressing=False:InvalidTls,Degraded=True:InvalidTls",
        ]
    );
    let conditions = lock(&h.model).cluster["status"]["conditions"].clone();
    let degraded = conditions.as_array().into_iter().flatten().find(|c| c["type"] == "Degraded").cloned();
    let message = degraded.and_then(|c| c["message"].as_str().map(str::to_owned)).unwrap_or_default();
    assert!(message.contains("set spec.tls.enabled: false"), "{message}");
}

#[tokio::test]
async fn invalid_spec_is_reported_degraded_and_nothing_is_touched() {
    for (spec, reason) in [
        ("{replicas: 4}", "InvalidReplicas"),
        ("{storage: {size: '0'}}", "InvalidStorage"),
        ("{image: 'Bad Image'}", "InvalidImage"),
    ] {
        let cluster = cr(spec);
        let h = harness(Model { cluster: serde_json::to_value(&cluster).expect("cr"), ..Model::default() });
        let (action, log) = h.pass().await;
        assert_eq!(action, Action::await_change(), "no retry loop for {spec}");
        assert_eq!(
            log,
            [
                "EVENT Warning InvalidSpec".to_owned(),
                format!("STATUS Degraded Progressing=False:{reason},Degraded=True:{reason}"),
            ]
        );
        // Reported once: the next pass only refreshes the status.
        let (_, log) = h.pass().await;
        assert_eq!(log.len(), 1, "{log:?}");
    }
}

#[tokio::test]
async fn namespaces_using_the_cluster_are_laid_out_once_and_again_when_they_change() {
    let cluster =
        cr("{replicas: 3, tenancy: {guardRoot: true, namespaces: [{name: billing, maxZnodes: 50, maxBytes: 4096}]}}");
    let mut model = running(&cluster, 3);
    model.injected = vec!["shop".to_owned(), "cart".to_owned(), "shop".to_owned()];
    let h = harness(model);
    let (_, log) = h.pass().await;
    let tenancy: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains("injected") || l.contains("LAYOUT") || l.contains("Namespaces"))
        .collect();
    assert_eq!(
        tenancy,
        [
            "LIST injected pods",
            "LAYOUT / billing[count=-1,bytes=-1=;byteHardLimit=4096;countHardLimit=50] cart shop",
            "EVENT Normal NamespacesLaidOut",
        ]
    );
    let sts = lock(&h.model).statefulset.clone().expect("statefulset");
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "zk-server");
    assert_eq!(pod["automountServiceAccountToken"], true);
    let args = pod["containers"][0]["args"].to_string();
    for flag in ["--k8s-token-review", "--x509-super-user=CN=paddock-operator,O=Paddock", "--tls-client-auth=want"] {
        assert!(args.contains(flag), "{flag} missing from {args}");
    }

    // The same namespaces: nothing to do.
    let (_, log) = h.pass().await;
    assert!(!log.iter().any(|l| l.starts_with("LAYOUT")), "{log:?}");
    // A new namespace is laid out with the others; a failure is reported and retried soon.
    {
        let mut model = lock(&h.model);
        model.injected.push("audit".to_owned());
        model.tenancy_fails = true;
    }
    let (action, log) = h.pass().await;
    assert!(log.iter().any(|l| l.starts_with("LAYOUT / audit billing")), "{log:?}");
    assert!(log.contains(&"EVENT Warning TenancyFailed".to_owned()), "{log:?}");
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    lock(&h.model).tenancy_fails = false;
    let (action, log) = h.pass().await;
    assert!(log.iter().any(|l| l.starts_with("LAYOUT / audit billing")), "{log:?}");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn without_isolation_no_tokens_are_reviewed_and_nothing_is_laid_out() {
    let cluster = cr("{replicas: 3, tenancy: {enabled: false}}");
    let mut model = running(&cluster, 3);
    model.injected = vec!["shop".to_owned()];
    let h = harness(model);
    let (_, log) = h.pass().await;
    assert!(log.contains(&"DELETE clusterrolebindings/paddock:apps:zk:token-review".to_owned()), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("LAYOUT") || l.contains("injected")), "{log:?}");
    let sts = lock(&h.model).statefulset.clone().expect("statefulset");
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(!pod["containers"][0]["args"].to_string().contains("--k8s-token-review"));
}

/// cert-manager in the model: issues every Certificate applied so far from `ca`, into the Secret
/// it names, as cert-manager writes them (`tls.crt`, `tls.key`, `ca.crt`, its template's labels).
fn cert_manager_issues(model: &Shared, ca: &Authority) {
    use paddock_operator::certs::{Leaf, Usage};
    let mut model = lock(model);
    let certificates = model.certificates.clone();
    for spec in certificates.values() {
        let strings = |key: &str| -> Vec<String> {
            spec[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        };
        let (cert, key) = if spec["isCA"] == true {
            (ca.pem().cert_pem.clone(), ca.pem().key_pem.clone())
        } else {
            let leaf = Leaf {
                common_name: spec["commonName"].as_str().unwrap_or("").to_owned(),
                dns_names: strings("dnsNames"),
                uri: strings("uris").first().cloned(),
                usage: Usage::Peer,
            };
            let issued = ca.issue(&leaf, time::OffsetDateTime::now_utc(), Duration::from_secs(86_400)).expect("issued");
            (issued.cert_pem, issued.key_pem)
        };
        let name = spec["secretName"].as_str().expect("a secret name").to_owned();
        let data = |pem: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": spec["secretTemplate"]["labels"]},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": data(&cert), "tls.key": data(&key), "ca.crt": data(&ca.pem().cert_pem)},
        });
        model.secrets.insert(name, secret);
    }
}

fn secret_text(model: &Shared, name: &str, key: &str) -> Option<String> {
    let encoded = lock(model).secrets.get(name)?["data"][key].as_str()?.to_owned();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).ok()?;
    String::from_utf8(bytes).ok()
}

#[tokio::test]
async fn where_cert_manager_runs_it_issues_the_servers_certificates_and_renewals_reach_the_pods() {
    let cluster = cr("{replicas: 3}");
    let mut model = running(&cluster, 3);
    model.cert_manager = true;
    let h = harness(model);

    // A new cluster where cert-manager is served: its CA and leaves are asked of cert-manager;
    // nothing is mounted until they are issued.
    let (action, log) = h.pass().await;
    let certificates: Vec<&str> = log.iter().filter_map(|l| l.strip_prefix("APPLY certificates/")).collect();
    let mut wanted = vec!["zk-cert-ca".to_owned(), "zk-cert-server".to_owned()];
    wanted.extend((1..=9).map(|id| format!("zk-cert-member-{id}")));
    assert_eq!(certificates, wanted);
    assert!(
        log.contains(&"APPLY issuers/zk-self-signed".to_owned()) && log.contains(&"APPLY issuers/zk-ca".to_owned())
    );
    assert!(log.contains(&"EVENT Normal WaitingForCertificates".to_owned()), "{log:?}");
    assert!(!log.iter().any(|l| l.starts_with("APPLY statefulset") || l.contains("secrets/")), "{log:?}");
    assert_eq!(action, Action::requeue(Duration::from_secs(3)));
    assert!(!lock(&h.model).secrets.contains_key("zk-ca"), "no CA of the operator's own");

    // Issued: copied into zk-tls under the servers' file names, with the operator's admin leaf.
    let now = time::OffsetDateTime::now_utc();
    let ca = Authority::generate("zk CA", now, Duration::from_secs(86_400 * 365)).expect("CA");
    cert_manager_issues(&h.model, &ca);
    let (_, log) = h.pass().await;
    assert!(log.contains(&"OWN secrets/zk-cert-server".to_owned()), "{log:?}");
    assert!(log.contains(&"APPLY secrets/zk-tls".to_owned()), "{log:?}");
    assert!(log.iter().any(|l| l.starts_with("APPLY statefulset")), "{log:?}");
    let tls = |key: &str| secret_text(&h.model, "zk-tls", key);
    assert_eq!(tls("server.crt"), secret_text(&h.model, "zk-cert-server", "tls.crt"));
    assert_eq!(tls("member-7.key"), secret_text(&h.model, "zk-cert-member-7", "tls.key"));
    assert_eq!(tls("ca.crt"), Some(ca.pem().cert_pem.clone()));
    assert!(tls("admin.crt").is_some() && tls("admin-ca.crt").is_some(), "the admin side stays the operator's");
    let owners = lock(&h.model).secrets["zk-cert-member-1"]["metadata"]["ownerReferences"].clone();
    assert_eq!(owners[0]["kind"], "CoordinationCluster");
    assert!(owners[0].get("controller").is_none(), "owned, not controlled: cert-manager writes it");
    let recorded = lock(&h.model).secrets["zk-tls"]["metadata"]["annotations"]["paddock.dev/issued-by"].clone();
    assert_eq!(recorded, "cert-manager");

    // Nothing changed: nothing written, nothing owned again.
    let (_, log) = h.pass().await;
    assert!(!log.iter().any(|l| l.contains("secrets/")), "{log:?}");

    // cert-manager renews the server's certificate: the copy follows.
    cert_manager_issues(&h.model, &ca);
    let renewed = secret_text(&h.model, "zk-cert-server", "tls.crt");
    let (_, log) = h.pass().await;
    assert!(log.contains(&"APPLY secrets/zk-tls".to_owned()), "{log:?}");
    assert_eq!(tls("server.crt"), renewed);

    // cert-manager goes away: the cluster keeps cert-manager's certificates, it is not switched
    // to a CA of the operator's (its members would not trust each other).
    lock(&h.model).cert_manager = false;
    let (action, log) = h.pass().await;
    assert!(log.contains(&"EVENT Normal WaitingForCertificates".to_owned()), "{log:?}");
    assert_eq!(action, Action::requeue(Duration::from_secs(3)));
    assert!(!lock(&h.model).secrets.contains_key("zk-ca"));
}

#[tokio::test]
async fn a_cluster_the_operator_issued_stays_with_the_operator_when_cert_manager_arrives() {
    let cluster = cr("{replicas: 3}");
    let h = harness(running(&cluster, 3));
    h.pass().await;
    assert!(lock(&h.model).secrets.contains_key("zk-ca"));
    lock(&h.model).cert_manager = true;
    let (_, log) = h.pass().await;
    assert!(!log.iter().any(|l| l.contains("certificates/") || l.contains("issuers/")), "{log:?}");
    let recorded = lock(&h.model).secrets["zk-tls"]["metadata"]["annotations"]["paddock.dev/issued-by"].clone();
    assert_eq!(recorded, "operator");
}

#[tokio::test]
async fn a_cluster_that_asks_for_cert_manager_waits_for_it() {
    let cluster = cr("{replicas: 3, tls: {provider: CertManager, issuerRef: {name: corp, kind: ClusterIssuer}}}");
    let h = harness(running(&cluster, 3));
    let (action, log) = h.pass().await;
    assert!(log.contains(&"EVENT Normal WaitingForCertificates".to_owned()), "{log:?}");
    assert_eq!(action, Action::requeue(Duration::from_secs(3)));
    assert!(lock(&h.model).secrets.is_empty(), "no CA of the operator's own");
    lock(&h.model).cert_manager = true;
    let (_, log) = h.pass().await;
    let applied: Vec<&str> = log
        .iter()
        .filter(|l| l.starts_with("APPLY issuers") || l.starts_with("APPLY certificates"))
        .map(String::as_str)
        .collect();
    assert_eq!(applied.len(), 10, "a leaf for the server and each member, no CA: {applied:?}");
    let spec = lock(&h.model).certificates["zk-cert-server"].clone();
    assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
}
