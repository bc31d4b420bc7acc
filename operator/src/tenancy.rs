//! Namespace isolation's data side (docs/security.md, "Kubernetes identities"): the operator,
//! the client port's super user by its admin certificate (`--x509-super-user`), lays out one
//! subtree per Kubernetes namespace that uses the cluster:
//!
//! - `/zookeeper` and `/zookeeper/quota` readable by everyone and writable by no one else, so
//!   that no pod sets or lifts a namespace's quota; `/` too with `tenancy.guardRoot`;
//! - `/<namespace>` with `k8s:ns:<namespace>` alone (ALL), the id the servers give a connection
//!   whose ServiceAccount token the API server's TokenReview accepted — the sidecar's, or a pod's
//!   that dials the client port itself. A subtree found with another ACL at its root was made
//!   by someone else before the namespace used the cluster: the operator takes it back, the
//!   root's ACL first (so nothing more is made in it) and then every node's below;
//! - a hard quota on `/<namespace>` where the spec sets one: ZooKeeper's `setquota -N -B`
//!   (`/zookeeper/quota/<namespace>/zookeeper_limits` and `zookeeper_stats`), which the servers
//!   enforce with `QuotaExceeded`; a quota taken out of the spec is deleted.
//!
//! Namespaces are found from the spec's list and the pods the webhook labelled with the cluster
//! ([`crate::injection::CLUSTER_LABEL`]). A namespace that stops using the cluster keeps its
//! subtree. [`layout`] is pure; [`ZkTenants`] carries a layout out, idempotently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Permission, TlsCa, TlsCerts, TlsIdentity, TlsOptions};

use crate::certs::{admin_client, Authority};
use crate::crd::TenancySpec;

/// A namespace's hard quota; `None` where it has no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// Most znodes, the namespace's root included.
    pub max_znodes: Option<i64>,
    /// Most bytes of data.
    pub max_bytes: Option<i64>,
}

/// What to lay out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// `/` is read-only too.
    pub guard_root: bool,
    /// Every namespace, with its quota.
    pub namespaces: BTreeMap<String, Quota>,
}

/// The layout for `spec`, with the namespaces `using` the cluster (found from labelled pods).
pub fn layout(spec: &TenancySpec, using: impl IntoIterator<Item = String>) -> Layout {
    let mut namespaces: BTreeMap<String, Quota> = using.into_iter().map(|ns| (ns, Quota::default())).collect();
    for namespace in &spec.namespaces {
        namespaces
            .insert(namespace.name.clone(), Quota { max_znodes: namespace.max_znodes, max_bytes: namespace.max_bytes });
    }
    Layout { guard_root: spec.guard_root, namespaces }
}

/// The data of a quota's `zookeeper_limits` node as zkCli's `setquota -N n -B b` writes it
/// (ZooKeeper's `StatsTrack`), `None` when the quota has no limit.
pub fn limits_data(quota: &Quota) -> Option<String> {
    if quota.max_znodes.is_none() && quota.max_bytes.is_none() {
        return None;
    }
    Some(format!(
        "count=-1,bytes=-1=;byteHardLimit={};countHardLimit={}",
        quota.max_bytes.unwrap_or(-1),
        quota.max_znodes.unwrap_or(-1)
    ))
}

/// The ACL of namespace `ns`'s root.
pub fn namespace_acl(ns: &str) -> Vec<Acl> {
    vec![Acl::new(Permission::ALL, AuthId::new(K8S_SCHEME, &format!("ns:{ns}")))]
}

/// The ACL of the nodes only the operator writes.
pub fn read_only_acl() -> Vec<Acl> {
    vec![Acl::new(Permission::READ, AuthId::new("world", "anyone"))]
}

const K8S_SCHEME: &str = "k8s";
const QUOTA_ROOT: &str = "/zookeeper/quota";
/// Nodes every layout makes read-only.
const GUARDED: [&str; 2] = ["/zookeeper", QUOTA_ROOT];

