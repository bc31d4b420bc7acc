//! Watches: one-shot data / exists / child watches, their delivery before any later reply on the
//! connection, persistent and persistent-recursive watches (addWatch), removeWatches and
//! checkWatches, and setWatches after a reconnect.

use futures::FutureExt as _;
use zookeeper_client::{AddWatchMode, EventType, PersistentWatcher, WatchedEvent};

use crate::harness::{Bounded, TestServer, EPHEMERAL, PERSISTENT};
use paddock_testkit::raw::{self, code, event, op, watcher_type, Jute, RawConn};

/// The next node event (session state events are skipped).
async fn next_node_event(watcher: &mut PersistentWatcher) -> (EventType, String) {
    loop {
        let event = watcher.changed().bounded().await;
        if event.event_type != EventType::Session {
            return (event.event_type, event.path);
        }
    }
}

fn node_event(event: &WatchedEvent) -> (EventType, &str) {
    (event.event_type, event.path.as_str())
}

#[tokio::test]
async fn data_watch_fires_on_change_and_delete() {
    let server = TestServer::start().await;
    let watcher_client = server.client().await;
    let writer = server.client().await;
    writer.create("/w", b"0", &PERSISTENT).bounded().await.expect("create");

    let (_, _, watch) = watcher_client.get_and_watch_data("/w").bounded().await.expect("watch");
    writer.set_data("/w", b"1", None).bounded().await.expect("set");
    let fired = watch.changed().bounded().await;
    assert_eq!(node_event(&fired), (EventType::NodeDataChanged, "/w"));

    let (_, _, watch) = watcher_client.get_and_watch_data("/w").bounded().await.expect("watch");
    writer.delete("/w", None).bounded().await.expect("delete");
    assert_eq!(node_event(&watch.changed().bounded().await), (EventType::NodeDeleted, "/w"));
}

#[tokio::test]
async fn watch_event_carries_the_txn_zxid() {
    let server = TestServer::start().await;
    let watcher_client = server.client().await;
    let writer = server.client().await;
    writer.create("/zx", b"0", &PERSISTENT).bounded().await.expect("create");
    let (_, _, watch) = watcher_client.get_and_watch_data("/zx").bounded().await.expect("watch");
    let stat = writer.set_data("/zx", b"1", None).bounded().await.expect("set");
    let fired = watch.changed().bounded().await;
    assert_eq!(node_event(&fired), (EventType::NodeDataChanged, "/zx"));
    assert_eq!(fired.zxid, stat.mzxid, "ZooKeeper 3.9 sends the txn's zxid in the notification header");
}

#[tokio::test]
async fn one_shot_watches_fire_once() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    writer.create("/once", b"", &PERSISTENT).bounded().await.expect("create");
    let mut raw = RawConn::connect(server.client_addr).await;
    let reply = raw.request(op::GET_DATA, &Jute::new().str("/once").bool(true).bytes()).await;
    assert_eq!(reply.err, code::OK);
    let reply = raw.request(op::GET_CHILDREN, &Jute::new().str("/once").bool(true).bytes()).await;
    assert_eq!(reply.err, code::OK);
    for round in 0..3 {
        writer.set_data("/once", format!("{round}").as_bytes(), None).bounded().await.expect("set");
        writer.create(&format!("/once/c{round}"), b"", &PERSISTENT).bounded().await.expect("create");
    }
    raw.ping().await;
    let events: Vec<(i32, String)> = raw.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    assert_eq!(
        events,
        [(event::NODE_DATA_CHANGED, "/once".to_owned()), (event::NODE_CHILDREN_CHANGED, "/once".to_owned())],
        "each watch fires exactly once"
    );
}

