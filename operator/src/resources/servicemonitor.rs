//! The optional prometheus-operator ServiceMonitor scraping every server's admin port. Built as
//! plain JSON: its CRD may not be installed, and the operator does not depend on its types.

use serde_json::json;

use super::service::SERVICE_LABEL;
use super::{owned_meta, selector_labels, Names};
use crate::crd::CoordinationCluster;

/// apiVersion of ServiceMonitor.
pub const SERVICE_MONITOR_API_VERSION: &str = "monitoring.coreos.com/v1";

/// The ServiceMonitor, when `spec.metrics.serviceMonitor.enabled`.
pub fn service_monitor(cluster: &CoordinationCluster, names: &Names) -> Option<serde_json::Value> {
    let spec = cluster.spec.metrics.service_monitor.as_ref().filter(|s| s.enabled)?;
    let mut metadata = owned_meta(cluster, names, names.statefulset());
    metadata.labels.get_or_insert_with(Default::default).extend(spec.labels.clone());
    let mut selector = selector_labels(names);
    selector.insert(SERVICE_LABEL.to_owned(), "peers".to_owned());
    let mut endpoint = json!({ "port": "admin", "path": "/metrics" });
    if cluster.spec.tls.enabled {
        // The admin port's certificate is the admin CA's, for the pods' names.
        endpoint["scheme"] = json!("https");
        endpoint["tlsConfig"] = json!({
            "ca": { "secret": { "name": names.tls_secret(), "key": super::ADMIN_CA_CERT } },
            "serverName": names.pod_host(1),
        });
    }
    if let Some(interval) = &spec.interval {
        endpoint["interval"] = json!(interval);
    }
    Some(json!({
        "apiVersion": SERVICE_MONITOR_API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": { "matchLabels": selector },
            "namespaceSelector": { "matchNames": [names.namespace] },
            "endpoints": [endpoint],
        },
    }))
}
