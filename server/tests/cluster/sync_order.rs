//! Issue 12 hole n, found by the robustness suite's watch checker (in every fault scenario, a
//! sync's reply before the events of changes at or before its zxid). A sync's reply carries
//! the zxid the server has applied when it answers; it was written without first sending the
//! notifications of the applies its barrier waited for, which waited in the connection's queue:
//! the reply overtook the events. ZooKeeper answers a sync in order with those applies, after
//! their events. A client that takes its last seen zxid from every reply (Java's does) and
//! reconnects before the events arrive sets its watches again relative to that zxid, and the
//! server does not fire them: the events were lost. Pings and error replies were answered the
//! same way (`Slot::Immediate` in zk/writer.rs), with a narrower race this test does not show.

use crate::harness::{ensure_node, start_cluster, Bounded, Clients};
use paddock_testkit::raw::{self, code, op, Frame, Jute, RawConn};

/// Reads `conn`'s frames until the reply to `xid`; the events that came first, and the reply.
async fn events_then_reply(conn: &mut RawConn, xid: i32) -> (Vec<raw::Event>, raw::Reply) {
    let mut events = Vec::new();
    loop {
        match conn.recv().bounded().await.expect("a frame") {
            Frame::Event(e) => events.push(e),
            Frame::Reply(reply) if reply.xid == xid => return (events, reply),
            Frame::Reply(reply) => panic!("a reply to xid {} while waiting for {xid}", reply.xid),
        }
    }
}

/// Each round: a data watch on /sync-order through one follower, then a setData through the
/// other and at once a sync through the first; the sync's reply must not come before the event
/// when it carries a zxid at or past the write's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reply_past_a_change_comes_after_its_watch_event() {
    let cluster = start_cluster(3, &[]).await;
    let all = [1, 2, 3];
    let leader = cluster.wait_leader(&all, None).await;
    let followers: Vec<u64> = all.into_iter().filter(|id| *id != leader).collect();
    let setup = cluster.client(&[followers[0]]).await;
    ensure_node(&setup, "/sync-order").await;
    setup.sync("/").bounded().await.expect("sync");
    let mut watcher = RawConn::connect(cluster.node(followers[0]).client_addr).await;
    let mut writer = RawConn::connect(cluster.node(followers[1]).client_addr).await;
    let rounds = 100;
    let mut overtaken = Vec::new();
    for round in 0..rounds {
        let xid = watcher.send(op::GET_DATA, &raw::path_watch_body("/sync-order", true)).await.expect("send");
        let (early, reply) = events_then_reply(&mut watcher, xid).await;
        assert!(early.is_empty() && reply.err == code::OK, "round {round}: {early:?} {reply:?}");
        let set = writer.send(op::SET_DATA, &raw::set_data_body("/sync-order", b"x", -1)).await.expect("send");
        let sync = watcher.send(op::SYNC, &Jute::new().str("/sync-order").bytes()).await.expect("send");
        let (before, synced) = events_then_reply(&mut watcher, sync).await;
        let (_, written) = events_then_reply(&mut writer, set).await;
        assert_eq!(written.err, code::OK);
        if before.is_empty() {
            if synced.zxid >= written.zxid {
                overtaken.push((round, synced.zxid, written.zxid));
            }
            let fired = watcher.recv().bounded().await.expect("the event");
            assert!(matches!(fired, Frame::Event(_)), "round {round}: {fired:?}");
        }
    }
    assert!(
        overtaken.is_empty(),
        "{} of {rounds} sync replies came before the event of a change they are past: (round, sync reply zxid, \
         change zxid) {overtaken:?}",
        overtaken.len()
    );
}
