//! The sidecar-injection admission webhook as a server: `POST /mutate` answers the API server's
//! AdmissionReviews for pods, over HTTPS with the certificate the chart mounts. What a pod gets
//! is decided by the pure `injection`; this module owns the review's wire format, the admission
//! metric, the TLS acceptor and the listener that runs handshakes off the accept loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

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

/// Why the webhook's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate or key unreadable.
    #[error("failed to read {path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the pair.
    #[error("invalid webhook certificate: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor for the webhook's certificate and key (PEM files, as a kubernetes.io/tls Secret
/// mounts them).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted TLS connections for `axum::serve`: handshakes run concurrently (a slow client does
/// not hold up others) and are bounded in time.
pub struct TlsListener {
    connections: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Listens on `listener`, terminating TLS with `acceptor`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, connections) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "webhook accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "webhook TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "webhook TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self { connections, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop ended: wait forever, as a listener that never gets a connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
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
