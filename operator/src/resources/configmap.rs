//! The ConfigMap holding the server's settings as the `PADDOCK_*` environment variables
//! paddock-server reads (each flag has one; docs/server.md). The pods take it with `envFrom`,
//! and its content is part of the config hash, so a change rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{owned_meta, Names};
use crate::crd::{CoordinationCluster, ServerConfig};

/// The server settings as environment variables, exactly as paddock-server names them.
pub fn server_env(config: &ServerConfig) -> BTreeMap<String, String> {
    let ServerConfig { tick_ms, min_session_timeout_ms, max_session_timeout_ms, snapshot_every } = config;
    let mut env = BTreeMap::from([
        ("PADDOCK_TICK_MS".to_owned(), tick_ms.to_string()),
        ("PADDOCK_SNAPSHOT_EVERY".to_owned(), snapshot_every.to_string()),
    ]);
    if let Some(min) = min_session_timeout_ms {
        env.insert("PADDOCK_MIN_SESSION_TIMEOUT_MS".to_owned(), min.to_string());
    }
    if let Some(max) = max_session_timeout_ms {
        env.insert("PADDOCK_MAX_SESSION_TIMEOUT_MS".to_owned(), max.to_string());
    }
    env
}

/// The cluster's ConfigMap.
pub fn config_map(cluster: &CoordinationCluster, names: &Names) -> ConfigMap {
    ConfigMap {
        metadata: owned_meta(cluster, names, names.config_map()),
        data: Some(server_env(&cluster.spec.config)),
        ..ConfigMap::default()
    }
}
