//! `paddock-node-agent`: the tests' stand-in for kubelet and a container runtime, which cannot
//! run on the test machines. It is the one piece of the real-control-plane tests that is not the
//! real thing, and it is kept small and honest:
//!
//! - it registers its Nodes (one API identity each, `system:node:<name>`, so the Node authorizer
//!   and NodeRestriction judge it as they judge kubelets) and renews their Leases;
//! - it runs every container of each pod bound to its nodes as a process: the image is an OCI
//!   archive (`--image REF=ARCHIVE`) unpacked once, each container's root an overlay on it,
//!   entered with `unshare --pid --mount-proc --root` as the image's (or the securityContext's)
//!   user, each pod in its own network namespace with one address of its node's pod CIDR and the
//!   cluster DNS in its resolv.conf;
//! - volumes: emptyDir, configMap, secret, projected (service-account tokens through the
//!   TokenRequest API, configMaps, the Downward API), downwardAPI, persistentVolumeClaim (the
//!   bound PV's directory) and hostPath;
//! - it runs startup, readiness and liveness probes (HTTP and TCP), reports pod status,
//!   restarts containers per restartPolicy and native-sidecar rules, and on deletion stops the
//!   app containers, then the sidecars, within the grace period;
//! - as a separate controller (the admin identity) it provisions PersistentVolumes for claims of
//!   the StorageClass `standard` (directories) and deletes them when released.
//!
//! Not done (said in docs/operator.md): resource limits (no cgroups), image pulls (every image is
//! local; pull policies are ignored), container logs through the API (`kubectl logs`: the logs are
//! files under `--dir`), exec/attach/port-forward, exec and gRPC probes, ephemeral containers,
//! lifecycle hooks.

mod container;
mod image;
mod node;
mod pod;
mod probe;
mod provisioner;
mod volumes;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Parser;

/// paddock-node-agent flags.
#[derive(Parser, Debug)]
#[command(name = "paddock-node-agent", version, about = "Runs pods as processes for the real-control-plane tests")]
struct Args {
    /// Working directory: images, pods, volumes, logs.
    #[arg(long)]
    dir: PathBuf,

    /// Directory holding `node-<name>.kubeconfig` for each node and `admin.kubeconfig`.
    #[arg(long)]
    kubeconfigs: PathBuf,

    /// A node to run (repeat).
    #[arg(long = "node", required = true)]
    nodes: Vec<String>,

    /// An image: `REFERENCE=OCI_ARCHIVE` (repeat).
    #[arg(long = "image")]
    images: Vec<String>,

    /// The cluster DNS server pods resolve with.
    #[arg(long)]
    cluster_dns: Ipv4Addr,

    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,

    /// The node's own address (pods' hostIP).
    #[arg(long)]
    node_ip: Ipv4Addr,

    /// Prefix of the pods' network namespace names (the test's, so that its sweep finds them).
    #[arg(long)]
    netns_prefix: String,

    /// The cluster's pod network, a /16: node k (from 0) gets its (k+1)th /24.
    #[arg(long, default_value = "10.244.0.0/16")]
    pod_cidr: String,

    /// Every pod's gateway (a local address of the node's namespace, answered by proxy ARP).
    #[arg(long, default_value = "169.254.1.1")]
    pod_gateway: Ipv4Addr,

    /// The address of the `kubernetes` Service pods are told (KUBERNETES_SERVICE_HOST).
    #[arg(long, default_value = "10.96.0.1")]
    api_service_host: Ipv4Addr,
}

/// What every part of the agent shares.
pub struct Agent {
    pub dir: PathBuf,
    pub netns_prefix: String,
    /// The first two octets of the pod network.
    pub pod_network: [u8; 2],
    pub pod_gateway: Ipv4Addr,
    pub images: HashMap<String, image::Image>,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    pub node_ip: Ipv4Addr,
    pub api_service_host: Ipv4Addr,
    pub tools: container::Tools,
}

/// The first two octets of a `a.b.0.0/16` network.
fn pod_network(cidr: &str) -> anyhow::Result<[u8; 2]> {
    let network = cidr.strip_suffix("/16").and_then(|n| n.parse::<Ipv4Addr>().ok());
    match network.map(|n| n.octets()) {
        Some([a, b, 0, 0]) => Ok([a, b]),
        _ => bail!("--pod-cidr {cidr}: expected a /16 network such as 10.244.0.0/16"),
    }
}

async fn client(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paddock_tls::install_default_provider();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PADDOCK_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&args.dir)?;
    let mut images = HashMap::new();
    for spec in &args.images {
        let Some((reference, archive)) = spec.split_once('=') else {
            bail!("--image {spec}: expected REFERENCE=ARCHIVE")
        };
        let image = image::Image::unpack(archive.as_ref(), &args.dir.join("images").join(images.len().to_string()))
            .with_context(|| format!("image {reference}"))?;
        images.insert(image::normalize(reference), image);
    }
    let agent = Arc::new(Agent {
        dir: args.dir.clone(),
        netns_prefix: args.netns_prefix.clone(),
        pod_network: pod_network(&args.pod_cidr)?,
        pod_gateway: args.pod_gateway,
        images,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain.clone(),
        node_ip: args.node_ip,
        api_service_host: args.api_service_host,
        tools: container::Tools::find()?,
    });
    let admin = client(&args.kubeconfigs.join("admin.kubeconfig")).await?;
    provisioner::ensure_storage_class(&admin).await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(provisioner::run(admin, args.dir.join("volumes")));
    for (index, name) in args.nodes.iter().enumerate() {
        let client = client(&args.kubeconfigs.join(format!("node-{name}.kubeconfig"))).await?;
        let node = node::Node::register(client, name, index, &agent).await?;
        tasks.spawn(node::run(node, agent.clone()));
    }
    // The tests wait for this line.
    println!("ready nodes={}", args.nodes.join(","));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        done = tasks.join_next() => {
            if let Some(Ok(Err(e))) = done {
                return Err(e);
            }
        }
    }
    pod::stop_all();
    Ok(())
}
