//! A fake Kubernetes API server that answers TokenReviews, over TLS on loopback, for the suites
//! of `addauth k8s` (the server's and the sidecar's). It knows a few opaque tokens by name, takes
//! a JWT-shaped token ([`jwt`]) for the user in its `sub` claim, and refuses everything else; it
//! checks no signature and no expiry (the server's own `exp` check is what the suites test). Only
//! a review authorized by [`SERVERS_TOKEN`] is answered. Every review asked is recorded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::pki::{Pki, Usage};

/// The bearer token the reviewing servers must send (write it to their token file).
pub const SERVERS_TOKEN: &str = "the-servers-own-token";

/// What the fake API server was asked: the Authorization header and the review's spec.
pub type Asked = Arc<Mutex<Vec<(String, Value)>>>;

/// A running fake API server; it stops with the runtime.
pub struct FakeApi {
    /// Where it listens (`https://<addr>`).
    pub addr: SocketAddr,
    /// Its CA certificate (PEM file).
    pub ca: PathBuf,
    /// The reviews it was asked, in order.
    pub asked: Asked,
}

impl FakeApi {
    /// Starts one, with its CA and certificate under `dir`.
    pub async fn start(dir: &Path) -> Result<FakeApi, String> {
        let pki = Pki::new(&dir.join("api-ca"), "kube-apiserver-ca")?;
        let cert = pki.issue("apiserver", "/CN=kube-apiserver", Usage::Server, &["IP:127.0.0.1".into()])?;
        paddock_tls::install_default_provider();
        let files = paddock_tls::TlsFiles { cert: cert.cert.clone(), key: cert.key.clone(), ca: None };
        let tls = paddock_tls::Reloading::load("api", files, paddock_tls::Role::Server(paddock_tls::ClientAuth::None))
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let asked: Asked = Arc::default();
        let state = asked.clone();
        let router = Router::new().route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(move |headers, body| review(state.clone(), headers, body)),
        );
        let listener = paddock_tls::listener::TlsListener::new(listener, tls).map_err(|e| e.to_string())?;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(FakeApi { addr, ca: pki.ca(), asked })
    }

    /// The reviews asked so far.
    pub fn asked(&self) -> Vec<(String, Value)> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The user each known opaque token belongs to.
fn user_of(token: &str) -> Option<String> {
    let user = match token {
        "shop-cart" => "system:serviceaccount:shop:cart",
        "shop-web" => "system:serviceaccount:shop:web",
        "other-app" => "system:serviceaccount:other:app",
        "alice" => "alice",
        _ => return jwt_subject(token),
    };
    Some(user.to_owned())
}

/// A token shaped as the API server's (a JWT) for `user`, expiring at `exp` (Unix seconds). Its
/// signature is not one: only the fake API server, which knows no keys, judges it.
pub fn jwt(user: &str, exp: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"test"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"sub": user, "exp": exp, "aud": ["paddock"]}).to_string());
    format!("{header}.{claims}.c2lnbmF0dXJl")
}

/// The `sub` claim of a JWT-shaped token.
fn jwt_subject(token: &str) -> Option<String> {
    let claims = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    Some(serde_json::from_slice::<Value>(&claims).ok()?["sub"].as_str()?.to_owned())
}

async fn review(asked: Asked, headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    asked.lock().unwrap_or_else(|e| e.into_inner()).push((bearer.clone(), body["spec"].clone()));
    if bearer != format!("Bearer {SERVERS_TOKEN}") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"kind": "Status", "code": 401})));
    }
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    let status = match user_of(token) {
        // The API server answers with the audiences the token has of those asked for.
        Some(user) => json!({"authenticated": true, "user": {"username": user}, "audiences": ["paddock"]}),
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    (
        StatusCode::CREATED,
        Json(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})),
    )
}
