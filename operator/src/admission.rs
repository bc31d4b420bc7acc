//! The sidecar-injection admission webhook as a server: `POST /mutate` answers the API server's
//! AdmissionReviews for pods, over HTTPS with the certificate the chart mounts. What a pod gets
//! is decided by the pure `injection`; this module owns the review's wire format, the look-up
//! of the cluster a pod names (does it speak TLS, with which CA: [`ClusterLookup`]) and the
//! admission metric (TLS is `paddock_tls`'s listener). A pod naming a cluster that does not
//! exist, or whose certificates are not issued yet, is refused: its controller tries again.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use kube::Api;
use serde_json::Value;

use crate::crd::CoordinationCluster;
use crate::injection::{cluster_ref, inject, ClusterAccess, ClusterRef, InjectorConfig};
use crate::metrics::Metrics;
use crate::resources::{Names, CA_CERT};

/// How the webhook learns how a cluster is reached.
pub trait ClusterLookup: Send + Sync {
    /// The access to `cluster`, or why a pod cannot be given it.
    fn access<'a>(&'a self, cluster: &'a ClusterRef) -> BoxFuture<'a, Result<ClusterAccess, String>>;
}

/// [`ClusterLookup`] through the Kubernetes API: the CoordinationCluster, and with TLS the CA in
/// its `<cluster>-tls` Secret.
pub struct KubeLookup(pub kube::Client);

impl ClusterLookup for KubeLookup {
    fn access<'a>(&'a self, cluster: &'a ClusterRef) -> BoxFuture<'a, Result<ClusterAccess, String>> {
        Box::pin(async move {
            let ClusterRef { namespace, name } = cluster;
            let clusters: Api<CoordinationCluster> = Api::namespaced(self.0.clone(), namespace);
            let found = clusters
                .get_opt(name)
                .await
                .map_err(|e| format!("failed to read CoordinationCluster {namespace}/{name}: {e}"))?
                .ok_or_else(|| format!("CoordinationCluster {namespace}/{name} does not exist"))?;
            if !found.spec.tls.enabled {
                return Ok(ClusterAccess { tls_ca: None, tokens: false });
            }
            let secret = Names::new(name.clone(), namespace.clone()).tls_secret();
            let secrets: Api<Secret> = Api::namespaced(self.0.clone(), namespace);
            let ca = secrets
                .get_opt(&secret)
                .await
                .map_err(|e| format!("failed to read Secret {namespace}/{secret}: {e}"))?
                .and_then(|s| s.data?.remove(CA_CERT))
                .and_then(|ca| String::from_utf8(ca.0).ok())
                .ok_or_else(|| format!("CoordinationCluster {namespace}/{name} has no certificates yet"))?;
            Ok(ClusterAccess { tls_ca: Some(ca), tokens: found.spec.isolated() })
        })
    }
}

/// Webhook state.
#[derive(Clone)]
pub struct Webhook {
    /// The injected container's settings.
    pub config: Arc<InjectorConfig>,
    /// How clusters are reached.
    pub lookup: Arc<dyn ClusterLookup>,
    /// Operator metrics.
    pub metrics: Metrics,
}

