//! What every container Paddock runs has in common, the server's and the injected sidecar's:
//! the HTTP probes kubelet runs (both answer `/healthz`, the process is up, and `/readyz`, it
//! serves), named TCP ports, Downward API variables and the restricted security context. Which
//! probes, ports and variables a container gets, and how patient its probes are, stays with the
//! builder of that container (`statefulset`, `injection`).

use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Probe, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A GET of `path` on `port` every `period_seconds`, failing after `failure_threshold` misses in
/// a row; each attempt may take `timeout_seconds` (kubelet's default of 1 s when `None`).
pub fn http_probe(
    port: IntOrString,
    path: &str,
    period_seconds: i32,
    failure_threshold: i32,
    timeout_seconds: Option<i32>,
) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction { path: Some(path.to_owned()), port, ..HTTPGetAction::default() }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds,
        ..Probe::default()
    }
}

/// The same probe over HTTPS (kubelet does not check the certificate).
pub fn https(mut probe: Probe) -> Probe {
    if let Some(get) = probe.http_get.as_mut() {
        get.scheme = Some("HTTPS".to_owned());
    }
    probe
}

/// A named TCP container port.
pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// The variable `name` set from the pod's `field` (Downward API), e.g. `metadata.name`.
pub fn downward(name: &str, field: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field.to_owned(), ..ObjectFieldSelector::default() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// No privilege escalation and no capabilities: neither process needs any.
pub fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
        ..SecurityContext::default()
    }
}
