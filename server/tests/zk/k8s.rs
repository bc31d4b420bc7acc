//! Kubernetes ServiceAccount tokens as identities: `addauth k8s <token>` is checked with a
//! TokenReview — here by a fake API server over TLS that knows a few tokens — and a
//! ServiceAccount's token gives the connection `k8s:ns:<namespace>` and
//! `k8s:sa:<namespace>:<name>`, which ACLs name; anything else fails the auth.

use paddock_testkit::token_review::{jwt, FakeApi, SERVERS_TOKEN};
use serde_json::json;
use tempfile::TempDir;
use zookeeper_client::{Acl, Acls, AuthId, CreateMode, Error as ZkError, Permission};

use crate::harness::{Bounded, TestServer};

async fn fake_api(dir: &TempDir) -> FakeApi {
    FakeApi::start(dir.path()).await.expect("fake API server")
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
        "--max-session-timeout-ms",
        "30000",
    ])
    .await
}

#[tokio::test]
async fn service_account_tokens_become_k8s_ids_that_acls_name() {
    let dir = TempDir::new().expect("temp dir");
    let api = fake_api(&dir).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{SERVERS_TOKEN}\n")).expect("token file");
    let server = reviewing_server(api.addr, &api.ca, &token_file).await;

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
    let asked = api.asked();
    assert_eq!(asked.len(), 5, "the empty token is refused without asking: {asked:?}");
    for (bearer, spec) in &asked {
        assert_eq!(bearer, &format!("Bearer {SERVERS_TOKEN}"));
        assert_eq!(spec["audiences"], json!(["paddock"]));
    }
}

#[tokio::test]
async fn without_token_reviews_or_an_api_server_the_k8s_scheme_fails() {
    let server = TestServer::start_with(&[]).await;
    let client = server.client().await;
    assert_eq!(client.auth("k8s", b"shop-cart").bounded().await.err(), Some(ZkError::AuthFailed));

    // An API server that does not answer: the auth is not given (OperationTimeout, and the
    // connection is served on: an outage of the API server ends no session), and it does not hang.
    let dir = TempDir::new().expect("temp dir");
    let api = fake_api(&dir).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, SERVERS_TOKEN).expect("token file");
    let server = reviewing_server(closed, &api.ca, &token_file).await;
    let client = server.client().await;
    assert_eq!(
        client.auth("k8s", b"shop-cart").bounded().await.err(),
        Some(ZkError::UnexpectedErrorCode(-7)),
        "OperationTimeout"
    );
    client
        .create("/still-served", b"", &CreateMode::Persistent.with_acls(Acls::anyone_all()))
        .await
        .expect("served on");
}

#[tokio::test]
async fn an_expired_token_is_answered_no_auth_and_the_session_lives_on_with_its_newer_token() {
    let dir = TempDir::new().expect("temp dir");
    let api = fake_api(&dir).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, SERVERS_TOKEN).expect("token file");
    let server = reviewing_server(api.addr, &api.ca, &token_file).await;
    // Clients reach the server through a proxy the test cuts to make them reconnect.
    let proxy = paddock_testkit::Proxy::start(server.client_addr).await;
    let now = crate::harness::now_ms() / 1000;
    let expired = jwt("system:serviceaccount:shop:cart", now - 60);
    let current = jwt("system:serviceaccount:shop:cart", now + 3600);

    // The session starts with a token that has since expired (as a sidecar's first token is, when
    // its client replays it on a reconnect an hour later): the auth is refused without asking the
    // API server, and the connection is served on.
    let connector = zookeeper_client::Client::connector()
        .with_session_timeout(std::time::Duration::from_secs(20))
        .with_auth("k8s", expired.as_bytes());
    let client = connector.connect(&proxy.addr.to_string()).bounded().await.expect("connect");
    assert_eq!(client.auth("k8s", expired.as_bytes()).bounded().await.err(), Some(ZkError::NoAuth));
    let only_shop = [Acl::new(Permission::ALL, AuthId::new("k8s", "ns:shop"))];
    let protected = CreateMode::Persistent.with_acls(Acls::new(&only_shop));
    assert_eq!(client.create("/shop", b"", &protected).await.err(), None, "create needs no id");
    assert_eq!(client.get_data("/shop").await.err(), Some(ZkError::NoAuth), "no id from an expired token");

    // Its current token gives the ids; after a reconnect the client replays both, the expired one
    // first, and the session keeps the ids.
    client.auth("k8s", current.as_bytes()).bounded().await.expect("the current token");
    assert!(client.get_data("/shop").await.is_ok());
    let mut states = client.state_watcher();
    proxy.cut();
    assert_eq!(states.changed().bounded().await, zookeeper_client::SessionState::Disconnected);
    proxy.restore();
    let read = async {
        loop {
            match client.get_data("/shop").await {
                Err(ZkError::ConnectionLoss) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                other => break other,
            }
        }
    };
    assert!(read.bounded().await.is_ok(), "the resumed session reads with its current token's ids");
    let asked = api.asked();
    assert!(asked.iter().all(|(_, spec)| spec["token"] != json!(expired)), "an expired token is not sent on");
}
