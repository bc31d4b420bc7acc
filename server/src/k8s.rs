//! Kubernetes ServiceAccount tokens as ZooKeeper identities (docs/security.md, "Kubernetes
//! identities"): a client sends `addauth k8s <token>` (the pod's projected token, with this
//! cluster's audience); the server asks the API server's TokenReview whether it is valid for
//! that audience, and a ServiceAccount's token gives the connection the ids `k8s:ns:<namespace>`
//! and `k8s:sa:<namespace>:<name>`, which ACL entries name. Anything else — a user's token, one
//! for another audience, an unknown one — fails the auth, and the connection is served no
//! more, as after any failed auth.
//!
//! Two answers keep the connection, with no id: `NoAuth` for a token whose own `exp` claim has
//! passed (the API server is not asked), and `OperationTimeout` when the API server could not be
//! asked. A client that resumes its session on another connection replays every token it
//! authenticated with, in order — a sidecar's first one expired long ago, its current one comes
//! after — and ZooKeeper clients take `AuthFailed` as the end of the session: neither an old
//! token nor an API server's outage may end a session (and every lock it holds). The `exp` claim
//! is read without checking the signature; it only ever refuses.
//!
//! The review is a `POST /apis/authentication.k8s.io/v1/tokenreviews` over TLS (the API
//! server's CA), authorized by the server's own ServiceAccount token, read again for every
//! review (kubelet renews it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

use crate::proto::Id;
use crate::tree::k8s_id_is_valid;

/// The ACL scheme of Kubernetes identities.
pub const SCHEME: &str = "k8s";

/// How long one review may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to ask.
#[derive(Clone, Debug)]
pub struct ReviewConfig {
    /// `https://host:port` of the API server.
    pub api_url: String,
    /// The API server's CA (PEM).
    pub ca: PathBuf,
    /// The server's own token, sent as the bearer of each review.
    pub token_file: PathBuf,
    /// The audience a client's token must carry.
    pub audience: String,
}

/// Asks the API server about tokens (see the module docs).
pub struct TokenReviewer {
    config: ReviewConfig,
    host: String,
    port: u16,
    tls: TlsConnector,
}

/// Why a token gives no identity.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The flags or files do not make a reviewer.
    #[error("{0}")]
    Setup(String),
    /// The API server could not be asked.
    #[error("token review failed: {0}")]
    Unreachable(String),
    /// The API server said no, or said something else than a ServiceAccount.
    #[error("token refused: {0}")]
    Refused(String),
    /// The token's own `exp` claim has passed (see the module docs).
    #[error("the token expired")]
    Expired,
}

impl TokenReviewer {
    /// A reviewer for `config`: reads the CA now.
    pub fn new(config: ReviewConfig) -> Result<Arc<TokenReviewer>, ReviewError> {
        let setup = |what: String| ReviewError::Setup(what);
        let rest = config
            .api_url
            .strip_prefix("https://")
            .ok_or_else(|| setup(format!("--k8s-api-url {} is not https://host:port", config.api_url)))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                (host, port.parse().map_err(|_| setup(format!("--k8s-api-url: bad port in {}", config.api_url)))?)
            }
            None => (authority, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let pem =
            std::fs::read(&config.ca).map_err(|e| setup(format!("failed to read {}: {e}", config.ca.display())))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| setup(format!("{}: {e}", config.ca.display())))?;
            roots.add(cert).map_err(|e| setup(format!("{}: {e}", config.ca.display())))?;
        }
        if roots.is_empty() {
            return Err(setup(format!("{}: no certificate", config.ca.display())));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(TokenReviewer { config, host, port, tls: TlsConnector::from(Arc::new(tls)) }))
    }

    /// The identities `token` proves.
    pub async fn review(&self, token: &[u8]) -> Result<Vec<Id>, ReviewError> {
        let token = std::str::from_utf8(token).map_err(|_| ReviewError::Refused("not text".to_owned()))?.trim();
        if token.is_empty() {
            return Err(ReviewError::Refused("empty token".to_owned()));
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if expiry(token).is_some_and(|exp| exp <= now) {
            return Err(ReviewError::Expired);
        }
        let answer = tokio::time::timeout(REVIEW_TIMEOUT, self.ask(token))
            .await
            .map_err(|_| ReviewError::Unreachable(format!("no answer in {REVIEW_TIMEOUT:?}")))??;
        identities(&answer, &self.config.audience)
    }

    async fn ask(&self, token: &str) -> Result<Value, ReviewError> {
        let unreachable = |e: String| ReviewError::Unreachable(e);
        let bearer = std::fs::read_to_string(&self.config.token_file)
            .map_err(|e| unreachable(format!("failed to read {}: {e}", self.config.token_file.display())))?;
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": { "token": token, "audiences": [self.config.audience] },
        });
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let name = ServerName::try_from(self.host.clone()).map_err(|e| unreachable(e.to_string()))?;
        let stream = self.tls.connect(name, stream).await.map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let request = http::Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
            .header(http::header::HOST, format!("{}:{}", self.host, self.port))
            .header(http::header::AUTHORIZATION, format!("Bearer {}", bearer.trim()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(unreachable(format!("the API server answered {status}: {}", text.trim())));
        }
        serde_json::from_slice(&bytes).map_err(|e| unreachable(format!("not a TokenReview: {e}")))
    }
}

