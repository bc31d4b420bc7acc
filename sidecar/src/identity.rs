//! The pod's identity, from the Downward API variables (`POD_NAME`, `POD_NAMESPACE`, `POD_IP`,
//! `POD_UID`). It names group members and is stored in lock and candidate znodes so others can
//! see who holds what.

use serde::Serialize;

/// Who this sidecar speaks for.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PodIdentity {
    /// `POD_NAME`, else the host name.
    pub pod: String,
    /// `POD_NAMESPACE`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `POD_IP`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `POD_UID`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl PodIdentity {
    /// Reads the identity through `var` (the process environment in the binary).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> PodIdentity {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let pod = set("POD_NAME")
            .or_else(|| set("HOSTNAME"))
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        PodIdentity { pod, namespace: set("POD_NAMESPACE"), ip: set("POD_IP"), uid: set("POD_UID") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_downward_api() {
        let env = |name: &str| match name {
            "POD_NAME" => Some("web-0".to_owned()),
            "POD_IP" => Some("10.0.0.7".to_owned()),
            "POD_UID" => Some(String::new()),
            _ => None,
        };
        let id = PodIdentity::from_env(env);
        assert_eq!(id.pod, "web-0");
        assert_eq!(id.ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(id.uid, None);
        assert_eq!(serde_json::to_value(&id).ok(), Some(serde_json::json!({"pod": "web-0", "ip": "10.0.0.7"})));
    }
}