/// The review as JSON, with the patch as the base64 string the API server's `[]byte` field
/// takes (kube serializes the bytes as a number array).
fn review_json(review: AdmissionReview<DynamicObject>) -> Value {
    use base64::Engine as _;
    let mut value = serde_json::to_value(review).unwrap_or(Value::Null);
    if let Some(patch) = value.pointer_mut("/response/patch") {
        if let Ok(bytes) = serde_json::from_value::<Vec<u8>>(patch.clone()) {
            *patch = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    value
}

/// Answers one AdmissionReview.
pub async fn review(webhook: &Webhook, review: AdmissionReview<Pod>) -> Value {
    review_json(answer(webhook, review).await)
}

async fn answer(webhook: &Webhook, review: AdmissionReview<Pod>) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            webhook.metrics.webhook_admissions.with_label_values(&["error"]).inc();
            return AdmissionResponse::invalid(error.to_string()).into_review();
        }
    };
    let response = AdmissionResponse::from(&request);
    let Some(pod) = request.object.as_ref() else {
        return response.into_review();
    };
    let namespace = request.namespace.clone().or_else(|| pod.metadata.namespace.clone()).unwrap_or_default();
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let access = match cluster_ref(&annotations, &namespace) {
        Ok(Some(cluster)) => webhook.lookup.access(&cluster).await,
        // Nothing to look up: `inject` skips the pod or says what is wrong with it.
        Ok(None) | Err(_) => Ok(ClusterAccess::default()),
    };
    let access = match access {
        Ok(access) => access,
        Err(reason) => {
            webhook.metrics.webhook_admissions.with_label_values(&["denied"]).inc();
            return response.deny(reason).into_review();
        }
    };
    let (result, response) = match inject(pod, &namespace, &webhook.config, &access) {
        Ok(Some(patch)) => match response.clone().with_patch(patch) {
            Ok(patched) => ("injected", patched),
            Err(error) => ("error", response.deny(error.to_string())),
        },
        Ok(None) => ("skipped", response),
        Err(error) => ("denied", response.deny(error.to_string())),
    };
    webhook.metrics.webhook_admissions.with_label_values(&[result]).inc();
    response.into_review()
}

/// `POST /mutate`.
pub fn router(webhook: Webhook) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(|State(webhook): State<Webhook>, Json(body): Json<AdmissionReview<Pod>>| async move {
                Json(review(&webhook, body).await)
            }),
        )
        .with_state(webhook)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> InjectorConfig {
        InjectorConfig { image: "paddock:0.1.0".to_owned(), ..InjectorConfig::default() }
    }

    /// Knows one plain cluster, `shop/zk`.
    struct OneCluster;

    impl ClusterLookup for OneCluster {
        fn access<'a>(&'a self, cluster: &'a ClusterRef) -> BoxFuture<'a, Result<ClusterAccess, String>> {
            Box::pin(async move {
                match (cluster.namespace.as_str(), cluster.name.as_str()) {
                    ("shop", "zk") => Ok(ClusterAccess::default()),
                    _ => Err(format!("CoordinationCluster {}/{} does not exist", cluster.namespace, cluster.name)),
                }
            })
        }
    }

    fn webhook() -> Webhook {
        let registry = prometheus::Registry::new();
        Webhook {
            config: Arc::new(config()),
            lookup: Arc::new(OneCluster),
            metrics: Metrics::new(&registry).expect("metrics"),
        }
    }

    fn review_of(annotations: Value) -> AdmissionReview<Pod> {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "cart-", "annotations": annotations},
                           "spec": {"containers": [{"name": "app", "image": "a:1"}]}},
                "dryRun": false
            }
        });
        serde_json::from_value(body).expect("review parses")
    }

    #[tokio::test]
    async fn a_pod_naming_a_missing_cluster_is_refused() {
        let webhook = webhook();
        let out = review(&webhook, review_of(json!({"paddock.dev/inject": "elsewhere/zk"}))).await;
        assert_eq!(out["response"]["allowed"], false);
        let message = out["response"]["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("elsewhere/zk does not exist"), "{out}");
        assert_eq!(webhook.metrics.webhook_admissions.with_label_values(&["denied"]).get(), 1);
    }

    #[tokio::test]
    async fn admission_review_round_trip() {
        let webhook = webhook();
        let review_in = review_of(json!({"paddock.dev/inject": "zk"}));
        let out = review(&webhook, review_in).await;
        assert_eq!(out["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        use base64::Engine as _;
        let encoded = out["response"]["patch"].as_str().expect("patch is a base64 string");
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
        let patch: Vec<Value> = serde_json::from_slice(&bytes).expect("patch is JSON");
        assert_eq!(patch[0]["path"], "/spec/initContainers");
        assert_eq!(webhook.metrics.webhook_admissions.with_label_values(&["injected"]).get(), 1);
    }
}
