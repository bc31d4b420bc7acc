//! The sidecar-injection admission webhook as a server: `POST /mutate` answers the API server's
//! AdmissionReviews for pods, over HTTPS with the certificate the chart mounts. What a pod gets
//! is decided by the pure `injection`; this module owns the review's wire format and the
//! admission metric (TLS is `paddock_tls`'s listener).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::Value;

use crate::injection::{inject, InjectorConfig};
use crate::metrics::Metrics;

/// Webhook state.
#[derive(Clone)]
pub struct Webhook {
    /// The injected container's settings.
    pub config: Arc<InjectorConfig>,
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
pub fn review(webhook: &Webhook, review: AdmissionReview<Pod>) -> Value {
    review_json(answer(webhook, review))
}

fn answer(webhook: &Webhook, review: AdmissionReview<Pod>) -> AdmissionReview<DynamicObject> {
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
    let (result, response) = match inject(pod, &namespace, &webhook.config) {
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
                Json(review(&webhook, body))
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

    #[test]
    fn admission_review_round_trip() {
        let registry = prometheus::Registry::new();
        let webhook = Webhook { config: Arc::new(config()), metrics: Metrics::new(&registry).expect("metrics") };
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
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "cart-", "annotations": {"paddock.dev/inject": "zk"}},
                           "spec": {"containers": [{"name": "app", "image": "a:1"}]}},
                "dryRun": false
            }
        });
        let review_in: AdmissionReview<Pod> = serde_json::from_value(body).expect("review parses");
        let out = review(&webhook, review_in);
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