/// Why a layout was not (fully) carried out; the next pass tries again.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// No session with the cluster.
    #[error("cannot reach the client port at {endpoint}: {message}")]
    Unreachable {
        /// What was dialled.
        endpoint: String,
        /// Why it failed.
        message: String,
    },
    /// A request failed.
    #[error("{what}: {source}")]
    Request {
        /// The request.
        what: String,
        /// ZooKeeper's answer.
        source: zookeeper_client::Error,
    },
    /// The operator's certificate, or the cluster's CA, cannot be used.
    #[error("certificates: {0}")]
    Certificates(String),
}

/// Carries layouts out on a cluster's client port.
pub trait Tenants: Send + Sync {
    /// Lays `layout` out on the cluster at `endpoint` (`host:port` of its TLS client port),
    /// whose server certificates chain to `cluster_ca` (PEM).
    fn lay_out<'a>(
        &'a self,
        endpoint: &'a str,
        cluster_ca: &'a str,
        layout: &'a Layout,
    ) -> BoxFuture<'a, Result<(), TenancyError>>;
}

/// [`Tenants`] with zookeeper-client over TLS, as the super user (a fresh admin client
/// certificate for every session, from the admin CA).
pub struct ZkTenants {
    /// The admin CA.
    pub admin_ca: Arc<Authority>,
    /// How long the client certificate lives.
    pub lifetime: Duration,
}

/// How long one layout may take, connecting included.
const LAYOUT_DEADLINE: Duration = Duration::from_secs(30);

impl Tenants for ZkTenants {
    fn lay_out<'a>(
        &'a self,
        endpoint: &'a str,
        cluster_ca: &'a str,
        layout: &'a Layout,
    ) -> BoxFuture<'a, Result<(), TenancyError>> {
        Box::pin(async move {
            let unreachable = |message: String| TenancyError::Unreachable { endpoint: endpoint.to_owned(), message };
            let issued =
                admin_client(&self.admin_ca, self.lifetime).map_err(|e| TenancyError::Certificates(e.to_string()))?;
            let certs = TlsCerts::builder()
                .with_ca(
                    TlsCa::from_pem(cluster_ca).map_err(|e| TenancyError::Certificates(format!("cluster CA: {e}")))?,
                )
                .with_identity(
                    TlsIdentity::from_pem(&issued.cert_pem, &issued.key_pem)
                        .map_err(|e| TenancyError::Certificates(format!("client certificate: {e}")))?,
                )
                .build()
                .map_err(|e| TenancyError::Certificates(e.to_string()))?;
            let work = async {
                let client = Client::connector()
                    .with_session_timeout(Duration::from_secs(10))
                    .with_tls(TlsOptions::new().with_certs(certs))
                    .secure_connect(endpoint)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                apply(&client, layout).await
            };
            tokio::time::timeout(LAYOUT_DEADLINE, work)
                .await
                .unwrap_or_else(|_| Err(unreachable(format!("no layout within {LAYOUT_DEADLINE:?}"))))
        })
    }
}

fn failed(what: String) -> impl FnOnce(zookeeper_client::Error) -> TenancyError {
    move |source| TenancyError::Request { what, source }
}

/// Sets the ACL of `path` to `acl` unless it has it.
async fn guard(client: &Client, path: &str, acl: &[Acl]) -> Result<(), TenancyError> {
    let (current, _) = client.get_acl(path).await.map_err(failed(format!("getACL {path}")))?;
    if current != acl {
        client.set_acl(path, acl, None).await.map_err(failed(format!("setACL {path}")))?;
        tracing::info!(path, "acl set");
    }
    Ok(())
}

/// Makes `path` with `data` and `acl`, or gives the one there `acl`; whether it had another.
async fn ensure(client: &Client, path: &str, data: &[u8], acl: &[Acl]) -> Result<bool, TenancyError> {
    match client.create(path, data, &CreateMode::Persistent.with_acls(Acls::new(acl))).await {
        Ok(_) => {
            tracing::info!(path, "created");
            Ok(false)
        }
        Err(zookeeper_client::Error::NodeExists) => {
            let (current, _) = client.get_acl(path).await.map_err(failed(format!("getACL {path}")))?;
            if current == acl {
                return Ok(false);
            }
            client.set_acl(path, acl, None).await.map_err(failed(format!("setACL {path}")))?;
            tracing::info!(path, "acl set");
            Ok(true)
        }
        Err(e) => Err(failed(format!("create {path}"))(e)),
    }
}

