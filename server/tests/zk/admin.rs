//! The admin HTTP port: health, readiness, Prometheus metrics and the cluster view, read with a
//! minimal HTTP/1.1 client.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{eventually, Bounded, TestServer, PERSISTENT};

/// `GET path` → (status, body).
async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(server.admin_addr).bounded().await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.admin_addr);
    stream.write_all(request.as_bytes()).bounded().await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).bounded().await.expect("response");
    let response = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("header/body separator");
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    assert_eq!(get(&server, "/healthz").await.0, 200);
    assert_eq!(get(&server, "/readyz").await.0, 200);
    let (status, body) = get(&server, "/no-such-route").await;
    assert_eq!(status, 404);
    let error: serde_json::Value = serde_json::from_str(&body).expect("json error body");
    assert!(error["error"]["code"].is_string() && error["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/metered", b"", &PERSISTENT).bounded().await.expect("create");
    zk.get_data("/metered").bounded().await.expect("get");
    let (status, body) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    for name in ["paddock_requests_total", "paddock_znodes", "paddock_sessions", "paddock_raft_is_leader"] {
        assert!(body.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{body}");
    }
    let znodes: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("paddock_znodes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no paddock_znodes sample in:\n{body}"));
    assert_eq!(znodes, 5.0, "4 built-in znodes + /metered");
}

#[tokio::test]
async fn cluster_view_of_a_standalone_server() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let (stat, _) = zk.create("/written", b"", &PERSISTENT).bounded().await.expect("create");
    let (status, body) = get(&server, "/v1/cluster").await;
    assert_eq!(status, 200);
    let view: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(view["id"], 1, "{body}");
    assert_eq!(view["leader"], 1, "{body}");
    assert!(view["term"].as_u64().is_some_and(|t| t >= 1), "{body}");
    let members = view["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{body}");
    assert_eq!(members[0]["id"], 1);
    assert_eq!(members[0]["role"], "leader");
    // committed / applied come from Raft metrics, which trail the apply a client already saw
    // answered by a moment; they must catch up.
    let written = stat.czxid as u64;
    eventually("/v1/cluster to cover the write", || async {
        let (_, body) = get(&server, "/v1/cluster").await;
        let view: serde_json::Value = serde_json::from_str(&body).expect("json");
        view["committed"].as_u64().is_some_and(|c| c >= written)
            && view["applied"].as_u64().is_some_and(|a| a >= written)
    })
    .await;
}
