//! `paddock-operator`: watches CoordinationClusters and runs them (only on the replica holding
//! the operator Lease), serves the sidecar-injection webhook over HTTPS and health/metrics
//! endpoints over HTTP (on every replica). Flags and wiring only; the library modules do the
//! work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{controller, watcher, Controller, WatchStreamExt};
use kube::{Api, Client};
use paddock_operator::admin::HttpAdmin;
use paddock_operator::admission::{self, KubeLookup, Webhook};
use paddock_operator::crd::CoordinationCluster;
use paddock_operator::endpoints::{self, Endpoints};
use paddock_operator::injection::{InjectorConfig, CLUSTER_LABEL, CLUSTER_NAMESPACE_LABEL};
use paddock_operator::lease::{self, LeaseConfig};
use paddock_operator::metrics::Metrics;
use paddock_operator::reconcile::{error_policy, reconcile, Context};
use paddock_operator::resources::binding_owner;
use paddock_operator::tenancy::ZkTenants;
use paddock_operator::tls::{self, Certificates, Lifetimes};
use paddock_tls::listener::TlsListener;
use paddock_tls::{ClientAuth, Reloading, Role, TlsFiles};
use tokio_util::sync::CancellationToken;

/// paddock-operator flags; each also reads a `PADDOCK_OPERATOR_*` variable.
#[derive(Parser, Debug)]
#[command(name = "paddock-operator", version, about = "Kubernetes operator for Paddock clusters")]
struct Args {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "PADDOCK_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,

    /// Address of the HTTPS sidecar-injection webhook (`POST /mutate`).
    #[arg(long, env = "PADDOCK_OPERATOR_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    webhook_addr: SocketAddr,

    /// PEM certificate of the webhook; the webhook is off without it.
    #[arg(long, env = "PADDOCK_OPERATOR_WEBHOOK_CERT", requires = "webhook_key")]
    webhook_cert: Option<PathBuf>,

    /// PEM private key of the webhook.
    #[arg(long, env = "PADDOCK_OPERATOR_WEBHOOK_KEY", requires = "webhook_cert")]
    webhook_key: Option<PathBuf>,

    /// paddock-sidecar image the webhook injects.
    #[arg(long, env = "PADDOCK_OPERATOR_SIDECAR_IMAGE", default_value = paddock_operator::crd::DEFAULT_IMAGE)]
    sidecar_image: String,

    /// Pull policy of the injected sidecar.
    #[arg(long, env = "PADDOCK_OPERATOR_SIDECAR_IMAGE_PULL_POLICY")]
    sidecar_image_pull_policy: Option<String>,

    /// Watch CoordinationClusters in this namespace only (default: all namespaces).
    #[arg(long, env = "PADDOCK_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Elect one active replica with a Lease (turn off only for a single local replica).
    #[arg(long, env = "PADDOCK_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "PADDOCK_OPERATOR_LEASE_NAME", default_value = "paddock-operator")]
    lease_name: String,

    /// Namespace of the Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "paddock-system")]
    lease_namespace: String,

    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME", default_value = "paddock-operator")]
    identity: String,

