//! The servers' NetworkPolicy: the client ports open to everyone (the ACLs and TLS decide who
//! gets what), the peer port to the cluster's own server pods only, the admin port to the
//! operator's pods (in any namespace) and to the peers the spec lists (a Prometheus scraping
//! `/metrics`). Only a network plugin that enforces NetworkPolicies makes it bite.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{client_ports, owned_meta, selector_labels, Names, ADMIN_PORT, PEER_PORT};
use crate::crd::CoordinationCluster;

/// The label the chart puts on the operator's pods.
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "paddock-operator");

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { port: Some(IntOrString::Int(port)), protocol: Some("TCP".to_owned()), end_port: None }
}

fn pods(labels: BTreeMap<String, String>, any_namespace: bool) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector { match_labels: Some(labels), ..LabelSelector::default() }),
        namespace_selector: any_namespace.then(LabelSelector::default),
        ip_block: None,
    }
}

/// The NetworkPolicy, unless `spec.networkPolicy.enabled` is false.
pub fn network_policy(cluster: &CoordinationCluster, names: &Names) -> Option<NetworkPolicy> {
    let spec = &cluster.spec.network_policy;
    if !spec.enabled {
        return None;
    }
    let operator = BTreeMap::from([(OPERATOR_POD_LABEL.0.to_owned(), OPERATOR_POD_LABEL.1.to_owned())]);
    let mut admin_from = vec![pods(operator, true)];
    admin_from.extend(spec.admin_from.iter().cloned());
    let ingress = vec![
        NetworkPolicyIngressRule {
            from: None,
            ports: Some(client_ports(cluster).into_iter().map(|(_, port)| tcp(port)).collect()),
        },
        NetworkPolicyIngressRule {
            from: Some(vec![pods(selector_labels(names), false)]),
            ports: Some(vec![tcp(PEER_PORT)]),
        },
        NetworkPolicyIngressRule { from: Some(admin_from), ports: Some(vec![tcp(ADMIN_PORT)]) },
    ];
    Some(NetworkPolicy {
        metadata: owned_meta(cluster, names, names.statefulset()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(names)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}
