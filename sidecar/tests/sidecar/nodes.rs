//! Znodes: create, read, versions, sequential children, listing, binary data, delete, watches.

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::harness::{expect, Server, Sidecar, SidecarExt};

#[tokio::test]
async fn znodes_are_written_read_versioned_and_deleted() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let s = Sidecar::start(&server, &cluster, "pod-a", &[]).await;

    let created = s.call(Method::PUT, "/v1/nodes/config/db/url", Some(json!({"data": "pg://a"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["path"], json!("/config/db/url"));
    assert_eq!(created.body["stat"]["version"], json!(0));
    let read = s.call(Method::GET, "/v1/nodes/config/db/url", None).await;
    assert_eq!(read.body["data"], json!("pg://a"));
    assert_eq!(read.body["stat"]["ephemeral"], json!(false));

    let stale =
        s.call_with(Method::PUT, "/v1/nodes/config/db/url", Some(json!({"data": "x"})), &[("if-match", "3")]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["error"]["code"], json!("bad_version"));
    let set = s
        .call_with(Method::PUT, "/v1/nodes/config/db/url", Some(json!({"data": "pg://b"})), &[("if-match", "\"0\"")])
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.body["stat"]["version"], json!(1));
    let exists = s.call_with(Method::PUT, "/v1/nodes/config/db/url", None, &[("if-none-match", "*")]).await;
    assert_eq!(exists.status, StatusCode::CONFLICT);

    let binary = s.call(Method::PUT, "/v1/nodes/blob", Some(json!({"data_b64": "/wA="}))).await;
    assert_eq!(binary.status, StatusCode::CREATED);
    let read = s.call(Method::GET, "/v1/nodes/blob", None).await;
    assert_eq!(read.body["data"], json!(null));
    assert_eq!(read.body["data_b64"], json!("/wA="));

    let first = s.call(Method::POST, "/v1/nodes/jobs?sequential&prefix=job-", Some(json!({"data": "1"}))).await;
    let second = s.call(Method::POST, "/v1/nodes/jobs?sequential&prefix=job-&ephemeral", None).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["path"], json!("/jobs/job-0000000000"));
    assert_eq!(second.body["path"], json!("/jobs/job-0000000001"));
    assert_eq!(second.body["stat"]["ephemeral"], json!(true));
    let listed = s.call(Method::GET, "/v1/nodes/jobs?children", None).await;
    assert_eq!(listed.body["children"], json!(["job-0000000000", "job-0000000001"]));

    let not_empty = s.call(Method::DELETE, "/v1/nodes/config", None).await;
    assert_eq!(not_empty.status, StatusCode::CONFLICT);
    let wrong = s.call_with(Method::DELETE, "/v1/nodes/config/db/url", None, &[("if-match", "0")]).await;
    assert_eq!(wrong.status, StatusCode::PRECONDITION_FAILED);
    let deleted = s.call_with(Method::DELETE, "/v1/nodes/config/db/url", None, &[("if-match", "1")]).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let missing = s.call(Method::GET, "/v1/nodes/config/db/url", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"]["code"], json!("not_found"));
}

#[tokio::test]
async fn watches_stream_a_snapshot_then_events_with_zxids() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    a.call(Method::PUT, "/v1/nodes/app/flag", Some(json!({"data": "off"}))).await;

    let mut node = b.stream(Method::GET, "/v1/nodes/app/flag?watch", None).await;
    let snapshot = expect(&mut node, "snapshot").await;
    assert_eq!(snapshot["node"]["data"], json!("off"));
    let mut tree = b.stream(Method::GET, "/v1/nodes/app?watch&recursive", None).await;
    let snapshot = expect(&mut tree, "snapshot").await;
    let paths: Vec<_> = snapshot["nodes"].as_array().expect("nodes").iter().map(|n| n["path"].clone()).collect();
    assert_eq!(paths, vec![json!("/app"), json!("/app/flag")]);

    let set = a.call(Method::PUT, "/v1/nodes/app/flag", Some(json!({"data": "on"}))).await;
    let mzxid = set.body["stat"]["mzxid"].clone();
    let changed = expect(&mut node, "changed").await;
    assert_eq!(changed["zxid"], mzxid);
    assert_eq!(changed["node"]["data"], json!("on"));
    let changed = expect(&mut tree, "changed").await;
    assert_eq!(changed["path"], json!("/app/flag"));

    let created = a.call(Method::PUT, "/v1/nodes/app/other", Some(json!({"data": "x"}))).await;
    let created_event = expect(&mut tree, "created").await;
    assert_eq!(created_event["path"], json!("/app/other"));
    assert_eq!(created_event["zxid"], created.body["stat"]["czxid"]);

    a.call(Method::DELETE, "/v1/nodes/app/flag", None).await;
    let deleted = expect(&mut node, "deleted").await;
    assert_eq!(deleted["path"], json!("/app/flag"));
    assert_eq!(expect(&mut tree, "deleted").await["path"], json!("/app/flag"));
}
