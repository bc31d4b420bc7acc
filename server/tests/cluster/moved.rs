//! A session that moves to another server while one of its writes is still queued on the old
//! one (issue 12 d): the old write must never take effect after the session's later,
//! acknowledged writes on the new server. ZooKeeper's answer is SessionMoved: the write is
//! refused and the old server drops the connection.

use std::time::Duration;

use crate::harness::{ensure_node, poll_for, retrying, start_cluster, Bounded, Clients, PERSISTENT, WAIT};
use paddock_testkit::raw::{self, code, op, Connect, Jute, RawConn, Reader};

/// ZooKeeper's SessionMoved code (`KeeperException.Code.SESSIONMOVED`).
const SESSION_MOVED: i32 = -118;

fn set_data_body(path: &str, data: &[u8]) -> Vec<u8> {
    Jute::new().str(path).buf(data).i32(-1).bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_left_on_the_old_server_never_lands_after_the_moved_sessions_writes() {
    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let followers: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();
    let (old, new) = (followers[0], followers[1]);
    let on_new = cluster.client(&[new]).await;
    ensure_node(&on_new, "/moved").await;

    // The session starts on follower `old`.
    let connect = Connect { timeout_ms: 4000, ..Connect::default() };
    let mut first = RawConn::connect_with(cluster.node(old).client_addr, &connect).await;
    let session = first.session_id();
    assert_ne!(session, 0, "node {old} refused a new session");
    // `new` has applied the session's creation once a sync through it is answered.
    on_new.sync("/").bounded().await.expect("sync on the new server");

    // v1 is sent while `old` is frozen: it sits in the old server's socket.
    cluster.node(old).freeze().await;
    let stale_xid = 1;
    let mut request = Jute::new().i32(stale_xid).i32(op::SET_DATA).bytes();
    request.extend(set_data_body("/moved", b"v1"));
    raw::write_frame(&mut first.stream, &request).bounded().await.expect("send v1");

    // The client gives up on `old` and resumes the session on `new`, where v2 is acknowledged.
    let resume = Connect {
        timeout_ms: 4000,
        session_id: session,
        password: first.handshake.password.clone(),
        ..Connect::default()
    };
    let mut second = RawConn::connect_with(cluster.node(new).client_addr, &resume).await;
    assert_eq!(second.session_id(), session, "node {new} did not resume the session");
    let v2 = second.request(op::SET_DATA, &set_data_body("/moved", b"v2")).await;
    assert_eq!(v2.err, code::OK, "v2 on node {new}");

    cluster.node(old).thaw();

    // v1's fate on the old connection: refused, or the connection closed without an answer.
    let stale = async {
        loop {
            let Ok(frame) = raw::read_frame(&mut first.stream).await else { return None };
            let mut r = Reader(&frame);
            let (xid, _zxid, err) = (r.i32(), r.i64(), r.i32());
            if xid == stale_xid {
                return Some(err);
            }
        }
    }
    .bounded()
    .await;
    eprintln!("v1 on node {old}: {stale:?} (None: the connection closed)");
    if let Some(err) = stale {
        assert_ne!(err, code::OK, "v1, sent before the session moved, was applied after v2 was acknowledged");
        assert_eq!(err, SESSION_MOVED, "v1's refusal");
    }

    // A fence through the old server: its forwarding link to the leader is ordered, so once a
    // later write from `old` is applied, v1 either is in the log before it or never will be.
    let fence = poll_for(WAIT, || async { cluster.try_client(&[old]).await.ok() })
        .await
        .unwrap_or_else(|| panic!("node {old} serves no new session after the thaw"));
    retrying("fence", || fence.create("/moved/fence", b"", &PERSISTENT)).await.expect("fence write");
    let (on_old, _) = fence.get_data("/moved").bounded().await.expect("read on the old server");
    assert_eq!(on_old, b"v2", "node {old} holds v1 after v2 was acknowledged");
    on_new.sync("/moved").bounded().await.expect("sync");
    let (on_new_data, _) = on_new.get_data("/moved").bounded().await.expect("read on the new server");
    assert_eq!(on_new_data, b"v2", "node {new} holds v1 after v2 was acknowledged");

    // The session lives on on the new server.
    let ping = tokio::time::timeout(Duration::from_secs(5), second.ping()).await;
    assert!(ping.is_ok(), "the moved session's connection on node {new} stopped answering");
}
