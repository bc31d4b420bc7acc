//! Servers' certificates from cert-manager (docs/security.md, "Certificates from cert-manager").
//!
//! Where cert-manager's Certificate resource is served (or `tls.provider: CertManager` asks),
//! the operator does not sign the cluster's certificates itself: it asks cert-manager for them,
//! one Certificate per leaf of `<cluster>-tls` that chains to the cluster's CA — `server` (the
//! client port) and `member-1` to `member-9` (peers) — each into a Secret of its own
//! (`<cluster>-cert-<leaf>`), and copies them into `<cluster>-tls` under the file names the servers
//! read, so the pods mount the same Secret whoever issues. `ca.crt` there is every distinct CA
//! those Secrets name, so a CA cert-manager moves to is trusted before the first leaf signed by it
//! arrives. The issuer is `tls.issuerRef`, or a CA the operator makes through cert-manager: a
//! self-signed Issuer `<cluster>-self-signed`, a CA Certificate `<cluster>-cert-ca` from it, and
//! a CA Issuer `<cluster>-ca` over that Secret. The admin port's certificate and the CA of the
//! operator's own client certificates stay the operator's: that trust is the operator's alone.
//!
//! cert-manager renews the leaves (rotating their keys); the operator owns the Secrets
//! cert-manager writes (a non-controller owner reference), so a renewal wakes it and the copy
//! follows, and deleting the cluster deletes them. Everything here but [`served`] is pure.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject};
use kube::Client;
use serde_json::json;

use crate::certs::{Leaf, Usage};
use crate::crd::{CoordinationCluster, IssuerKind, IssuerRef, TlsProvider, TlsSpec};
use crate::resources::{common_labels, owned_meta, Names, CA_CERT};

/// cert-manager's API group.
pub const GROUP: &str = "cert-manager.io";
/// The version of it the operator speaks.
pub const VERSION: &str = "v1";
/// On `<cluster>-tls`: who issued the cluster's certificates, `operator` or `cert-manager`.
/// The choice [`TlsProvider::Auto`] made stays with the cluster.
pub const ISSUED_BY_ANNOTATION: &str = "paddock.dev/issued-by";
/// On the Secrets cert-manager writes for a cluster: the cluster's name.
pub const CERTIFICATE_OF_LABEL: &str = "paddock.dev/certificate-of";
/// The key of a cert-manager Secret's certificate.
const TLS_CRT: &str = "tls.crt";
/// ... and of its key.
const TLS_KEY: &str = "tls.key";

/// Who issues a cluster's certificates, once chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issuer {
    /// The operator, from `<cluster>-ca`.
    Operator,
    /// cert-manager.
    CertManager,
}

impl Issuer {
    /// The value of [`ISSUED_BY_ANNOTATION`].
    pub fn annotation(self) -> &'static str {
        match self {
            Issuer::Operator => "operator",
            Issuer::CertManager => "cert-manager",
        }
    }

    /// The issuer an annotation value names.
    pub fn from_annotation(value: &str) -> Option<Issuer> {
        [Issuer::Operator, Issuer::CertManager].into_iter().find(|i| i.annotation() == value)
    }
}

/// What decides who issues: what the spec asks, what a cluster was issued by before (from
/// `<cluster>-tls`), whether it has the operator's CA (a cluster made before the annotation),
/// and whether cert-manager's Certificate is served (asked only when it matters).
pub fn choose(provider: TlsProvider, recorded: Option<Issuer>, operator_ca: bool, served: bool) -> Issuer {
    match (provider, recorded) {
        (TlsProvider::Operator, _) => Issuer::Operator,
        (TlsProvider::CertManager, _) => Issuer::CertManager,
        (TlsProvider::Auto, Some(recorded)) => recorded,
        (TlsProvider::Auto, None) if operator_ca || !served => Issuer::Operator,
        (TlsProvider::Auto, None) => Issuer::CertManager,
    }
}