#[tokio::test]
async fn exists_watch_fires_on_create() {
    let server = TestServer::start().await;
    let watcher_client = server.client().await;
    let writer = server.client().await;
    let (stat, watch) = watcher_client.check_and_watch_stat("/later").bounded().await.expect("watch");
    assert_eq!(stat, None);
    writer.create("/later", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(node_event(&watch.changed().bounded().await), (EventType::NodeCreated, "/later"));

    let (stat, watch) = watcher_client.check_and_watch_stat("/later").bounded().await.expect("watch");
    assert!(stat.is_some());
    writer.set_data("/later", b"x", None).bounded().await.expect("set");
    assert_eq!(node_event(&watch.changed().bounded().await), (EventType::NodeDataChanged, "/later"));
}

#[tokio::test]
async fn child_watch_fires_on_children_and_node_delete_only() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    writer.create("/kids", b"", &PERSISTENT).bounded().await.expect("create");
    let mut raw = RawConn::connect(server.client_addr).await;
    let watch_children = Jute::new().str("/kids").bool(true).bytes();

    assert_eq!(raw.request(op::GET_CHILDREN, &watch_children).await.err, code::OK);
    writer.set_data("/kids", b"data changes do not fire child watches", None).bounded().await.expect("set");
    raw.ping().await;
    assert!(raw.events.is_empty(), "unexpected {:?}", raw.events);
    writer.create("/kids/a", b"", &PERSISTENT).bounded().await.expect("create");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_CHILDREN_CHANGED, "/kids"));

    assert_eq!(raw.request(op::GET_CHILDREN, &watch_children).await.err, code::OK);
    writer.set_data("/kids/a", b"grandchild data does not count", None).bounded().await.expect("set");
    writer.delete("/kids/a", None).bounded().await.expect("delete");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_CHILDREN_CHANGED, "/kids"));

    assert_eq!(raw.request(op::GET_CHILDREN, &watch_children).await.err, code::OK);
    writer.delete("/kids", None).bounded().await.expect("delete");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_DELETED, "/kids"));
    raw.ping().await;
    assert!(raw.events.is_empty(), "unexpected {:?}", raw.events);
}

#[tokio::test]
async fn watch_event_arrives_before_the_new_data() {
    let server = TestServer::start().await;
    let reader = server.client().await;
    let writer = server.client().await;
    writer.create("/order", b"", &PERSISTENT).bounded().await.expect("create");
    for round in 0..20u32 {
        let value = round.to_string();
        let (_, _, data_watch) = reader.get_and_watch_data("/order").bounded().await.expect("watch data");
        let (_, _, child_watch) = reader.get_and_watch_children("/order").bounded().await.expect("watch children");
        let child = format!("/order/c{round}");
        let (stat, exists_watch) = reader.check_and_watch_stat(&child).bounded().await.expect("watch exists");
        assert_eq!(stat, None);

        writer.set_data("/order", value.as_bytes(), None).bounded().await.expect("set");
        writer.create(&child, b"", &PERSISTENT).bounded().await.expect("create");

        // The reader reads after the writes were acknowledged: its reply must come after the
        // events, so each watcher has fired by the time the read returns.
        let (data, _) = reader.get_data("/order").bounded().await.expect("get");
        assert_eq!(data, value.as_bytes());
        let fired = data_watch.changed().now_or_never().expect("data event before the new data");
        assert_eq!(node_event(&fired), (EventType::NodeDataChanged, "/order"));
        let fired = child_watch.changed().now_or_never().expect("child event before the new data");
        assert_eq!(node_event(&fired), (EventType::NodeChildrenChanged, "/order"));
        let fired = exists_watch.changed().now_or_never().expect("exists event before the new data");
        assert_eq!(node_event(&fired), (EventType::NodeCreated, child.as_str()));
    }
}

#[tokio::test]
async fn closing_a_session_fires_watches_on_its_ephemerals() {
    let server = TestServer::start().await;
    let watcher_client = server.client().await;
    let owner = server.client().await;
    owner.create("/dir", b"", &PERSISTENT).bounded().await.expect("create");
    owner.create("/dir/eph", b"", &EPHEMERAL).bounded().await.expect("create");
    let (_, _, data_watch) = watcher_client.get_and_watch_data("/dir/eph").bounded().await.expect("watch");
    let (_, _, child_watch) = watcher_client.get_and_watch_children("/dir").bounded().await.expect("watch");
    drop(owner);
    assert_eq!(node_event(&data_watch.changed().bounded().await), (EventType::NodeDeleted, "/dir/eph"));
    assert_eq!(node_event(&child_watch.changed().bounded().await), (EventType::NodeChildrenChanged, "/dir"));
}

