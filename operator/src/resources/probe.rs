//! The HTTP probes kubelet runs against Paddock's processes. The server's admin port and the
//! injected sidecar's port answer the same two checks, `/healthz` (the process is up) and
//! `/readyz` (it serves); which probe a container gets and how patient it is stays with the
//! builder of that container (`statefulset`, `injection`).

use k8s_openapi::api::core::v1::{HTTPGetAction, Probe};
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
