//! Locks: mutual exclusion across sidecars, fencing tokens, release on disconnect and on SIGTERM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde_json::json;

use crate::harness::{expect, next, Server, Sidecar, SidecarExt};

/// Takes the lock and returns the stream (still holding) and the token.
async fn acquire(sidecar: &Sidecar, name: &str) -> (paddock_sidecar::client::EventLines, i64) {
    let mut stream = sidecar.stream(Method::POST, &format!("/v1/locks/{name}"), None).await;
    expect(&mut stream, "waiting").await;
    let acquired = expect(&mut stream, "acquired").await;
    let token = acquired["token"].as_i64().expect("token");
    (stream, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_two_sidecars_exclude_each_other_and_tokens_increase() {
    const CLIENTS: usize = 6;
    const ROUNDS: usize = 5;
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let sidecars = Arc::new([
        Sidecar::start(&server, &cluster, "pod-a", &[]).await,
        Sidecar::start(&server, &cluster, "pod-b", &[]).await,
    ]);
    let put = sidecars[0].call(Method::PUT, "/v1/nodes/counter", Some(json!({"data": "0"}))).await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    let inside = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (sidecars, inside, tokens) = (sidecars.clone(), inside.clone(), tokens.clone());
        clients.push(tokio::spawn(async move {
            let sidecar = &sidecars[client % 2];
            for _ in 0..ROUNDS {
                let (stream, token) = acquire(sidecar, "counter").await;
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                tokens.lock().expect("tokens").push(token);
                // A plain read-modify-write: only the lock keeps increments from being lost.
                let read = sidecar.call(Method::GET, "/v1/nodes/counter", None).await;
                let value: u64 = read.body["data"].as_str().and_then(|s| s.parse().ok()).expect("counter");
                let write = sidecar
                    .call(Method::PUT, "/v1/nodes/counter", Some(json!({"data": (value + 1).to_string()})))
                    .await;
                assert_eq!(write.status, StatusCode::OK, "{:?}", write.body);
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(stream);
            }
        }));
    }
    for client in clients {
        client.await.expect("client task");
    }
    let read = sidecars[1].call(Method::GET, "/v1/nodes/counter", None).await;
    assert_eq!(read.body["data"], json!((CLIENTS * ROUNDS).to_string()));
    let tokens = tokens.lock().expect("tokens").clone();
    assert_eq!(tokens.len(), CLIENTS * ROUNDS);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "fencing tokens must strictly increase: {tokens:?}");
}

#[tokio::test]
async fn closing_the_holders_connection_hands_the_lock_to_the_next_waiter() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &[]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;
    let (holder, first_token) = acquire(&a, "jobs").await;
    let mut waiter = b.stream(Method::POST, "/v1/locks/jobs", None).await;
    let waiting = expect(&mut waiter, "waiting").await;
    assert_eq!(waiting["ahead"], json!(1));
    let try_lock = b.call(Method::POST, "/v1/locks/jobs?try", None).await;
    assert_eq!(try_lock.status, StatusCode::CONFLICT);
    assert_eq!(try_lock.body["error"]["code"], json!("held"));

    let released_at = Instant::now();
    drop(holder);
    let acquired = expect(&mut waiter, "acquired").await;
    let handover = released_at.elapsed();
    assert!(handover < Duration::from_secs(2), "handover took {handover:?}");
    assert!(acquired["token"].as_i64().expect("token") > first_token);
}

#[tokio::test]
async fn sigterm_on_the_holders_sidecar_hands_the_lock_over_at_once() {
    // Sessions far longer than the bound below: the handover cannot be a session expiry.
    let server = Server::start_with(&["--max-session-timeout-ms", "30000"]).await;
    let cluster = server.client_addr.to_string();
    let mut a = Sidecar::start(&server, &cluster, "pod-a", &["--session-timeout-ms", "20000"]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &["--session-timeout-ms", "20000"]).await;
    let (mut holder, first_token) = acquire(&a, "leader-job").await;
    let mut waiter = b.stream(Method::POST, "/v1/locks/leader-job", None).await;
    expect(&mut waiter, "waiting").await;

    let terminated_at = Instant::now();
    a.sigterm();
    let released = expect(&mut holder, "released").await;
    assert_eq!(released["reason"], json!("shutdown"));
    assert!(next(&mut holder).await.is_none(), "the stream ends after released");
    let acquired = expect(&mut waiter, "acquired").await;
    let handover = terminated_at.elapsed();
    assert!(handover < Duration::from_secs(2), "handover took {handover:?}");
    assert!(acquired["token"].as_i64().expect("token") > first_token);
    let status = a.exited().await;
    assert!(status.success(), "sidecar exited with {status}");
    assert!(!a.socket.exists(), "the socket is removed on exit");
    assert!(a.log().contains("zookeeper session closed"), "the session is closed explicitly");
}

#[tokio::test]
async fn sigkill_of_the_holders_sidecar_hands_the_lock_over_within_the_session_timeout() {
    // The killed sidecar cannot close its session: the server expires it after the timeout,
    // deleting the lock node, and the waiter (through another sidecar) gets the lock.
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let a = Sidecar::start(&server, &cluster, "pod-a", &["--session-timeout-ms", "1000"]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &["--session-timeout-ms", "1000"]).await;
    let (_holder, first_token) = acquire(&a, "crash-job").await;
    let mut waiter = b.stream(Method::POST, "/v1/locks/crash-job", None).await;
    expect(&mut waiter, "waiting").await;

    let killed_at = Instant::now();
    drop(a); // SIGKILL: no cleanup runs in the sidecar.
    let acquired = expect(&mut waiter, "acquired").await;
    let handover = killed_at.elapsed();
    // Session timeout plus the leader's expiry check and a generous margin for a loaded machine.
    assert!(handover < Duration::from_secs(5), "handover took {handover:?}");
    assert!(acquired["token"].as_i64().expect("token") > first_token);
}
