//! Hold deadlines: a holder whose sidecar is cut off from the cluster by a blackhole (bytes
//! stall, nothing is closed) stops holding, by its own deadline, before anyone else can be given
//! what it held. Judged from recorded timestamps on this machine's clock, never from sleeps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::Method;
use paddock_e2e::check::holds::{check_holds, Hold};
use paddock_sidecar::client::EventLines;
use serde_json::Value;

use crate::harness::{expect, start_cluster, Proxy, Server, Sidecar, SidecarExt};

/// This machine's wall clock in Unix milliseconds: the clock the sidecars' deadlines are in.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Every event of a stream with the time it reached the app, until one of kind `until` (or the
/// stream's end, or `within`).
async fn record(mut stream: EventLines, until: &'static [&'static str], within: Duration) -> Vec<(u64, Value)> {
    let mut events = Vec::new();
    let _ = tokio::time::timeout(within, async {
        while let Ok(Some(event)) = stream.next().await {
            let last = event["type"].as_str().is_some_and(|kind| until.contains(&kind));
            events.push((now_ms(), event));
            if last {
                break;
            }
        }
    })
    .await;
    events
}

/// `holder`'s hold of `lock` from `acquired_at` to `valid_until` (Unix ms), as the holds
/// checker takes it (nanoseconds on one clock).
fn hold(holder: &str, lock: &str, acquired_at: u64, valid_until: u64) -> Hold {
    let ns = |ms: u64| ms.saturating_mul(1_000_000);
    Hold { holder: holder.into(), lock: lock.into(), acquired_at: ns(acquired_at), valid_until: ns(valid_until) }
}

/// Until when (Unix ms) a holder that got `acquired` may believe it holds the lock, from what
/// its stream said: the first deadline a `suspended` event gave, or the moment it heard `lost`
/// (or the stream ended); with neither, for ever.
fn held_until(events: &[(u64, Value)]) -> u64 {
    let deadline = events
        .iter()
        .find(|(_, event)| event["type"] == "suspended")
        .and_then(|(_, event)| event["valid_until_ms"].as_u64());
    let ended = events.iter().find(|(_, event)| event["type"] != "suspended").map(|(at, _)| *at);
    match (deadline, ended) {
        (Some(deadline), Some(ended)) => deadline.min(ended),
        (Some(deadline), None) => deadline,
        (None, Some(ended)) => ended,
        (None, None) => u64::MAX,
    }
}