#[tokio::test]
async fn persistent_watch_sees_node_and_child_events_and_stays() {
    let server = TestServer::start().await;
    let watcher_client = server.client().await;
    let writer = server.client().await;
    let mut watcher = watcher_client.watch("/pw", AddWatchMode::Persistent).bounded().await.expect("addWatch");

    writer.create("/pw", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeCreated, "/pw".into()));
    writer.set_data("/pw", b"1", None).bounded().await.expect("set");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeDataChanged, "/pw".into()));
    writer.set_data("/pw", b"2", None).bounded().await.expect("set");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeDataChanged, "/pw".into()));
    writer.create("/pw/c", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeChildrenChanged, "/pw".into()));
    // Not recursive: the child's own changes are not reported.
    writer.set_data("/pw/c", b"x", None).bounded().await.expect("set");
    writer.delete("/pw/c", None).bounded().await.expect("delete");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeChildrenChanged, "/pw".into()));
    writer.delete("/pw", None).bounded().await.expect("delete");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeDeleted, "/pw".into()));
    writer.create("/pw", b"", &PERSISTENT).bounded().await.expect("create again");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeCreated, "/pw".into()));
}

#[tokio::test]
async fn persistent_recursive_watch_sees_the_subtree() {
    let server = TestServer::start().await;
    let watcher_client = server.client().await;
    let writer = server.client().await;
    let mut watcher = watcher_client.watch("/r", AddWatchMode::PersistentRecursive).bounded().await.expect("addWatch");

    writer.create("/r", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeCreated, "/r".into()));
    // Recursive watches report no NodeChildrenChanged: the child's own NodeCreated says it.
    writer.create("/r/a", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeCreated, "/r/a".into()));
    writer.set_data("/r/a", b"1", None).bounded().await.expect("set");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeDataChanged, "/r/a".into()));
    writer.create("/r/a/b", b"", &PERSISTENT).bounded().await.expect("create");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeCreated, "/r/a/b".into()));
    // A sibling that merely shares the prefix is outside the subtree.
    writer.create("/rx", b"", &PERSISTENT).bounded().await.expect("create");
    writer.set_data("/rx", b"1", None).bounded().await.expect("set");
    writer.delete("/r/a/b", None).bounded().await.expect("delete");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeDeleted, "/r/a/b".into()));
    writer.delete("/r/a", None).bounded().await.expect("delete");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeDeleted, "/r/a".into()));
    writer.set_data("/r", b"2", None).bounded().await.expect("set");
    assert_eq!(next_node_event(&mut watcher).await, (EventType::NodeDataChanged, "/r".into()));
}

#[tokio::test]
async fn remove_and_check_watches() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    writer.create("/rw", b"", &PERSISTENT).bounded().await.expect("create");
    let mut raw = RawConn::connect(server.client_addr).await;
    let watch_request = |path: &str, ty: i32| Jute::new().str(path).i32(ty).bytes();

    let check = raw.request(op::CHECK_WATCHES, &watch_request("/rw", watcher_type::DATA)).await;
    assert_eq!(check.err, code::NO_WATCHER, "no watch yet");

    assert_eq!(raw.request(op::GET_DATA, &Jute::new().str("/rw").bool(true).bytes()).await.err, code::OK);
    for (ty, expected) in
        [(watcher_type::DATA, code::OK), (watcher_type::ANY, code::OK), (watcher_type::CHILDREN, code::NO_WATCHER)]
    {
        let reply = raw.request(op::CHECK_WATCHES, &watch_request("/rw", ty)).await;
        assert_eq!(reply.err, expected, "checkWatches type {ty} with a data watch");
    }
    assert_eq!(raw.request(op::REMOVE_WATCHES, &watch_request("/rw", watcher_type::DATA)).await.err, code::OK);
    assert_eq!(raw.request(op::CHECK_WATCHES, &watch_request("/rw", watcher_type::DATA)).await.err, code::NO_WATCHER);
    assert_eq!(raw.request(op::REMOVE_WATCHES, &watch_request("/rw", watcher_type::DATA)).await.err, code::NO_WATCHER);
    writer.set_data("/rw", b"1", None).bounded().await.expect("set");
    raw.ping().await;
    assert!(raw.events.is_empty(), "a removed watch fired: {:?}", raw.events);

    assert_eq!(raw.request(op::GET_CHILDREN, &Jute::new().str("/rw").bool(true).bytes()).await.err, code::OK);
    assert_eq!(raw.request(op::REMOVE_WATCHES, &watch_request("/rw", watcher_type::ANY)).await.err, code::OK);
    writer.create("/rw/c", b"", &PERSISTENT).bounded().await.expect("create");
    raw.ping().await;
    assert!(raw.events.is_empty(), "a removed watch fired: {:?}", raw.events);

    for (mode, ty, other) in [
        (0, watcher_type::PERSISTENT, watcher_type::PERSISTENT_RECURSIVE),
        (1, watcher_type::PERSISTENT_RECURSIVE, watcher_type::PERSISTENT),
    ] {
        assert_eq!(raw.request(op::ADD_WATCH, &Jute::new().str("/rw").i32(mode).bytes()).await.err, code::OK);
        assert_eq!(raw.request(op::CHECK_WATCHES, &watch_request("/rw", ty)).await.err, code::OK);
        assert_eq!(raw.request(op::CHECK_WATCHES, &watch_request("/rw", other)).await.err, code::NO_WATCHER);
        assert_eq!(raw.request(op::REMOVE_WATCHES, &watch_request("/rw", ty)).await.err, code::OK);
        assert_eq!(raw.request(op::CHECK_WATCHES, &watch_request("/rw", ty)).await.err, code::NO_WATCHER);
        writer.set_data("/rw", b"2", None).bounded().await.expect("set");
        writer.create(&format!("/rw/m{mode}"), b"", &PERSISTENT).bounded().await.expect("create");
        raw.ping().await;
        assert!(raw.events.is_empty(), "a removed persistent watch fired: {:?}", raw.events);
    }
}

