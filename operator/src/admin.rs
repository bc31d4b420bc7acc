//! Client of paddock-server's admin API (docs/server.md, "Admin API"): reads each server's view
//! of the cluster and sends membership changes to the leader, following a follower's 421 answer
//! to the leader it names. The routes and the request, answer and error bodies are
//! `paddock_contract::admin`'s, shared with the server; this module owns the transport and its
//! timeouts, and the [`AdminApi`] trait the reconciler sees, so tests replace the network with a
//! fake.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use paddock_contract::admin::{
    AddLearner, ChangeVoters, ClusterView, ErrorBody, ErrorDetail, TransferLeader, CLUSTER, LEADER, LEARNERS, MEMBERS,
    VOTERS,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

use crate::certs::{self, admin_client, Authority};

/// A membership change, sent to the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `POST /v1/cluster/learners {id, addr}`.
    AddLearner {
        /// New member's id.
        id: u64,
        /// Its peer address.
        addr: String,
    },
    /// `POST /v1/cluster/voters {ids}`: exactly these voters.
    SetVoters {
        /// The voters.
        ids: BTreeSet<u64>,
    },
    /// `DELETE /v1/cluster/members/{id}`.
    Remove {
        /// The member.
        id: u64,
    },
    /// `POST /v1/cluster/leader {id}`.
    TransferLeader {
        /// The new leader.
        id: u64,
    },
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No connection or no answer in time.
    #[error("failed to reach the admin api at {addr}: {message}")]
    Unreachable {
        /// Address called.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused (`{"error": {"code", "message"}}`).
    #[error("the admin api at {addr} refused with {status} {code}: {message}")]
    Refused {
        /// Address called.
        addr: String,
        /// HTTP status.
        status: u16,
        /// Error code from the body.
        code: String,
        /// Message from the body.
        message: String,
    },
    /// The answer could not be read.
    #[error("invalid answer from the admin api at {addr}: {message}")]
    BadAnswer {
        /// Address called.
        addr: String,
        /// What was wrong.
        message: String,
    },
}

/// What the reconciler needs from the servers. An `addr` is `host:port` (plain HTTP) or
/// `https://host:port` (TLS, with the operator's client certificate).
pub trait AdminApi: Send + Sync {
    /// `GET /v1/cluster` on the server at `addr`.
    fn cluster<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<ClusterView, AdminError>>;
    /// Sends `change` to the leader at `addr`; a follower's 421 is followed once.
    fn change<'a>(&'a self, addr: &'a str, change: &'a Change) -> BoxFuture<'a, Result<(), AdminError>>;
}

type TlsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The operator's side of the admin ports' TLS: the admin CA, trusted for the servers'
/// certificates and issuing the operator's own, which is renewed in memory when due.
struct AdminTls {
    authority: Arc<Authority>,
    lifetime: Duration,
    /// The client with the current certificate, and when that is due for renewal.
    current: Mutex<(TlsClient, i64)>,
}

fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector
}

impl AdminTls {
    fn client(authority: &Authority, lifetime: Duration) -> Result<(TlsClient, i64), String> {
        let issued = admin_client(authority, lifetime).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(authority.pem().cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        roots.add(ca).map_err(|e| e.to_string())?;
        let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).map_err(|e| e.to_string())?];
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?;
        let mut http = connector();
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let renew_at = certs::renew_at(&issued.cert_pem, lifetime).unwrap_or(0);
        Ok((Client::builder(TokioExecutor::new()).build(https), renew_at))
    }

    /// The client, with a fresh certificate if the last one is due.
    fn current(&self) -> Result<TlsClient, String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.1 <= time::OffsetDateTime::now_utc().unix_timestamp() {
            *current = Self::client(&self.authority, self.lifetime)?;
            tracing::info!("renewed the operator's admin client certificate");
        }
        Ok(current.0.clone())
    }
}

/// [`AdminApi`] over HTTP, and over TLS for `https://` addresses.
#[derive(Clone)]
pub struct HttpAdmin {
    client: Client<HttpConnector, Full<Bytes>>,
    tls: Option<Arc<AdminTls>>,
}

