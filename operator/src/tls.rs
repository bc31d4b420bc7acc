//! TLS of the clusters the operator runs: the Secrets that hold their certificates, kept issued
//! and renewed (docs/security.md, "Certificates on Kubernetes").
//!
//! - `<cluster>-ca`: the cluster's CA (`ca.crt`, `ca.key`), never mounted. It signs the members'
//!   peer certificates and the client port's.
//! - `<cluster>-tls`, mounted in the servers at [`crate::resources::TLS_MOUNT`]: `ca.crt`, `server.crt/key` (client
//!   port: the client Service's names and the pods'), `member-<id>.crt/key` for every id a
//!   cluster may have (1 to 9; the server picks its own with `--peer-tls-cert=member-{id}.crt`),
//!   `admin.crt/key` (signed by the operator's admin CA) and `admin-ca.crt` (whose client
//!   certificates the admin port accepts: the operator's alone).
//! - The admin CA (`paddock-admin-ca` in the operator's namespace): made by the first replica
//!   that starts; each replica issues itself a client certificate from it.
//!
//! Leaves are renewed when a third of their lifetime is left, and all of them at once when the
//! CA they chain to changed. The servers read the files again on their own (`--tls-reload-ms`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::Resource as _;
use kube::{Api, Client};
use time::OffsetDateTime;

use crate::cert_manager::{self, Issuer, ISSUED_BY_ANNOTATION};
use crate::certs::{self, Authority, CertError, Issued, Leaf, Usage};
use crate::crd::{CoordinationCluster, TlsProvider};
use crate::resources::{owned_meta, Names, ADMIN_CA_CERT, CA_CERT, FIELD_MANAGER};

/// The most members a cluster can have (the CRD's bound on replicas).
pub const MAX_MEMBERS: u64 = 9;
/// The admin CA's Secret in the operator's namespace.
pub const ADMIN_CA_SECRET: &str = "paddock-admin-ca";
const CA_KEY: &str = "ca.key";

/// How long what the operator issues lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// Leaf certificates.
    pub leaf: Duration,
    /// CAs (not renewed by the operator: replacing a CA is a manual step, docs/security.md).
    pub ca: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes { leaf: Duration::from_secs(90 * 86_400), ca: Duration::from_secs(10 * 365 * 86_400) }
    }
}

/// What the operator issues clusters' certificates with.
pub struct Certificates {
    /// The admin CA (its certificate goes into every cluster's `admin-ca.crt`).
    pub admin_ca: Arc<Authority>,
    /// How long leaves and CAs live.
    pub lifetimes: Lifetimes,
}

/// Why the certificates could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a Secret failed.
    #[error("kubernetes api request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Issuing failed, or a stored CA is unusable.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// cert-manager has not issued every certificate yet (or is not installed).
    #[error("waiting for cert-manager: {0}")]
    Pending(String),
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn data(entries: BTreeMap<String, String>) -> BTreeMap<String, ByteString> {
    entries.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()
}

/// The CA stored in `secret` (`ca.crt`, `ca.key`).
fn stored_authority(what: &str, secret: &Secret) -> Result<Authority, CertError> {
    let missing = |key: &str| CertError::Stored { what: what.to_owned(), message: format!("{key} is missing") };
    let cert = text(secret, CA_CERT).ok_or_else(|| missing(CA_CERT))?;
    let key = text(secret, CA_KEY).ok_or_else(|| missing(CA_KEY))?;
    Authority::from_pem(what, &cert, &key)
}

fn authority_data(authority: &Authority) -> BTreeMap<String, ByteString> {
    data(BTreeMap::from([
        (CA_CERT.to_owned(), authority.pem().cert_pem.clone()),
        (CA_KEY.to_owned(), authority.pem().key_pem.clone()),
    ]))
}

