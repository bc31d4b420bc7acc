//! A server that starts while it cannot reach the rest of the cluster (issue 12 j): it must
//! serve nobody — no resumed session, no new one, `/readyz` 503 — from its first moment, not
//! only once a contact limit has passed since its boot.

use std::time::{Duration, Instant};

use crate::harness::{http, Bounded};
use paddock_testkit::raw::{self, Connect, Handshake, RawConn, Reader};

/// Sends a ConnectRequest and reads the answer: `None` when the server closed the connection
/// without one.
async fn try_handshake(addr: std::net::SocketAddr, c: &Connect) -> Option<Handshake> {
    let mut stream = tokio::net::TcpStream::connect(addr).bounded().await.expect("tcp connect");
    raw::write_frame(&mut stream, &raw::connect_body(c)).bounded().await.expect("send handshake");
    let body = raw::read_frame(&mut stream).bounded().await.ok()?;
    let mut r = Reader(&body);
    let _protocol_version = r.i32();
    let timeout_ms = r.i32();
    let session_id = r.i64();
    let password = r.buf();
    Some(Handshake { timeout_ms, session_id, password, read_only: None })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_out_of_touch_serves_nobody_from_its_first_moment() {
    let mut cluster = crate::harness::start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let restarted = all.into_iter().find(|id| *id != leader).expect("a follower");
    let others: Vec<u64> = all.into_iter().filter(|id| *id != restarted).collect();

    // A session owned by `restarted`; a later write through it puts the session's creation
    // among what it knows committed, so the restart brings the session back.
    let connect = Connect { timeout_ms: 4000, ..Connect::default() };
    let mut first = RawConn::connect_with(cluster.node(restarted).client_addr, &connect).await;
    let session = first.session_id();
    assert_ne!(session, 0, "node {restarted} refused a new session");
    let created = first.request(raw::op::CREATE, &raw::create_body("/boot", b"", 0)).await;
    assert_eq!(created.err, raw::code::OK, "create through node {restarted}");
    let resume =
        Connect { timeout_ms: 4000, session_id: session, password: first.handshake.password.clone(), ..connect };
    drop(first);

    // The others hang; `restarted` starts again and can reach nobody.
    for id in &others {
        cluster.node(*id).freeze().await;
    }
    cluster.node_mut(restarted).restart().await;
    let node = cluster.node(restarted);
    let started = Instant::now();

    let probes = async {
        let mut ready = Vec::new();
        while started.elapsed() < Duration::from_secs(3) {
            if let Ok(answer) = http(node.admin_addr, "GET", "/readyz", None).await {
                if answer.status == 200 {
                    ready.push(started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ready
    };
    let clients = async {
        let resumed = try_handshake(node.client_addr, &resume).await;
        let fresh = try_handshake(node.client_addr, &connect).await;
        (resumed, fresh)
    };
    let (ready, (resumed, fresh)) = tokio::join!(probes, clients);

    for id in &others {
        cluster.node(*id).thaw();
    }
    assert!(ready.is_empty(), "/readyz answered 200 while node {restarted} could reach nobody, at {ready:?}");
    if let Some(h) = &resumed {
        assert_eq!(h.session_id, 0, "node {restarted} resumed session {session:#x} while it could reach nobody");
    }
    if let Some(h) = &fresh {
        assert_eq!(h.session_id, 0, "node {restarted} made a new session while it could reach nobody");
    }
}