impl Default for HttpAdmin {
    fn default() -> Self {
        Self { client: Client::builder(TokioExecutor::new()).build(connector()), tls: None }
    }
}

/// Splits an `addr` of [`AdminApi`] into its scheme and `host:port`.
fn scheme_of(addr: &str) -> (&str, &str) {
    match addr.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", addr),
    }
}

/// How long a read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Adding a learner blocks until it caught up, 30 s at most on the server side.
const ADD_LEARNER_TIMEOUT: Duration = Duration::from_secs(40);
/// Other changes (joint consensus, leader transfer) finish in seconds.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// A request body as JSON. The contract's bodies are ids, addresses and id sets, which always
/// serialize.
fn json_body(body: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(body).unwrap_or_default())
}

impl HttpAdmin {
    /// Also speaks TLS to `https://` addresses: trusts the admin CA `authority` and shows a
    /// client certificate it issues (for `lifetime`, renewed when a third is left).
    pub fn with_tls(authority: Arc<Authority>, lifetime: Duration) -> Result<HttpAdmin, String> {
        let current = AdminTls::client(&authority, lifetime)?;
        let tls = AdminTls { authority, lifetime, current: Mutex::new(current) };
        Ok(HttpAdmin { tls: Some(Arc::new(tls)), ..HttpAdmin::default() })
    }

    async fn send(
        &self,
        addr: &str,
        method: http::Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<(http::StatusCode, Bytes), AdminError> {
        let unreachable = |message: String| AdminError::Unreachable { addr: addr.to_owned(), message };
        let (scheme, host) = scheme_of(addr);
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{scheme}://{host}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async {
            let response = match scheme {
                "https" => {
                    let tls = self.tls.as_ref().ok_or_else(|| unreachable("no admin TLS configured".to_owned()))?;
                    tls.current().map_err(unreachable)?.request(request).await
                }
                _ => self.client.request(request).await,
            };
            let response = response.map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| unreachable(format!("no answer in {timeout:?}")))?
    }