#[tokio::test]
async fn set_watches_restores_watches_and_fires_missed_events() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    for path in ["/sw", "/sw/changed", "/sw/same", "/sw/deleted", "/sw/kids", "/sw/quiet-kids"] {
        writer.create(path, b"", &PERSISTENT).bounded().await.expect("create");
    }
    // The zxid a client that watched these would have seen last.
    let mut before = RawConn::connect(server.client_addr).await;
    let seen = before.request(op::EXISTS, &Jute::new().str("/sw").bool(false).bytes()).await.zxid;
    writer.set_data("/sw/changed", b"1", None).bounded().await.expect("set");
    writer.delete("/sw/deleted", None).bounded().await.expect("delete");
    writer.create("/sw/appeared", b"", &PERSISTENT).bounded().await.expect("create");
    writer.create("/sw/kids/k", b"", &PERSISTENT).bounded().await.expect("create");

    let mut raw = RawConn::connect(server.client_addr).await;
    let body = Jute::new()
        .i64(seen)
        .strs(&["/sw/changed", "/sw/same", "/sw/deleted"])
        .strs(&["/sw/appeared", "/sw/absent"])
        .strs(&["/sw/kids", "/sw/quiet-kids"])
        .bytes();
    let reply = raw.request_with_xid(-8, op::SET_WATCHES, &body).await;
    assert_eq!(reply.err, code::OK);
    raw.ping().await;
    let mut missed: Vec<(i32, String)> = raw.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    missed.sort();
    assert_eq!(
        missed,
        [
            (event::NODE_CREATED, "/sw/appeared".to_owned()),
            (event::NODE_DELETED, "/sw/deleted".to_owned()),
            (event::NODE_DATA_CHANGED, "/sw/changed".to_owned()),
            (event::NODE_CHILDREN_CHANGED, "/sw/kids".to_owned()),
        ]
    );
    // The others are armed again.
    writer.set_data("/sw/same", b"1", None).bounded().await.expect("set");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_DATA_CHANGED, "/sw/same"));
    writer.create("/sw/absent", b"", &PERSISTENT).bounded().await.expect("create");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_CREATED, "/sw/absent"));
    writer.create("/sw/quiet-kids/k", b"", &PERSISTENT).bounded().await.expect("create");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_CHILDREN_CHANGED, "/sw/quiet-kids"));
}

