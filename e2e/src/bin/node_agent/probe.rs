//! Probes as kubelet runs them: an HTTP or HTTPS GET (2xx/3xx passes; HTTPS, like kubelet,
//! checks no certificate) or a TCP connect to the pod's address; each attempt bounded by
//! `timeoutSeconds`. Exec and gRPC probes are not supported (a probe of theirs never passes,
//! with a warning in the agent's log).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The timing of a probe.
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub fn timing(probe: &Probe) -> Timing {
    let secs = |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    Timing {
        initial_delay: secs(probe.initial_delay_seconds, 0),
        period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Kubelet's HTTPS probes skip certificate verification; so do these (signatures still checked).
#[derive(Debug)]
struct AnyCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn insecure_tls() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The status line's code of an HTTP/1.1 answer read from `stream`, after sending the GET.
async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    addr: SocketAddr,
) -> Option<u16> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.36\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// One attempt of `probe`: `Ok(passed)`, or `Err` for a probe the agent cannot run.
pub async fn attempt(probe: &Probe, container: &Container, ip: Ipv4Addr) -> Result<bool, String> {
    let timeout = timing(probe).timeout;
    if let Some(http) = &probe.http_get {
        let tls = match http.scheme.as_deref() {
            None | Some("HTTP") => None,
            Some("HTTPS") => Some(insecure_tls()?),
            Some(other) => return Err(format!("httpGet scheme {other:?} is not supported")),
        };
        let port = port(container, &http.port).ok_or_else(|| format!("probe port {:?} unknown", http.port))?;
        let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
        let addr = SocketAddr::from((ip, port));
        let result = tokio::time::timeout(timeout, async move {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let code = match tls {
                None => get(stream, &path, addr).await?,
                Some(tls) => {
                    let name = ServerName::from(std::net::IpAddr::V4(ip));
                    get(tls.connect(name, stream).await.ok()?, &path, addr).await?
                }
            };
            Some((200..400).contains(&code))
        })
        .await;
        return Ok(matches!(result, Ok(Some(true))));
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = port(container, &tcp.port).ok_or_else(|| format!("probe port {:?} unknown", tcp.port))?;
        let result = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip, port))).await;
        return Ok(matches!(result, Ok(Ok(_))));
    }
    Err("only httpGet and tcpSocket probes are supported".to_owned())
}