    async fn change_once(&self, addr: &str, change: &Change) -> Result<Option<String>, AdminError> {
        let (method, path, body, timeout) = match change {
            Change::AddLearner { id, addr } => (
                http::Method::POST,
                LEARNERS.to_owned(),
                Some(json_body(&AddLearner { id: *id, addr: addr.clone() })),
                ADD_LEARNER_TIMEOUT,
            ),
            Change::SetVoters { ids } => (
                http::Method::POST,
                VOTERS.to_owned(),
                Some(json_body(&ChangeVoters { ids: ids.clone() })),
                CHANGE_TIMEOUT,
            ),
            Change::Remove { id } => (http::Method::DELETE, format!("{MEMBERS}/{id}"), None, CHANGE_TIMEOUT),
            Change::TransferLeader { id } => {
                (http::Method::POST, LEADER.to_owned(), Some(json_body(&TransferLeader { id: *id })), CHANGE_TIMEOUT)
            }
        };
        let (status, bytes) = self.send(addr, method, &path, body, timeout).await?;
        if status.is_success() {
            return Ok(None);
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        if status == http::StatusCode::MISDIRECTED_REQUEST {
            if let Some(leader) = body.as_ref().and_then(|b| b.leader_admin.clone()) {
                return Ok(Some(leader));
            }
        }
        let (code, message) = match body {
            Some(ErrorBody { error: ErrorDetail { code, message }, .. }) => (code, message),
            None => ("unknown".to_owned(), String::from_utf8_lossy(&bytes).into_owned()),
        };
        Err(AdminError::Refused { addr: addr.to_owned(), status: status.as_u16(), code, message })
    }
}

impl AdminApi for HttpAdmin {
    fn cluster<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<ClusterView, AdminError>> {
        Box::pin(async move {
            let (status, bytes) = self.send(addr, http::Method::GET, CLUSTER, None, READ_TIMEOUT).await?;
            if !status.is_success() {
                return Err(AdminError::Refused {
                    addr: addr.to_owned(),
                    status: status.as_u16(),
                    code: "unexpected_status".to_owned(),
                    message: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| AdminError::BadAnswer { addr: addr.to_owned(), message: e.to_string() })
        })
    }

    fn change<'a>(&'a self, addr: &'a str, change: &'a Change) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            match self.change_once(addr, change).await? {
                None => Ok(()),
                Some(leader) => {
                    // Leadership moved since we looked; the follower named the new leader (by
                    // `host:port`: it is reached the way the follower was).
                    let leader = match scheme_of(addr) {
                        ("https", _) => format!("https://{}", scheme_of(&leader).1),
                        _ => leader,
                    };
                    tracing::info!(from = addr, to = %leader, "membership change redirected to the leader");
                    match self.change_once(&leader, change).await? {
                        None => Ok(()),
                        Some(_) => Err(AdminError::Refused {
                            addr: leader,
                            status: 421,
                            code: "not_leader".to_owned(),
                            message: "leadership is moving; retrying on the next pass".to_owned(),
                        }),
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::routing::{get, post};
    use axum::{Json, Router};

    use super::*;

    type Log = Arc<Mutex<Vec<String>>>;

    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// A follower's 421 is followed to the leader it names, and the change lands there.
    #[tokio::test]
    async fn follows_421_to_the_leader() {
        let log: Log = Arc::default();
        let leader = serve(
            Router::new()
                .route(
                    "/v1/cluster/voters",
                    post(|State(log): State<Log>, Json(body): Json<serde_json::Value>| async move {
                        log.lock().map(|mut l| l.push(format!("leader got {body}"))).ok();
                        Json(serde_json::json!({ "voters": body["ids"] }))
                    }),
                )
                .with_state(log.clone()),
        )
        .await;
        let leader_admin = leader.to_string();
        let follower = serve(Router::new().route(
            "/v1/cluster/voters",
            post(move || {
                let leader_admin = leader_admin.clone();
                async move {
                    (
                        http::StatusCode::MISDIRECTED_REQUEST,
                        Json(serde_json::json!({
                            "error": { "code": "not_leader", "message": "membership changes are made on the leader" },
                            "leader": 1, "leader_admin": leader_admin,
                        })),
                    )
                }
            }),
        ))
        .await;
        let admin = HttpAdmin::default();
        let change = Change::SetVoters { ids: BTreeSet::from([1, 2, 3]) };
        admin.change(&follower.to_string(), &change).await.expect("redirected change succeeds");
        assert_eq!(log.lock().expect("log").as_slice(), [r#"leader got {"ids":[1,2,3]}"#]);
    }

    #[tokio::test]
    async fn reads_views_and_reports_refusals() {
        let server = serve(
            Router::new()
                .route(
                    "/v1/cluster",
                    get(|| async {
                        Json(serde_json::json!({
                            "id": 1, "leader": 1, "term": 3, "committed": 42, "applied": 42,
                            "members": [{ "id": 1, "addr": "a:2888", "role": "leader", "matched": 42 },
                                        { "id": 2, "addr": "b:2888", "role": "learner", "matched": null }],
                        }))
                    }),
                )
                .route(
                    "/v1/cluster/members/{id}",
                    axum::routing::delete(|| async {
                        (
                            http::StatusCode::CONFLICT,
                            Json(serde_json::json!({ "error": { "code": "last_voter", "message": "cannot remove the last voter" } })),
                        )
                    }),
                ),
        )
        .await;
        let admin = HttpAdmin::default();
        let view = admin.cluster(&server.to_string()).await.expect("view");
        assert!(view.is_leader());
        assert_eq!(view.members[1].matched, None);
        let err = admin.change(&server.to_string(), &Change::Remove { id: 1 }).await.expect_err("refused");
        assert!(matches!(err, AdminError::Refused { status: 409, ref code, .. } if code == "last_voter"), "{err}");
        let err = admin.cluster("127.0.0.1:1").await.expect_err("nothing listens on port 1");
        assert!(matches!(err, AdminError::Unreachable { .. }));
    }
}
