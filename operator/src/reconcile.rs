//! The CoordinationCluster reconciler: read → validate → build → apply → one membership step →
//! status. Each pass reads the StatefulSet, the server pods and every server's view of the
//! cluster, lets the pure planner (`membership::plan`) choose one step, applies the owned objects
//! with server-side apply, carries the step out through the admin API or the Kubernetes API,
//! records an Event and patches the status. The next pass plans again from fresh observations.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use paddock_contract::admin::{ClusterView, Role as AdminRole};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::admin::{AdminApi, AdminError, Change};
use crate::crd::{CoordinationCluster, CoordinationClusterStatus, GROUP};
use crate::membership::{plan, Desired, Member, Observed, PodObservation, Role, Step, CATCH_UP_LAG};
use crate::metrics::Metrics;
use crate::resources::{
    cluster_resources, membership_of, selector_labels, tls_of, ClusterResources, Membership, Names,
    CONFIG_HASH_ANNOTATION, FIELD_MANAGER, SERVICE_MONITOR_API_VERSION,
};
use crate::status::{invalid_status, status, StatusInput, DEGRADED};
use crate::tenancy::{self, Layout, Tenants};
use crate::tls::{self, Certificates, TlsError};
use crate::validate::{validate, InvalidSpec};

/// Why a pass failed (it is retried with a delay; the status says what happened).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API request failed.
    #[error("kubernetes api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A membership change through the admin API failed.
    #[error("membership change failed: {0}")]
    Admin(#[from] AdminError),
    /// The object has no name or namespace.
    #[error("the CoordinationCluster has no name or namespace")]
    Unnamed,
    /// The cluster's certificates could not be issued or stored.
    #[error("certificates: {0}")]
    Tls(#[from] TlsError),
    /// The spec asks for TLS but the operator runs without an admin CA.
    #[error("the spec asks for TLS but this operator issues no certificates")]
    NoCertificates,
}

impl Error {
    /// Label for `paddock_operator_reconcile_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Admin(_) => "admin",
            Self::Unnamed => "unnamed",
            Self::Tls(_) | Self::NoCertificates => "tls",
        }
    }
}

/// Result of a pass.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every pass shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// The servers' admin API.
    pub admin: Arc<dyn AdminApi>,
    /// Operator metrics.
    pub metrics: Metrics,
    /// Who reports Events.
    pub reporter: Reporter,
    /// What clusters' certificates are issued with (clusters with TLS need it).
    pub certificates: Option<Arc<Certificates>>,
    /// Lays out namespaces' subtrees (clusters that isolate namespaces need it).
    pub tenants: Option<Arc<dyn Tenants>>,
    /// The one namespace the operator watches (`--watch-namespace`), all when `None`: where it
    /// looks for injected pods.
    pub watch_namespace: Option<String>,
    /// The layout last carried out per cluster (by uid), and when.
    pub laid_out: Mutex<HashMap<String, (Layout, Instant)>>,
}

/// Requeue while cert-manager has not issued a cluster's certificates yet.
const WHILE_CERTIFICATES_PENDING: Duration = Duration::from_secs(3);

/// Requeue after a step was carried out: the next one may follow at once.
const AFTER_STEP: Duration = Duration::from_secs(2);
/// Requeue while waiting on pods or learners.
const WHILE_WAITING: Duration = Duration::from_secs(10);
/// Requeue of a settled cluster (changes to owned objects wake it sooner).
const WHEN_IDLE: Duration = Duration::from_secs(300);

/// What one pass read from the cluster.
struct World {
    statefulset: Option<StatefulSet>,
    pods: BTreeMap<u64, Pod>,
    views: BTreeMap<u64, ClusterView>,
}

/// One reconcile pass.
pub async fn reconcile(cluster: Arc<CoordinationCluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&cluster, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    result
}

/// Retry a failed pass after a pause; the failure is counted by kind.
pub fn error_policy(_cluster: Arc<CoordinationCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    ctx.metrics.reconcile_errors.with_label_values(&[error.metric_label()]).inc();
    Action::requeue(Duration::from_secs(15))
}

