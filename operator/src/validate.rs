//! Checks of a spec the operator refuses to act on, for clusters whose CRD schema is older or
//! was bypassed (the schema and its CEL rules are `crd`'s). Pure: a failure is reported in
//! status as `Degraded` with the reason (by `status`), never as a reconcile error (which would
//! retry forever).

use std::sync::LazyLock;

use regex::Regex;

use crate::crd::{CoordinationClusterSpec, TlsProvider, IMAGE_PATTERN, STORAGE_SIZE_PATTERN};

/// Why a spec cannot be acted on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSpec {
    /// CamelCase condition reason.
    pub reason: &'static str,
    /// What to fix.
    pub message: String,
}

fn invalid(reason: &'static str, message: String) -> InvalidSpec {
    InvalidSpec { reason, message }
}

#[allow(clippy::expect_used)] // constant patterns, covered by tests
static IMAGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(IMAGE_PATTERN).expect("image pattern compiles"));
#[allow(clippy::expect_used)]
static STORAGE_SIZE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(STORAGE_SIZE_PATTERN).expect("storage pattern compiles"));

/// Checks a spec; the first problem found is returned.
pub fn validate(spec: &CoordinationClusterSpec) -> Result<(), InvalidSpec> {
    if !(1..=9).contains(&spec.replicas) || spec.replicas % 2 == 0 {
        return Err(invalid(
            "InvalidReplicas",
            format!("replicas is {}; it must be odd and between 1 and 9 (1, 3, 5, 7 or 9)", spec.replicas),
        ));
    }
    if spec.image.len() > 512 || !IMAGE.is_match(&spec.image) {
        return Err(invalid(
            "InvalidImage",
            format!("image {:?} is not an image reference like registry/name:tag", spec.image),
        ));
    }
    if !STORAGE_SIZE.is_match(&spec.storage.size) {
        return Err(invalid(
            "InvalidStorage",
            format!("storage.size {:?} must be a positive quantity such as 1Gi or 500Mi", spec.storage.size),
        ));
    }
    let config = &spec.config;
    if config.tick_ms == 0 || config.snapshot_every == 0 {
        return Err(invalid("InvalidConfig", "config.tickMs and config.snapshotEvery must be positive".to_owned()));
    }
    if let (Some(min), Some(max)) = (config.min_session_timeout_ms, config.max_session_timeout_ms) {
        if min > max {
            return Err(invalid(
                "InvalidConfig",
                format!("config.minSessionTimeoutMs ({min}) exceeds config.maxSessionTimeoutMs ({max})"),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for namespace in &spec.tenancy.namespaces {
        if !dns_label(&namespace.name) {
            return Err(invalid(
                "InvalidTenancy",
                format!("tenancy.namespaces: {:?} is not a namespace name (a DNS label)", namespace.name),
            ));
        }
        if !seen.insert(namespace.name.as_str()) {
            return Err(invalid("InvalidTenancy", format!("tenancy.namespaces lists {:?} twice", namespace.name)));
        }
        if namespace.max_znodes.is_some_and(|n| n < 1) || namespace.max_bytes.is_some_and(|n| n < 0) {
            return Err(invalid(
                "InvalidTenancy",
                format!(
                    "tenancy.namespaces {:?}: maxZnodes must be at least 1 and maxBytes not negative",
                    namespace.name
                ),
            ));
        }
    }
    let tls = &spec.tls;
    if let Some(issuer) = &tls.issuer_ref {
        if !tls.enabled || tls.provider == TlsProvider::Operator {
            return Err(invalid(
                "InvalidTls",
                "tls.issuerRef names a cert-manager issuer: it needs tls.enabled and a provider of CertManager or Auto"
                    .to_owned(),
            ));
        }
        if issuer.name.is_empty() || issuer.name.len() > 253 || issuer.group.is_empty() {
            return Err(invalid("InvalidTls", format!("tls.issuerRef {:?} needs a name and a group", issuer.name)));
        }
    }
    Ok(())
}

/// A DNS label (RFC 1123), as names of namespaces and clusters are.
pub fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CoordinationClusterSpec;

    fn spec(yaml: &str) -> CoordinationClusterSpec {
        serde_yaml::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&spec("{}")), Ok(()));
        assert_eq!(validate(&spec("{replicas: 9, image: 'registry.local:5000/team/paddock:1.2@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', storage: {size: 0.5Gi}}")), Ok(()));
    }

    #[test]
    fn rejects_with_a_reason() {
        let reason = |yaml: &str| validate(&spec(yaml)).err().map(|e| e.reason);
        assert_eq!(reason("{replicas: 4}"), Some("InvalidReplicas"));
        assert_eq!(reason("{replicas: 11}"), Some("InvalidReplicas"));
        assert_eq!(reason("{replicas: -1}"), Some("InvalidReplicas"));
        assert_eq!(reason("{image: 'Not An Image'}"), Some("InvalidImage"));
        assert_eq!(reason("{image: ''}"), Some("InvalidImage"));
        assert_eq!(reason("{storage: {size: '0'}}"), Some("InvalidStorage"));
        assert_eq!(reason("{storage: {size: 0Gi}}"), Some("InvalidStorage"));
        assert_eq!(reason("{storage: {size: lots}}"), Some("InvalidStorage"));
        assert_eq!(reason("{config: {minSessionTimeoutMs: 9000, maxSessionTimeoutMs: 4000}}"), Some("InvalidConfig"));
        assert_eq!(reason("{tenancy: {namespaces: [{name: Shop}]}}"), Some("InvalidTenancy"));
        assert_eq!(reason("{tenancy: {namespaces: [{name: shop}, {name: shop}]}}"), Some("InvalidTenancy"));
        assert_eq!(reason("{tenancy: {namespaces: [{name: shop, maxZnodes: 0}]}}"), Some("InvalidTenancy"));
        assert_eq!(validate(&spec("{tenancy: {namespaces: [{name: shop, maxZnodes: 10, maxBytes: 0}]}}")), Ok(()));
        assert_eq!(reason("{tls: {provider: Operator, issuerRef: {name: corp}}}"), Some("InvalidTls"));
        assert_eq!(reason("{tls: {enabled: false, issuerRef: {name: corp}}}"), Some("InvalidTls"));
        assert_eq!(reason("{tls: {issuerRef: {name: ''}}}"), Some("InvalidTls"));
        assert_eq!(validate(&spec("{tls: {issuerRef: {name: corp, kind: ClusterIssuer}}}")), Ok(()));
    }
}
