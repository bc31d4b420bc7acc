//! Leases: znodes bound to a lease live while it is kept alive and go when it expires or is
//! revoked.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::harness::{eventually, expect, Server, Sidecar, SidecarExt};

#[tokio::test]
async fn znodes_live_as_long_as_their_lease() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let s = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let other = Sidecar::start(&server, &cluster, "pod-b", &[]).await;

    let bad = s.call(Method::POST, "/v1/leases", Some(json!({"ttl_ms": 1}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let granted = s.call(Method::POST, "/v1/leases", Some(json!({"ttl_ms": 600}))).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{:?}", granted.body);
    let id = granted.body["id"].as_str().expect("lease id").to_owned();

    let node = s.call(Method::PUT, &format!("/v1/nodes/svc/web-0?lease={id}"), Some(json!({"data": "10.0.0.7"}))).await;
    assert_eq!(node.status, StatusCode::CREATED, "{:?}", node.body);
    assert_eq!(node.body["stat"]["ephemeral"], json!(true));
    let seq = s.call(Method::POST, &format!("/v1/nodes/svc?sequential&prefix=slot-&lease={id}"), None).await;
    assert_eq!(seq.status, StatusCode::CREATED);
    let described = s.call(Method::GET, &format!("/v1/leases/{id}"), None).await;
    assert_eq!(described.body["nodes"], json!(["/svc/web-0", "/svc/slot-0000000001"]));

    // Kept alive for twice its TTL, the lease and its znodes stay.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let kept = s.call(Method::POST, &format!("/v1/leases/{id}/keepalive"), None).await;
        assert_eq!(kept.status, StatusCode::OK, "{:?}", kept.body);
    }
    let mut watch = other.stream(Method::GET, "/v1/nodes/svc/web-0?watch", None).await;
    assert_eq!(expect(&mut watch, "snapshot").await["node"]["data"], json!("10.0.0.7"));

    // Left alone, it expires and takes its znodes.
    expect(&mut watch, "deleted").await;
    let gone = s.call(Method::POST, &format!("/v1/leases/{id}/keepalive"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    eventually("every znode of the lease deleted", || async {
        other.call(Method::GET, "/v1/nodes/svc?children", None).await.body["children"] == json!([])
    })
    .await;
    let refused = s.call(Method::PUT, &format!("/v1/nodes/svc/late?lease={id}"), None).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);

    // Revoked, its znodes go at once.
    let granted = s.call(Method::POST, "/v1/leases", Some(json!({"ttl_ms": 60000}))).await;
    let id = granted.body["id"].as_str().expect("lease id").to_owned();
    s.call(Method::PUT, &format!("/v1/nodes/svc/web-1?lease={id}"), None).await;
    let revoked = s.call(Method::DELETE, &format!("/v1/leases/{id}"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let missing = other.call(Method::GET, "/v1/nodes/svc/web-1", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let again = s.call(Method::DELETE, &format!("/v1/leases/{id}"), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}