async fn reconcile_inner(cluster: &CoordinationCluster, ctx: &Context) -> Result<Action> {
    let names = Names::of(cluster).ok_or(Error::Unnamed)?;
    let generation = cluster.metadata.generation;
    let previous = cluster.status.as_ref();
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let reference = cluster.object_ref(&());

    if let Err(invalid) = validate(&cluster.spec) {
        return report_invalid(ctx, cluster, &names, &recorder, invalid).await;
    }

    // Read.
    let world = read_world(ctx, &names, cluster.spec.tls.enabled).await?;
    // Members of one cluster all speak TLS or none does: a running cluster is never switched
    // (the CRD refuses the change; a cluster made before TLS was the default gets here).
    let tls_enabled = cluster.spec.tls.enabled;
    if let Some(running) = world.statefulset.as_ref().and_then(tls_of) {
        if running != tls_enabled {
            let (now_, wanted) = if running { ("on", "true") } else { ("off", "false") };
            let invalid = InvalidSpec {
                reason: "InvalidTls",
                message: format!(
                    "the running cluster has TLS {now_}; set spec.tls.enabled: {wanted} (members cannot be moved \
                     between TLS and clear text one at a time)"
                ),
            };
            return report_invalid(ctx, cluster, &names, &recorder, invalid).await;
        }
    }

    // Certificates before anything that mounts them.
    let kept = if tls_enabled {
        let certificates = ctx.certificates.as_ref().ok_or(Error::NoCertificates)?;
        let kept = match tls::ensure(&ctx.client, cluster, &names, &certificates.admin_ca, certificates.lifetimes).await
        {
            Ok(kept) => kept,
            // Nothing mounts certificates that are not there: look again shortly.
            Err(TlsError::Pending(why)) => {
                tracing::info!(cluster = %names.cluster, namespace = %names.namespace, %why, "certificates pending");
                publish(&recorder, &reference, EventType::Normal, "WaitingForCertificates", why).await;
                return Ok(Action::requeue(WHILE_CERTIFICATES_PENDING));
            }
            Err(e) => return Err(e.into()),
        };
        if kept.issued > 0 {
            let note = format!("issued {} certificates", kept.issued);
            publish(&recorder, &reference, EventType::Normal, "CertificatesIssued", note).await;
        }
        Some(kept)
    } else {
        None
    };
    let renewal = kept.as_ref().map(|kept| kept.next_renewal);

    let leader_view = world.views.values().find(|v| v.is_leader());
    let desired = Desired { replicas: u64::try_from(cluster.spec.replicas).unwrap_or(1) };
    let membership = match world.statefulset.as_ref() {
        None => Membership::initial(&names, desired.replicas),
        Some(sts) => match membership_of(sts) {
            Some(Membership::Initial(initial)) if !formed(leader_view, &initial) => Membership::Initial(initial),
            // Formed, or an unreadable template: pods only ever join from now on.
            _ => Membership::Join,
        },
    };
    let statefulset_replicas =
        world.statefulset.as_ref().and_then(|s| s.spec.as_ref()?.replicas).and_then(|r| u64::try_from(r).ok());

    // Build.
    let initial_replicas = statefulset_replicas.unwrap_or(desired.replicas);
    let mut resources = cluster_resources(cluster, &names, to_i32(initial_replicas), &membership);
    let config_hash = resources
        .statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref()?.annotations.as_ref()?.get(CONFIG_HASH_ANNOTATION).cloned())
        .unwrap_or_default();
    let observed = observe(&world, leader_view, &membership, statefulset_replicas.unwrap_or(0), &config_hash);
    let pod_problems = pod_problems(&world);

    // Plan.
    let step = plan(desired, &observed);
    tracing::info!(cluster = %names.cluster, namespace = %names.namespace, %step, "planned");
    if let Step::ScaleStatefulSet { replicas } = step {
        if let Some(spec) = resources.statefulset.spec.as_mut() {
            spec.replicas = Some(to_i32(replicas));
        }
    }

    // Apply.
    apply_resources(ctx, &names, resources).await?;

    // One membership step.
    let step_result = execute(ctx, &names, &observed, &step, tls_enabled).await;
    match (&step, &step_result) {
        (Step::Idle | Step::Wait(_), _) => {}
        (step, Ok(())) => {
            publish(&recorder, &reference, EventType::Normal, step.kind(), capitalize(&step.to_string())).await;
        }
        (step, Err(error)) => {
            let reason = format!("{}Failed", step.kind());
            publish(&recorder, &reference, EventType::Warning, &reason, format!("{step}: {error}")).await;
        }
    }

    // The namespaces' subtrees, once there is a leader to write them.
    let tenancy_retry = match (&kept, leader_view) {
        (Some(kept), Some(_)) if cluster.spec.isolated() => {
            lay_out_namespaces(ctx, cluster, &names, &kept.cluster_ca, &recorder, &reference).await
        }
        _ => false,
    };

    // Status.
    let error_text = step_result.as_ref().err().map(ToString::to_string);
    let endpoint = names.client_endpoint(tls_enabled);
    let new_status = status(StatusInput {
        names: &names,
        client_endpoint: &endpoint,
        generation,
        observed: &observed,
        step: &step,
        pod_problems: &pod_problems,
        step_error: error_text.as_deref(),
        previous,
        now: now(),
    });
    patch_status(ctx, &names, &new_status).await?;
    step_result?;
    let after = match step {
        Step::Idle if !tenancy_retry => WHEN_IDLE,
        Step::Idle | Step::Wait(_) => WHILE_WAITING,
        _ => AFTER_STEP,
    };
    // Back in time to renew the next certificate.
    let until_renewal = renewal.map(|at| {
        let secs = at.saturating_sub(time::OffsetDateTime::now_utc().unix_timestamp()).max(1);
        Duration::from_secs(u64::try_from(secs).unwrap_or(1))
    });
    Ok(Action::requeue(until_renewal.map_or(after, |renew| renew.min(after))))
}

