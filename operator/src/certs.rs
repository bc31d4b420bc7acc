//! The certificates the operator issues (docs/security.md, "Certificates on Kubernetes"): a CA per
//! cluster for its members and client port, one CA of the operator's own for the admin ports, and
//! the leaf certificates they sign. Pure: PEM in, PEM out, and when a certificate is due for
//! renewal; storing them in Secrets is `tls`'s job.
//!
//! Keys are ECDSA P-256. A leaf is renewed once less than a third of its lifetime is left (as
//! cert-manager's default), so a renewal reaches the pods' volumes and the servers' reloaders long
//! before the old one expires.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating or signing failed, or a name is not valid in a certificate.
    #[error("failed to issue the {what} certificate: {source}")]
    Issue {
        /// Which certificate.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A stored CA certificate or key could not be read.
    #[error("the stored {what} is not usable: {message}")]
    Stored {
        /// Which object.
        what: String,
        /// What was wrong.
        message: String,
    },
}

/// What a leaf certificate is for: its extended key usages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (the client and admin ports).
    Server,
    /// A TLS client (the operator calling admin ports).
    Client,
    /// Both (members dial each other and answer each other).
    Peer,
}

/// A leaf to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The subject's common name.
    pub common_name: String,
    /// DNS subject alternative names (wildcards allowed).
    pub dns_names: Vec<String>,
    /// A URI subject alternative name (a member's `urn:paddock:member:<id>`).
    pub uri: Option<String>,
    /// Extended key usages.
    pub usage: Usage,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key.
    pub key_pem: String,
}

/// A certificate authority: its certificate and the key that signs with it.
pub struct Authority {
    issued: Issued,
    issuer: Issuer<'static, KeyPair>,
}

