//! The dialer's check of a peer: its certificate chains to the cluster's CA and names the
//! member that was dialed. Host names play no part: members are known by id (the membership
//! records an address, which may be a proxy's, a Service's or a pod's).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::identity::member_id;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Member {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Member {
    pub(crate) fn new(roots: Arc<RootCertStore>) -> Member {
        Member { roots, algorithms: crate::provider().signature_verification_algorithms }
    }
}

/// The member id a dial names (`member-<id>`, from [`crate::member_server_name`]).
fn dialed(name: &ServerName<'_>) -> Option<u64> {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().strip_prefix("member-")?.parse().ok(),
        _ => None,
    }
}

impl ServerCertVerifier for Member {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(&parsed, &self.roots, intermediates, now, self.algorithms.all)?;
        match (dialed(server_name), member_id(end_entity)) {
            (Some(wanted), Some(shown)) if wanted == shown => Ok(ServerCertVerified::assertion()),
            _ => Err(Error::InvalidCertificate(CertificateError::NotValidForName)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