/// How long a layout carried out is trusted before it is carried out again (anyone with the
/// super user's certificate could have changed an ACL since).
const LAYOUT_FRESH: Duration = Duration::from_secs(600);

/// Lays out the subtrees of the namespaces that use the cluster (`tenancy`) unless the same
/// layout was carried out lately; whether it failed (and is to be tried again soon).
async fn lay_out_namespaces(
    ctx: &Context,
    cluster: &CoordinationCluster,
    names: &Names,
    cluster_ca: &str,
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> bool {
    let Some(tenants) = ctx.tenants.as_ref() else { return false };
    let selector = format!(
        "{}={},{}={}",
        crate::injection::CLUSTER_LABEL,
        names.cluster,
        crate::injection::CLUSTER_NAMESPACE_LABEL,
        names.namespace
    );
    let pods: Api<Pod> = match &ctx.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let using = match pods.list_metadata(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items.into_iter().filter_map(|pod| pod.metadata.namespace).collect::<Vec<_>>(),
        Err(error) => {
            let note = format!("cannot list the pods that use the cluster: {error}");
            publish(recorder, reference, EventType::Warning, "TenancyFailed", note).await;
            return true;
        }
    };
    let layout = tenancy::layout(&cluster.spec.tenancy, using);
    let key = cluster.metadata.uid.clone().unwrap_or_else(|| format!("{}/{}", names.namespace, names.cluster));
    let fresh = {
        let laid_out = ctx.laid_out.lock().unwrap_or_else(|e| e.into_inner());
        laid_out.get(&key).is_some_and(|(done, at)| *done == layout && at.elapsed() < LAYOUT_FRESH)
    };
    if fresh {
        return false;
    }
    match tenants.lay_out(&names.client_endpoint(true), cluster_ca, &layout).await {
        Ok(()) => {
            let list: Vec<&str> = layout.namespaces.keys().map(String::as_str).collect();
            tracing::info!(cluster = %names.cluster, namespace = %names.namespace, namespaces = ?list, "namespaces laid out");
            let known_before = {
                let mut laid_out = ctx.laid_out.lock().unwrap_or_else(|e| e.into_inner());
                laid_out.insert(key, (layout.clone(), Instant::now())).map(|(done, _)| done)
            };
            if known_before.as_ref() != Some(&layout) {
                let note = format!(
                    "namespaces laid out: {}",
                    if list.is_empty() { "none yet".to_owned() } else { list.join(", ") }
                );
                publish(recorder, reference, EventType::Normal, "NamespacesLaidOut", note).await;
            }
            false
        }
        Err(error) => {
            publish(recorder, reference, EventType::Warning, "TenancyFailed", error.to_string()).await;
            true
        }
    }
}

/// How the operator reaches member `id`'s admin API.
fn admin_endpoint(names: &Names, id: u64, tls: bool) -> String {
    if tls {
        format!("https://{}", names.admin_addr(id))
    } else {
        names.admin_addr(id)
    }
}

/// Reports a spec the operator will not act on (Event once, Degraded status) and waits for
/// the next change.
async fn report_invalid(
    ctx: &Context,
    cluster: &CoordinationCluster,
    names: &Names,
    recorder: &Recorder,
    invalid: InvalidSpec,
) -> Result<Action> {
    let previous = cluster.status.as_ref();
    let already_reported = previous.is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == DEGRADED && c.reason == invalid.reason && c.message == invalid.message)
    });
    if !already_reported {
        let reference = cluster.object_ref(&());
        publish(recorder, &reference, EventType::Warning, "InvalidSpec", invalid.message.clone()).await;
    }
    let endpoint = names.client_endpoint(cluster.spec.tls.enabled);
    let status = invalid_status(previous, cluster.metadata.generation, &endpoint, &invalid, now());
    patch_status(ctx, names, &status).await?;
    // Nothing to retry: the next spec change wakes the controller.
    Ok(Action::await_change())
}

