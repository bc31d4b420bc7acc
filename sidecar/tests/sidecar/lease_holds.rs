//! Locks and campaigns bound to a lease (`?lease=ID`) instead of a connection: held across
//! requests, found again by a repeated request, released on `DELETE`, when the lease is revoked
//! and when it expires; a hold the sidecar takes away ends its lease.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{eventually, expect, Server, Sidecar, SidecarExt};

async fn grant(s: &Sidecar, ttl_ms: u64) -> String {
    let granted = s.call(Method::POST, "/v1/leases", Some(json!({"ttl_ms": ttl_ms}))).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{:?}", granted.body);
    granted.body["id"].as_str().expect("lease id").to_owned()
}

fn number(body: &Value, key: &str) -> i64 {
    body[key].as_i64().unwrap_or_else(|| panic!("no {key} in {body}"))
}

#[tokio::test]
async fn a_lock_bound_to_a_lease_is_held_until_the_lease_ends() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    let first = grant(&a, 60000).await;

    let held = a.call(Method::POST, &format!("/v1/locks/job?lease={first}"), None).await;
    assert_eq!(held.status, StatusCode::OK, "{:?}", held.body);
    assert_eq!(held.body["acquired"], json!(true));
    let first_token = number(&held.body, "token");
    // The request is over, the lock is still held; asking again finds the same hold.
    let again = a.call(Method::POST, &format!("/v1/locks/job?lease={first}&wait_ms=0"), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(number(&again.body, "token"), first_token);
    let described = a.call(Method::GET, &format!("/v1/leases/{first}"), None).await;
    let node = held.body["node"].as_str().expect("node");
    assert_eq!(described.body["nodes"], json!([format!("/_paddock/locks/job/{node}")]));

    let mut waiter = b.stream(Method::POST, "/v1/locks/job", None).await;
    assert_eq!(expect(&mut waiter, "waiting").await["ahead"], json!(1));
    let busy = a.call(Method::POST, "/v1/locks/job?try", None).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    // A second lease waits in line behind the stream; its request answers 202 in the meantime.
    let second = grant(&a, 60000).await;
    let queued = a.call(Method::POST, &format!("/v1/locks/job?lease={second}&wait_ms=50"), None).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{:?}", queued.body);
    assert_eq!(queued.body["acquired"], json!(false));
    assert_eq!(queued.body["ahead"], json!(2));
    let tried = a.call(Method::POST, &format!("/v1/locks/job?lease={}&try", grant(&a, 60000).await), None).await;
    assert_eq!(tried.status, StatusCode::CONFLICT);

    // Released by DELETE: the next in line (the stream) takes it.
    let released = a.call(Method::DELETE, &format!("/v1/locks/job?lease={first}"), None).await;
    assert_eq!(released.status, StatusCode::NO_CONTENT, "{:?}", released.body);
    let acquired = expect(&mut waiter, "acquired").await;
    assert!(number(&acquired, "token") > first_token);
    let gone = a.call(Method::DELETE, &format!("/v1/locks/job?lease={first}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let kept = a.call(Method::POST, &format!("/v1/leases/{first}/keepalive"), None).await;
    assert_eq!(kept.status, StatusCode::OK, "releasing the lock keeps the lease");

    // The stream lets go: the second lease's waiting request gets it.
    drop(waiter);
    let held = a.call(Method::POST, &format!("/v1/locks/job?lease={second}"), None).await;
    assert_eq!(held.status, StatusCode::OK, "{:?}", held.body);
    let second_token = number(&held.body, "token");
    assert!(second_token > number(&acquired, "token"));

    // Revoking the lease releases the lock.
    let mut waiter = b.stream(Method::POST, "/v1/locks/job", None).await;
    expect(&mut waiter, "waiting").await;
    let revoked = a.call(Method::DELETE, &format!("/v1/leases/{second}"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert!(number(&expect(&mut waiter, "acquired").await, "token") > second_token);
    drop(waiter);

    // A lease that is not kept alive expires and releases the lock (its TTL leaves room for
    // the request that takes the lock first).
    let short = grant(&a, 2000).await;
    let held = a.call(Method::POST, &format!("/v1/locks/job?lease={short}"), None).await;
    assert_eq!(held.status, StatusCode::OK, "{:?}", held.body);
    let mut waiter = b.stream(Method::POST, "/v1/locks/job", None).await;
    expect(&mut waiter, "waiting").await;
    expect(&mut waiter, "acquired").await;
    let expired = a.call(Method::POST, &format!("/v1/leases/{short}/keepalive"), None).await;
    assert_eq!(expired.status, StatusCode::NOT_FOUND);
    drop(waiter);

    // The sidecar takes the lock away (its znode is deleted by hand): the lease ends with it, so
    // the app learns it on its next keepalive.
    let doomed = grant(&a, 60000).await;
    let held = a.call(Method::POST, &format!("/v1/locks/job?lease={doomed}"), None).await;
    assert_eq!(held.status, StatusCode::OK, "{:?}", held.body);
    let node = held.body["node"].as_str().expect("node");
    let deleted = b.call(Method::DELETE, &format!("/v1/nodes/_paddock/locks/job/{node}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    eventually("the lease ended with its lock", || async {
        a.call(Method::POST, &format!("/v1/leases/{doomed}/keepalive"), None).await.status == StatusCode::NOT_FOUND
    })
    .await;

    for (method, uri, status) in [
        (Method::DELETE, "/v1/locks/job".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, "/v1/locks/job?wait_ms=5".to_owned(), StatusCode::BAD_REQUEST),
        (Method::POST, format!("/v1/locks/job?lease={first}&wait_ms=300001"), StatusCode::BAD_REQUEST),
        (Method::POST, "/v1/locks/job?lease=unknown".to_owned(), StatusCode::NOT_FOUND),
        (Method::DELETE, "/v1/locks/job?lease=unknown".to_owned(), StatusCode::NOT_FOUND),
    ] {
        let reply = a.call(method.clone(), &uri, None).await;
        assert_eq!(reply.status, status, "{method} {uri}: {:?}", reply.body);
    }
}

#[tokio::test]
async fn a_campaign_bound_to_a_lease_leads_until_the_lease_ends() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    let mut observer = b.stream(Method::GET, "/v1/elections/db?watch", None).await;
    expect(&mut observer, "snapshot").await;

    let first = grant(&a, 60000).await;
    let led =
        a.call(Method::POST, &format!("/v1/elections/db/campaign?lease={first}"), Some(json!({"value": "a:1"}))).await;
    assert_eq!(led.status, StatusCode::OK, "{:?}", led.body);
    assert_eq!(led.body["leading"], json!(true));
    let first_term = number(&led.body, "term");
    let again = a.call(Method::POST, &format!("/v1/elections/db/campaign?lease={first}&wait_ms=0"), None).await;
    assert_eq!(number(&again.body, "term"), first_term, "the same campaign is found again");
    let seen = expect(&mut observer, "leader").await;
    assert_eq!(seen["leader"]["value"], json!("a:1"));
    assert_eq!(seen["leader"]["term"], json!(first_term));

    let mut stream = b.stream(Method::POST, "/v1/elections/db/campaign", None).await;
    assert_eq!(expect(&mut stream, "follower").await["leader"]["term"], json!(first_term));
    let second = grant(&a, 60000).await;
    let follows = a.call(Method::POST, &format!("/v1/elections/db/campaign?lease={second}&wait_ms=0"), None).await;
    assert_eq!(follows.status, StatusCode::ACCEPTED, "{:?}", follows.body);
    assert_eq!(follows.body["leading"], json!(false));
    assert_eq!(follows.body["leader"]["term"], json!(first_term));

    // Resigning the first lease's campaign hands leadership to the stream.
    let resigned = a.call(Method::DELETE, &format!("/v1/elections/db?lease={first}"), None).await;
    assert_eq!(resigned.status, StatusCode::NO_CONTENT, "{:?}", resigned.body);
    let stream_term = number(&expect(&mut stream, "leader").await, "term");
    assert!(stream_term > first_term);
    assert_eq!(expect(&mut observer, "leader").await["leader"]["pod"], json!("pod-b"));
    // The second lease's campaign learns of the new leader through its own watch, a moment later.
    eventually("the second lease's campaign to follow the stream", || async {
        let uri = format!("/v1/elections/db/campaign?lease={second}&wait_ms=0");
        let follows = a.call(Method::POST, &uri, None).await;
        follows.status == StatusCode::ACCEPTED && follows.body["leader"]["term"] == json!(stream_term)
    })
    .await;

    // The stream closes: the second lease's campaign leads, and its waiting request says so.
    let waiting = {
        let api = a.api.clone();
        let uri = format!("/v1/elections/db/campaign?lease={second}");
        tokio::spawn(async move { api.request(Method::POST, &uri, None, &[]).await })
    };
    drop(stream);
    let led = crate::harness::Bounded::bounded(waiting).await.expect("join").expect("campaign");
    assert_eq!(led.status, StatusCode::OK, "{:?}", led.body);
    let second_term = number(&led.body, "term");
    assert!(second_term > stream_term);
    assert_eq!(expect(&mut observer, "leader").await["leader"]["term"], json!(second_term));

    // Revoked, the lease's campaign ends; a short lease behind it then leads, and expires (its
    // TTL leaves room for the two requests before the revoke).
    let short = grant(&a, 3000).await;
    let follows = a.call(Method::POST, &format!("/v1/elections/db/campaign?lease={short}&wait_ms=0"), None).await;
    assert_eq!(follows.status, StatusCode::ACCEPTED);
    let revoked = a.call(Method::DELETE, &format!("/v1/leases/{second}"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let seen = expect(&mut observer, "leader").await;
    assert!(number(&seen["leader"], "term") > second_term);
    let seen = expect(&mut observer, "leader").await;
    assert_eq!(seen["leader"], json!(null), "the short lease expired and its campaign with it");
}