#[tokio::test]
async fn set_watches2_restores_persistent_watches() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    writer.create("/sp", b"", &PERSISTENT).bounded().await.expect("create");
    let mut raw = RawConn::connect(server.client_addr).await;
    let empty: [&str; 0] = [];
    let body = Jute::new().i64(0).strs(&empty).strs(&empty).strs(&empty).strs(&["/sp"]).strs(&["/sr"]).bytes();
    let reply = raw.request_with_xid(-8, raw::op::SET_WATCHES2, &body).await;
    assert_eq!(reply.err, code::OK);
    writer.set_data("/sp", b"1", None).bounded().await.expect("set");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_DATA_CHANGED, "/sp"));
    writer.set_data("/sp", b"2", None).bounded().await.expect("set");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_DATA_CHANGED, "/sp"), "still armed");
    writer.create("/sr", b"", &PERSISTENT).bounded().await.expect("create");
    writer.create("/sr/deep", b"", &PERSISTENT).bounded().await.expect("create");
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_CREATED, "/sr"));
    let fired = raw.next_event().await;
    assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_CREATED, "/sr/deep"));
}

#[tokio::test]
async fn a_failed_multi_fires_nothing_and_a_successful_one_fires_all() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    writer.create("/mw", b"", &PERSISTENT).bounded().await.expect("create");
    let mut raw = RawConn::connect(server.client_addr).await;
    assert_eq!(raw.request(op::EXISTS, &Jute::new().str("/mw/a").bool(true).bytes()).await.err, code::NO_NODE);
    assert_eq!(raw.request(op::GET_CHILDREN, &Jute::new().str("/mw").bool(true).bytes()).await.err, code::OK);

    let mut multi = writer.new_multi_writer();
    multi.add_create("/mw/a", b"", &PERSISTENT).expect("op");
    multi.add_delete("/mw/missing", None).expect("op");
    multi.commit().bounded().await.expect_err("the multi fails");
    raw.ping().await;
    assert!(raw.events.is_empty(), "a failed multi fired {:?}", raw.events);

    let mut multi = writer.new_multi_writer();
    multi.add_create("/mw/a", b"", &PERSISTENT).expect("op");
    multi.add_create("/mw/b", b"", &PERSISTENT).expect("op");
    multi.commit().bounded().await.expect("the multi succeeds");
    raw.ping().await;
    let mut fired: Vec<(i32, String)> = raw.events.drain(..).map(|e| (e.event_type, e.path)).collect();
    fired.sort();
    assert_eq!(fired, [(event::NODE_CREATED, "/mw/a".to_owned()), (event::NODE_CHILDREN_CHANGED, "/mw".to_owned())]);
}

/// A watch's notification never comes before the reply of the read that registered it, even
/// when a write lands right after the read (issue 12, c: the writer used to collect pending
/// notifications after letting go of the read's view, so an apply in between could put the new
/// watch's event ahead of the reply; the Java client and zookeeper-client drop such an event, and
/// a lock waiter then waits forever). Each round reads with a watch while no other watch is
/// outstanding, so any event queued before the reply is one the reply has not registered yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notification_overtakes_the_reply_that_registered_its_watch() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    writer.create("/race", b"0", &PERSISTENT).bounded().await.expect("create");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut writes = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Several in flight at once, so applies keep landing while reads run.
                let batch: Vec<_> = (0..8).map(|_| writer.set_data("/race", b"x", None)).collect();
                for set in futures::future::join_all(batch).bounded().await {
                    set.expect("set");
                    writes += 1;
                }
            }
            writes
        })
    };
    let mut raw = RawConn::connect(server.client_addr).await;
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while rounds < 20_000 && started.elapsed() < std::time::Duration::from_secs(20) {
        let reply = raw.request(op::GET_DATA, &Jute::new().str("/race").bool(true).bytes()).await;
        assert_eq!(reply.err, code::OK);
        assert!(raw.events.is_empty(), "round {rounds}: {:?} arrived before the reply that set its watch", raw.events);
        let fired = raw.next_event().await;
        assert_eq!((fired.event_type, fired.path.as_str()), (event::NODE_DATA_CHANGED, "/race"));
        assert!(fired.zxid > reply.zxid, "the event is for a change after the read");
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writing.bounded().await.expect("writer");
    assert!(rounds >= 100 && writes >= rounds as u64, "{rounds} rounds, {writes} writes");
}
