//! Sessions: timeout negotiation, the handshake's readOnly echo, ephemerals going away on close
//! and on expiry (and not on a mere disconnect), reconnecting with id and password.

use std::time::Duration;

use zookeeper_client::{Client, Error, SessionState};

use crate::harness::{eventually, Bounded, TestServer, EPHEMERAL, PERSISTENT};
use paddock_testkit::raw::{self, code, op, Connect, Jute, RawConn};

#[tokio::test]
async fn session_timeout_is_clamped_to_the_bounds() {
    let server = TestServer::start().await;
    for (asked, granted) in [(1, 200), (199, 200), (200, 200), (750, 750), (2000, 2000), (60_000, 2000)] {
        let conn =
            RawConn::connect_with(server.client_addr, &Connect { timeout_ms: asked, ..Connect::default() }).await;
        assert_ne!(conn.session_id(), 0);
        assert_eq!(conn.handshake.timeout_ms, granted, "asked for {asked} ms");
        assert_eq!(conn.handshake.password.len(), 16);
    }
    let zk = server.connect(Client::connector().with_session_timeout(Duration::from_secs(30))).await;
    assert_eq!(zk.session_timeout(), Duration::from_secs(2));
}

#[tokio::test]
async fn handshake_echoes_read_only_only_when_sent() {
    let server = TestServer::start().await;
    let without = RawConn::connect_with(server.client_addr, &Connect { read_only: None, ..Connect::default() }).await;
    assert_ne!(without.session_id(), 0);
    assert_eq!(without.handshake.read_only, None, "a 44-byte request gets a reply without the flag");
    let with =
        RawConn::connect_with(server.client_addr, &Connect { read_only: Some(true), ..Connect::default() }).await;
    assert_ne!(with.session_id(), 0);
    assert_eq!(with.handshake.read_only, Some(false), "a read-write server says so");
    assert_ne!(with.session_id(), without.session_id());
}

#[tokio::test]
async fn unknown_session_or_wrong_password_is_refused() {
    let server = TestServer::start().await;
    let unknown = Connect { session_id: 0x7777_0000_0000_0001, password: vec![1; 16], ..Connect::default() };
    let mut conn = RawConn::connect_with(server.client_addr, &unknown).await;
    assert_eq!((conn.session_id(), conn.handshake.timeout_ms), (0, 0));
    raw::expect_closed(&mut conn.stream).await;

    let live = RawConn::connect(server.client_addr).await;
    let wrong = Connect { session_id: live.session_id(), password: vec![0xAA; 16], ..Connect::default() };
    let mut conn = RawConn::connect_with(server.client_addr, &wrong).await;
    assert_eq!((conn.session_id(), conn.handshake.timeout_ms), (0, 0));
    raw::expect_closed(&mut conn.stream).await;

    let right =
        Connect { session_id: live.session_id(), password: live.handshake.password.clone(), ..Connect::default() };
    let conn = RawConn::connect_with(server.client_addr, &right).await;
    assert_eq!(conn.session_id(), live.session_id(), "the right password resumes the session");
}

#[tokio::test]
async fn a_client_ahead_of_the_server_is_refused() {
    let server = TestServer::start().await;
    let future = Connect { last_zxid_seen: i64::MAX / 2, ..Connect::default() };
    let mut stream = tokio::net::TcpStream::connect(server.client_addr).bounded().await.expect("connect");
    raw::write_frame(&mut stream, &raw::connect_body(&future)).bounded().await.expect("send");
    // ZooKeeper closes the socket (or answers with session 0) so the client tries elsewhere.
    let answer = raw::read_frame(&mut stream).bounded().await;
    if let Ok(body) = answer {
        let mut r = raw::Reader(&body);
        let (_, _, session_id) = (r.i32(), r.i32(), r.i64());
        assert_eq!(session_id, 0, "no session for a client from the future");
    }
    raw::expect_closed(&mut stream).await;
}

#[tokio::test]
async fn ephemeral_owner_is_the_session() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let (stat, _) = zk.create("/owned", b"", &EPHEMERAL).bounded().await.expect("create");
    assert_eq!(stat.ephemeral_owner, zk.session_id().0);
    assert_ne!(stat.ephemeral_owner, 0);
    let other = server.client().await;
    let seen = other.check_stat("/owned").bounded().await.expect("exists").expect("node");
    assert_eq!(seen.ephemeral_owner, zk.session_id().0);
}

