//! Bad input gets a 4xx with the JSON error body, and the sidecar keeps serving.

use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Bounded, Server, Sidecar, SidecarExt};

/// Method, URI, body, headers, expected status, expected error code.
type Case =
    (Method, &'static str, Option<serde_json::Value>, Vec<(&'static str, &'static str)>, StatusCode, &'static str);

#[tokio::test]
async fn malformed_requests_are_answered_4xx_with_an_error_body() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let s = Sidecar::start(&server, &cluster, "pod-a", &[]).await;

    let cases: Vec<Case> = vec![
        (Method::GET, "/v1/nope", None, vec![], StatusCode::NOT_FOUND, "no_route"),
        (Method::PATCH, "/v1/nodes/a", None, vec![], StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (Method::GET, "/v1/nodes/a//b", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::GET, "/v1/nodes/a/../b", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::GET, "/v1/nodes/a/", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::GET, "/v1/nodes/a%00b", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::GET, "/v1/nodes/a%FF", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::GET, "/v1/nodes/a?wacth", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::GET, "/v1/nodes/a?watch=maybe", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::GET, "/v1/nodes/a?recursive", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::PUT, "/v1/nodes/a", Some(json!({"data": 5})), vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (
            Method::PUT,
            "/v1/nodes/a",
            Some(json!({"data": "x", "data_b64": "eA=="})),
            vec![],
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (
            Method::PUT,
            "/v1/nodes/a",
            Some(json!({"data_b64": "not base64!"})),
            vec![],
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (
            Method::PUT,
            "/v1/nodes/a",
            Some(json!({"data": "x"})),
            vec![("if-match", "soon")],
            StatusCode::BAD_REQUEST,
            "bad_input",
        ),
        (Method::POST, "/v1/nodes/a", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::POST, "/v1/nodes/a?sequential&prefix=x/y", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::DELETE, "/v1/nodes", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::DELETE, "/v1/nodes/missing", None, vec![], StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, "/v1/locks/..", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::POST, "/v1/locks/x?wait", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::POST, "/v1/locks/x", Some(json!({"other": 1})), vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::POST, "/v1/elections/e/campaign", Some(json!([1, 2])), vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::PUT, "/v1/groups/g/members/a%2Fb", None, vec![], StatusCode::BAD_REQUEST, "bad_input"),
        (Method::DELETE, "/v1/groups/g/members/nobody", None, vec![], StatusCode::NOT_FOUND, "not_found"),
    ];
    for (method, uri, body, headers, status, code) in cases {
        let reply = s.call_with(method.clone(), uri, body, &headers).await;
        assert_eq!(reply.status, status, "{method} {uri}: {:?}", reply.body);
        assert_eq!(reply.body["error"]["code"], json!(code), "{method} {uri}: {:?}", reply.body);
        assert!(reply.body["error"]["message"].is_string(), "{method} {uri}: {:?}", reply.body);
    }

    // Not JSON at all, and far too large.
    let garbage = s.call_with(Method::PUT, "/v1/nodes/a", None, &[]).await;
    assert_eq!(garbage.status, StatusCode::CREATED, "an empty body is empty data");
    let raw =
        raw_request(&s, b"PUT /v1/nodes/a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\n{nope")
            .await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("\"bad_input\""), "{raw}");
    let huge = format!(r#"{{"data": "{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let mut request =
        format!("PUT /v1/nodes/a HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", huge.len())
            .into_bytes();
    request.extend_from_slice(huge.as_bytes());
    let raw = raw_request(&s, &request).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{}", &raw[..raw.len().min(200)]);
    assert!(raw.contains("\"too_large\""), "{raw}");
    let just_over = json!({"data": "x".repeat(1_000_001)});
    let reply = s.call(Method::PUT, "/v1/nodes/a", Some(just_over)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Not HTTP at all: the connection is refused politely and the sidecar lives on.
    let raw = raw_request(&s, b"\x00\x01\x02 definitely not http\r\n\r\n").await;
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 4"), "{raw}");
    s.ready().await;
    let read = s.call(Method::GET, "/v1/nodes/a", None).await;
    assert_eq!(read.status, StatusCode::OK);
}

async fn raw_request(s: &Sidecar, request: &[u8]) -> String {
    let mut stream = tokio::net::UnixStream::connect(&s.socket).bounded().await.expect("connect");
    // The server may answer (and close) before it read a too-large body.
    let _ = stream.write_all(request).bounded().await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).bounded().await;
    String::from_utf8_lossy(&answer).into_owned()
}