/// Gives every node below `root` the ACL `acl` (its root has it already, so nothing new is
/// made in it meanwhile); how many nodes it changed.
async fn take_back(client: &Client, root: &str, acl: &[Acl]) -> Result<usize, TenancyError> {
    let mut changed = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let children = match client.list_children(&dir).await {
            Ok(children) => children,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(failed(format!("getChildren {dir}"))(e)),
        };
        for child in children {
            let path = format!("{dir}/{child}");
            match client.get_acl(&path).await {
                Ok((current, _)) if current == acl => {}
                Ok(_) => match client.set_acl(&path, acl, None).await {
                    Ok(_) => changed += 1,
                    Err(zookeeper_client::Error::NoNode) => continue,
                    Err(e) => return Err(failed(format!("setACL {path}"))(e)),
                },
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(failed(format!("getACL {path}"))(e)),
            }
            pending.push(path);
        }
    }
    Ok(changed)
}

/// Deletes `path` if it is there.
async fn remove(client: &Client, path: &str) -> Result<(), TenancyError> {
    match client.delete(path, None).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(()),
        Err(e) => Err(failed(format!("delete {path}"))(e)),
    }
}

async fn apply(client: &Client, layout: &Layout) -> Result<(), TenancyError> {
    let read_only = read_only_acl();
    let root = layout.guard_root.then_some("/");
    for path in root.into_iter().chain(GUARDED) {
        guard(client, path, &read_only).await?;
    }
    for (ns, quota) in &layout.namespaces {
        let (path, acl) = (format!("/{ns}"), namespace_acl(ns));
        if ensure(client, &path, &[], &acl).await? {
            let changed = take_back(client, &path, &acl).await?;
            tracing::warn!(namespace = %ns, nodes = changed + 1, "took back a subtree made before the namespace used the cluster");
        }
        let dir = format!("{QUOTA_ROOT}/{ns}");
        let (limits, stats) = (format!("{dir}/zookeeper_limits"), format!("{dir}/zookeeper_stats"));
        match limits_data(quota) {
            Some(wanted) => {
                ensure(client, &dir, &[], &read_only).await?;
                ensure(client, &limits, wanted.as_bytes(), &read_only).await?;
                let (current, _) = client.get_data(&limits).await.map_err(failed(format!("get {limits}")))?;
                if current != wanted.as_bytes() {
                    client.set_data(&limits, wanted.as_bytes(), None).await.map_err(failed(format!("set {limits}")))?;
                    tracing::info!(namespace = %ns, limits = %wanted, "quota changed");
                }
                // The servers count the subtree's usage when the stats node is made.
                ensure(client, &stats, b"count=0,bytes=0", &read_only).await?;
            }
            None => {
                remove(client, &stats).await?;
                remove(client, &limits).await?;
                remove(client, &dir).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::NamespaceSpec;

    #[test]
    fn the_spec_adds_namespaces_and_their_quotas_to_those_in_use() {
        let spec = TenancySpec {
            enabled: true,
            guard_root: false,
            namespaces: vec![
                NamespaceSpec { name: "billing".to_owned(), max_znodes: Some(100), max_bytes: None },
                NamespaceSpec { name: "shop".to_owned(), max_znodes: None, max_bytes: Some(4096) },
            ],
        };
        let out = layout(&spec, ["shop".to_owned(), "cart".to_owned(), "shop".to_owned()]);
        assert!(!out.guard_root);
        let out = out.namespaces;
        let names: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(names, ["billing", "cart", "shop"]);
        assert_eq!(limits_data(&out["cart"]), None);
        assert_eq!(
            limits_data(&out["billing"]).as_deref(),
            Some("count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=100")
        );
        assert_eq!(
            limits_data(&out["shop"]).as_deref(),
            Some("count=-1,bytes=-1=;byteHardLimit=4096;countHardLimit=-1")
        );
    }
}