    /// Lifetime of the certificates the operator issues, in seconds (renewed when a third is
    /// left); 90 days by default.
    #[arg(long, env = "PADDOCK_OPERATOR_CERTIFICATE_LIFETIME_SECS", default_value_t = 90 * 86_400,
          value_parser = clap::value_parser!(u64).range(60..))]
    certificate_lifetime_secs: u64,

    /// How often the webhook's certificate files are read again, in milliseconds.
    #[arg(long, env = "PADDOCK_OPERATOR_TLS_RELOAD_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    tls_reload_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paddock_tls::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PADDOCK_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = Client::try_default().await.context("failed to configure the Kubernetes client")?;
    let registry = prometheus::Registry::new();
    let metrics = Metrics::new(&registry).context("failed to register metrics")?;
    let ready = Arc::new(AtomicBool::new(args.webhook_cert.is_none()));
    let lifetimes = Lifetimes { leaf: Duration::from_secs(args.certificate_lifetime_secs), ..Lifetimes::default() };
    // Every replica: the webhook and the admin client need it whether or not this one leads.
    let admin_ca = Arc::new(
        tls::admin_authority(&client, &args.lease_namespace, lifetimes.ca)
            .await
            .context("failed to read or make the admin CA")?,
    );

    let http = tokio::net::TcpListener::bind(args.http_addr).await.context("failed to bind the http address")?;
    let router = endpoints::router(Endpoints { registry: registry.clone(), ready: ready.clone() });
    tokio::spawn(async move { axum::serve(http, router).await });

    if let (Some(cert), Some(key)) = (&args.webhook_cert, &args.webhook_key) {
        let files = TlsFiles { cert: cert.clone(), key: key.clone(), ca: None };
        let tls =
            Reloading::load("webhook", files, Role::Server(ClientAuth::None)).context("invalid webhook certificate")?;
        let listener = tokio::net::TcpListener::bind(args.webhook_addr).await.context("failed to bind the webhook")?;
        tls.spawn_reloader(Duration::from_millis(args.tls_reload_ms), CancellationToken::new(), |_, outcome| {
            if let Ok(true) = outcome {
                tracing::info!("webhook certificate reloaded");
            }
        });
        let tls = TlsListener::new(listener, tls)?;
        let config = InjectorConfig {
            image: args.sidecar_image.clone(),
            image_pull_policy: args.sidecar_image_pull_policy.clone(),
            resources: None,
        };
        let lookup = Arc::new(KubeLookup(client.clone()));
        let router = admission::router(Webhook { config: Arc::new(config), lookup, metrics: metrics.clone() });
        tokio::spawn(async move { axum::serve(tls, router).await });
        ready.store(true, Ordering::Relaxed);
        tracing::info!(addr = %args.webhook_addr, "sidecar injection webhook listening");
    }

    let mut lost = if args.leader_election {
        let config = LeaseConfig {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: args.identity.clone(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        Some(lease::acquire(client.clone(), config, metrics.clone()).await)
    } else {
        metrics.leader.set(1);
        None
    };

    let ctx = Arc::new(Context {
        client: client.clone(),
        admin: Arc::new(
            HttpAdmin::with_tls(admin_ca.clone(), lifetimes.leaf)
                .map_err(|e| anyhow::anyhow!("failed to make the admin client certificate: {e}"))?,
        ),
        metrics,
        reporter: Reporter { controller: "paddock-operator".to_owned(), instance: Some(args.identity.clone()) },
        certificates: Some(Arc::new(Certificates { admin_ca: admin_ca.clone(), lifetimes })),
        tenants: Some(Arc::new(ZkTenants { admin_ca, lifetime: lifetimes.leaf })),
        watch_namespace: args.watch_namespace.clone(),
        laid_out: Default::default(),
    });
    tokio::spawn(sweep_bindings(client.clone(), args.watch_namespace.clone()));
    // Injected pods, as far as the operator may see them.
    let injected: Api<Pod> = scoped(&client, args.watch_namespace.as_deref());
    let (clusters, pods) = match &args.watch_namespace {
        Some(ns) => {
            (Api::<CoordinationCluster>::namespaced(client.clone(), ns), Api::<Pod>::namespaced(client.clone(), ns))
        }
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=paddock-operator");
    let servers =
        watcher::Config::default().labels("app.kubernetes.io/name=paddock,app.kubernetes.io/component=server");
    let statefulsets: Api<StatefulSet> = scoped(&client, args.watch_namespace.as_deref());
    let services: Api<Service> = scoped(&client, args.watch_namespace.as_deref());
    let config_maps: Api<ConfigMap> = scoped(&client, args.watch_namespace.as_deref());
    let budgets: Api<PodDisruptionBudget> = scoped(&client, args.watch_namespace.as_deref());
    let secrets: Api<Secret> = scoped(&client, args.watch_namespace.as_deref());
    let policies: Api<NetworkPolicy> = scoped(&client, args.watch_namespace.as_deref());
    let service_accounts: Api<ServiceAccount> = scoped(&client, args.watch_namespace.as_deref());
    let controller = Controller::new(clusters, watcher::Config::default())
        // Our own status patches and pod churn during a step arrive in bursts: one pass each.
        .with_config(controller::Config::default().debounce(Duration::from_secs(1)))
        .owns(statefulsets, owned.clone())
        .owns(services, owned.clone())
        .owns(config_maps, owned.clone())
        .owns(budgets, owned.clone())
        // A deleted certificate Secret is issued again at once.
        .owns(secrets, owned.clone())
        .owns(policies, owned.clone())
        .owns(service_accounts, owned)
        // Pods belong to the StatefulSet; their readiness changes still matter to the plan.
        .watches(pods, servers, |pod| {
            let labels = pod.metadata.labels.as_ref()?;
            let cluster = labels.get("app.kubernetes.io/instance")?;
            Some(ObjectRef::<CoordinationCluster>::new(cluster).within(pod.metadata.namespace.as_deref()?))
        })
        // An injected pod may bring a new namespace to lay out.
        .watches(injected, watcher::Config::default().labels(CLUSTER_LABEL), |pod| {
            let labels = pod.metadata.labels.as_ref()?;
            let cluster = labels.get(CLUSTER_LABEL)?;
            Some(ObjectRef::<CoordinationCluster>::new(cluster).within(labels.get(CLUSTER_NAMESPACE_LABEL)?))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile queue");
            }
        });
    tracing::info!("controller running");
    tokio::select! {
        () = controller => Ok(()),
        () = async {
            match lost.as_mut() {
                Some(rx) => { let _ = rx.wait_for(|held| !held).await; }
                None => std::future::pending().await,
            }
        } => anyhow::bail!("lost the operator lease; exiting so another replica takes over"),
    }
}

/// How often token-review bindings of deleted clusters are looked for, besides at once when a
/// cluster is deleted (for those missed while no operator ran).
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Deletes the token-review ClusterRoleBindings whose cluster is gone (cluster-scoped, they
/// cannot be owned by it and garbage-collected with it): at start, whenever a cluster is deleted,
/// and every [`SWEEP_EVERY`]; those of clusters in `namespace` alone when the operator watches
/// only it.
async fn sweep_bindings(client: Client, namespace: Option<String>) {
    let clusters: Api<CoordinationCluster> = scoped(&client, namespace.as_deref());
    let deleted = watcher(clusters, watcher::Config::default())
        .default_backoff()
        .filter(|event| std::future::ready(matches!(event, Ok(watcher::Event::Delete(_)))));
    let mut deleted = std::pin::pin!(deleted);
    loop {
        if let Err(error) = sweep_once(&client, namespace.as_deref()).await {
            tracing::warn!(%error, "cannot sweep token-review bindings");
        }
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
            Some(_) = deleted.next() => {}
        }
    }
}

async fn sweep_once(client: &Client, namespace: Option<&str>) -> Result<(), kube::Error> {
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let selector = match namespace {
        Some(ns) => format!("app.kubernetes.io/managed-by=paddock-operator,{CLUSTER_NAMESPACE_LABEL}={ns}"),
        None => format!("app.kubernetes.io/managed-by=paddock-operator,{CLUSTER_NAMESPACE_LABEL}"),
    };
    for binding in bindings.list_metadata(&ListParams::default().labels(&selector)).await?.items {
        let Some(owner) = binding.metadata.labels.as_ref().and_then(binding_owner) else { continue };
        let clusters: Api<CoordinationCluster> = Api::namespaced(client.clone(), &owner.namespace);
        if clusters.get_metadata_opt(&owner.cluster).await?.is_none() {
            let name = binding.metadata.name.unwrap_or_default();
            bindings.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(binding = %name, "deleted the token-review binding of a deleted cluster");
        }
    }
    Ok(())
}

/// An Api over one namespace, or all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