/// The `exp` claim of a JWT-shaped token, unverified; `None` for anything else.
pub fn expiry(token: &str) -> Option<u64> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    claims["exp"].as_u64()
}

/// The ids a TokenReview's answer grants: a ServiceAccount's, for `audience`, or an error.
pub fn identities(review: &Value, audience: &str) -> Result<Vec<Id>, ReviewError> {
    let refused = |why: &str| ReviewError::Refused(why.to_owned());
    let status = &review["status"];
    if status["authenticated"] != json!(true) {
        let error = status["error"].as_str().unwrap_or("not authenticated");
        return Err(refused(error));
    }
    // An API server that could not check the audience leaves it out; one that did lists it.
    let audiences = status["audiences"].as_array();
    if !audiences.is_some_and(|list| list.iter().any(|a| a.as_str() == Some(audience))) {
        return Err(refused("the token is not for this audience"));
    }
    let username = status["user"]["username"].as_str().unwrap_or_default();
    let Some((namespace, name)) = username.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':'))
    else {
        return Err(refused("not a ServiceAccount's token"));
    };
    if !k8s_id_is_valid(&format!("sa:{namespace}:{name}")) {
        return Err(refused("a malformed ServiceAccount name"));
    }
    Ok(vec![Id::new(SCHEME, format!("ns:{namespace}")), Id::new(SCHEME, format!("sa:{namespace}:{name}"))])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(status: Value) -> Value {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
    }

    #[test]
    fn a_service_accounts_token_for_the_audience_gives_its_namespace_and_name() {
        let answer = review(json!({
            "authenticated": true,
            "user": {"username": "system:serviceaccount:shop:cart", "groups": ["system:serviceaccounts"]},
            "audiences": ["paddock"],
        }));
        let ids = identities(&answer, "paddock").expect("identities");
        assert_eq!(ids, [Id::new("k8s", "ns:shop"), Id::new("k8s", "sa:shop:cart")]);
        assert!(identities(&answer, "other").is_err(), "another audience");
    }

    #[test]
    fn the_expiry_is_read_from_a_jwt_and_from_nothing_else() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let claims = URL_SAFE_NO_PAD.encode(br#"{"exp":1700000000,"sub":"x"}"#);
        assert_eq!(expiry(&format!("e30.{claims}.sig")), Some(1_700_000_000));
        assert_eq!(expiry("opaque-token"), None);
        assert_eq!(expiry("a.b.c"), None, "claims that are not base64 JSON");
        assert_eq!(expiry(&format!("e30.{claims}.sig.extra")), None);
        let no_exp = URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#);
        assert_eq!(expiry(&format!("e30.{no_exp}.sig")), None);
    }

    #[test]
    fn everything_else_is_refused() {
        let no = review(json!({"authenticated": false, "error": "token expired"}));
        assert!(matches!(identities(&no, "paddock"), Err(ReviewError::Refused(e)) if e == "token expired"));
        let user = review(json!({"authenticated": true, "user": {"username": "alice"}, "audiences": ["paddock"]}));
        assert!(identities(&user, "paddock").is_err(), "a user, not a ServiceAccount");
        let unchecked = review(json!({"authenticated": true, "user": {"username": "system:serviceaccount:a:b"}}));
        assert!(identities(&unchecked, "paddock").is_err(), "no audience checked");
        assert!(identities(&json!({}), "paddock").is_err());
    }
}