fn to_i32(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The initial members have formed a cluster: a leader reports all of them as voters.
fn formed(leader_view: Option<&ClusterView>, initial: &BTreeMap<u64, String>) -> bool {
    leader_view
        .is_some_and(|view| initial.keys().all(|id| view.members.iter().any(|m| m.id == *id && m.role.is_voter())))
}

async fn read_world(ctx: &Context, names: &Names, tls: bool) -> Result<World> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let statefulset = statefulsets.get_opt(&names.statefulset()).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let selector: Vec<String> = selector_labels(names).iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: BTreeMap<u64, Pod> = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await?
        .items
        .into_iter()
        .filter_map(|pod| Some((names.id_of_pod(&pod.name_any())?, pod)))
        .collect();
    let running: Vec<u64> = pods
        .iter()
        .filter(|(_, p)| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|(&id, _)| id)
        .collect();
    let addrs: Vec<String> = running.iter().map(|&id| admin_endpoint(names, id, tls)).collect();
    let answers = join_all(addrs.iter().map(|addr| ctx.admin.cluster(addr))).await;
    let views = running
        .into_iter()
        .zip(answers)
        .filter_map(|(id, answer)| match answer {
            Ok(view) => Some((id, view)),
            Err(error) => {
                tracing::debug!(id, %error, "server did not answer");
                None
            }
        })
        .collect();
    Ok(World { statefulset, pods, views })
}

/// The planner's input from what was read.
fn observe(
    world: &World,
    leader_view: Option<&ClusterView>,
    membership: &Membership,
    statefulset_replicas: u64,
    config_hash: &str,
) -> Observed {
    let members = leader_view
        .map(|view| {
            view.members
                .iter()
                .map(|m| {
                    let role = planner_role(m.role);
                    let caught_up =
                        m.id == view.id || m.matched.is_some_and(|i| i.saturating_add(CATCH_UP_LAG) >= view.committed);
                    (m.id, Member { role, caught_up })
                })
                .collect()
        })
        .unwrap_or_default();
    let pods = world
        .pods
        .iter()
        .map(|(&id, pod)| {
            let view = world.views.get(&id);
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let pod_hash = pod.metadata.annotations.as_ref().and_then(|a| a.get(CONFIG_HASH_ANNOTATION));
            let observation = PodObservation {
                ready,
                reachable: view.is_some(),
                fresh: view.is_some_and(|v| v.members.is_empty()),
                current: pod_hash.map(String::as_str) == Some(config_hash),
                terminating: pod.metadata.deletion_timestamp.is_some(),
            };
            (id, observation)
        })
        .collect();
    Observed {
        statefulset_replicas,
        bootstrapped: *membership == Membership::Join,
        leader: leader_view.map(|v| v.id),
        members,
        pods,
    }
}

/// The planner's part for a member the admin API reports; the leader is one of the voters.
fn planner_role(role: AdminRole) -> Role {
    match role {
        AdminRole::Leader | AdminRole::Follower => Role::Voter,
        AdminRole::Learner => Role::Learner,
    }
}

/// Container states that explain an unhealthy pod, by member id.
fn pod_problems(world: &World) -> BTreeMap<u64, String> {
    let mut problems = BTreeMap::new();
    for (&id, pod) in &world.pods {
        let Some(status) = pod.status.as_ref() else { continue };
        let waiting = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
            .find(|w| w.reason.as_deref().is_some_and(|r| r != "ContainerCreating" && r != "PodInitializing"));
        let unschedulable =
            status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            });
        if let Some(w) = waiting {
            let reason = w.reason.clone().unwrap_or_default();
            problems.insert(
                id,
                match &w.message {
                    Some(message) => format!("{reason}: {message}"),
                    None => reason,
                },
            );
        } else if let Some(c) = unschedulable {
            problems.insert(id, format!("Unschedulable: {}", c.message.clone().unwrap_or_default()));
        }
    }
    problems
}

async fn apply<K>(api: Api<K>, name: &str, object: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?;
    Ok(())
}