#[tokio::test]
async fn close_session_deletes_ephemerals_before_answering() {
    let server = TestServer::start().await;
    let observer = server.client().await;
    let mut raw = RawConn::connect(server.client_addr).await;
    let reply = raw.request(op::CREATE2, &Jute::new().str("/gone").buf(b"").open_acl().i32(1).bytes()).await;
    assert_eq!(reply.err, code::OK);
    let reply = raw.request(op::CREATE2, &Jute::new().str("/kept").buf(b"").open_acl().i32(0).bytes()).await;
    assert_eq!(reply.err, code::OK);
    assert!(observer.check_stat("/gone").bounded().await.expect("exists").is_some());

    let reply = raw.close_session().await;
    assert_eq!(reply.err, code::OK);
    // Answered means applied: the ephemeral is already gone for everyone.
    assert_eq!(observer.check_stat("/gone").bounded().await.expect("exists"), None);
    assert!(observer.check_stat("/kept").bounded().await.expect("exists").is_some());
    raw::expect_closed(&mut raw.stream).await;

    // The closed session cannot be resumed.
    let resume =
        Connect { session_id: raw.session_id(), password: raw.handshake.password.clone(), ..Connect::default() };
    let conn = RawConn::connect_with(server.client_addr, &resume).await;
    assert_eq!(conn.session_id(), 0);
}

#[tokio::test]
async fn dropping_the_client_closes_its_session() {
    let server = TestServer::start().await;
    let observer = server.client().await;
    let zk = server.client().await;
    zk.create("/bye", b"", &EPHEMERAL).bounded().await.expect("create");
    let mut state = zk.state_watcher();
    drop(zk);
    let closed = async {
        loop {
            let s = state.changed().await;
            if s.is_terminated() {
                return s;
            }
        }
    };
    assert_eq!(closed.bounded().await, SessionState::Closed);
    assert_eq!(observer.check_stat("/bye").bounded().await.expect("exists"), None);
}

#[tokio::test]
async fn a_silent_session_expires_and_loses_its_ephemerals() {
    let server = TestServer::start().await;
    let observer = server.client().await;
    // A raw session that never pings: the connection stays open but says nothing.
    let mut silent =
        RawConn::connect_with(server.client_addr, &Connect { timeout_ms: 200, ..Connect::default() }).await;
    assert_eq!(silent.handshake.timeout_ms, 200);
    let reply = silent.request(op::CREATE2, &Jute::new().str("/silent").buf(b"").open_acl().i32(1).bytes()).await;
    assert_eq!(reply.err, code::OK);
    eventually("the silent session's ephemeral to go", || async {
        observer.check_stat("/silent").await.expect("exists").is_none()
    })
    .await;
    raw::expect_closed(&mut silent.stream).await;
    let resume =
        Connect { session_id: silent.session_id(), password: silent.handshake.password.clone(), ..Connect::default() };
    let conn = RawConn::connect_with(server.client_addr, &resume).await;
    assert_eq!((conn.session_id(), conn.handshake.timeout_ms), (0, 0), "an expired session is unknown");
}

#[tokio::test]
async fn a_disconnected_session_keeps_its_ephemerals_until_it_expires() {
    let server = TestServer::start().await;
    let observer = server.client().await;
    let zk = server.connect(Client::connector().with_session_timeout(Duration::from_secs(2)).with_detached()).await;
    zk.create("/lingering", b"", &EPHEMERAL).bounded().await.expect("create");
    let session = zk.into_session(); // a detached client leaves without closeSession
                                     // Still there right after the connection is gone: only expiry removes it.
    assert!(observer.check_stat("/lingering").bounded().await.expect("exists").is_some());
    eventually("the expired session's ephemeral to go", || async {
        observer.check_stat("/lingering").await.expect("exists").is_none()
    })
    .await;
    let resumed = server.try_connect(Client::connector().with_session(session)).await;
    assert_eq!(resumed.expect_err("expired"), Error::SessionExpired);
}

