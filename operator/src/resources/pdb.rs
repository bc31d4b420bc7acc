//! The PodDisruptionBudget: voluntary evictions (node drains) take at most one server at a time,
//! the same budget the operator's own rolling restarts keep.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{owned_meta, selector_labels, Names};
use crate::crd::CoordinationCluster;

/// The cluster's PodDisruptionBudget (maxUnavailable 1).
pub fn pod_disruption_budget(cluster: &CoordinationCluster, names: &Names) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(cluster, names, names.statefulset()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(names)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