/// `holder` takes the lock, `waiter` queues behind it, then `cut` cuts the holder off from the
/// cluster; both streams are recorded in real time and judged by the holds checker: the holder's
/// hold ends at the deadline its stream gave (or when it heard `lost`), and the waiter's grant
/// must come after it. Returns the holder's events.
async fn race_after_cut(
    holder: &Sidecar,
    waiter: &Sidecar,
    cut: impl std::future::Future<Output = ()>,
) -> Vec<(u64, Value)> {
    let mut held = holder.stream(Method::POST, "/v1/locks/ledger", None).await;
    expect(&mut held, "waiting").await;
    expect(&mut held, "acquired").await;
    let holder_acquired_at = now_ms();
    let mut waiting = waiter.stream(Method::POST, "/v1/locks/ledger", None).await;
    assert_eq!(expect(&mut waiting, "waiting").await["ahead"], 1);

    cut.await;
    // Both apps listen at once: the waiter's grant and the holder's deadline race in real time.
    let holder_events = tokio::spawn(record(held, &["lost", "released", "error"], Duration::from_secs(20)));
    let waiter_events =
        tokio::spawn(record(waiting, &["acquired", "lost", "released", "error"], Duration::from_secs(20)));
    let waiter_events = waiter_events.await.expect("waiter recorder");
    let (waiter_acquired_at, granted) = waiter_events
        .iter()
        .find(|(_, event)| event["type"] == "acquired")
        .cloned()
        .unwrap_or_else(|| panic!("the waiter never got the lock: {waiter_events:?}"));
    // The holder's stream is given a moment past the grant to say what it would have said.
    let holder_events = tokio::time::timeout(Duration::from_secs(5), holder_events).await;
    let holder_events = match holder_events {
        Ok(events) => events.expect("holder recorder"),
        Err(_) => Vec::new(),
    };
    let holds = [
        hold("pod-a", "ledger", holder_acquired_at, held_until(&holder_events)),
        hold("pod-b", "ledger", waiter_acquired_at, u64::MAX),
    ];
    if let Err(problems) = check_holds(&holds) {
        panic!("{problems:?}: the holder's stream said {holder_events:?}, the waiter got {granted}");
    }
    holder_events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_holder_lets_go_by_its_deadline_before_the_waiter_gets_the_lock() {
    let server = Server::start().await;
    let blackhole = Proxy::start(server.client_addr).await;
    let cluster = server.client_addr.to_string();
    let timeout = ["--session-timeout-ms", "2000"];
    let holder = Sidecar::start(&server, &blackhole.addr.to_string(), "pod-a", &timeout).await;
    let waiter = Sidecar::start(&server, &cluster, "pod-b", &timeout).await;

    let holder_events = race_after_cut(&holder, &waiter, async { blackhole.stall() }).await;
    blackhole.restore();
    assert!(
        holder_events.iter().any(|(_, event)| event["type"] == "lost"),
        "the holder must hear `lost` while still cut off: {holder_events:?}"
    );
    // Once the link is back, the cut-off sidecar gets a session again.
    holder.ready().await;
}

/// Issue 12 hole o, the sidecar's side: the holder's sidecar reaches its server, but that
/// server (a follower) is cut off from the leader. The follower went on answering the
/// sidecar's probe reads until its own contact limit (1 s) ran out, so the sidecar's deadline
/// counted from a moment the leader had not heard of the session since: the leader expired it
/// and gave the waiter the lock before the holder's deadline. A probe must prove that the
/// leader heard of the session after it was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_on_a_follower_cut_off_from_its_leader_lets_go_before_the_waiter_gets_the_lock() {
    let cluster = start_cluster(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let timeout = ["--session-timeout-ms", "4000"];
    let holder = Sidecar::start_in(cluster.dir(), &cluster.connect_string(&[follower]), "pod-a", &timeout).await;
    let waiter = Sidecar::start_in(cluster.dir(), &cluster.connect_string(&[leader]), "pod-b", &timeout).await;

    let cut = cluster.node(follower).isolate(true);
    race_after_cut(&holder, &waiter, cut).await;
    cluster.node(follower).isolate(false).await;
    holder.ready().await;
}

#[tokio::test]
async fn a_keepalive_answers_suspended_with_the_deadline_then_not_found_after_it() {
    let server = Server::start().await;
    let blackhole = Proxy::start(server.client_addr).await;
    let s = Sidecar::start(&server, &blackhole.addr.to_string(), "pod-a", &["--session-timeout-ms", "2000"]).await;
    let granted = s.call(Method::POST, "/v1/leases", Some(serde_json::json!({"ttl_ms": 30000}))).await;
    let id = granted.body["id"].as_str().expect("lease id").to_owned();
    let keepalive = format!("/v1/leases/{id}/keepalive");
    assert_eq!(s.call(Method::POST, &keepalive, None).await.status, hyper::StatusCode::OK);

    blackhole.stall();
    let suspended = crate::harness::wait_for("a keepalive refused as suspended", || async {
        let reply = s.call(Method::POST, &keepalive, None).await;
        (reply.status != hyper::StatusCode::OK).then_some(reply)
    })
    .await;
    assert_eq!(suspended.status, hyper::StatusCode::SERVICE_UNAVAILABLE, "{:?}", suspended.body);
    assert_eq!(suspended.body["error"]["code"], "suspended", "{:?}", suspended.body);
    let deadline = suspended.body["error"]["valid_until_ms"].as_u64().expect("valid_until_ms");
    assert!(suspended.body["error"]["valid_for_ms"].as_u64().is_some_and(|left| left <= 2000));
    let gone = crate::harness::wait_for("a keepalive answering the lease is gone", || async {
        let reply = s.call(Method::POST, &keepalive, None).await;
        (reply.status != hyper::StatusCode::SERVICE_UNAVAILABLE).then_some((now_ms(), reply))
    })
    .await;
    assert_eq!(gone.1.status, hyper::StatusCode::NOT_FOUND, "{:?}", gone.1.body);
    assert!(gone.0 >= deadline, "the lease was said gone at {} before its deadline {deadline}", gone.0);
    blackhole.restore();
    s.ready().await;
}
