//! Network isolation through `POST /v1/debug/isolate`: an isolated follower loses its clients
//! to the rest of the cluster (sessions intact) and catches up once healed, also when it has
//! already given up on its leader before the client writes; an isolated leader is replaced and
//! stops accepting writes.

use std::time::Instant;

use paddock_testkit::zk::lost_connection;
use zookeeper_client::{Client, Error as ZkError, EventType};

use crate::harness::{
    assert_same_everywhere, ensure_node, retrying, start_cluster, wait_for, Bounded, Clients, Cluster, StateLog,
    EPHEMERAL, PERSISTENT, WAIT,
};

/// A client over all of `ids` that happens to be connected to one of `followers` (clients pick
/// a server at random), and that follower.
async fn client_on_a_follower(cluster: &Cluster, ids: &[u64], followers: &[u64]) -> (Client, u64) {
    wait_for("a multi-server client connected to a follower", WAIT, || async {
        let client = cluster.client(ids).await;
        let session = client.session_id().0;
        for id in followers {
            if cluster.node(*id).has_session(session).await {
                return Some((client, *id));
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_hands_its_clients_over_and_catches_up() {
    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let followers: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();
    let setup = cluster.client(&[leader]).await;
    for path in ["/t6", "/t6/watched"] {
        ensure_node(&setup, path).await;
    }

    let (client, isolated) = client_on_a_follower(&cluster, &all, &followers).await;
    let rest: Vec<u64> = all.into_iter().filter(|id| *id != isolated).collect();
    let states = StateLog::watch(&client);
    let session = client.session_id();
    client.create("/t6/eph", b"", &EPHEMERAL).bounded().await.expect("ephemeral through the follower");
    let (_, _, watcher) = client.get_and_watch_data("/t6/watched").bounded().await.expect("watch");
    let mut others = Vec::new();
    for id in &rest {
        others.push((*id, cluster.client(&[*id]).await));
    }

    cluster.node(isolated).isolate(true).await;
    let isolated_at = Instant::now();

    // The follower cannot reach the leader: a write through it fails with ConnectionLoss.
    let first = client.create("/t6/during-0", b"", &PERSISTENT).bounded().await;
    assert_eq!(first.err(), Some(ZkError::ConnectionLoss), "a write through the isolated follower");

    // The other two keep serving, reads and writes.
    for (id, other) in &others {
        let path = format!("/t6/during-via-{id}");
        other.create(&path, b"", &PERSISTENT).bounded().await.unwrap_or_else(|e| panic!("write via {id}: {e}"));
        other.sync("/t6").bounded().await.expect("sync");
        other.get_data(&path).bounded().await.expect("read");
    }

    // The client moves to another server and keeps its session.
    retrying("write after isolation", || client.create("/t6/during-1", b"", &PERSISTENT))
        .await
        .expect("the client works again through another server");
    let moved_in = isolated_at.elapsed();
    eprintln!("client moved off isolated node {isolated} after {moved_in:?}");
    assert_eq!(client.session_id(), session, "the client kept its session");
    let mut now_on = None;
    for id in &rest {
        if cluster.node(*id).has_session(session.0).await {
            now_on = Some(*id);
        }
    }
    assert!(now_on.is_some(), "the client is connected to neither {rest:?}");
    let eph = setup.check_stat("/t6/eph").bounded().await.expect("exists");
    assert_eq!(eph.map(|s| s.ephemeral_owner), Some(session.0), "the client's ephemeral survived");
    setup.set_data("/t6/watched", b"moved", None).bounded().await.expect("set data");
    let event = watcher.changed().bounded().await;
    assert_eq!(event.event_type, EventType::NodeDataChanged, "{event:?}");
    states.assert_never_expired("the client of the isolated follower");

    // Healed, the follower catches up and serves again with everything.
    cluster.node(isolated).isolate(false).await;
    cluster.wait_leader(&all, None).await;
    cluster.wait_ready(&all).await;
    cluster.wait_caught_up(isolated, &all).await;
    let acked: Vec<String> = ["/t6/eph", "/t6/during-1"]
        .into_iter()
        .map(str::to_owned)
        .chain(rest.iter().map(|id| format!("/t6/during-via-{id}")))
        .collect();
    assert_same_everywhere(&cluster, &all, "/t6", &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced_and_stops_accepting_writes() {
    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let rest: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();
    let on_old_leader = cluster.client(&[leader]).await;
    ensure_node(&on_old_leader, "/t6b").await;
    let term = cluster.node(leader).view().bounded().await.expect("leader answers").term;

    cluster.node(leader).isolate(true).await;
    let isolated_at = Instant::now();
    let new_leader = cluster.wait_leader(&rest, Some(leader)).await;
    eprintln!("node {new_leader} took over from isolated node {leader} after {:?}", isolated_at.elapsed());
    let view = cluster.node(new_leader).view().bounded().await.expect("new leader answers");
    assert!(view.term > term, "new term {} after {term}", view.term);

    // The old leader cannot commit: its write is not acknowledged.
    let attempt = on_old_leader.create("/t6b/through-old-leader", b"", &PERSISTENT).bounded().await;
    eprintln!("write through the isolated old leader: {attempt:?} after {:?}", isolated_at.elapsed());
    assert!(attempt.is_err(), "the isolated old leader acknowledged a write");

    // The majority serves.
    let majority = cluster.client(&rest).await;
    retrying("write via the majority", || majority.create("/t6b/through-majority", b"", &PERSISTENT))
        .await
        .expect("the majority accepts writes");

    // Healed, the old leader follows the new one and holds the same data, without its write.
    cluster.node(leader).isolate(false).await;
    let after = cluster.wait_leader(&all, None).await;
    eprintln!("after healing node {after} leads");
    cluster.wait_ready(&all).await;
    cluster.wait_caught_up(leader, &all).await;
    let tree = assert_same_everywhere(&cluster, &all, "/t6b", &["/t6b/through-majority".to_owned()]).await;
    assert!(!tree.contains_key("/t6b/through-old-leader"), "the old leader's unacknowledged write was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_of_a_leaderless_follower_moves_on_with_its_session() {
    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let followers: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();
    let setup = cluster.client(&[leader]).await;
    ensure_node(&setup, "/t6c").await;

    let (client, isolated) = client_on_a_follower(&cluster, &all, &followers).await;
    let states = StateLog::watch(&client);
    let session = client.session_id();
    client.create("/t6c/eph", b"", &EPHEMERAL).bounded().await.expect("ephemeral through the follower");

    // The client stays idle until the isolated follower has given up on its leader: it has
    // lost contact (not ready). With pre-vote it may still name the old leader, having never won
    // a pre-vote to stand for election; only then does the client write.
    cluster.node(isolated).isolate(true).await;
    let isolated_at = Instant::now();
    let node = cluster.node(isolated);
    wait_for("the isolated follower to lose its leader", WAIT, || async {
        let lost = !node.ready().await || node.view().await?.leader != Some(leader);
        lost.then_some(())
    })
    .await;
    let lost_at = isolated_at.elapsed();

    // What goes wrong is collected, so one run shows every symptom.
    let mut problems = Vec::new();
    let first = client.create("/t6c/first", b"", &PERSISTENT).bounded().await;
    eprintln!("node {isolated} lost leader {leader} after {lost_at:?}; a write through it then: {first:?}");
    // Either the server already closed the client's connection when it lost contact (the client
    // then wrote through another server: Ok), or the write fails as a lost connection
    // (ConnectionLoss, or the client's own timeout: the follower leaves pings it cannot report to
    // the leader unanswered). Never a hang and never another error.
    if !matches!(&first, Ok(_) | Err(ZkError::ConnectionLoss)) && !first.as_ref().is_err_and(lost_connection) {
        problems.push(format!(
            "a write through the leaderless follower should succeed elsewhere or fail with ConnectionLoss, got {first:?}"
        ));
    }
    let written =
        retrying("write after the follower lost its leader", || client.create("/t6c/after", b"", &PERSISTENT)).await;
    eprintln!("the client's retried write: {written:?} {:?} after isolation", isolated_at.elapsed());
    let states_seen = states.states();
    if states_seen.iter().any(|s| s.is_terminated()) || written.is_err() {
        problems.push(format!(
            "the session did not survive the move off the isolated follower: write {written:?}, states {states_seen:?}"
        ));
    } else {
        assert_eq!(client.session_id(), session, "the client kept its session");
        let eph = setup.check_stat("/t6c/eph").bounded().await.expect("exists");
        assert_eq!(eph.map(|s| s.ephemeral_owner), Some(session.0), "the client's ephemeral survived");
    }
    assert!(problems.is_empty(), "client of an isolated, leaderless follower: {problems:#?}");
}

/// A server out of touch with the cluster turns a connecting client away quickly enough for the
/// client to try another server within its own connection timeout (zookeeper-client gives a
/// server 2/5 of the session timeout, the Java client the session timeout over the number of
/// servers). Holding the handshake longer cost a client of the soak (isolated-then-kill, round
/// 8 at c445758) two tries at a stale server, and its session, while a quorum served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_touch_turns_a_client_away_within_its_connection_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let lone = cluster.wait_leader(&all, None).await;
    for id in all.into_iter().filter(|id| *id != lone) {
        cluster.node(id).freeze().await;
    }
    let node = cluster.node(lone);
    wait_for("the lone server to stop serving", WAIT, || async { (!node.ready().await).then_some(()) }).await;

    // A ConnectRequest for a new session of 4 s: protocol 0, zxid 0, timeout, session 0, a
    // 16-byte password, not read-only.
    let timeout_ms: i32 = 4000;
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&timeout_ms.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&16i32.to_be_bytes());
    body.extend_from_slice(&[0; 16]);
    body.push(0);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);

    let mut stream = tokio::net::TcpStream::connect(node.client_addr).bounded().await.expect("connect");
    let asked = Instant::now();
    stream.write_all(&frame).await.expect("send the connect request");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).bounded().await;
    let turned_away_after = asked.elapsed();
    let connection_timeout = std::time::Duration::from_millis(timeout_ms as u64 * 2 / 5);
    assert!(rest.is_empty(), "a server out of touch answered the handshake: {rest:?}");
    assert!(
        turned_away_after < connection_timeout,
        "the server held the handshake {turned_away_after:?}, past the client's {connection_timeout:?} connection timeout"
    );
}

/// Issue 12 hole o: a follower answered a ping at once and told the leader of it in a later
/// touch batch; cut off, it went on answering pings until its contact limit (at least 1 s) ran
/// out, while the leader, hearing nothing, expired the session on the last touch it had. A
/// session of 1 s was told it was alive by a serving server, then expired before its timeout
/// since that ping had passed. An answered ping must mean the leader has heard of the session
/// since the ping was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_expires_sooner_than_its_timeout_after_a_ping_a_follower_answered() {
    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let follower = all.into_iter().find(|id| *id != leader).expect("a follower");
    let observer = cluster.client(&[leader]).await;
    let timeout = std::time::Duration::from_millis(1000);
    let (mut conn, deleted) = watched_session(&cluster, follower, &observer, "/o-alive", timeout).await;
    let cut = cluster.node(follower).isolate(true);
    let (expired_at, early) =
        answers_too_close_to_the_expiry(Asking::Pings(&mut conn), deleted, Instant::now(), timeout, cut).await;
    cluster.node(follower).isolate(false).await;
    assert!(
        early.is_empty(),
        "the session expired at {expired_at:?}, sooner than its {timeout:?} after pings the cut-off follower \
         answered (sent, answered): {early:?}"
    );
}

/// Found by the soak (isolated-leader, round 92 at 04df0e9): a leader cut off from its quorum
/// finds its sessions expired and proposes the expiries, which cannot commit; its duty loop
/// awaited each for the whole write timeout and so did not see that it had lost its quorum.
/// It went on serving — answering pings from its own tracker — while the others elected a new
/// leader, which then expired a session that had been told it was alive. An isolated leader
/// stops serving within its contact limit (1 s here) whatever it has to propose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_with_expiries_to_propose_stops_serving_in_its_contact_limit() {
    use paddock_testkit::raw::{Connect, RawConn};
    use std::time::Duration;

    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    // Sessions of 0.4 s on the leader, left silent: each expires on the leader soon after the
    // cut, and every expiry is a write that cannot commit there.
    let connect = Connect { timeout_ms: 400, ..Connect::default() };
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(RawConn::connect_with(cluster.node(leader).client_addr, &connect).await);
    }
    let node = cluster.node(leader);
    node.isolate(true).await;
    let cut = Instant::now();
    let stopped =
        crate::harness::poll_for(Duration::from_secs(10), || async { (!node.ready().await).then_some(()) }).await;
    let after = cut.elapsed();
    node.isolate(false).await;
    drop(silent);
    assert!(stopped.is_some(), "the isolated leader still served 10 s after the cut");
    assert!(
        after < Duration::from_millis(2500),
        "the isolated leader served for {after:?} after the cut, past its 1 s contact limit"
    );
}

/// A raw session of `timeout` on `server` with an ephemeral node at `path`, and a watch on
/// that node from `observer` (after a sync, so it sees the node): the watch fires when the
/// session expires.
async fn watched_session(
    cluster: &Cluster,
    server: u64,
    observer: &Client,
    path: &str,
    timeout: std::time::Duration,
) -> (paddock_testkit::raw::RawConn, zookeeper_client::OneshotWatcher) {
    use paddock_testkit::raw::{self, flags, op, Connect, RawConn};

    let connect = Connect { timeout_ms: timeout.as_millis() as i32, ..Connect::default() };
    let mut conn = RawConn::connect_with(cluster.node(server).client_addr, &connect).await;
    let created = conn.request(op::CREATE, &raw::create_body(path, b"", flags::EPHEMERAL)).await;
    assert_eq!(created.err, raw::code::OK, "the session's ephemeral node");
    observer.sync("/").bounded().await.expect("sync");
    let (_, deleted) = observer.check_and_watch_stat(path).bounded().await.expect("watch the ephemeral node");
    (conn, deleted)
}

/// How a test asks a server, again and again, whether a session lives.
enum Asking<'a> {
    /// A ping over the session's connection; the server closing it ends the asking.
    Pings(&'a mut paddock_testkit::raw::RawConn),
    /// A fresh connection resuming the session (its id and password) at `addr`, as a client
    /// reconnecting does; a handshake the server turns away is no answer.
    Handshakes(std::net::SocketAddr, paddock_testkit::raw::Connect),
}

/// Asks (see [`Asking`]) every 50 ms from `cut` on until `deleted` fires (the session's
/// ephemeral node went, seen by an observer on the majority side), the asking ends or 12 s
/// pass; the caller heals the cut. Returns when the expiry was seen and the answers (sent,
/// answered) on `clock` that came before the expiry yet less than `timeout` before it: each is
/// a session told it was alive that then expired sooner than its timeout.
async fn answers_too_close_to_the_expiry(
    mut asking: Asking<'_>,
    deleted: zookeeper_client::OneshotWatcher,
    clock: Instant,
    timeout: std::time::Duration,
    cut: impl std::future::Future<Output = ()>,
) -> (std::time::Duration, Vec<(std::time::Duration, std::time::Duration)>) {
    use paddock_testkit::raw::{Frame, RawConn, PING_XID};
    use std::time::Duration;

    let seen = tokio::spawn(async move {
        deleted.changed().await;
        clock.elapsed()
    });
    cut.await;
    let mut answered = Vec::new();
    while !seen.is_finished() && clock.elapsed() < Duration::from_secs(12) {
        let sent = clock.elapsed();
        let alive = match &mut asking {
            Asking::Pings(conn) => {
                if conn.send_ping().await.is_err() {
                    break;
                }
                match conn.recv().bounded().await {
                    Ok(Frame::Reply(reply)) => reply.xid == PING_XID,
                    Ok(_) => false,
                    Err(_) => break,
                }
            }
            Asking::Handshakes(addr, connect) => {
                let resumed = RawConn::try_connect(*addr, connect).bounded().await;
                resumed.is_ok_and(|conn| conn.handshake.session_id == connect.session_id)
            }
        };
        if alive {
            answered.push((sent, clock.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expired_at = seen.bounded().await.expect("the observer saw the session's node go");
    let early = answered.into_iter().filter(|(sent, at)| *at <= expired_at && expired_at < *sent + timeout).collect();
    (expired_at, early)
}

/// Issue 12 hole o, the leader's side: a leader cut off from its quorum answered pings from its
/// own tracker until its contact limit ran out (half the smallest session: 2 s here), while the
/// others, once their leader lease of it ran out, elected a new leader, which times every
/// session from its election and so expired this one sooner than its timeout after pings the
/// old leader had answered. A leader answers a ping only within its lease: no other server can
/// have been elected yet, so whoever expires the session does so a whole timeout after the ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_expires_sooner_than_its_timeout_after_a_ping_a_cut_off_leader_answered() {
    let cluster = start_cluster(3, &["--min-session-timeout-ms", "4000"]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let follower = all.into_iter().find(|id| *id != leader).expect("a follower");
    let observer = cluster.client(&[follower]).await;
    let timeout = std::time::Duration::from_millis(4000);
    let (mut conn, deleted) = watched_session(&cluster, leader, &observer, "/o-leader", timeout).await;
    let cut = cluster.node(leader).isolate(true);
    let (expired_at, early) =
        answers_too_close_to_the_expiry(Asking::Pings(&mut conn), deleted, Instant::now(), timeout, cut).await;
    cluster.node(leader).isolate(false).await;
    assert!(
        early.is_empty(),
        "the session expired at {expired_at:?}, sooner than its {timeout:?} after pings the cut-off leader \
         answered (sent, answered): {early:?}"
    );
}

/// Hole o once more, through a follower: the leader and one follower on the minority side of
/// a five-node cluster still reach each other. The follower answers a ping once the leader took
/// its touch — and the leader took touches while it still served (up to its contact limit),
/// past its lease, while the majority elected a new leader. A leader now says whether it took a
/// batch within its lease, and the follower answers pings only on such a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_expires_sooner_than_its_timeout_after_a_ping_a_follower_of_a_cut_off_leader_answered() {
    let cluster = crate::harness::start_partitionable_cluster(5, &["--min-session-timeout-ms", "4000"]).await;
    let all = cluster.ids();
    let leader = cluster.wait_leader(&all, None).await;
    let others: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
    let (follower, majority) = (others[0], &others[1..]);
    let observer = cluster.client(majority).await;
    let timeout = std::time::Duration::from_millis(4000);
    let (mut conn, deleted) = watched_session(&cluster, follower, &observer, "/o-minority", timeout).await;
    let cut = async { cluster.partition(&[leader, follower]) };
    let (expired_at, early) =
        answers_too_close_to_the_expiry(Asking::Pings(&mut conn), deleted, Instant::now(), timeout, cut).await;
    cluster.heal();
    assert!(
        early.is_empty(),
        "the session expired at {expired_at:?}, sooner than its {timeout:?} after pings a follower of the \
         cut-off leader answered (sent, answered): {early:?}"
    );
}

/// Hole o for handshakes: a client that reconnects and is told its session is still there
/// counts on it as on an answered ping. A leader cut off from its quorum resumed the session of
/// a client reconnecting to it until its contact limit ran out, while the majority elected a
/// leader that expired the session sooner than its timeout after that. A server resumes a
/// session only once the leader may promise it lives, as for a ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_expires_sooner_than_its_timeout_after_a_cut_off_leader_resumed_it() {
    use paddock_testkit::raw::Connect;

    let cluster = start_cluster(3, &["--min-session-timeout-ms", "4000"]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let follower = all.into_iter().find(|id| *id != leader).expect("a follower");
    let observer = cluster.client(&[follower]).await;
    let timeout = std::time::Duration::from_millis(4000);
    let (conn, deleted) = watched_session(&cluster, leader, &observer, "/o-resumed", timeout).await;
    let resume = Connect {
        timeout_ms: timeout.as_millis() as i32,
        session_id: conn.handshake.session_id,
        password: conn.handshake.password.clone(),
        ..Connect::default()
    };
    drop(conn);
    let cut = cluster.node(leader).isolate(true);
    let asking = Asking::Handshakes(cluster.node(leader).client_addr, resume);
    let (expired_at, early) = answers_too_close_to_the_expiry(asking, deleted, Instant::now(), timeout, cut).await;
    cluster.node(leader).isolate(false).await;
    assert!(
        early.is_empty(),
        "the session expired at {expired_at:?}, sooner than its {timeout:?} after the cut-off leader resumed it \
         (sent, answered): {early:?}"
    );
}
