//! Session states reach the app: `suspended` while the cluster is unreachable (and `/readyz`
//! says so), `reconnected` when the same session is back, `lost` when it expired, after which
//! the sidecar makes a new session and the app can take its locks again.

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::harness::{eventually, expect, next, Proxy, Server, Sidecar, SidecarExt};

async fn readyz(s: &Sidecar) -> (StatusCode, serde_json::Value) {
    match s.api.get("/readyz").await {
        Ok(reply) => (reply.status, reply.body),
        Err(e) => panic!("readyz: {e}"),
    }
}

#[tokio::test]
async fn suspended_then_reconnected_keeps_the_lock() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.client_addr).await;
    let s = Sidecar::start(&server, &proxy.addr.to_string(), "pod-a", &["--session-timeout-ms", "2000"]).await;
    let mut lock = s.stream(Method::POST, "/v1/locks/l", None).await;
    expect(&mut lock, "waiting").await;
    expect(&mut lock, "acquired").await;

    proxy.cut();
    expect(&mut lock, "suspended").await;
    let (status, body) = readyz(&s).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["session"], json!("suspended"));
    let refused = s.call(Method::GET, "/v1/nodes/", None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.body["error"]["code"], json!("no_session"));

    proxy.restore();
    expect(&mut lock, "reconnected").await;
    s.ready().await;
    let try_again = s.call(Method::POST, "/v1/locks/l?try", None).await;
    assert_eq!(try_again.status, StatusCode::CONFLICT, "the lock is still held by the first stream");
}

#[tokio::test]
async fn an_expired_session_is_lost_and_replaced() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.client_addr).await;
    let s = Sidecar::start(&server, &proxy.addr.to_string(), "pod-a", &["--session-timeout-ms", "1000", "--join", "g"])
        .await;
    let mut lock = s.stream(Method::POST, "/v1/locks/l", None).await;
    expect(&mut lock, "waiting").await;
    expect(&mut lock, "acquired").await;

    proxy.cut();
    expect(&mut lock, "suspended").await;
    // Cut for longer than the session timeout: the stream reports the loss and ends.
    let lost = expect(&mut lock, "lost").await;
    assert_eq!(lost["reason"], json!("session expired"));
    assert!(next(&mut lock).await.is_none());
    let (status, _) = readyz(&s).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    s.ready().await;
    let mut again = s.stream(Method::POST, "/v1/locks/l", None).await;
    expect(&mut again, "waiting").await;
    expect(&mut again, "acquired").await;
    // The --join membership is made again on the new session.
    eventually("rejoined group g", || async {
        let reply = s.call(Method::GET, "/v1/groups/g", None).await;
        reply.body["members"].as_array().is_some_and(|m| m.len() == 1)
    })
    .await;
    let metrics = s.api.get("/metrics").await.expect("metrics");
    assert!(metrics.body.as_str().is_some_and(|m| m.contains("paddock_sidecar_sessions_lost_total 1")));
}

#[tokio::test]
async fn health_endpoints_answer_on_the_tcp_port() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let s = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let bound = std::time::Duration::from_secs(5);
    let base = format!("http://{}", s.http);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let status = paddock_sidecar::client::probe(&format!("{base}{path}"), bound).await.expect(path);
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let status = paddock_sidecar::client::probe(&format!("{base}/v1/nodes/"), bound).await.expect("api");
    assert_eq!(status, StatusCode::NOT_FOUND, "the app API is only on the socket");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&s.socket).expect("socket").permissions());
    assert_eq!(mode & 0o777, 0o660);
}

#[tokio::test]
async fn watch_streams_keep_reporting_after_a_reconnect() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.client_addr).await;
    let cluster = server.client_addr.to_string();
    let s = Sidecar::start(&server, &proxy.addr.to_string(), "pod-a", &["--session-timeout-ms", "2000"]).await;
    let other = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    let mut node = s.stream(Method::GET, "/v1/nodes/cfg?watch", None).await;
    let mut tree = s.stream(Method::GET, "/v1/nodes/cfg?watch&recursive", None).await;
    let mut group = s.stream(Method::GET, "/v1/groups/g?watch", None).await;
    let mut election = s.stream(Method::GET, "/v1/elections/e?watch", None).await;
    for stream in [&mut node, &mut tree, &mut group, &mut election] {
        expect(stream, "snapshot").await;
    }

    proxy.cut();
    for stream in [&mut node, &mut tree, &mut group, &mut election] {
        expect(stream, "suspended").await;
    }
    proxy.restore();
    for stream in [&mut node, &mut tree] {
        expect(stream, "reconnected").await;
        expect(stream, "snapshot").await;
    }
    for stream in [&mut group, &mut election] {
        expect(stream, "reconnected").await;
    }

    // The watches are in place on the new connection: changes made after it are reported.
    other.call(Method::PUT, "/v1/nodes/cfg", Some(json!({"data": "v1"}))).await;
    assert_eq!(expect(&mut node, "created").await["path"], json!("/cfg"));
    assert_eq!(expect(&mut tree, "created").await["path"], json!("/cfg"));
    other.call(Method::PUT, "/v1/groups/g/members/m", None).await;
    assert_eq!(expect(&mut group, "joined").await["member"]["id"], json!("m"));
    let _campaign = other.stream(Method::POST, "/v1/elections/e/campaign", None).await;
    assert_eq!(expect(&mut election, "leader").await["leader"]["pod"], json!("pod-b"));
}

#[tokio::test]
async fn a_release_while_the_waiter_is_disconnected_is_not_missed() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.client_addr).await;
    let cluster = server.client_addr.to_string();
    let waiting_side =
        Sidecar::start(&server, &proxy.addr.to_string(), "pod-a", &["--session-timeout-ms", "2000"]).await;
    let holding_side = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    let mut holder = holding_side.stream(Method::POST, "/v1/locks/l", None).await;
    expect(&mut holder, "waiting").await;
    expect(&mut holder, "acquired").await;
    let mut waiter = waiting_side.stream(Method::POST, "/v1/locks/l", None).await;
    expect(&mut waiter, "waiting").await;

    proxy.cut();
    expect(&mut waiter, "suspended").await;
    // The holder lets go while the waiter cannot hear it; its znode is deleted before the
    // waiter is back.
    drop(holder);
    eventually("the holder's lock znode deleted", || async {
        let reply = holding_side.call(Method::GET, "/v1/nodes/_paddock/locks/l?children", None).await;
        reply.body["children"].as_array().is_some_and(|c| c.len() == 1)
    })
    .await;
    proxy.restore();
    expect(&mut waiter, "reconnected").await;
    expect(&mut waiter, "acquired").await;
}
