//! The app health probe: an unhealthy app loses its holds and memberships and gets no new holds;
//! a healthy one rejoins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode as AppStatus;
use axum::routing::get;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::harness::{eventually, expect, Server, Sidecar, SidecarExt};

/// A stand-in app whose `/health` answers 200 or 500 as `healthy` says.
async fn app(healthy: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("app address");
    let router = axum::Router::new().route(
        "/health",
        get(move || {
            let healthy = healthy.clone();
            async move {
                if healthy.load(Ordering::SeqCst) {
                    AppStatus::OK
                } else {
                    AppStatus::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

#[tokio::test]
async fn an_unhealthy_app_releases_and_leaves_then_rejoins() {
    let healthy = Arc::new(AtomicBool::new(true));
    let app_addr = app(healthy.clone()).await;
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let url = format!("http://{app_addr}/health");
    let flags =
        ["--app-health-url", &url, "--app-health-interval-ms", "50", "--app-health-failures", "2", "--join", "web"];
    let a = Sidecar::start(&server, &cluster, "pod-a", &flags).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;

    let mut members = b.stream(Method::GET, "/v1/groups/web?watch", None).await;
    let snapshot = expect(&mut members, "snapshot").await;
    assert_eq!(snapshot["members"][0]["id"], json!("pod-a"));
    let mut lock = a.stream(Method::POST, "/v1/locks/work", None).await;
    expect(&mut lock, "waiting").await;
    expect(&mut lock, "acquired").await;
    let mut campaign = a.stream(Method::POST, "/v1/elections/boss/campaign", None).await;
    expect(&mut campaign, "leader").await;

    healthy.store(false, Ordering::SeqCst);
    assert_eq!(expect(&mut lock, "released").await["reason"], json!("app unhealthy"));
    assert_eq!(expect(&mut campaign, "released").await["reason"], json!("app unhealthy"));
    assert_eq!(expect(&mut members, "left").await["id"], json!("pod-a"));
    let refused = a.call(Method::POST, "/v1/locks/work", None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let readyz = a.call(Method::GET, "/readyz", None).await;
    assert_eq!(readyz.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(readyz.body["app_healthy"], json!(false));

    healthy.store(true, Ordering::SeqCst);
    assert_eq!(expect(&mut members, "joined").await["member"]["id"], json!("pod-a"));
    a.ready().await;
    eventually("holds accepted again", || async {
        a.api.stream(Method::POST, "/v1/locks/work?try", None).await.is_ok()
    })
    .await;
}