/// Reads the CA in Secret `name`, or makes it (`meta` for the new Secret) when there is none.
/// A CA that exists but cannot be read is an error, never replaced: every certificate of the
/// cluster chains to it.
async fn authority(
    api: &Api<Secret>,
    name: &str,
    meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    common_name: &str,
    lifetime: Duration,
) -> Result<Authority, TlsError> {
    if let Some(secret) = api.get_opt(name).await? {
        return Ok(stored_authority(name, &secret)?);
    }
    let made = Authority::generate(common_name, OffsetDateTime::now_utc(), lifetime)?;
    let secret = Secret {
        metadata: meta,
        type_: Some("Opaque".to_owned()),
        data: Some(authority_data(&made)),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = name, "issued a new certificate authority");
            Ok(made)
        }
        // Another operator replica made it first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let secret = api.get(name).await?;
            Ok(stored_authority(name, &secret)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The operator's admin CA, from its Secret in `namespace` (made if absent).
pub async fn admin_authority(client: &Client, namespace: &str, lifetime: Duration) -> Result<Authority, TlsError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(ADMIN_CA_SECRET.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "paddock".to_owned()),
            ("app.kubernetes.io/component".to_owned(), "operator".to_owned()),
        ])),
        ..Default::default()
    };
    authority(&api, ADMIN_CA_SECRET, meta, "Paddock admin CA", lifetime).await
}

/// The leaves of `<cluster>-tls`, by the file name stem of their certificate and key.
pub fn leaves(names: &Names) -> Vec<(String, Leaf, bool)> {
    let pods = [
        format!("*.{}.{}.svc", names.peer_service(), names.namespace),
        format!("*.{}.{}.svc.cluster.local", names.peer_service(), names.namespace),
    ];
    let client = names.client_service();
    let ns = &names.namespace;
    let mut server_names = vec![
        client.clone(),
        format!("{client}.{ns}"),
        format!("{client}.{ns}.svc"),
        format!("{client}.{ns}.svc.cluster.local"),
    ];
    server_names.extend(pods.iter().cloned());
    let mut leaves = vec![
        (
            "server".to_owned(),
            Leaf { common_name: client.clone(), dns_names: server_names, uri: None, usage: Usage::Server },
            false,
        ),
        (
            "admin".to_owned(),
            Leaf {
                common_name: format!("{} admin", names.cluster),
                dns_names: pods.to_vec(),
                uri: None,
                usage: Usage::Server,
            },
            true,
        ),
    ];
    for id in 1..=MAX_MEMBERS {
        leaves.push((
            format!("member-{id}"),
            Leaf {
                common_name: format!("member-{id}"),
                dns_names: vec![names.pod_host(id)],
                uri: Some(paddock_tls::identity::member_uri(id)),
                usage: Usage::Peer,
            },
            false,
        ));
    }
    leaves
}

/// What [`ensure`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// How many leaves were issued this pass.
    pub issued: usize,
    /// When (Unix seconds) the next leaf is due for renewal.
    pub next_renewal: i64,
    /// The cluster CA's certificate (PEM), which the servers' certificates chain to.
    pub cluster_ca: String,
}

/// The new content of `<cluster>-tls`: what `current` holds, with every leaf that is missing,
/// due at `now`, or signed by another CA than today's issued again. Without `cluster_ca`
/// (cert-manager issues those) only the leaves of the admin CA and its certificate.
pub fn renewed(
    names: &Names,
    current: &BTreeMap<String, String>,
    cluster_ca: Option<&Authority>,
    admin_ca: &Authority,
    lifetime: Duration,
    now: OffsetDateTime,
) -> Result<(BTreeMap<String, String>, usize), CertError> {
    let mut next = BTreeMap::new();
    let mut issued = 0;
    let same = |key: &str, pem: &str| current.get(key).is_some_and(|c| c == pem);
    let cluster_same = cluster_ca.is_some_and(|ca| same(CA_CERT, &ca.pem().cert_pem));
    let admin_same = same(ADMIN_CA_CERT, &admin_ca.pem().cert_pem);
    if let Some(ca) = cluster_ca {
        next.insert(CA_CERT.to_owned(), ca.pem().cert_pem.clone());
    }
    next.insert(ADMIN_CA_CERT.to_owned(), admin_ca.pem().cert_pem.clone());
    for (stem, leaf, by_admin) in leaves(names) {
        let Some(ca) = (if by_admin { Some(admin_ca) } else { cluster_ca }) else { continue };
        let (cert_key, key_key) = (format!("{stem}.crt"), format!("{stem}.key"));
        let ca_same = if by_admin { admin_same } else { cluster_same };
        let keep = match (current.get(&cert_key), current.get(&key_key)) {
            (Some(cert), Some(key)) if ca_same && !certs::due(cert, lifetime, now.unix_timestamp()) => {
                Some((cert.clone(), key.clone()))
            }
            _ => None,
        };
        let (cert, key) = match keep {
            Some(kept) => kept,
            None => {
                issued += 1;
                let Issued { cert_pem, key_pem } = ca.issue(&leaf, now, lifetime)?;
                (cert_pem, key_pem)
            }
        };
        next.insert(cert_key, cert);
        next.insert(key_key, key);
    }
    Ok((next, issued))
}

