//! Elections: the first candidate leads, followers learn the leader, the next candidate takes
//! over with a higher term when the leader's connection closes, observers see it, DELETE resigns.

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::harness::{expect, next, Server, Sidecar, SidecarExt};

#[tokio::test]
async fn leadership_moves_to_the_next_candidate_and_observers_follow() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;

    let mut observer = b.stream(Method::GET, "/v1/elections/primary?watch", None).await;
    let snapshot = expect(&mut observer, "snapshot").await;
    assert_eq!(snapshot["leader"], json!(null));

    let mut first =
        a.stream(Method::POST, "/v1/elections/primary/campaign", Some(json!({"value": "10.0.0.1:5432"}))).await;
    let led = expect(&mut first, "leader").await;
    let first_term = led["term"].as_i64().expect("term");
    let seen = expect(&mut observer, "leader").await;
    assert_eq!(seen["leader"]["pod"], json!("pod-a"));
    assert_eq!(seen["leader"]["value"], json!("10.0.0.1:5432"));
    assert_eq!(seen["leader"]["term"], json!(first_term));

    let mut second = b.stream(Method::POST, "/v1/elections/primary/campaign", None).await;
    let follower = expect(&mut second, "follower").await;
    assert_eq!(follower["leader"]["pod"], json!("pod-a"));
    assert_eq!(follower["leader"]["term"], json!(first_term));

    let observed = b.call(Method::GET, "/v1/elections/primary", None).await;
    assert_eq!(observed.status, StatusCode::OK);
    assert_eq!(observed.body["leader"]["pod"], json!("pod-a"));
    assert_eq!(observed.body["candidates"], json!(2));

    let closed_at = Instant::now();
    drop(first);
    let led = expect(&mut second, "leader").await;
    assert!(closed_at.elapsed() < Duration::from_secs(2), "takeover took {:?}", closed_at.elapsed());
    let second_term = led["term"].as_i64().expect("term");
    assert!(second_term > first_term, "terms must increase: {first_term} then {second_term}");
    let seen = expect(&mut observer, "leader").await;
    assert_eq!(seen["leader"]["pod"], json!("pod-b"));
    assert_eq!(seen["leader"]["term"], json!(second_term));

    // A resign on pod-a's sidecar does not touch pod-b's campaign.
    let none = a.call(Method::DELETE, "/v1/elections/primary", None).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let resigned = b.call(Method::DELETE, "/v1/elections/primary", None).await;
    assert_eq!(resigned.status, StatusCode::NO_CONTENT, "{:?}", resigned.body);
    let released = expect(&mut second, "released").await;
    assert_eq!(released["reason"], json!("resigned"));
    assert!(next(&mut second).await.is_none());
    let seen = expect(&mut observer, "leader").await;
    assert_eq!(seen["leader"], json!(null));
}
