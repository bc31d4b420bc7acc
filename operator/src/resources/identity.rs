//! The servers' Kubernetes identity, for namespace isolation: a ServiceAccount of their own
//! (owned by the cluster) and a ClusterRoleBinding of it to `system:auth-delegator`, which lets
//! the servers ask the API server's TokenReview about the tokens sidecars send. A binding is
//! cluster-scoped and cannot be owned by a namespaced CoordinationCluster, so it carries the
//! cluster's name and namespace as labels and the operator deletes the ones whose cluster is
//! gone ([`binding_owner`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{common_labels, owned_meta, Names};
use crate::crd::CoordinationCluster;

/// The ClusterRole whose permissions (create TokenReviews and SubjectAccessReviews) the servers
/// get.
pub const AUTH_DELEGATOR: &str = "system:auth-delegator";
/// Label of a binding: the namespace of the cluster it is for (with `app.kubernetes.io/instance`
/// naming the cluster).
pub const CLUSTER_NAMESPACE_LABEL: &str = "paddock.dev/cluster-namespace";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The servers' ServiceAccount, with no API token mounted unless the pod asks (the pod
/// template mounts it when the servers review tokens).
pub fn service_account(cluster: &CoordinationCluster, names: &Names) -> ServiceAccount {
    ServiceAccount {
        metadata: owned_meta(cluster, names, names.service_account()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The binding that lets the servers review tokens.
pub fn token_review_binding(names: &Names) -> ClusterRoleBinding {
    let mut labels = common_labels(names);
    labels.insert(CLUSTER_NAMESPACE_LABEL.to_owned(), names.namespace.clone());
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(names.token_review_binding()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: AUTH_DELEGATOR.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: names.service_account(),
            namespace: Some(names.namespace.clone()),
            api_group: None,
        }]),
    }
}

/// The cluster a binding made by [`token_review_binding`] is for, read from its labels.
pub fn binding_owner(labels: &BTreeMap<String, String>) -> Option<Names> {
    Some(Names::new(labels.get(INSTANCE_LABEL)?.clone(), labels.get(CLUSTER_NAMESPACE_LABEL)?.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_names_its_cluster_and_grants_token_reviews_to_the_servers_alone() {
        let names = Names::new("zk", "apps");
        let binding = token_review_binding(&names);
        assert_eq!(binding.metadata.name.as_deref(), Some("paddock:apps:zk:token-review"));
        assert_eq!(binding.role_ref.name, "system:auth-delegator");
        let subjects = binding.subjects.clone().unwrap_or_default();
        assert_eq!(subjects.len(), 1);
        assert_eq!((subjects[0].name.as_str(), subjects[0].namespace.as_deref()), ("zk-server", Some("apps")));
        let labels = binding.metadata.labels.clone().unwrap_or_default();
        assert_eq!(binding_owner(&labels), Some(names));
        assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("paddock-operator"));
        assert_eq!(binding_owner(&BTreeMap::new()), None);
    }
}
