//! Queues: FIFO claims, exactly-once acks, claims released when the claimer's connection, lease
//! or sidecar goes, competing claimers never sharing an item.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use paddock_sidecar::client::EventLines;
use serde_json::{json, Value};

use crate::harness::{eventually, expect, next, Bounded, Server, Sidecar, SidecarExt};

/// Enqueues `data`; the item's id.
async fn enqueue(s: &Sidecar, queue: &str, data: &str) -> String {
    let reply = s.call(Method::POST, &format!("/v1/queues/{queue}"), Some(json!({"data": data}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body["id"].as_str().expect("item id").to_owned()
}

/// Opens a claim stream and waits for its claim; the stream and the `claimed` event.
async fn claim(s: &Sidecar, queue: &str) -> (EventLines, Value) {
    let mut stream = s.stream(Method::POST, &format!("/v1/queues/{queue}/claim"), None).await;
    expect(&mut stream, "waiting").await;
    let claimed = expect(&mut stream, "claimed").await;
    (stream, claimed)
}

async fn ack(s: &Sidecar, queue: &str, id: &str, token: Option<i64>) -> (StatusCode, Value) {
    let token = token.map(|t| t.to_string());
    let headers: Vec<(&str, &str)> = token.iter().map(|t| ("if-match", t.as_str())).collect();
    let reply = s.call_with(Method::DELETE, &format!("/v1/queues/{queue}/items/{id}"), None, &headers).await;
    (reply.status, reply.body)
}

fn token(event: &Value) -> i64 {
    event["token"].as_i64().unwrap_or_else(|| panic!("no token in {event}"))
}

#[tokio::test]
async fn items_are_claimed_in_fifo_order_and_acknowledged_exactly_once() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let s = Sidecar::start(&server, &cluster, "pod-a", &[]).await;

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(enqueue(&s, "jobs", &format!("job-{i}")).await);
    }
    assert_eq!(ids[0], "item-0000000000");
    let length = s.call(Method::GET, "/v1/queues/jobs", None).await;
    assert_eq!(length.body, json!({"queue": "jobs", "items": 5, "claimed": 0}));

    let mut last_token = 0;
    for (i, id) in ids.iter().enumerate() {
        let (mut stream, claimed) = claim(&s, "jobs").await;
        assert_eq!(claimed["id"], json!(id), "FIFO order");
        assert_eq!(claimed["data"], json!(format!("job-{i}")));
        assert!(token(&claimed) > last_token, "claim tokens increase");
        last_token = token(&claimed);
        let length = s.call(Method::GET, "/v1/queues/jobs", None).await;
        assert_eq!(length.body["claimed"], json!(1));

        let (status, body) = ack(&s, "jobs", id, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body:?}");
        assert_eq!(expect(&mut stream, "acked").await["id"], json!(id));
        assert!(next(&mut stream).await.is_none(), "the stream ends after acked");
        // A second ack finds nothing: the item is gone for good.
        let (status, body) = ack(&s, "jobs", id, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
        assert_eq!(body["error"]["code"], json!("not_found"));
    }
    let length = s.call(Method::GET, "/v1/queues/jobs", None).await;
    assert_eq!(length.body, json!({"queue": "jobs", "items": 0, "claimed": 0}));

    // An unclaimed item cannot be acknowledged; a stale token cannot acknowledge a claim.
    let id = enqueue(&s, "jobs", "late").await;
    assert_eq!(id, "item-0000000005", "ids are never reused");
    let (status, body) = ack(&s, "jobs", &id, None).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body:?}");
    assert_eq!(body["error"]["code"], json!("not_claimed"));
    let (mut stream, claimed) = claim(&s, "jobs").await;
    let (status, body) = ack(&s, "jobs", &id, Some(token(&claimed) - 1)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body:?}");
    let (status, _) = ack(&s, "jobs", &id, Some(token(&claimed))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect(&mut stream, "acked").await;

    // Binary data round-trips as base64.
    let reply = s.call(Method::POST, "/v1/queues/bin", Some(json!({"data_b64": "/wA="}))).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let (_stream, claimed) = claim(&s, "bin").await;
    assert_eq!(claimed["data"], json!(null));
    assert_eq!(claimed["data_b64"], json!("/wA="));

    for (method, uri) in [
        (Method::POST, "/v1/queues/jobs/claim?wait_ms=10"),
        (Method::POST, "/v1/queues/jobs/claim?lease=nope&wait_ms=x"),
        (Method::POST, "/v1/queues/a%2Fb"),
        (Method::DELETE, "/v1/queues/jobs/items/.."),
    ] {
        let reply = s.call(method.clone(), uri, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {uri}: {:?}", reply.body);
    }
    let reply = s.call_with(Method::DELETE, "/v1/queues/jobs/items/item-0000000009", None, &[("if-match", "x")]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_claim_is_released_when_its_connection_or_sidecar_goes() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    let id = enqueue(&a, "work", "only").await;

    let (first, claimed) = claim(&a, "work").await;
    assert_eq!(claimed["id"], json!(id));
    let mut second = b.stream(Method::POST, "/v1/queues/work/claim", None).await;
    assert_eq!(expect(&mut second, "waiting").await["ahead"], json!(0));

    // The first claimer's connection closes: the item is claimable again, at once.
    drop(first);
    let reclaimed = expect(&mut second, "claimed").await;
    assert_eq!(reclaimed["id"], json!(id));
    assert_eq!(reclaimed["data"], json!("only"));
    assert!(token(&reclaimed) > token(&claimed));
    // The first claimer lost it: its sidecar cannot acknowledge it any more.
    let (status, _) = ack(&a, "work", &id, None).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    // The claimer's sidecar is killed (no cleanup runs): the claim goes with its session.
    drop(second);
    let third = Sidecar::start(&server, &cluster, "pod-c", &[]).await;
    let (_on_c, got) = claim(&third, "work").await;
    assert_eq!(got["id"], json!(id));
    let mut last = a.stream(Method::POST, "/v1/queues/work/claim", None).await;
    expect(&mut last, "waiting").await;
    drop(third);
    let got = expect(&mut last, "claimed").await;
    assert_eq!(got["id"], json!(id), "the killed sidecar's claim expired with its session");
    assert_eq!(ack(&a, "work", &id, Some(token(&got))).await.0, StatusCode::NO_CONTENT);
    expect(&mut last, "acked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_claimers_never_get_the_same_item() {
    const ITEMS: usize = 40;
    const CLAIMERS: usize = 6;
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let sidecars = Arc::new([
        Sidecar::start(&server, &cluster, "pod-a", &[]).await,
        Sidecar::start(&server, &cluster, "pod-b", &[]).await,
    ]);
    for i in 0..ITEMS / 2 {
        enqueue(&sidecars[i % 2], "tasks", &i.to_string()).await;
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut claimers = Vec::new();
    for claimer in 0..CLAIMERS {
        let (sidecars, acked, seen) = (sidecars.clone(), acked.clone(), seen.clone());
        claimers.push(tokio::spawn(async move {
            let s = &sidecars[claimer % 2];
            let mut mine: Vec<(i64, String)> = Vec::new();
            while acked.load(Ordering::SeqCst) < ITEMS {
                let mut stream = s.stream(Method::POST, "/v1/queues/tasks/claim", None).await;
                expect(&mut stream, "waiting").await;
                // Claimers left waiting once every item is done are aborted below.
                let claimed = expect(&mut stream, "claimed").await;
                let id = claimed["id"].as_str().expect("id").to_owned();
                mine.push((token(&claimed), id.clone()));
                seen.lock().expect("seen").push((token(&claimed), id.clone(), claimed["data"].clone()));
                let (status, body) = ack(s, "tasks", &id, Some(token(&claimed))).await;
                assert_eq!(status, StatusCode::NO_CONTENT, "ack of {id}: {body:?}");
                expect(&mut stream, "acked").await;
                acked.fetch_add(1, Ordering::SeqCst);
            }
            mine
        }));
    }
    for i in ITEMS / 2..ITEMS {
        enqueue(&sidecars[i % 2], "tasks", &i.to_string()).await;
    }
    eventually("every item acknowledged", || async { acked.load(Ordering::SeqCst) >= ITEMS }).await;
    for claimer in &claimers {
        claimer.abort();
    }
    for claimer in claimers {
        match claimer.await {
            Ok(mine) => assert!(mine.windows(2).all(|w| w[0].1 < w[1].1), "one claimer's items in order: {mine:?}"),
            Err(e) if e.is_cancelled() => {}
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let mut seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), ITEMS, "every item claimed exactly once");
    let distinct: HashSet<&String> = seen.iter().map(|(_, id, _)| id).collect();
    assert_eq!(distinct.len(), ITEMS, "no item claimed twice");
    // Claims were taken in queue order: by claim token, the items' data is 0, 1, 2, ...
    seen.sort_by_key(|(token, _, _)| *token);
    let order: Vec<String> = seen.iter().map(|(_, _, data)| data.as_str().expect("data").to_owned()).collect();
    let expected: Vec<String> = (0..ITEMS).map(|i| i.to_string()).collect();
    assert_eq!(order, expected);
    let length = sidecars[0].call(Method::GET, "/v1/queues/tasks", None).await;
    assert_eq!(length.body["items"], json!(0));
}

#[tokio::test]
async fn claims_bound_to_a_lease_live_with_the_lease() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    let granted = a.call(Method::POST, "/v1/leases", Some(json!({"ttl_ms": 60000}))).await;
    let lease = granted.body["id"].as_str().expect("lease").to_owned();
    let first = enqueue(&a, "mail", "m0").await;
    let second = enqueue(&a, "mail", "m1").await;

    let claimed = a.call(Method::POST, &format!("/v1/queues/mail/claim?lease={lease}"), None).await;
    assert_eq!(claimed.status, StatusCode::OK, "{:?}", claimed.body);
    assert_eq!(claimed.body["id"], json!(first));
    assert_eq!(claimed.body["data"], json!("m0"));
    assert_eq!(claimed.body["lease"], json!(lease));
    let first_token = token(&claimed.body);
    let again = a.call(Method::POST, &format!("/v1/queues/mail/claim?lease={lease}&wait_ms=0"), None).await;
    assert_eq!(again.body["id"], json!(second));
    let empty = a.call(Method::POST, &format!("/v1/queues/mail/claim?lease={lease}&wait_ms=0"), None).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT, "{:?}", empty.body);
    let empty = a.call(Method::POST, &format!("/v1/queues/mail/claim?lease={lease}&wait_ms=200"), None).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT);
    let described = a.call(Method::GET, &format!("/v1/leases/{lease}"), None).await;
    assert_eq!(described.body["nodes"].as_array().map(Vec::len), Some(2), "{:?}", described.body);
    let (status, _) = ack(&a, "mail", &second, Some(token(&again.body))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A waiting lease claim is answered as soon as an item comes.
    let waiting = {
        let socket = a.api.clone();
        let uri = format!("/v1/queues/mail/claim?lease={lease}&wait_ms=10000");
        tokio::spawn(async move { socket.request(Method::POST, &uri, None, &[]).await })
    };
    let third = enqueue(&b, "mail", "m2").await;
    let answered = waiting.bounded().await.expect("join").expect("claim");
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(answered.body["id"], json!(third));

    // Revoked, the lease's claims go back to the queue, oldest first.
    let revoked = a.call(Method::DELETE, &format!("/v1/leases/{lease}"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let (mut stream, reclaimed) = claim(&b, "mail").await;
    assert_eq!(reclaimed["id"], json!(first));
    assert!(token(&reclaimed) > first_token);
    let (status, body) = ack(&a, "mail", &first, Some(first_token)).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "the revoked claim is stale: {body:?}");
    assert_eq!(ack(&b, "mail", &first, None).await.0, StatusCode::NO_CONTENT);
    expect(&mut stream, "acked").await;

    // Expired, the same.
    let granted = a.call(Method::POST, "/v1/leases", Some(json!({"ttl_ms": 500}))).await;
    let short = granted.body["id"].as_str().expect("lease").to_owned();
    let claimed = a.call(Method::POST, &format!("/v1/queues/mail/claim?lease={short}&wait_ms=0"), None).await;
    assert_eq!(claimed.body["id"], json!(third));
    let (_stream, reclaimed) = claim(&b, "mail").await;
    assert_eq!(reclaimed["id"], json!(third), "the expired lease's claim was released");
    let unknown = a.call(Method::POST, &format!("/v1/queues/mail/claim?lease={short}"), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_abandoned_lease_claim_request_claims_nothing() {
    use tokio::io::AsyncWriteExt;
    // The app closes its connection while its lease claim waits: the claimer leaves the line
    // at once, so no item is claimed for nobody.
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let granted = a.call(Method::POST, "/v1/leases", Some(json!({"ttl_ms": 60000}))).await;
    let lease = granted.body["id"].as_str().expect("lease").to_owned();
    let mut raw = tokio::net::UnixStream::connect(&a.socket).await.expect("connect");
    let request =
        format!("POST /v1/queues/q/claim?lease={lease}&wait_ms=60000 HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n");
    raw.write_all(request.as_bytes()).await.expect("write");
    eventually("the claimer in line", || async {
        a.call(Method::GET, "/v1/nodes/_paddock/queues/q/claimers?children", None).await.body["children"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    drop(raw);
    eventually("the abandoned claimer gone", || async {
        a.call(Method::GET, "/v1/nodes/_paddock/queues/q/claimers?children", None).await.body["children"]
            .as_array()
            .is_none_or(|c| c.is_empty())
    })
    .await;
    let id = enqueue(&a, "q", "x").await;
    let (_stream, claimed) = claim(&a, "q").await;
    assert_eq!(claimed["id"], json!(id));
}
