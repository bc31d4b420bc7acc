//! Probes as kubelet runs them: an HTTP GET (2xx/3xx passes) or a TCP connect to the pod's
//! address; each attempt bounded by `timeoutSeconds`. Exec and gRPC probes are not supported
//! (a probe of theirs never passes, with a warning in the agent's log).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

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

/// One attempt of `probe`: `Ok(passed)`, or `Err` for a probe the agent cannot run.
pub async fn attempt(probe: &Probe, container: &Container, ip: Ipv4Addr) -> Result<bool, String> {
    let timeout = timing(probe).timeout;
    if let Some(get) = &probe.http_get {
        if get.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err(format!("httpGet scheme {:?} is not supported", get.scheme));
        }
        let port = port(container, &get.port).ok_or_else(|| format!("probe port {:?} unknown", get.port))?;
        let path = get.path.clone().unwrap_or_else(|| "/".to_owned());
        let addr = SocketAddr::from((ip, port));
        let result = tokio::time::timeout(timeout, async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.36\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.ok()?;
            let code: u16 = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
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