fn issue_error(what: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Issue { what: what.to_owned(), source }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    // A minute of slack for clocks a little behind the operator's.
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::try_from(lifetime).unwrap_or(time::Duration::days(365));
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Paddock");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl Authority {
    /// A new self-signed CA named `common_name`, valid for `lifetime` from `now`.
    pub fn generate(common_name: &str, now: OffsetDateTime, lifetime: Duration) -> Result<Authority, CertError> {
        let what = format!("CA {common_name}");
        let key = KeyPair::generate().map_err(issue_error(&what))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, now, lifetime);
        let cert = params.self_signed(&key).map_err(issue_error(&what))?;
        let issued = Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Authority { issuer: Issuer::new(params, key), issued })
    }

    /// The CA stored as `cert_pem` and `key_pem`.
    pub fn from_pem(what: &str, cert_pem: &str, key_pem: &str) -> Result<Authority, CertError> {
        let stored = |message: String| CertError::Stored { what: what.to_owned(), message };
        let key = KeyPair::from_pem(key_pem).map_err(|e| stored(format!("key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| stored(format!("certificate: {e}")))?;
        Ok(Authority { issuer, issued: Issued { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned() } })
    }

    /// The CA's certificate and key.
    pub fn pem(&self) -> &Issued {
        &self.issued
    }

    /// A leaf signed by this CA, valid for `lifetime` from `now`, with a fresh key.
    pub fn issue(&self, leaf: &Leaf, now: OffsetDateTime, lifetime: Duration) -> Result<Issued, CertError> {
        let what = leaf.common_name.as_str();
        let key = KeyPair::generate().map_err(issue_error(what))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&leaf.common_name);
        let mut sans = Vec::new();
        for dns in &leaf.dns_names {
            sans.push(SanType::DnsName(dns.clone().try_into().map_err(issue_error(what))?));
        }
        if let Some(uri) = &leaf.uri {
            sans.push(SanType::URI(uri.clone().try_into().map_err(issue_error(what))?));
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match leaf.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Peer => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, lifetime);
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_error(what))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// The subject of the operator's client certificate as the servers name it (RFC 2253, the
/// `x509` scheme's id): their `--x509-super-user`.
pub const OPERATOR_SUBJECT: &str = "CN=paddock-operator,O=Paddock";

/// The operator's client certificate, from the admin CA: for the admin ports, and for the client
/// ports, where it is the super user.
pub fn admin_client(admin_ca: &Authority, lifetime: Duration) -> Result<Issued, CertError> {
    let leaf =
        Leaf { common_name: "paddock-operator".to_owned(), dns_names: Vec::new(), uri: None, usage: Usage::Client };
    admin_ca.issue(&leaf, OffsetDateTime::now_utc(), lifetime)
}

/// The expiry (Unix seconds) of the first certificate in `pem`, if it parses.
pub fn not_after(pem: &str) -> Option<i64> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    paddock_tls::identity::not_after(&der)
}

/// When (Unix seconds) the certificate in `pem`, issued for `lifetime`, is to be renewed: once a
/// third of its lifetime is left. `None` when it does not parse (renew it now).
pub fn renew_at(pem: &str, lifetime: Duration) -> Option<i64> {
    let third = i64::try_from(lifetime.as_secs() / 3).unwrap_or(i64::MAX);
    Some(not_after(pem)?.saturating_sub(third))
}

/// Whether the certificate in `pem` must be renewed at `now` (Unix seconds): unreadable, or a
/// third or less of `lifetime` left.
pub fn due(pem: &str, lifetime: Duration, now: i64) -> bool {
    renew_at(pem, lifetime).is_none_or(|at| at <= now)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn roots(ca: &Authority) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca.pem().cert_pem.as_bytes()).expect("CA PEM")).expect("CA");
        Arc::new(roots)
    }

    fn leaf(usage: Usage) -> Leaf {
        Leaf {
            common_name: "member-2".to_owned(),
            dns_names: vec!["*.zk-peers.default.svc".to_owned(), "zk-client".to_owned()],
            uri: Some(paddock_tls::identity::member_uri(2)),
            usage,
        }
    }

    #[test]
    fn a_member_certificate_names_its_member_and_chains_to_the_ca() {
        paddock_tls::install_default_provider();
        let now = OffsetDateTime::now_utc();
        let ca = Authority::generate("zk CA", now, 10 * DAY).expect("CA");
        let issued = ca.issue(&leaf(Usage::Peer), now, DAY).expect("leaf");
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("leaf PEM");
        assert_eq!(paddock_tls::identity::member_id(&der), Some(2));
        PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("a PKCS#8 key");
        // The chain verifies the way the servers check clients and servers.
        let parsed = rustls::server::ParsedCertificate::try_from(&der).expect("parses");
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let now_pki = rustls::pki_types::UnixTime::now();
        rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, &roots(&ca), &[], now_pki, algorithms.all)
            .expect("chains to the CA");
        let server = rustls::pki_types::ServerName::try_from("zk-1.zk-peers.default.svc").expect("name");
        rustls::client::verify_server_name(&parsed, &server).expect("the wildcard covers the pod");
        let verifier = WebPkiClientVerifier::builder(roots(&ca)).build().expect("client verifier");
        verifier.verify_client_cert(&der, &[], now_pki).expect("a peer certificate is also a client's");
        // A CA read back from its PEM signs leaves that chain to the same certificate.
        let again = Authority::from_pem("CA", &ca.pem().cert_pem, &ca.pem().key_pem).expect("stored CA");
        let later = again.issue(&leaf(Usage::Peer), now, DAY).expect("leaf");
        let der = CertificateDer::from_pem_slice(later.cert_pem.as_bytes()).expect("PEM");
        verifier.verify_client_cert(&der, &[], now_pki).expect("same CA");
    }

    #[test]
    fn a_server_certificate_is_no_client_certificate() {
        paddock_tls::install_default_provider();
        let now = OffsetDateTime::now_utc();
        let ca = Authority::generate("admin CA", now, 10 * DAY).expect("CA");
        let verifier = WebPkiClientVerifier::builder(roots(&ca)).build().expect("client verifier");
        let now_pki = rustls::pki_types::UnixTime::now();
        let server = ca.issue(&leaf(Usage::Server), now, DAY).expect("server");
        let der = CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).expect("PEM");
        assert!(verifier.verify_client_cert(&der, &[], now_pki).is_err(), "admin ports refuse other servers");
        let client = ca.issue(&leaf(Usage::Client), now, DAY).expect("client");
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).expect("PEM");
        verifier.verify_client_cert(&der, &[], now_pki).expect("the operator's certificate");
    }

    #[test]
    fn renewal_is_due_with_a_third_of_the_lifetime_left() {
        let now = OffsetDateTime::now_utc();
        let ca = Authority::generate("CA", now, 90 * DAY).expect("CA");
        let issued = ca.issue(&leaf(Usage::Server), now, 90 * DAY).expect("leaf");
        let t = now.unix_timestamp();
        assert!(!due(&issued.cert_pem, 90 * DAY, t));
        assert!(!due(&issued.cert_pem, 90 * DAY, t + 59 * 86_400));
        assert!(due(&issued.cert_pem, 90 * DAY, t + 61 * 86_400));
        assert!(due("not a certificate", 90 * DAY, t), "an unreadable certificate is renewed");
        assert!(Authority::from_pem("CA", "garbage", &ca.pem().key_pem).is_err());
        assert!(Authority::from_pem("CA", &ca.pem().cert_pem, "garbage").is_err());
    }

    #[test]
    fn the_servers_name_the_operators_client_certificate_as_its_super_user() {
        let ca = Authority::generate("admin", OffsetDateTime::now_utc(), Duration::from_secs(3600)).expect("CA");
        let issued = admin_client(&ca, Duration::from_secs(3600)).expect("issued");
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("PEM");
        assert_eq!(paddock_tls::identity::subject_name(&der).as_deref(), Some(OPERATOR_SUBJECT));
    }
}
