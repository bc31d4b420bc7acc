//! The sidecar with Kubernetes identities (`--k8s-token-file`): it authenticates its session with
//! the pod's ServiceAccount token, every znode it creates carries `k8s:ns:<namespace>` alone, a
//! renewed token is sent on the live connection, and an API server that cannot be asked when the
//! session reconnects costs the app a moment of refusals, never the session and its lock.

use std::path::Path;

use hyper::{Method, StatusCode};
use paddock_testkit::token_review::{jwt, FakeApi, SERVERS_TOKEN};
use serde_json::json;
use tempfile::TempDir;
use zookeeper_client::{Acl, AuthId, Client, Error as ZkError, Permission};

use crate::harness::{expect, wait_for, Bounded, Proxy, Server, Sidecar, SidecarExt};

/// The token of the sidecar's pod (namespace `test`, the harness's) valid for `secs` more.
fn token(secs: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    jwt("system:serviceaccount:test:app", i64::try_from(now).expect("time") + secs)
}

/// Replaces the token file by a rename, as kubelet renews a projected token.
fn renew(file: &Path, token: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, token).expect("write token");
    std::fs::rename(&next, file).expect("rename token");
}

async fn metric(sidecar: &Sidecar, name: &str) -> Option<f64> {
    let metrics = paddock_testkit::http(sidecar.http, "GET", "/metrics", None).await.ok()?;
    paddock_testkit::http::metric(&metrics.body, name)
}

#[tokio::test]
async fn the_sidecars_znodes_are_its_namespaces_and_its_session_outlives_tokens_and_api_outages() {
    let dir = TempDir::new().expect("temp dir");
    let api = FakeApi::start(dir.path()).await.expect("fake API server");
    // The servers reach the API server through a proxy the test can cut.
    let api_proxy = Proxy::start(api.addr).await;
    let servers_token = dir.path().join("servers-token");
    std::fs::write(&servers_token, SERVERS_TOKEN).expect("token file");
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let server = Server::start_with(&[
        "--k8s-token-review",
        "--k8s-api-url",
        &format!("https://{}", api_proxy.addr),
        "--k8s-api-ca",
        &path(&api.ca),
        "--k8s-api-token-file",
        &path(&servers_token),
        "--max-session-timeout-ms",
        "20000",
    ])
    .await;
    let zk_proxy = Proxy::start(server.client_addr).await;
    let token_file = dir.path().join("token");
    renew(&token_file, &token(3600));
    let sidecar = Sidecar::start(
        &server,
        &zk_proxy.addr.to_string(),
        "pod-a",
        &["--k8s-token-file", &path(&token_file), "--tls-reload-ms", "100", "--session-timeout-ms", "20000"],
    )
    .await;

    let created = sidecar.call(Method::PUT, "/v1/nodes/config", Some(json!({"data": "secret"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let mut lock = sidecar.stream(Method::POST, "/v1/locks/l", None).await;
    expect(&mut lock, "waiting").await;
    expect(&mut lock, "acquired").await;

    // What the sidecar made is its namespace's alone: a client of another namespace, or with no
    // token, going around the sidecar to the client port reads and changes none of it.
    let only_test = [Acl::new(Permission::ALL, AuthId::new("k8s", "ns:test"))];
    let insider = Client::connect(&server.client_addr.to_string()).bounded().await.expect("connect");
    insider.auth("k8s", token(600).as_bytes()).bounded().await.expect("the namespace's token");
    assert_eq!(insider.get_acl("/test/config").await.expect("getAcl").0, only_test);
    assert_eq!(insider.get_acl("/test").await.expect("getAcl").0, only_test, "the namespace's root too");
    let outsider = Client::connect(&server.client_addr.to_string()).bounded().await.expect("connect");
    assert_eq!(outsider.get_acl("/test/config").await.err(), Some(ZkError::NoAuth));
    assert_eq!(outsider.get_data("/test/config").await.err(), Some(ZkError::NoAuth));
    let other = Client::connect(&server.client_addr.to_string()).bounded().await.expect("connect");
    other.auth("k8s", b"other-app").bounded().await.expect("another namespace's token");
    assert_eq!(other.get_data("/test/config").await.err(), Some(ZkError::NoAuth));
    assert_eq!(other.set_data("/test/config", b"mine", None).await.err(), Some(ZkError::NoAuth));
    let locks = outsider.list_children("/test/_paddock/locks/l").await;
    assert!(matches!(locks, Err(ZkError::NoAuth)), "the lock's directory is closed too: {locks:?}");

    // Kubelet renews the token: the sidecar sends the new one on the live connection.
    let renewed = token(7200);
    renew(&token_file, &renewed);
    wait_for("the renewed token to be sent", || async {
        let sent = metric(&sidecar, r#"paddock_sidecar_token_auths_total{outcome="ok"}"#).await;
        (sent >= Some(1.0)).then_some(())
    })
    .await;
    assert!(api.asked().iter().any(|(_, spec)| spec["token"] == json!(renewed)), "reviewed by the API server");

    // The API server cannot be asked while the session reconnects: the replayed tokens give no
    // id, but the session and its lock live on, and the sidecar authenticates again once the API
    // server answers.
    api_proxy.cut();
    zk_proxy.cut();
    expect(&mut lock, "suspended").await;
    zk_proxy.restore();
    expect(&mut lock, "reconnected").await;
    wait_for("the sidecar to find its ids missing", || async {
        let tried = metric(&sidecar, r#"paddock_sidecar_token_auths_total{outcome="unchecked"}"#).await;
        (tried >= Some(1.0)).then_some(())
    })
    .await;
    api_proxy.restore();
    wait_for("the sidecar to read its node again", || async {
        let read = sidecar.call(Method::GET, "/v1/nodes/config", None).await;
        (read.status == StatusCode::OK).then_some(read)
    })
    .await;
    let try_again = sidecar.call(Method::POST, "/v1/locks/l?try", None).await;
    assert_eq!(try_again.status, StatusCode::CONFLICT, "the lock is still held");
    let lost = metric(&sidecar, "paddock_sidecar_sessions_lost_total").await;
    assert_eq!(lost, Some(0.0), "no session was lost:\n{}", sidecar.log());
}