/// Whether the API server serves cert-manager's Certificates.
pub async fn served(client: &Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(&format!("{GROUP}/{VERSION}")).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "certificates")),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The resource of cert-manager kind `kind` (`Certificate`, `Issuer`).
pub fn resource(kind: &str) -> ApiResource {
    ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.to_owned(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

/// The Certificate (and its Secret) of leaf `stem`.
pub fn certificate_name(names: &Names, stem: &str) -> String {
    format!("{}-cert-{stem}", names.cluster)
}

fn self_signed_issuer(names: &Names) -> String {
    format!("{}-self-signed", names.cluster)
}

fn ca_issuer(names: &Names) -> String {
    format!("{}-ca", names.cluster)
}

/// The Issuers (none with `tls.issuerRef`) and Certificates to apply for a cluster, in order, as
/// `(kind, object)`. `leaves` are those of `<cluster>-tls` that chain to the cluster's CA;
/// `ca_lifetime` is how long the CA the operator makes through cert-manager lives.
pub fn objects(
    cluster: &CoordinationCluster,
    names: &Names,
    tls: &TlsSpec,
    leaves: &[(String, Leaf)],
    ca_lifetime: Duration,
) -> Vec<(&'static str, DynamicObject)> {
    let object = |kind: &'static str, name: String, spec: serde_json::Value| {
        let mut object = DynamicObject::new(&name, &resource(kind)).within(&names.namespace);
        object.metadata = owned_meta(cluster, names, name);
        object.data = json!({ "spec": spec });
        (kind, object)
    };
    let key = json!({ "algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always" });
    let secret_template = json!({ "labels": secret_labels(names) });
    let mut out = Vec::new();
    let issuer = match &tls.issuer_ref {
        Some(IssuerRef { name, kind, group }) => {
            let kind = match kind {
                IssuerKind::Issuer => "Issuer",
                IssuerKind::ClusterIssuer => "ClusterIssuer",
            };
            json!({ "name": name, "kind": kind, "group": group })
        }
        None => {
            let ca = certificate_name(names, "ca");
            out.push(object("Issuer", self_signed_issuer(names), json!({ "selfSigned": {} })));
            out.push(object(
                "Certificate",
                ca.clone(),
                json!({
                    "isCA": true,
                    "commonName": format!("{} CA", names.cluster),
                    "secretName": ca,
                    "duration": format!("{}h", ca_lifetime.as_secs() / 3600),
                    "privateKey": key,
                    "secretTemplate": secret_template,
                    "issuerRef": { "name": self_signed_issuer(names), "kind": "Issuer", "group": GROUP },
                }),
            ));
            out.push(object("Issuer", ca_issuer(names), json!({ "ca": { "secretName": ca } })));
            json!({ "name": ca_issuer(names), "kind": "Issuer", "group": GROUP })
        }
    };
    for (stem, leaf) in leaves {
        let usages = match leaf.usage {
            Usage::Server => json!(["digital signature", "server auth"]),
            Usage::Client => json!(["digital signature", "client auth"]),
            Usage::Peer => json!(["digital signature", "server auth", "client auth"]),
        };
        let mut spec = json!({
            "secretName": certificate_name(names, stem),
            "commonName": leaf.common_name,
            "dnsNames": leaf.dns_names,
            "usages": usages,
            "privateKey": key,
            "secretTemplate": secret_template,
            "issuerRef": issuer,
        });
        if let Some(uri) = &leaf.uri {
            spec["uris"] = json!([uri]);
        }
        out.push(object("Certificate", certificate_name(names, stem), spec));
    }
    out
}

/// The labels of the Secrets cert-manager writes for a cluster (by which they are listed).
pub fn secret_labels(names: &Names) -> BTreeMap<String, String> {
    let mut labels = common_labels(names);
    labels.insert(CERTIFICATE_OF_LABEL.to_owned(), names.cluster.clone());
    labels
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok().filter(|s| !s.trim().is_empty())
}

/// The entries of `<cluster>-tls` that cert-manager's Secrets (`secrets`, by name) give: every
/// leaf's `<stem>.crt` and `<stem>.key`, and `ca.crt` with every distinct CA they name. An
/// error says what is still missing (cert-manager has not issued it yet, or its issuer gives
/// no CA).
pub fn assemble(
    names: &Names,
    stems: &[String],
    secrets: &BTreeMap<String, Secret>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut cas: Vec<String> = Vec::new();
    for stem in stems {
        let name = certificate_name(names, stem);
        let secret = secrets.get(&name).ok_or_else(|| format!("Secret {name} is not issued yet"))?;
        let field = |key: &str| text(secret, key).ok_or_else(|| format!("Secret {name} has no {key} yet"));
        out.insert(format!("{stem}.crt"), field(TLS_CRT)?);
        out.insert(format!("{stem}.key"), field(TLS_KEY)?);
        let ca = field(CA_CERT)?.trim_end().to_owned();
        if !cas.contains(&ca) {
            cas.push(ca);
        }
    }
    out.insert(CA_CERT.to_owned(), format!("{}\n", cas.join("\n")));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    fn cluster() -> CoordinationCluster {
        let mut cluster = CoordinationCluster::new("zk", serde_yaml::from_str("{}").expect("spec"));
        cluster.metadata.namespace = Some("apps".to_owned());
        cluster.metadata.uid = Some("uid-1".to_owned());
        cluster
    }

    fn leaf(usage: Usage, uri: Option<&str>) -> Leaf {
        Leaf {
            common_name: "cn".to_owned(),
            dns_names: vec!["a.example".to_owned()],
            uri: uri.map(str::to_owned),
            usage,
        }
    }

    #[test]
    fn auto_takes_cert_manager_for_a_new_cluster_where_it_is_served_and_keeps_what_a_cluster_had() {
        use TlsProvider::*;
        assert_eq!(choose(Auto, None, false, true), Issuer::CertManager);
        assert_eq!(choose(Auto, None, false, false), Issuer::Operator);
        assert_eq!(choose(Auto, None, true, true), Issuer::Operator, "a cluster the operator issued before");
        assert_eq!(choose(Auto, Some(Issuer::CertManager), false, false), Issuer::CertManager, "never switched");
        assert_eq!(choose(Auto, Some(Issuer::Operator), false, true), Issuer::Operator);
        assert_eq!(choose(Operator, None, false, true), Issuer::Operator);
        assert_eq!(choose(CertManager, None, false, false), Issuer::CertManager);
        for issuer in [Issuer::Operator, Issuer::CertManager] {
            assert_eq!(Issuer::from_annotation(issuer.annotation()), Some(issuer));
        }
        assert_eq!(Issuer::from_annotation("someone"), None);
    }

    #[test]
    fn without_an_issuer_the_cluster_gets_a_ca_of_its_own_through_cert_manager() {
        let names = Names::new("zk", "apps");
        let leaves = vec![
            ("server".to_owned(), leaf(Usage::Server, None)),
            ("member-1".to_owned(), leaf(Usage::Peer, Some("urn:paddock:member:1"))),
        ];
        let tls: TlsSpec = serde_yaml::from_str("{}").expect("spec");
        let objects = objects(&cluster(), &names, &tls, &leaves, Duration::from_secs(3650 * 86_400));
        let listed: Vec<(&str, &str)> =
            objects.iter().map(|(kind, o)| (*kind, o.metadata.name.as_deref().expect("named"))).collect();
        assert_eq!(
            listed,
            [
                ("Issuer", "zk-self-signed"),
                ("Certificate", "zk-cert-ca"),
                ("Issuer", "zk-ca"),
                ("Certificate", "zk-cert-server"),
                ("Certificate", "zk-cert-member-1")
            ]
        );
        let ca = &objects[1].1.data["spec"];
        assert_eq!(ca["isCA"], true);
        assert_eq!(ca["duration"], "87600h");
        let member = &objects[4].1.data["spec"];
        assert_eq!(member["issuerRef"], json!({"name": "zk-ca", "kind": "Issuer", "group": "cert-manager.io"}));
        assert_eq!(member["uris"], json!(["urn:paddock:member:1"]));
        assert_eq!(member["usages"], json!(["digital signature", "server auth", "client auth"]));
        assert_eq!(member["secretTemplate"]["labels"][CERTIFICATE_OF_LABEL], "zk");
        assert!(objects[3].1.data["spec"].get("uris").is_none());
        for (_, object) in &objects {
            assert_eq!(object.metadata.owner_references.as_ref().map(Vec::len), Some(1), "owned by the cluster");
        }
    }

    #[test]
    fn an_issuer_named_in_the_spec_signs_every_leaf() {
        let names = Names::new("zk", "apps");
        let tls: TlsSpec = serde_yaml::from_str("{issuerRef: {name: corp, kind: ClusterIssuer}}").expect("spec");
        let leaves = vec![("server".to_owned(), leaf(Usage::Server, None))];
        let objects = objects(&cluster(), &names, &tls, &leaves, Duration::from_secs(3600));
        assert_eq!(objects.len(), 1, "no CA of the operator's making");
        assert_eq!(
            objects[0].1.data["spec"]["issuerRef"],
            json!({"name": "corp", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        );
    }

    fn secret(entries: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(entries.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Secret::default()
        }
    }

    #[test]
    fn the_copy_waits_for_every_leaf_and_trusts_every_ca_they_name() {
        let names = Names::new("zk", "apps");
        let stems = vec!["server".to_owned(), "member-1".to_owned()];
        let mut secrets = BTreeMap::from([(
            "zk-cert-server".to_owned(),
            secret(&[("tls.crt", "S"), ("tls.key", "SK"), ("ca.crt", "CA1\n")]),
        )]);
        assert_eq!(assemble(&names, &stems, &secrets), Err("Secret zk-cert-member-1 is not issued yet".to_owned()));
        secrets.insert("zk-cert-member-1".to_owned(), secret(&[("tls.crt", "M"), ("tls.key", "MK"), ("ca.crt", "")]));
        assert_eq!(assemble(&names, &stems, &secrets), Err("Secret zk-cert-member-1 has no ca.crt yet".to_owned()));
        secrets
            .insert("zk-cert-member-1".to_owned(), secret(&[("tls.crt", "M"), ("tls.key", "MK"), ("ca.crt", "CA2")]));
        let out = assemble(&names, &stems, &secrets).expect("assembled");
        assert_eq!(out["server.crt"], "S");
        assert_eq!(out["member-1.key"], "MK");
        assert_eq!(out["ca.crt"], "CA1\nCA2\n");
        secrets
            .insert("zk-cert-member-1".to_owned(), secret(&[("tls.crt", "M"), ("tls.key", "MK"), ("ca.crt", "CA1")]));
        assert_eq!(assemble(&names, &stems, &secrets).expect("assembled")["ca.crt"], "CA1\n", "one CA named once");
    }
}