/// Keeps `<cluster>-tls` issued and fresh: the leaves of the cluster's CA from the operator's
/// `<cluster>-ca` (made when absent) or from cert-manager ([`crate::cert_manager`]; who issues is
/// chosen once and recorded on the Secret), and the admin leaf always from the admin CA.
pub async fn ensure(
    client: &Client,
    cluster: &CoordinationCluster,
    names: &Names,
    admin_ca: &Authority,
    lifetimes: Lifetimes,
) -> Result<Kept, TlsError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let stored = api.get_opt(&names.tls_secret()).await?;
    let recorded = stored
        .as_ref()
        .and_then(|secret| secret.metadata.annotations.as_ref()?.get(ISSUED_BY_ANNOTATION))
        .and_then(|value| Issuer::from_annotation(value));
    let provider = cluster.spec.tls.provider;
    let issuer = match (provider, recorded) {
        (TlsProvider::Auto, None) => {
            let operator_ca = api.get_opt(&names.ca_secret()).await?.is_some();
            let served = !operator_ca && cert_manager::served(client).await?;
            cert_manager::choose(provider, None, operator_ca, served)
        }
        _ => cert_manager::choose(provider, recorded, false, false),
    };
    let current: BTreeMap<String, String> = match stored {
        Some(secret) => secret
            .data
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?)))
            .collect(),
        None => BTreeMap::new(),
    };
    let now = OffsetDateTime::now_utc();
    let (next, issued) = match issuer {
        Issuer::Operator => {
            let ca_meta = owned_meta(cluster, names, names.ca_secret());
            let cluster_ca =
                authority(&api, &names.ca_secret(), ca_meta, &format!("{} CA", names.cluster), lifetimes.ca).await?;
            renewed(names, &current, Some(&cluster_ca), admin_ca, lifetimes.leaf, now)?
        }
        Issuer::CertManager => {
            let copied = from_cert_manager(client, cluster, names, lifetimes).await?;
            let (mut next, issued) = renewed(names, &current, None, admin_ca, lifetimes.leaf, now)?;
            next.extend(copied);
            (next, issued)
        }
    };
    if next != current || recorded != Some(issuer) {
        let mut metadata = owned_meta(cluster, names, names.tls_secret());
        metadata.annotations =
            Some(BTreeMap::from([(ISSUED_BY_ANNOTATION.to_owned(), issuer.annotation().to_owned())]));
        let secret =
            Secret { metadata, type_: Some("Opaque".to_owned()), data: Some(data(next.clone())), ..Secret::default() };
        api.patch(&names.tls_secret(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await?;
        tracing::info!(cluster = %names.cluster, namespace = %names.namespace, issued, by = issuer.annotation(), "certificates written");
    }
    // The leaves the operator renews itself.
    let next_renewal = leaves(names)
        .into_iter()
        .filter(|(_, _, by_admin)| *by_admin || issuer == Issuer::Operator)
        .filter_map(|(stem, _, _)| certs::renew_at(next.get(&format!("{stem}.crt"))?, lifetimes.leaf))
        .min()
        .unwrap_or(now.unix_timestamp());
    let cluster_ca = next.get(CA_CERT).cloned().unwrap_or_default();
    Ok(Kept { issued, next_renewal, cluster_ca })
}

/// Asks cert-manager for the leaves of the cluster's CA (applying its Issuers and
/// Certificates), owns the Secrets it wrote, and gives their entries of `<cluster>-tls`;
/// [`TlsError::Pending`] until every one is issued.
async fn from_cert_manager(
    client: &Client,
    cluster: &CoordinationCluster,
    names: &Names,
    lifetimes: Lifetimes,
) -> Result<BTreeMap<String, String>, TlsError> {
    let wanted: Vec<(String, Leaf)> =
        leaves(names).into_iter().filter(|(_, _, by_admin)| !by_admin).map(|(stem, leaf, _)| (stem, leaf)).collect();
    for (kind, object) in cert_manager::objects(cluster, names, &cluster.spec.tls, &wanted, lifetimes.ca) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &names.namespace, &cert_manager::resource(kind));
        let name = object.metadata.name.clone().unwrap_or_default();
        match api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return Err(TlsError::Pending(format!(
                    "cert-manager's {kind} resource is not served: install cert-manager, or set tls.provider: Operator"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let selector = format!("{}={}", cert_manager::CERTIFICATE_OF_LABEL, names.cluster);
    let listed = secrets.list(&ListParams::default().labels(&selector)).await?.items;
    // Owned (not controlled: cert-manager writes them) by the cluster, so a renewal wakes the
    // operator and deleting the cluster deletes them.
    if let Some(mut owner) = cluster.controller_owner_ref(&()) {
        owner.controller = None;
        owner.block_owner_deletion = None;
        for secret in &listed {
            let owned = secret.metadata.owner_references.iter().flatten().any(|o| o.uid == owner.uid);
            let Some(name) = secret.metadata.name.as_deref().filter(|_| !owned) else { continue };
            let adopt = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(names.namespace.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                },
                ..Secret::default()
            };
            secrets.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&adopt)).await?;
        }
    }
    let by_name: BTreeMap<String, Secret> =
        listed.into_iter().filter_map(|secret| Some((secret.metadata.name.clone()?, secret))).collect();
    let stems: Vec<String> = wanted.into_iter().map(|(stem, _)| stem).collect();
    cert_manager::assemble(names, &stems, &by_name).map_err(TlsError::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn leaves_are_issued_once_and_renewed_when_due_or_when_the_ca_changed() {
        let names = Names::new("zk", "default");
        let now = OffsetDateTime::now_utc();
        let ca = Authority::generate("zk CA", now, 3650 * DAY).expect("CA");
        let admin = Authority::generate("admin CA", now, 3650 * DAY).expect("admin CA");
        let (first, issued) = renewed(&names, &BTreeMap::new(), Some(&ca), &admin, 90 * DAY, now).expect("issued");
        assert_eq!(issued, 2 + MAX_MEMBERS as usize);
        for key in ["ca.crt", "admin-ca.crt", "server.crt", "server.key", "admin.crt", "member-1.key", "member-9.crt"] {
            assert!(first.contains_key(key), "{key}");
        }
        let (again, issued) = renewed(&names, &first, Some(&ca), &admin, 90 * DAY, now).expect("kept");
        assert_eq!((issued, &again), (0, &first), "nothing due: nothing issued");

        let later = now + time::Duration::days(61);
        let (renewed_all, issued) = renewed(&names, &first, Some(&ca), &admin, 90 * DAY, later).expect("renewed");
        assert_eq!(issued, 2 + MAX_MEMBERS as usize, "all were issued together, all are due together");
        assert_ne!(renewed_all["server.crt"], first["server.crt"]);
        assert_eq!(renewed_all["ca.crt"], first["ca.crt"]);

        let other_admin = Authority::generate("admin CA 2", now, 3650 * DAY).expect("admin CA");
        let (moved, issued) = renewed(&names, &first, Some(&ca), &other_admin, 90 * DAY, now).expect("re-signed");
        assert_eq!(issued, 1, "only the admin certificate chains to the admin CA");
        assert_ne!(moved["admin.crt"], first["admin.crt"]);
        assert_eq!(moved["member-3.crt"], first["member-3.crt"]);
    }

    #[test]
    fn the_server_certificate_names_the_service_and_the_pods() {
        let names = Names::new("zk", "apps");
        let leaves = leaves(&names);
        let (_, server, _) = leaves.iter().find(|(stem, _, _)| stem == "server").expect("server leaf");
        assert!(server.dns_names.contains(&"zk-client.apps.svc".to_owned()));
        assert!(server.dns_names.contains(&"*.zk-peers.apps.svc".to_owned()));
        let (_, member, _) = leaves.iter().find(|(stem, _, _)| stem == "member-3").expect("member leaf");
        assert_eq!(member.uri.as_deref(), Some("urn:paddock:member:3"));
        assert_eq!(member.usage, Usage::Peer);
    }
}
