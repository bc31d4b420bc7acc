//! Kubernetes ServiceAccount tokens as identities: `addauth k8s <token>` is checked with a
//! TokenReview — here by a fake API server over TLS that knows a few tokens — and a
//! ServiceAccount's token gives the connection `k8s:ns:<namespace>` and
//! `k8s:sa:<namespace>:<name>`, which ACLs name; anything else fails the auth.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use paddock_testkit::pki::{Pki, Usage};
use paddock_tls::listener::TlsListener;
use paddock_tls::{ClientAuth, Reloading, Role, TlsFiles};
use serde_json::{json, Value};
use tempfile::TempDir;
use zookeeper_client::{Acl, Acls, AuthId, CreateMode, Error as ZkError, Permission};

use crate::harness::{Bounded, TestServer};

/// What the fake API server was asked: the Authorization header and the review's spec.
type Asked = Arc<Mutex<Vec<(String, Value)>>>;

/// The ServiceAccount each known token belongs to, or a user.
fn user_of(token: &str) -> Option<&'static str> {
    match token {
        "shop-cart" => Some("system:serviceaccount:shop:cart"),
        "shop-web" => Some("system:serviceaccount:shop:web"),
        "other-app" => Some("system:serviceaccount:other:app"),
        "alice" => Some("alice"),
        _ => None,
    }
}

async fn review(asked: Asked, headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    asked.lock().unwrap_or_else(|e| e.into_inner()).push((bearer.clone(), body["spec"].clone()));
    if bearer != "Bearer the-servers-own-token" {
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

/// A fake API server on loopback, its CA, and what it was asked.
async fn fake_api(dir: &TempDir) -> (std::net::SocketAddr, std::path::PathBuf, Asked) {
    let pki = Pki::new(&dir.path().join("api-ca"), "kube-apiserver-ca").expect("CA");
    let cert = pki.issue("apiserver", "/CN=kube-apiserver", Usage::Server, &["IP:127.0.0.1".into()]).expect("cert");
    paddock_tls::install_default_provider();
    let files = TlsFiles { cert: cert.cert.clone(), key: cert.key.clone(), ca: None };
    let tls = Reloading::load("api", files, Role::Server(ClientAuth::None)).expect("TLS");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let asked: Asked = Arc::default();
    let state = asked.clone();
    let router = Router::new().route(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        post(move |headers, body| review(state.clone(), headers, body)),
    );
    let listener = TlsListener::new(listener, tls).expect("TLS listener");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, pki.ca(), asked)
}

/// A server reviewing tokens with the API server at `api`.
async fn reviewing_server(api: std::net::SocketAddr, ca: &std::path::Path, token_file: &std::path::Path) -> TestServer {
    let url = format!("https://{api}");
    let (ca, token_file) = (ca.to_str().expect("utf-8"), token_file.to_str().expect("utf-8"));
    TestServer::start_with(&[
        "--k8s-token-review",
        "--k8s-api-url",
        &url,
        "--k8s-api-ca",
        ca,
        "--k8s-api-token-file",
        token_file,
    ])
    .await
}

#[tokio::test]
async fn service_account_tokens_become_k8s_ids_that_acls_name() {
    let dir = TempDir::new().expect("temp dir");
    let (api, ca, asked) = fake_api(&dir).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "the-servers-own-token\n").expect("token file");
    let server = reviewing_server(api, &ca, &token_file).await;

    let cart = server.client().await;
    cart.auth("k8s", b"shop-cart").bounded().await.expect("a ServiceAccount's token");
    let only_shop = [Acl::new(Permission::ALL, AuthId::new("k8s", "ns:shop"))];
    cart.create("/shop", b"orders", &CreateMode::Persistent.with_acls(Acls::new(&only_shop))).await.expect("create");
    // `auth` ACLs take both of the session's ids.
    cart.create("/shop/cart", b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.expect("creator ACL");
    let (acl, _) = cart.get_acl("/shop/cart").await.expect("getAcl");
    assert_eq!(
        acl,
        [
            Acl::new(Permission::ALL, AuthId::new("k8s", "ns:shop")),
            Acl::new(Permission::ALL, AuthId::new("k8s", "sa:shop:cart"))
        ]
    );

    // Another ServiceAccount of the namespace reads /shop; one of another namespace does not,
    // nor does a connection without a token.
    let web = server.client().await;
    web.auth("k8s", b"shop-web").bounded().await.expect("shop's other account");
    assert_eq!(web.get_data("/shop").await.expect("same namespace").0, b"orders");
    let other = server.client().await;
    other.auth("k8s", b"other-app").bounded().await.expect("another namespace's account");
    assert_eq!(other.get_data("/shop").await.err(), Some(ZkError::NoAuth));
    assert_eq!(other.set_data("/shop", b"mine", None).await.err(), Some(ZkError::NoAuth));
    let anonymous = server.client().await;
    assert_eq!(anonymous.get_data("/shop").await.err(), Some(ZkError::NoAuth));

    // An unknown token, and a person's token, fail the auth (the connection then ends).
    for token in [&b"forged"[..], b"alice", b""] {
        let client = server.client().await;
        assert_eq!(client.auth("k8s", token).bounded().await.err(), Some(ZkError::AuthFailed), "{token:?}");
    }

    // Each review carried the server's own token and this cluster's audience.
    let asked = asked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(asked.len(), 5, "the empty token is refused without asking: {asked:?}");
    for (bearer, spec) in &asked {
        assert_eq!(bearer, "Bearer the-servers-own-token");
        assert_eq!(spec["audiences"], json!(["paddock"]));
    }
}

#[tokio::test]
async fn without_token_reviews_or_an_api_server_the_k8s_scheme_fails() {
    let server = TestServer::start_with(&[]).await;
    let client = server.client().await;
    assert_eq!(client.auth("k8s", b"shop-cart").bounded().await.err(), Some(ZkError::AuthFailed));

    // An API server that does not answer: the auth fails, it does not hang.
    let dir = TempDir::new().expect("temp dir");
    let (_, ca, _) = fake_api(&dir).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "the-servers-own-token").expect("token file");
    let server = reviewing_server(closed, &ca, &token_file).await;
    let client = server.client().await;
    assert_eq!(client.auth("k8s", b"shop-cart").bounded().await.err(), Some(ZkError::AuthFailed));
}