#[tokio::test]
async fn reconnecting_with_id_and_password_keeps_ephemerals() {
    let server = TestServer::start().await;
    let observer = server.client().await;
    let first = server.connect(Client::connector().with_session_timeout(Duration::from_secs(2)).with_detached()).await;
    let (created, _) = first.create("/mine", b"v1", &EPHEMERAL).bounded().await.expect("create");
    let session = first.session().clone();
    drop(first);

    let second = server.connect(Client::connector().with_session(session.clone())).await;
    assert_eq!(second.session_id(), session.id());
    let stat = second.check_stat("/mine").bounded().await.expect("exists").expect("still there");
    assert_eq!(stat.ephemeral_owner, session.id().0);
    assert_eq!(stat.czxid, created.czxid);
    second.set_data("/mine", b"v2", Some(0)).bounded().await.expect("set");
    assert_eq!(second.list_ephemerals("/").bounded().await.expect("ephemerals"), ["/mine"]);
    second.create("/mine2", b"", &PERSISTENT).bounded().await.expect("the session can still write");

    let mut state = second.state_watcher();
    drop(second);
    let terminal = async {
        loop {
            let s = state.changed().await;
            if s.is_terminated() {
                return s;
            }
        }
    };
    assert_eq!(terminal.bounded().await, SessionState::Closed);
    assert_eq!(observer.check_stat("/mine").bounded().await.expect("exists"), None);
}

/// A client frozen past its session timeout, holding data watches on its own ephemerals
/// (issue 12 m): the expiry deletes them, and every NodeDeleted it fires must reach the client
/// ahead of the close, as with ZooKeeper (which delivers what it queued before the Expired
/// close; the client's library then ends the remaining watches with Expired). The connection
/// closed at the same moment on its own idle timer, and the events were dropped with it.
#[tokio::test]
async fn a_frozen_client_gets_every_event_of_its_expiry_before_the_close() {
    let server = TestServer::start().await;
    let n = 300;
    let connect = Connect { timeout_ms: 1000, ..Connect::default() };
    let mut frozen = RawConn::connect_with(server.client_addr, &connect).await;
    let session = frozen.session_id();
    assert_ne!(session, 0);
    let mut observer = RawConn::connect(server.client_addr).await;
    // Pipelined, so the session's 1 s is not spent on 600 round trips on a loaded machine.
    for i in 0..n {
        let path = format!("/e-{i}");
        frozen.send(op::CREATE, &raw::create_body(&path, b"", 1)).bounded().await.expect("send create");
        frozen.send(op::GET_DATA, &Jute::new().str(&path).bool(true).bytes()).bounded().await.expect("send getData");
    }
    for i in 0..2 * n {
        let reply = frozen.next_reply().await;
        assert_eq!(reply.err, code::OK, "request {i} of the creates and watching reads: {reply:?}");
    }
    let last = format!("/e-{}", n - 1);
    let seen = observer.request(op::EXISTS, &Jute::new().str(&last).bool(true).bytes()).await;
    assert_eq!(seen.err, code::OK);

    // The client goes silent (reads nothing, sends nothing) until its session has expired:
    // the observer sees the last ephemeral go.
    let expired = observer.next_event().await;
    assert_eq!((expired.event_type, expired.path.as_str()), (raw::event::NODE_DELETED, last.as_str()));

    // Back: everything the server sent before closing.
    let mut deleted = std::collections::BTreeSet::new();
    async {
        while let Ok(frame) = raw::read_frame(&mut frozen.stream).await {
            let mut r = raw::Reader(&frame);
            let (xid, _zxid, _err) = (r.i32(), r.i64(), r.i32());
            if xid == -1 && r.i32() == raw::event::NODE_DELETED {
                let _state = r.i32();
                deleted.insert(r.str());
            }
        }
    }
    .bounded()
    .await;
    assert_eq!(deleted.len(), n, "NodeDeleted events delivered before the close, of {n} watched ephemerals");
    let again = RawConn::connect_with(
        server.client_addr,
        &Connect { timeout_ms: 1000, session_id: session, password: frozen.handshake.password.clone(), ..connect },
    )
    .await;
    assert_eq!(again.session_id(), 0, "the session expired");
}
