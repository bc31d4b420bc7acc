//! One node: its Node object and Lease (as kubelet keeps them), and the pods bound to it, each
//! run by a [`pod`](crate::pod) worker.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::Agent;

/// How often the node's Lease is renewed (kubelet's default).
const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;
/// How often the Node's status is posted again.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// A registered node.
pub struct Node {
    pub name: String,
    pub client: kube::Client,
    /// Its pod CIDR: the `<index + 1>`th /24 of the pod network.
    pub subnet: [u8; 3],
    /// Host octets of the pod addresses in use.
    used: Mutex<Vec<u8>>,
}

impl Node {
    /// Creates (or takes over) the Node object and posts its status.
    pub async fn register(client: kube::Client, name: &str, index: usize, agent: &Agent) -> anyhow::Result<Node> {
        let third = u8::try_from(index + 1)?;
        let [a, b] = agent.pod_network;
        let node = Node { name: name.to_owned(), client, subnet: [a, b, third], used: Mutex::new(Vec::new()) };
        let api: Api<KubeNode> = Api::all(node.client.clone());
        let cidr = format!("{a}.{b}.{third}.0/24");
        let object: KubeNode = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
            "spec": { "podCIDR": cidr, "podCIDRs": [cidr] },
        }))?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        node.post_status(agent).await?;
        Ok(node)
    }

    async fn post_status(&self, agent: &Agent) -> anyhow::Result<()> {
        let api: Api<KubeNode> = Api::all(self.client.clone());
        let now = now_rfc3339();
        let condition = |kind: &str, status: &str, reason: &str| json!({"type": kind, "status": status, "reason": reason, "lastHeartbeatTime": now, "lastTransitionTime": now});
        let resources = json!({"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
        let status = json!({
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "conditions": [
                    condition("Ready", "True", "KubeletReady"),
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                ],
                "addresses": [
                    {"type": "InternalIP", "address": agent.node_ip.to_string()},
                    {"type": "Hostname", "address": self.name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "paddock-node-agent",
                    "containerRuntimeVersion": "paddock-node-agent://0.1.0", "kubeletVersion": "v1.36.3",
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                },
            }
        });
        api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(status)).await?;
        Ok(())
    }

    async fn renew_lease(&self) -> anyhow::Result<()> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
        });
        api.patch(&self.name, &PatchParams::apply("paddock-node-agent").force(), &Patch::Apply(lease)).await?;
        Ok(())
    }

    /// A free pod address of this node.
    pub fn allocate(&self) -> Option<Ipv4Addr> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let host = (2..=254u8).find(|h| !used.contains(h))?;
        used.push(host);
        Some(Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host))
    }

    /// Gives `addr` back.
    pub fn release(&self, addr: Ipv4Addr) {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).retain(|h| *h != addr.octets()[3]);
    }
}

/// Now, as the API's RFC 3339 time (seconds).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Keeps the node's Lease and status fresh and runs its pods until the agent stops.
pub async fn run(node: Node, agent: Arc<Agent>) -> anyhow::Result<()> {
    let node = Arc::new(node);
    let heartbeat = {
        let node = node.clone();
        let agent = agent.clone();
        tokio::spawn(async move {
            let mut last_status = tokio::time::Instant::now();
            loop {
                if let Err(e) = node.renew_lease().await {
                    tracing::warn!(node = %node.name, "lease renewal failed: {e}");
                }
                if last_status.elapsed() >= STATUS_EVERY {
                    if let Err(e) = node.post_status(&agent).await {
                        tracing::warn!(node = %node.name, "status update failed: {e}");
                    }
                    last_status = tokio::time::Instant::now();
                }
                tokio::time::sleep(LEASE_RENEW).await;
            }
        })
    };
    let pods: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
    let mut workers: HashMap<String, crate::pod::Handle> = HashMap::new();
    let mut events = watcher(pods, config).boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(node = %node.name, "pod watch: {e}");
                continue;
            }
        };
        let (seen, gone) = match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (vec![pod], vec![]),
            watcher::Event::Delete(pod) => (vec![], vec![pod]),
            watcher::Event::Init | watcher::Event::InitDone => (vec![], vec![]),
        };
        for pod in seen {
            let uid = pod.uid().unwrap_or_default();
            match workers.get(&uid) {
                Some(worker) => worker.update(pod),
                None => {
                    if pod_is_finished(&pod) {
                        continue;
                    }
                    let worker = crate::pod::Handle::start(pod, node.clone(), agent.clone());
                    workers.insert(uid, worker);
                }
            }
        }
        // A finished worker stays until its pod is deleted, so that the pod's later updates
        // do not start it again.
        for pod in gone {
            if let Some(worker) = workers.remove(&pod.uid().unwrap_or_default()) {
                worker.gone();
            }
        }
    }
    heartbeat.abort();
    Ok(())
}

fn pod_is_finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}