/// Deletes object `name`; one that is not there is fine.
async fn delete_if_there<K>(api: Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn apply_resources(ctx: &Context, names: &Names, resources: ClusterResources) -> Result<()> {
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
    let (client, ns) = (ctx.client.clone(), names.namespace.as_str());
    apply(Api::<ConfigMap>::namespaced(client.clone(), ns), &names.config_map(), &config_map).await?;
    // The servers' identity before the pods that run as it.
    apply(Api::<ServiceAccount>::namespaced(client.clone(), ns), &names.service_account(), &service_account).await?;
    let bindings = Api::<ClusterRoleBinding>::all(client.clone());
    match token_review_binding {
        Some(binding) => apply(bindings, &names.token_review_binding(), &binding).await?,
        // Isolation off: the servers review no tokens, and may not.
        None => delete_if_there(bindings, &names.token_review_binding()).await?,
    }
    apply(Api::<Service>::namespaced(client.clone(), ns), &names.peer_service(), &peer_service).await?;
    apply(Api::<Service>::namespaced(client.clone(), ns), &names.client_service(), &client_service).await?;
    apply(Api::<PodDisruptionBudget>::namespaced(client.clone(), ns), &names.statefulset(), &pod_disruption_budget)
        .await?;
    apply(Api::<StatefulSet>::namespaced(client.clone(), ns), &names.statefulset(), &statefulset).await?;
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), ns);
    match network_policy {
        Some(policy) => apply(policies, &names.statefulset(), &policy).await?,
        // Turned off: one made earlier goes.
        None => delete_if_there(policies, &names.statefulset()).await?,
    }
    if let Some(monitor) = service_monitor {
        let resource = ApiResource {
            group: "monitoring.coreos.com".to_owned(),
            version: "v1".to_owned(),
            api_version: SERVICE_MONITOR_API_VERSION.to_owned(),
            kind: "ServiceMonitor".to_owned(),
            plural: "servicemonitors".to_owned(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &resource);
        match api.patch(&names.statefulset(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&monitor)).await
        {
            Ok(_) => {}
            // The prometheus-operator CRD is not installed: nothing to monitor with.
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::warn!(cluster = %names.cluster, "ServiceMonitor requested but its CRD is not installed");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Carries out one step. `ScaleStatefulSet` was already applied with the StatefulSet.
async fn execute(ctx: &Context, names: &Names, observed: &Observed, step: &Step, tls: bool) -> Result<()> {
    let leader = observed.leader.map(|id| admin_endpoint(names, id, tls)).unwrap_or_default();
    let change = match step {
        Step::Idle | Step::Wait(_) | Step::ScaleStatefulSet { .. } => return Ok(()),
        Step::AddLearner { id } => Some(Change::AddLearner { id: *id, addr: names.peer_addr(*id) }),
        Step::PromoteVoters { voters } => Some(Change::SetVoters { ids: voters.clone() }),
        Step::RemoveMember { id } => Some(Change::Remove { id: *id }),
        Step::TransferLeader { to } => Some(Change::TransferLeader { id: *to }),
        Step::RestartPod { .. } | Step::WipeMember { .. } => None,
    };
    let started = Instant::now();
    let result = match (change, step) {
        (Some(change), _) => ctx.admin.change(&leader, &change).await.map_err(Error::from),
        (None, Step::RestartPod { id }) => delete_pod(ctx, names, *id).await,
        (None, Step::WipeMember { id }) => {
            // The claim goes first (held by the pod until it is gone), so the recreated pod
            // gets a new, empty volume.
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
            match claims.delete(&names.data_claim(*id), &DeleteParams::default()).await {
                Ok(_) => delete_pod(ctx, names, *id).await,
                Err(kube::Error::Api(e)) if e.code == 404 => delete_pod(ctx, names, *id).await,
                Err(e) => Err(e.into()),
            }
        }
        (None, _) => Ok(()),
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.steps.with_label_values(&[step.kind(), outcome]).inc();
    ctx.metrics.step_duration.with_label_values(&[step.kind()]).observe(started.elapsed().as_secs_f64());
    result
}

async fn delete_pod(ctx: &Context, names: &Names, id: u64) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    match pods.delete(&names.pod(id), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn patch_status(ctx: &Context, names: &Names, status: &CoordinationClusterStatus) -> Result<()> {
    let api: Api<CoordinationCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let patch = serde_json::json!({
        "apiVersion": format!("{GROUP}/v1alpha1"),
        "kind": "CoordinationCluster",
        "status": status,
    });
    api.patch_status(&names.cluster, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event =
        Event { type_, reason: reason.to_owned(), note: Some(note), action: reason.to_owned(), secondary: None };
    if let Err(error) = recorder.publish(&event, reference).await {
        // Events are informational; a failure to record one must not fail the pass.
        tracing::warn!(%error, reason, "failed to publish an event");
    }
}
