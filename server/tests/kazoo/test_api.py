"""The ZooKeeper compatibility checklist (DESIGN.md), driven through kazoo against a real
paddock-server. Requests kazoo 2.11 has no API for (createContainer, createTTL, addWatch, ...)
go through kazoo's own connection as custom records (zkproto.py)."""

import inspect
import socket
import struct
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadArgumentsError,
    BadVersionError,
    ConnectionLoss,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    NoWatcherError,
    ReconfigDisabledError,
    RolledBackError,
    RuntimeInconsistency,
    UnimplementedError,
)
from kazoo.protocol.states import EventType, KazooState
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from kazoo.security import (
    ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

import zkproto
from conftest import SUPER_DIGEST, wait_until
from kazoo.protocol.serialization import write_string
from zkproto import EventTap, RawSession, call

# --------------------------------------------------------------------------------------------
# helpers


class Events:
    """A thread-safe list of watch callbacks' arguments with a bounded wait."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, *args):
        with self.cond:
            self.items.append(args[0] if len(args) == 1 else args)
            self.cond.notify_all()

    def wait(self, n=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.items) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} callbacks within {timeout}s, got {self.items}")
                self.cond.wait(left)
            return list(self.items)

    def wait_for(self, predicate, timeout=10.0, what="callback"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.items}")
                self.cond.wait(left)
            return list(self.items)


def now_ms():
    return int(time.time() * 1000)


def round_trip(client):
    """A request on the session after which every earlier event has been delivered."""
    client.exists("/")


# --------------------------------------------------------------------------------------------
# basic operations and Stat


def test_create_get_set_delete(zk):
    assert zk.create("/a", b"hello") == "/a"
    data, stat = zk.get("/a")
    assert data == b"hello"
    assert stat.version == 0 and stat.dataLength == 5
    stat2 = zk.set("/a", b"world!")
    assert stat2.version == 1 and stat2.dataLength == 6
    assert zk.get("/a")[0] == b"world!"
    zk.delete("/a")
    assert zk.exists("/a") is None


def test_create2_returns_stat_and_get_children2(zk):
    path, stat = zk.create("/c2", b"xyz", include_data=True)
    assert path == "/c2"
    assert stat.dataLength == 3 and stat.version == 0 and stat.numChildren == 0
    assert stat == zk.exists("/c2")
    zk.create("/c2/a")
    zk.create("/c2/b")
    children, pstat = zk.get_children("/c2", include_data=True)
    assert sorted(children) == ["a", "b"]
    assert pstat.numChildren == 2 and pstat.cversion == 2


def test_makepath_and_empty_data(zk):
    zk.create("/mp/x/y/z", b"leaf", makepath=True)
    assert zk.get("/mp/x/y/z")[0] == b"leaf"
    assert zk.get("/mp/x")[0] == b""
    assert zk.get_children("/mp") == ["x"]
    zk.ensure_path("/mp/x/y/q")
    assert sorted(zk.get_children("/mp/x/y")) == ["q", "z"]
    zk.delete("/mp", recursive=True)
    assert zk.exists("/mp") is None


def test_null_data_reads_back_as_none(zk):
    # kazoo sends None as length -1 and reads -1 back as None; b"" stays b"" (issue 12 l).
    zk.create("/null", None)
    data, stat = zk.get("/null")
    assert data is None and stat.dataLength == 0
    zk.create("/empty", b"")
    assert zk.get("/empty")[0] == b""
    zk.set("/empty", None)
    assert zk.get("/empty")[0] is None
    zk.set("/null", b"")
    assert zk.get("/null")[0] == b""


def test_zookeeper_system_nodes(zk):
    assert zk.exists("/zookeeper") is not None
    assert "quota" in zk.get_children("/zookeeper")
    assert zk.exists("/zookeeper/config") is not None
    assert "zookeeper" in zk.get_children("/")


def test_stat_fields(zk, make_client):
    before = now_ms()
    _, st = zk.create("/s", b"12345", include_data=True)
    after = now_ms()
    assert st.czxid > 0
    assert st.mzxid == st.czxid
    assert st.pzxid == st.czxid, "a new node's pzxid is its czxid"
    assert st.ctime == st.mtime
    assert before - 1000 <= st.ctime <= after + 1000, (before, st.ctime, after)
    assert (st.version, st.cversion, st.aversion) == (0, 0, 0)
    assert st.ephemeralOwner == 0
    assert st.dataLength == 5 and st.numChildren == 0
    assert zk.last_zxid == st.czxid, "a write's reply header carries its zxid"

    time.sleep(0.01)
    st_set = zk.set("/s", b"1")
    assert st_set.czxid == st.czxid and st_set.ctime == st.ctime
    assert st_set.mzxid > st.czxid and st_set.mzxid == zk.last_zxid
    assert st_set.mtime >= st.mtime
    assert st_set.version == 1 and st_set.dataLength == 1
    assert st_set.pzxid == st.pzxid, "setData does not move pzxid"

    _, child = zk.create("/s/c", include_data=True)
    p = zk.exists("/s")
    assert p.cversion == 1 and p.numChildren == 1
    assert p.pzxid == child.czxid
    assert p.mzxid == st_set.mzxid and p.version == 1, "a child create does not change the parent's data"

    zk.delete("/s/c")
    delete_zxid = zk.last_zxid
    p2 = zk.exists("/s")
    assert p2.cversion == 2, "cversion counts deletes too"
    assert p2.numChildren == 0
    assert p2.pzxid == delete_zxid and p2.pzxid > child.czxid

    # an ephemeral's owner is the session id
    _, e = zk.create("/eph", ephemeral=True, include_data=True)
    assert e.ephemeralOwner == zk.client_id[0]

    # aversion moves with setACL
    zk.set_acls("/s", OPEN_ACL_UNSAFE)
    assert zk.exists("/s").aversion == 1

    # zxids are strictly increasing across writes, also from another session
    other = make_client()
    _, o = other.create("/s2", include_data=True)
    assert o.czxid > e.czxid


def test_data_limits(zk):
    big = b"x" * (1024 * 1000)
    zk.create("/big", big)
    data, stat = zk.get("/big")
    assert data == big and stat.dataLength == len(big)
    zk.set("/big", b"")
    assert zk.get("/big")[0] == b""
    assert zk.exists("/big").dataLength == 0


# --------------------------------------------------------------------------------------------
# errors


def test_no_node_errors(zk):
    with pytest.raises(NoNodeError):
        zk.get("/missing")
    with pytest.raises(NoNodeError):
        zk.set("/missing", b"x")
    with pytest.raises(NoNodeError):
        zk.delete("/missing")
    with pytest.raises(NoNodeError):
        zk.get_children("/missing")
    with pytest.raises(NoNodeError):
        zk.create("/missing/child")
    with pytest.raises(NoNodeError):
        zk.get_acls("/missing")
    with pytest.raises(NoNodeError):
        zk.set_acls("/missing", OPEN_ACL_UNSAFE)
    assert zk.exists("/missing") is None


def test_node_exists_error(zk):
    zk.create("/dup")
    with pytest.raises(NodeExistsError):
        zk.create("/dup")
    with pytest.raises(NodeExistsError):
        zk.create("/")


def test_bad_version_errors(zk):
    zk.create("/v", b"0")
    zk.set("/v", b"1", version=0)
    with pytest.raises(BadVersionError):
        zk.set("/v", b"2", version=0)
    with pytest.raises(BadVersionError):
        zk.delete("/v", version=5)
    with pytest.raises(BadVersionError):
        zk.set_acls("/v", OPEN_ACL_UNSAFE, version=3)
    assert zk.get("/v")[0] == b"1"
    zk.delete("/v", version=1)
    assert zk.exists("/v") is None


def test_not_empty_error(zk):
    zk.create("/ne/child", makepath=True)
    with pytest.raises(NotEmptyError):
        zk.delete("/ne")
    assert zk.exists("/ne") is not None


def test_no_children_for_ephemerals(zk):
    zk.create("/ephp", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create("/ephp/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create("/ephp/seq-", sequence=True)


def test_bad_arguments_for_invalid_paths(zk):
    # kazoo normalizes paths itself, so these go out as raw create2 requests
    zk.create("/valid")
    for bad in ("/valid/", "rel", "/valid/.", "/valid/..", "/valid/\u0000x", "/valid/x\u0001"):
        with pytest.raises(BadArgumentsError):
            call(zk, zkproto.Create2Flags(bad, b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT))
    # ZooKeeper looks the parent up first: "/valid/" does not exist
    for bad in ("/valid//x", "/valid/./x"):
        with pytest.raises((NoNodeError, BadArgumentsError)):
            call(zk, zkproto.Create2Flags(bad, b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT))
    # a sequential create validates the name with its suffix: "/valid/" + counter is fine
    path, _ = call(zk, zkproto.Create2Flags("/valid/", b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_SEQUENTIAL))
    assert path == "/valid/0000000000"
    # the session is still usable afterwards
    assert zk.get_children("/valid") == ["0000000000"]


def test_delete_root_and_system_nodes_is_refused(zk):
    with pytest.raises((BadArgumentsError, NotEmptyError)):
        zk.delete("/")
    assert zk.exists("/") is not None


# --------------------------------------------------------------------------------------------
# sequential nodes


def test_sequential_numbering(zk):
    zk.create("/seq")
    assert zk.create("/seq/n-", sequence=True) == "/seq/n-0000000000"
    assert zk.create("/seq/n-", sequence=True) == "/seq/n-0000000001"
    assert zk.create("/seq/m-", b"d", sequence=True) == "/seq/m-0000000002", "one counter per parent"
    # plain creates advance the counter ...
    zk.create("/seq/plain")
    assert zk.create("/seq/n-", sequence=True) == "/seq/n-0000000004"
    # ... deletes move cversion but, as in ZooKeeper, not the sequence counter
    zk.delete("/seq/plain")
    assert zk.exists("/seq").cversion == 6
    assert zk.create("/seq/n-", sequence=True) == "/seq/n-0000000005"
    # ephemeral sequential
    path = zk.create("/seq/e-", ephemeral=True, sequence=True)
    assert path == "/seq/e-0000000006"
    assert zk.exists(path).ephemeralOwner == zk.client_id[0]
    # deleting the newest does not hand its number out again
    zk.delete(path)
    assert zk.create("/seq/e-", ephemeral=True, sequence=True) == "/seq/e-0000000007"
    # a bare parent path as prefix
    zk.create("/seq2")
    assert zk.create("/seq2/", sequence=True) == "/seq2/0000000000"
    assert zk.create("/seq2/x", sequence=True) == "/seq2/x0000000001"
    # in a multi, later sequential creates see the earlier creates of the same txn
    t = zk.transaction()
    t.create("/seq2/y")
    t.create("/seq2/s-", sequence=True)
    t.create("/seq2/s-", sequence=True)
    assert t.commit() == ["/seq2/y", "/seq2/s-0000000003", "/seq2/s-0000000004"]


def test_sequential_concurrent_unique(make_client):
    clients = [make_client() for _ in range(4)]
    clients[0].create("/cseq")
    names = []
    lock = threading.Lock()

    def worker(c):
        for _ in range(25):
            p = c.create("/cseq/n-", sequence=True)
            with lock:
                names.append(p)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert len(names) == 100 and len(set(names)) == 100
    assert sorted(names) == [f"/cseq/n-{i:010d}" for i in range(100)]


# --------------------------------------------------------------------------------------------
# ephemerals and sessions


def test_ephemeral_deleted_on_close(make_client):
    owner = make_client()
    observer = make_client()
    owner.create("/e1", b"x", ephemeral=True)
    owner.create("/e-dir")
    owner.create("/e-dir/member", ephemeral=True)
    deleted = Events()
    assert observer.exists("/e1", watch=deleted) is not None
    children = Events()
    assert observer.get_children("/e-dir", watch=children) == ["member"]
    owner.stop()  # closeSession
    ev = deleted.wait(1)[0]
    assert ev.type == EventType.DELETED and ev.path == "/e1"
    cev = children.wait(1)[0]
    assert cev.type == EventType.CHILD and cev.path == "/e-dir"
    assert observer.exists("/e1") is None
    assert observer.get_children("/e-dir") == []


def test_ephemeral_deleted_on_session_expiry(server, make_client):
    observer = make_client()
    raw = RawSession(server.host, server.port, timeout_ms=1000)
    assert raw.timeout_ms == 1000
    raw.create("/exp", b"x", flags=zkproto.EPHEMERAL)
    raw.create("/exp-seq-", flags=zkproto.EPHEMERAL_SEQUENTIAL)
    st = observer.exists("/exp")
    assert st is not None and st.ephemeralOwner == raw.session_id
    deleted = Events()
    observer.exists("/exp", watch=deleted)
    t0 = time.monotonic()
    raw.abandon()  # no closeSession: only expiry can remove it
    ev = deleted.wait(1, timeout=15)[0]
    elapsed = time.monotonic() - t0
    assert ev.type == EventType.DELETED
    assert elapsed >= 0.5, f"ephemeral removed {elapsed:.2f}s after the connection dropped: before the 1s timeout"
    assert [c for c in observer.get_children("/") if c.startswith("exp")] == []
    # the expired session cannot be resumed: timeout 0 / session 0
    again = RawSession(server.host, server.port, timeout_ms=1000, session_id=st.ephemeralOwner, passwd=raw.passwd)
    assert (again.timeout_ms, again.session_id) == (0, 0)


def test_session_kept_alive_by_pings(make_client):
    zk = make_client(timeout=2.0)
    assert zk._session_timeout == 2000
    zk.create("/alive", ephemeral=True)
    session = zk.client_id[0]
    negotiated = zk._session_timeout / 1000.0
    time.sleep(negotiated * 2.5)  # idle: only kazoo's pings keep it
    assert zk.state == KazooState.CONNECTED
    assert zk.client_id[0] == session
    assert zk.exists("/alive") is not None


def test_handshake_timeout_clamped_and_read_only_echo(server):
    # tick 100 ms: min 200 ms (2 ticks); max 10000 ms (--max-session-timeout-ms)
    low = RawSession(server.host, server.port, timeout_ms=10, read_only=False)
    assert low.timeout_ms == 200
    assert low.connect_reply_len == 37 and low.read_only is False, "45-byte request: readOnly echoed"
    high = RawSession(server.host, server.port, timeout_ms=10_000_000)
    assert high.request_len == 44
    assert high.timeout_ms == 10000
    assert high.connect_reply_len == 36, "44-byte request: no readOnly byte in the reply"
    assert low.session_id != 0 and high.session_id != low.session_id
    assert len(low.passwd) == 16
    low.close_session()
    high.close_session()


def test_handshake_resume_unknown_and_wrong_password(server):
    s = RawSession(server.host, server.port, timeout_ms=5000)
    s.create("/resume-eph", flags=zkproto.EPHEMERAL)
    s.abandon()
    bad_pw = RawSession(server.host, server.port, timeout_ms=5000, session_id=s.session_id, passwd=b"\1" * 16)
    assert (bad_pw.timeout_ms, bad_pw.session_id) == (0, 0)
    unknown = RawSession(server.host, server.port, timeout_ms=5000, session_id=0x7777_0000_0000_0001, passwd=b"\0" * 16)
    assert (unknown.timeout_ms, unknown.session_id) == (0, 0)
    # a wrong password does not end the session: the right one resumes it
    resumed = RawSession(server.host, server.port, timeout_ms=5000, session_id=s.session_id, passwd=s.passwd)
    assert resumed.session_id == s.session_id and resumed.timeout_ms == 5000
    # the resumed session still owns its ephemeral, and closing it removes the node
    assert resumed.exists("/resume-eph").ephemeralOwner == s.session_id
    assert resumed.close_session() == 0
    check = RawSession(server.host, server.port, timeout_ms=5000)
    assert check.exists("/resume-eph") is None


def test_handshake_refuses_client_ahead_of_server(server):
    with pytest.raises((ConnectionError, OSError)):
        s = RawSession(server.host, server.port, timeout_ms=5000, last_zxid=1 << 40)
        # if a reply came at all, the server must then close the connection
        s.ping()


# --------------------------------------------------------------------------------------------
# one-shot watches


def test_data_watch_on_get(make_client):
    a, b = make_client(), make_client()
    a.create("/w", b"0")
    events = Events()
    a.get("/w", watch=events)
    b.set("/w", b"1")
    ev = events.wait(1)[0]
    assert (ev.type, ev.path) == (EventType.CHANGED, "/w")
    # one-shot: a second change does not fire again
    b.set("/w", b"2")
    round_trip(a)
    time.sleep(0.2)
    assert len(events.items) == 1
    # delete fires a data watch with DELETED
    a.get("/w", watch=events)
    b.delete("/w")
    ev = events.wait(2)[1]
    assert (ev.type, ev.path) == (EventType.DELETED, "/w")


def test_exists_watch_fires_on_create(make_client):
    a, b = make_client(), make_client()
    events = Events()
    assert a.exists("/later", watch=events) is None
    b.create("/later", b"x")
    ev = events.wait(1)[0]
    assert (ev.type, ev.path) == (EventType.CREATED, "/later")
    events2 = Events()
    assert a.exists("/later", watch=events2) is not None
    b.set("/later", b"y")
    assert events2.wait(1)[0].type == EventType.CHANGED


def test_child_watch(make_client):
    a, b = make_client(), make_client()
    a.create("/cw")
    events = Events()
    assert a.get_children("/cw", watch=events) == []
    b.create("/cw/x")
    ev = events.wait(1)[0]
    assert (ev.type, ev.path) == (EventType.CHILD, "/cw")
    # a child's data change does not fire the parent's child watch; a delete does
    a.get_children("/cw", watch=events)
    b.set("/cw/x", b"data")
    round_trip(a)
    time.sleep(0.2)
    assert len(events.items) == 1
    b.delete("/cw/x")
    assert events.wait(2)[1].type == EventType.CHILD
    # deleting the watched node itself fires the child watch with DELETED
    a.get_children("/cw", watch=events)
    b.delete("/cw")
    ev = events.wait(3)[2]
    assert (ev.type, ev.path) == (EventType.DELETED, "/cw")


def test_event_arrives_before_new_data_other_writer(make_client):
    a, b = make_client(), make_client()
    a.create("/order", b"old")
    tap = EventTap(a)
    a.get("/order", watch=lambda ev: None)
    b.set("/order", b"new")
    # poll on the watching client until it reads the new data; by then its connection must
    # already have received the event (events precede later responses)
    deadline = time.monotonic() + 10
    while a.get("/order")[0] != b"new":
        assert time.monotonic() < deadline, "new data never became visible"
    assert (zkproto.EV_CHANGED, "/order") in tap.snapshot(), (
        "the watching client read the new data before it received the watch event"
    )


def test_event_arrives_before_own_write_response(zk):
    zk.create("/order2", b"old")
    zk.create("/order2/kid")
    tap = EventTap(zk)
    zk.get("/order2", watch=lambda ev: None)
    zk.get_children("/order2", watch=lambda ev: None)
    zk.set("/order2", b"new")
    assert (zkproto.EV_CHANGED, "/order2") in tap.snapshot(), "setData reply arrived before the event"
    zk.delete("/order2/kid")
    assert (zkproto.EV_CHILD, "/order2") in tap.snapshot(), "delete reply arrived before the child event"


def test_same_watcher_registered_by_exists_and_get_fires_once_per_path(make_client):
    a, b = make_client(), make_client()
    a.create("/dedup")
    tap = EventTap(a)
    a.exists("/dedup", watch=lambda ev: None)
    a.get("/dedup", watch=lambda ev: None)
    b.set("/dedup", b"x")
    round_trip(b)
    wait_until(lambda: tap.snapshot(), message="event")
    round_trip(a)
    assert tap.snapshot() == [(zkproto.EV_CHANGED, "/dedup")], "ZooKeeper sends one event per path and type"


def test_datawatch_and_childrenwatch_recipes(make_client):
    a, b = make_client(), make_client()
    a.create("/dw", b"v0")
    seen = Events()
    DataWatch(a, "/dw", func=lambda data, stat: seen((data, stat.version if stat else None)))
    seen.wait(1)
    b.set("/dw", b"v1")
    b.set("/dw", b"v2")
    items = seen.wait_for(lambda xs: xs and xs[-1] == (b"v2", 2), what="v2")
    assert items[0] == (b"v0", 0)
    versions = [v for _, v in items]
    assert versions == sorted(versions)
    b.delete("/dw")
    seen.wait_for(lambda xs: xs[-1] == (None, None), what="deletion")

    a.create("/chw")
    kids = Events()
    ChildrenWatch(a, "/chw", func=lambda children: kids(sorted(children)))
    kids.wait(1)
    b.create("/chw/1")
    b.create("/chw/2")
    kids.wait_for(lambda xs: xs[-1] == ["1", "2"], what="two children")
    b.delete("/chw/1")
    kids.wait_for(lambda xs: xs[-1] == ["2"], what="one child")


def test_check_and_remove_watches(make_client):
    a, b = make_client(), make_client()
    a.create("/rw")
    tap = EventTap(a)
    with pytest.raises(NoWatcherError):
        call(a, zkproto.CheckWatches("/rw", zkproto.WATCHER_DATA))
    a.get("/rw", watch=lambda ev: None)
    a.get_children("/rw", watch=lambda ev: None)
    assert call(a, zkproto.CheckWatches("/rw", zkproto.WATCHER_DATA))
    assert call(a, zkproto.CheckWatches("/rw", zkproto.WATCHER_CHILDREN))
    assert call(a, zkproto.RemoveWatches("/rw", zkproto.WATCHER_DATA))
    with pytest.raises(NoWatcherError):
        call(a, zkproto.CheckWatches("/rw", zkproto.WATCHER_DATA))
    b.set("/rw", b"x")  # no data watch any more
    b.create("/rw/c")  # the child watch is still there
    wait_until(lambda: tap.snapshot(), message="child event")
    round_trip(a)
    assert tap.snapshot() == [(zkproto.EV_CHILD, "/rw")]
    a.get("/rw", watch=lambda ev: None)
    assert call(a, zkproto.RemoveWatches("/rw", zkproto.WATCHER_ANY))
    with pytest.raises(NoWatcherError):
        call(a, zkproto.RemoveWatches("/rw", zkproto.WATCHER_ANY))


# --------------------------------------------------------------------------------------------
# persistent and persistent-recursive watches (addWatch)


def test_kazoo_add_watch_api(zk):
    try:
        from kazoo.protocol.states import AddWatchMode
    except ImportError:
        import kazoo

        pytest.skip(
            f"kazoo {kazoo.version.__version__ if hasattr(kazoo, 'version') else ''} has no "
            "AddWatchMode/add_watch (persistent watches); addWatch is covered by "
            "test_persistent_watch / test_persistent_recursive_watch through a raw request"
        )
    events = Events()
    zk.add_watch("/kaw", events, AddWatchMode.PERSISTENT_RECURSIVE)
    zk.create("/kaw")
    zk.create("/kaw/x")
    got = events.wait(2)
    assert [(e.type, e.path) for e in got] == [(EventType.CREATED, "/kaw"), (EventType.CREATED, "/kaw/x")]


def test_persistent_watch(make_client):
    a, b = make_client(), make_client()
    tap = EventTap(a)
    assert call(a, zkproto.AddWatch("/pw", zkproto.ADD_WATCH_PERSISTENT))
    b.create("/pw", b"0")
    b.set("/pw", b"1")
    b.set("/pw", b"2")  # still armed after firing
    b.create("/pw/kid")
    b.set("/pw/kid", b"x")  # not recursive: nothing for the child's data
    b.delete("/pw/kid")
    b.delete("/pw")
    expected = [
        (zkproto.EV_CREATED, "/pw"),
        (zkproto.EV_CHANGED, "/pw"),
        (zkproto.EV_CHANGED, "/pw"),
        (zkproto.EV_CHILD, "/pw"),
        (zkproto.EV_CHILD, "/pw"),
        (zkproto.EV_DELETED, "/pw"),
    ]
    tap.wait_for(len(expected))
    round_trip(b)
    round_trip(a)
    assert tap.snapshot() == expected
    # it survives the node's deletion
    b.create("/pw")
    assert tap.wait_for(len(expected) + 1)[-1] == (zkproto.EV_CREATED, "/pw")
    # removeWatches(ANY) removes a persistent watch
    assert call(a, zkproto.RemoveWatches("/pw", zkproto.WATCHER_ANY))
    b.set("/pw", b"after")
    round_trip(b)
    round_trip(a)
    assert len(tap.snapshot()) == len(expected) + 1


def test_persistent_recursive_watch(make_client):
    a, b = make_client(), make_client()
    b.create("/pr")
    tap = EventTap(a)
    assert call(a, zkproto.AddWatch("/pr", zkproto.ADD_WATCH_PERSISTENT_RECURSIVE))
    b.create("/pr/a")
    b.create("/pr/a/b", b"1")
    b.set("/pr/a/b", b"2")
    b.delete("/pr/a/b")
    b.set("/pr", b"top")
    b.create("/prx")  # a sibling with the same prefix is not below /pr
    expected = [
        (zkproto.EV_CREATED, "/pr/a"),
        (zkproto.EV_CREATED, "/pr/a/b"),
        (zkproto.EV_CHANGED, "/pr/a/b"),
        (zkproto.EV_DELETED, "/pr/a/b"),
        (zkproto.EV_CHANGED, "/pr"),
    ]
    tap.wait_for(len(expected))
    round_trip(b)
    round_trip(a)
    assert tap.snapshot() == expected, "recursive watches send no NodeChildrenChanged and nothing outside /pr"


def test_add_watch_reply_is_an_error_response(server):
    """ZooKeeper answers addWatch with an ErrorResponse body (one int, 0); the Java client
    deserializes it and drops the connection (ConnectionLoss) when the body is missing."""
    s = RawSession(server.host, server.port)
    err, body = s.request(106, write_string("/aw") + struct.pack("!i", zkproto.ADD_WATCH_PERSISTENT))
    assert err == 0
    assert body == struct.pack("!i", 0), f"addWatch reply body {body!r}, ZooKeeper sends ErrorResponse(0)"
    s.close_session()


def test_persistent_watch_event_before_own_write_response(zk):
    tap = EventTap(zk)
    call(zk, zkproto.AddWatch("/pwo", zkproto.ADD_WATCH_PERSISTENT_RECURSIVE))
    zk.create("/pwo")
    assert tap.snapshot() == [(zkproto.EV_CREATED, "/pwo")]
    zk.create("/pwo/x")
    assert tap.snapshot()[-1] == (zkproto.EV_CREATED, "/pwo/x")


# --------------------------------------------------------------------------------------------
# transactions (multi, check, multiRead)


def test_transaction_commit(zk):
    zk.create("/tx", b"v0")
    zk.create("/tx/gone")
    t = zk.transaction()
    t.create("/tx/a", b"A")
    t.create("/tx/s-", sequence=True)
    t.check("/tx", 0)
    t.set_data("/tx", b"v1", version=0)
    t.delete("/tx/gone")
    results = t.commit()
    assert results[0] == "/tx/a"
    assert results[1] == "/tx/s-0000000002", "the counter sees the earlier create in the same txn"
    assert results[2] is True
    assert results[3].version == 1
    assert results[4] is True
    assert zk.get("/tx")[0] == b"v1"
    assert zk.exists("/tx/gone") is None
    # one txn: one zxid for every op
    a = zk.exists("/tx/a")
    s = zk.exists("/tx/s-0000000002")
    assert a.czxid == s.czxid == zk.exists("/tx").mzxid


def test_transaction_failure_is_atomic_with_per_op_results(zk):
    zk.create("/txf", b"v0")
    t = zk.transaction()
    t.create("/txf/a")
    t.set_data("/txf", b"v1")
    t.check("/txf", 7)  # wrong version
    t.create("/txf/b")
    t.delete("/txf/missing")
    results = t.commit()
    assert [type(r) for r in results] == [
        RolledBackError,
        RolledBackError,
        BadVersionError,
        RuntimeInconsistency,
        RuntimeInconsistency,
    ]
    assert zk.exists("/txf/a") is None
    assert zk.exists("/txf/b") is None
    assert zk.get("/txf")[0] == b"v0" and zk.exists("/txf").version == 0

    t = zk.transaction()
    t.create("/txf")  # exists
    t.create("/txf/c")
    results = t.commit()
    assert [type(r) for r in results] == [NodeExistsError, RuntimeInconsistency]
    assert zk.exists("/txf/c") is None

    t = zk.transaction()
    t.create("/txf/d")
    t.delete("/nope")
    assert [type(r) for r in t.commit()] == [RolledBackError, NoNodeError]
    assert zk.exists("/txf/d") is None

    # later ops see earlier ops of the same txn
    t = zk.transaction()
    t.create("/txf/e")
    t.create("/txf/e/f")
    t.check("/txf/e", 0)
    t.delete("/txf/e/f")
    assert t.commit() == ["/txf/e", "/txf/e/f", True, True]
    assert zk.get_children("/txf") == ["e"]


def test_transaction_fires_watches_for_each_op(make_client):
    a, b = make_client(), make_client()
    a.create("/txw")
    d, c = Events(), Events()
    a.get("/txw", watch=d)
    a.get_children("/txw", watch=c)
    t = b.transaction()
    t.set_data("/txw", b"x")
    t.create("/txw/k")
    t.commit()
    assert d.wait(1)[0].type == EventType.CHANGED
    assert c.wait(1)[0].type == EventType.CHILD


def test_multi_read(zk):
    zk.create("/mr", b"data")
    zk.create("/mr/a")
    res = call(zk, zkproto.MultiRead([("get_data", "/mr"), ("get_children", "/mr"), ("get_data", "/mr/none"), ("get_children", "/")]))
    assert res[0][0] == "data" and res[0][1] == b"data" and res[0][2].numChildren == 1
    assert res[1] == ("children", ["a"])
    assert res[2][0] == "error" and isinstance(res[2][1], NoNodeError)
    assert res[3][0] == "children" and "mr" in res[3][1]


# --------------------------------------------------------------------------------------------
# ACLs


def test_digest_acl(make_client):
    alice = make_client()
    alice.add_auth("digest", "alice:secret")
    acl = make_digest_acl("alice", "secret", all=True)
    alice.create("/secret", b"s3cr3t", acl=[acl])
    assert alice.get("/secret")[0] == b"s3cr3t"
    acls, stat = alice.get_acls("/secret")
    assert acls == [acl]
    assert acls[0].id.id == make_digest_acl_credential("alice", "secret")

    anon = make_client()
    assert anon.exists("/secret") is not None, "exists is not ACL-checked"
    with pytest.raises(NoAuthError):
        anon.get("/secret")
    with pytest.raises(NoAuthError):
        anon.set("/secret", b"x")
    with pytest.raises(NoAuthError):
        anon.get_children("/secret")
    with pytest.raises(NoAuthError):
        anon.create("/secret/child")
    with pytest.raises(NoAuthError):
        anon.set_acls("/secret", OPEN_ACL_UNSAFE)
    with pytest.raises(NoAuthError):  # getACL needs READ or ADMIN
        anon.get_acls("/secret")

    wrong = make_client()
    wrong.add_auth("digest", "alice:wrong")
    with pytest.raises(NoAuthError):
        wrong.get("/secret")

    later = make_client()
    later.add_auth("digest", "alice:secret")
    assert later.get("/secret")[0] == b"s3cr3t"

    # auth data given at connect time (kazoo auth_data) works as well
    early = make_client(auth_data=[("digest", "alice:secret")])
    assert early.get("/secret")[0] == b"s3cr3t"


def test_permission_bits(make_client):
    owner = make_client()
    owner.add_auth("digest", "bob:pw")
    ro = [make_digest_acl("bob", "pw", all=True), ACL(Permissions.READ, Id("world", "anyone"))]
    owner.create("/ro", b"x", acl=ro)
    other = make_client()
    assert other.get("/ro")[0] == b"x"
    with pytest.raises(NoAuthError):
        other.set("/ro", b"y")
    with pytest.raises(NoAuthError):
        other.create("/ro/c")
    # DELETE permission is checked on the parent
    owner.create("/nodel", acl=[make_digest_acl("bob", "pw", all=True), ACL(Permissions.CREATE | Permissions.READ, Id("world", "anyone"))])
    other.create("/nodel/kid")
    with pytest.raises(NoAuthError):
        other.delete("/nodel/kid")
    owner.delete("/nodel/kid")
    # a node whose own ACL denies everything can still be deleted by who may delete in its parent
    other.create("/locked", acl=[make_digest_acl("nobody", "x", all=True)])
    other.delete("/locked")


def test_auth_scheme_acl(make_client):
    c = make_client()
    with pytest.raises(InvalidACLError):
        c.create("/auth-no-ids", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    c.add_auth("digest", "carol:pw")
    c.create("/auth-node", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    acls, _ = c.get_acls("/auth-node")
    assert acls == [make_digest_acl("carol", "pw", all=True)], "auth scheme expands to the session's digest ids"
    anon = make_client()
    with pytest.raises(NoAuthError):
        anon.get("/auth-node")


def test_invalid_acls(zk):
    with pytest.raises(InvalidACLError):  # kazoo turns acl=[] into its default, so send it raw
        call(zk, zkproto.Create2Flags("/bad1", b"", [], zkproto.PERSISTENT))
    with pytest.raises(InvalidACLError):
        zk.create("/bad2", acl=[ACL(Permissions.ALL, Id("digest", "no-colon"))])
    with pytest.raises(InvalidACLError):
        zk.create("/bad3", acl=[ACL(Permissions.ALL, Id("nosuchscheme", "x"))])
    with pytest.raises(InvalidACLError):
        zk.create("/bad4", acl=[ACL(Permissions.ALL, Id("ip", "not-an-ip"))])
    with pytest.raises(InvalidACLError):
        zk.create("/bad5", acl=[ACL(Permissions.ALL, Id("world", "someone"))])
    with pytest.raises(InvalidACLError):
        zk.create("/bad6", acl=[ACL(Permissions.ALL, Id("ip", "10.0.0.0/33"))])
    with pytest.raises(InvalidACLError):
        zk.create("/bad7", acl=[ACL(Permissions.ALL, Id("digest", "a:b:c"))])
    zk.create("/okacl")
    with pytest.raises(InvalidACLError):
        zk.set_acls("/okacl", [])
    for p in ("/bad1", "/bad2", "/bad3", "/bad4", "/bad5", "/bad6", "/bad7"):
        assert zk.exists(p) is None


def test_ip_acl(zk):
    zk.create("/ip-ok", b"x", acl=[make_acl("ip", "127.0.0.1", all=True)])
    assert zk.get("/ip-ok")[0] == b"x"
    zk.create("/ip-net", b"y", acl=[make_acl("ip", "127.0.0.0/8", all=True)])
    assert zk.get("/ip-net")[0] == b"y"
    zk.create("/ip-other", b"z", acl=[make_acl("ip", "10.1.2.3", all=True)])
    with pytest.raises(NoAuthError):
        zk.get("/ip-other")
    zk.create("/ip-othernet", b"z", acl=[make_acl("ip", "192.168.0.0/16", all=True)])
    with pytest.raises(NoAuthError):
        zk.get("/ip-othernet")


def test_get_set_acls(zk):
    zk.create("/acl", b"x")
    acls, stat = zk.get_acls("/acl")
    assert acls == OPEN_ACL_UNSAFE
    assert stat.aversion == 0
    zk.set_acls("/acl", READ_ACL_UNSAFE, version=0)
    acls, stat = zk.get_acls("/acl")
    assert acls == READ_ACL_UNSAFE and stat.aversion == 1
    assert zk.exists("/acl").version == 0, "setACL leaves the data version alone"
    with pytest.raises(NoAuthError):
        zk.set("/acl", b"y")
    with pytest.raises(NoAuthError):
        zk.set_acls("/acl", OPEN_ACL_UNSAFE)  # needs ADMIN
    multi = [ACL(Permissions.READ | Permissions.WRITE, Id("world", "anyone")), make_digest_acl("dan", "pw", admin=True)]
    zk.create("/acl2", acl=multi)
    zk.add_auth("digest", "dan:pw")
    assert zk.get_acls("/acl2")[0] == multi


def test_get_acls_masks_digests_without_admin(make_client):
    """ZooKeeper's getACL: with ADMIN the full ACL; with READ only, digest ids come back as
    "user:x" (the password hash is not disclosed); with neither, NoAuth."""
    admin = make_client()
    admin.add_auth("digest", "dan:pw")
    dan = make_digest_acl("dan", "pw", admin=True)
    acl = [ACL(Permissions.READ | Permissions.WRITE, Id("world", "anyone")), dan]
    admin.create("/masked", acl=acl)
    assert admin.get_acls("/masked")[0] == acl
    reader = make_client()
    assert reader.get_acls("/masked")[0] == [acl[0], ACL(Permissions.ADMIN, Id("digest", "dan:x"))]
    admin.create("/unreadable", acl=[dan])
    with pytest.raises(NoAuthError):
        reader.get_acls("/unreadable")


def test_super_digest(start_server, make_client):
    srv = start_server("--super-digest", SUPER_DIGEST)
    owner = make_client(hosts=srv.client_addr)
    owner.add_auth("digest", "alice:secret")
    owner.create("/private", b"p", acl=[make_digest_acl("alice", "secret", all=True)])
    owner.create("/private/kid", acl=[make_digest_acl("alice", "secret", all=True)])

    root = make_client(hosts=srv.client_addr)
    root.add_auth("digest", "super:test")
    assert root.get("/private")[0] == b"p"
    root.set("/private", b"q")
    assert root.get_children("/private") == ["kid"]
    root.delete("/private/kid")
    root.set_acls("/private", OPEN_ACL_UNSAFE)
    assert make_client(hosts=srv.client_addr).get("/private")[0] == b"q"

    wrong = make_client(hosts=srv.client_addr)
    wrong.add_auth("digest", "super:nottest")
    owner.create("/private2", acl=[make_digest_acl("alice", "secret", all=True)])
    with pytest.raises(NoAuthError):
        wrong.get("/private2")


def test_auth_failure_closes_connection(make_client):
    c = make_client()
    with pytest.raises(AuthFailedError):
        c.add_auth("no-such-scheme", "x")
    # (what kazoo does next - AUTH_FAILED, or reconnecting - is kazoo's business; that the
    # server closes the connection is checked on a bare socket below)


def test_auth_failure_closes_raw_connection(server):
    s = RawSession(server.host, server.port)
    body = struct.pack("!i", 0) + struct.pack("!i", 3) + b"foo" + struct.pack("!i", 1) + b"x"
    s.sock.sendall(struct.pack("!iii", len(body) + 8, -4, 100) + body)
    frame = s._recv_frame()
    xid, _zxid, err = struct.unpack_from("!iqi", frame, 0)
    assert (xid, err) == (-4, -115)
    s.sock.settimeout(10)
    assert s.sock.recv(1) == b"", "the server must close the connection after AuthFailed"


def test_who_am_i(zk):
    ids = call(zk, zkproto.WhoAmI())
    assert ("ip", "127.0.0.1") in ids
    zk.add_auth("digest", "erin:pw")
    ids = call(zk, zkproto.WhoAmI())
    assert ("digest", "erin") in ids and ("ip", "127.0.0.1") in ids


# --------------------------------------------------------------------------------------------
# sync, getAllChildrenNumber, getEphemerals, reconfig, unknown opcodes


def test_sync(make_client):
    a, b = make_client(), make_client()
    b.create("/synced", b"1")
    assert a.sync("/synced") == "/synced"
    assert a.get("/synced")[0] == b"1"
    assert a.sync("/") == "/"


def test_get_all_children_number(zk):
    zk.create("/gac/a/b/c", makepath=True)
    zk.create("/gac/d")
    assert call(zk, zkproto.GetAllChildrenNumber("/gac")) == 4
    assert call(zk, zkproto.GetAllChildrenNumber("/gac/a")) == 2
    assert call(zk, zkproto.GetAllChildrenNumber("/gac/d")) == 0
    with pytest.raises(NoNodeError):
        call(zk, zkproto.GetAllChildrenNumber("/gac/none"))


def test_get_ephemerals(make_client):
    a, b = make_client(), make_client()
    a.create("/ge")
    a.create("/ge/e1", ephemeral=True)
    a.create("/ge/e2", ephemeral=True)
    a.create("/other-e", ephemeral=True)
    b.create("/ge/b1", ephemeral=True)
    assert sorted(call(a, zkproto.GetEphemerals("/"))) == ["/ge/e1", "/ge/e2", "/other-e"]
    assert sorted(call(a, zkproto.GetEphemerals("/ge"))) == ["/ge/e1", "/ge/e2"]
    assert call(b, zkproto.GetEphemerals("/")) == ["/ge/b1"]
    assert call(b, zkproto.GetEphemerals("/zzz")) == []


def test_reconfig_disabled(zk):
    with pytest.raises(ReconfigDisabledError):
        zk.reconfig(joining=None, leaving=None, new_members="server.9=127.0.0.1:2888:3888:participant;2181")


def test_unknown_opcode_is_unimplemented(zk):
    with pytest.raises(UnimplementedError):
        call(zk, zkproto.Unknown())
    # ZooKeeper 3.8 also drops the connection here; the session survives either way
    assert zk.retry(zk.exists, "/") is not None


# --------------------------------------------------------------------------------------------
# containers and TTL nodes


def test_container_cleanup(make_client):
    zk = make_client()
    path, stat = call(zk, zkproto.CreateContainer("/ctr", b"c", OPEN_ACL_UNSAFE))
    assert path == "/ctr"
    assert stat.ephemeralOwner == 0, "checklist: ephemeralOwner is 0 for containers"
    # a container that never had a child stays
    zk.create("/ctr-never-used-marker")
    time.sleep(0.5)  # several reap intervals (100 ms)
    assert zk.exists("/ctr") is not None, "a never-used container must not be deleted"
    zk.create("/ctr/kid")
    zk.delete("/ctr/kid")
    gone = Events()
    if zk.exists("/ctr", watch=gone) is not None:
        ev = gone.wait(1, timeout=10)[0]
        assert ev.type == EventType.DELETED
    assert zk.exists("/ctr") is None

    # with an ephemeral child: closing its session empties the container
    call(zk, zkproto.CreateContainer("/ctr2", b"", OPEN_ACL_UNSAFE))
    member = make_client()
    member.create("/ctr2/m", ephemeral=True)
    member.stop()
    wait_until(lambda: zk.exists("/ctr2") is None, timeout=10, message="container /ctr2 deleted")

    # a container is not deleted while it has children
    call(zk, zkproto.CreateContainer("/ctr3", b"", OPEN_ACL_UNSAFE))
    zk.create("/ctr3/a")
    zk.create("/ctr3/b")
    zk.delete("/ctr3/a")
    time.sleep(0.5)
    assert zk.exists("/ctr3") is not None


def test_kazoo_create_ttl_api(zk):
    if "ttl" not in inspect.signature(KazooClient.create).parameters:
        pytest.skip("kazoo's create() has no ttl= parameter; createTTL is covered by test_ttl_nodes through a raw request")
    zk.create("/kttl", ttl=500)


def test_ttl_nodes(zk):
    path, stat = call(zk, zkproto.CreateTTL("/ttl", b"t", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_WITH_TTL, 1500))
    assert path == "/ttl"
    assert stat.ephemeralOwner == 0, "checklist: ephemeralOwner is 0 for TTL nodes"
    assert zk.exists("/ttl") is not None
    # expires once unmodified and childless for its TTL
    wait_until(lambda: zk.exists("/ttl") is None, timeout=15, message="TTL node /ttl expired")

    # sequential TTL node
    zk.create("/ttlp")
    spath, _ = call(zk, zkproto.CreateTTL("/ttlp/s-", b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_SEQUENTIAL_WITH_TTL, 500))
    assert spath == "/ttlp/s-0000000000"
    wait_until(lambda: zk.exists(spath) is None, timeout=15, message="sequential TTL node expired")

    # not while it has a child
    call(zk, zkproto.CreateTTL("/ttlk", b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_WITH_TTL, 300))
    zk.create("/ttlk/child")
    time.sleep(1.0)
    assert zk.exists("/ttlk") is not None, "a TTL node with children must stay"
    zk.delete("/ttlk/child")
    wait_until(lambda: zk.exists("/ttlk") is None, timeout=15, message="TTL node expired after its child left")


def test_ttl_refreshed_by_modification(zk):
    call(zk, zkproto.CreateTTL("/ttlm", b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_WITH_TTL, 1500))
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # keep modifying: it must stay
        zk.set("/ttlm", b"touch")
        time.sleep(0.3)
    assert zk.exists("/ttlm") is not None, "a TTL node modified within its TTL must stay"
    wait_until(lambda: zk.exists("/ttlm") is None, timeout=15, message="TTL node expired after modifications stopped")


def test_ttl_bad_arguments(zk):
    with pytest.raises(BadArgumentsError):
        call(zk, zkproto.CreateTTL("/ttlbad", b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_WITH_TTL, 0))
    with pytest.raises(BadArgumentsError):
        call(zk, zkproto.CreateTTL("/ttlbad", b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_WITH_TTL, -5))
    with pytest.raises(BadArgumentsError):
        call(zk, zkproto.CreateTTL("/ttlbad", b"", OPEN_ACL_UNSAFE, zkproto.EPHEMERAL, 1000))
    with pytest.raises(BadArgumentsError):
        call(zk, zkproto.Create2Flags("/ttlbad", b"", OPEN_ACL_UNSAFE, zkproto.PERSISTENT_WITH_TTL))
    assert zk.exists("/ttlbad") is None


# --------------------------------------------------------------------------------------------
# four-letter words


def four_letter(server, word, timeout=10.0):
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode(errors="replace")


def test_server_version_and_ruok(zk):
    assert zk.command(b"ruok") == "imok"
    version = zk.server_version()
    assert isinstance(version, tuple) and len(version) >= 3
    assert version >= (3, 5, 0), f"kazoo gates features on the version; got {version}"
    assert zk.command(b"isro") == "rw"


def test_four_letter_words(server, zk):
    zk.create("/flw", ephemeral=True)
    zk.exists("/flw", watch=lambda ev: None)
    srvr = four_letter(server, "srvr")
    assert "Zookeeper version:" in srvr and "Mode:" in srvr and "Node count:" in srvr, srvr
    stat = four_letter(server, "stat")
    assert "Zookeeper version:" in stat and "Clients:" in stat, stat
    mntr = dict(
        line.split("\t", 1) for line in four_letter(server, "mntr").splitlines() if "\t" in line
    )
    for key in ("zk_version", "zk_server_state", "zk_znode_count", "zk_watch_count", "zk_ephemerals_count",
                "zk_num_alive_connections", "zk_outstanding_requests", "zk_avg_latency"):
        assert key in mntr, f"mntr lacks {key}: {sorted(mntr)}"
    assert int(mntr["zk_ephemerals_count"]) >= 1
    assert int(mntr["zk_watch_count"]) >= 1
    conf = four_letter(server, "conf")
    assert "clientPort" in conf and "tickTime=100" in conf, conf
    cons = four_letter(server, "cons")
    assert "127.0.0.1" in cons, cons
    envi = four_letter(server, "envi")
    assert "zookeeper.version=" in envi, envi
    wchs = four_letter(server, "wchs")
    assert "watch" in wchs.lower(), wchs
    assert four_letter(server, "isro") == "rw"
    dirs = four_letter(server, "dirs")
    assert "datadir_size" in dirs, dirs
    assert four_letter(server, "ruok") == "imok"
    # still serving clients afterwards
    assert zk.exists("/flw") is not None


# --------------------------------------------------------------------------------------------
# bad input


def test_bad_input_closes_only_that_connection(server, zk):
    zk.create("/survivor", b"ok")
    # a frame longer than jute.maxbuffer
    s = RawSession(server.host, server.port)
    s.sock.sendall(struct.pack("!i", 8 * 1024 * 1024) + b"\0" * 64)
    s.sock.settimeout(10)
    try:
        assert s.sock.recv(1) == b""
    except ConnectionResetError:
        pass
    # a truncated record (a create whose path length overruns the frame)
    s2 = RawSession(server.host, server.port)
    body = struct.pack("!ii", 1, 1) + struct.pack("!i", 1000) + b"/x"
    s2.sock.sendall(struct.pack("!i", len(body)) + body)
    s2.sock.settimeout(10)
    try:
        data = s2.sock.recv(4096)
        # either closed at once, or an error reply then close; never a success
        if data:
            assert struct.unpack_from("!iqi", data, 4)[2] != 0
    except ConnectionResetError:
        pass
    # garbage instead of a handshake
    with socket.create_connection((server.host, server.port), timeout=10) as g:
        g.sendall(struct.pack("!i", 3) + b"abc")
        try:
            g.recv(4096)
        except ConnectionResetError:
            pass
    assert zk.get("/survivor")[0] == b"ok"
    assert server.running


def test_oversized_write_from_kazoo(server, zk):
    with pytest.raises(ConnectionLoss):
        zk.create("/huge", b"x" * (2 * 1024 * 1024))
    # kazoo reconnects with the same session
    wait_until(lambda: zk.connected, timeout=15, message="reconnect")
    assert zk.exists("/huge") is None
    assert server.running


# --------------------------------------------------------------------------------------------
# durability and restart


def test_durability_across_sigkill(server, make_client):
    zk = make_client()
    zk.add_auth("digest", "alice:pw")
    zk.create("/dur/a", b"alpha", makepath=True)
    zk.set("/dur/a", b"alpha2")
    zk.create("/dur/secret", b"s", acl=[make_digest_acl("alice", "pw", all=True)])
    seqs = [zk.create("/dur/s-", sequence=True) for _ in range(3)]
    zk.delete(seqs[1])
    t = zk.transaction()
    t.create("/dur/t1")
    t.create("/dur/t2")
    t.commit()
    for i in range(50):
        zk.create(f"/dur/many{i}", str(i).encode())
    stat_a = zk.exists("/dur/a")
    stat_dur = zk.exists("/dur")
    last = zk.last_zxid
    zk.stop()

    server.kill_and_restart()

    c = make_client(hosts=server.client_addr)
    assert c.get("/dur/a")[0] == b"alpha2"
    assert c.exists("/dur/a") == stat_a
    assert c.exists("/dur") == stat_dur
    assert sorted(x for x in c.get_children("/dur") if x.startswith("s-")) == [seqs[0][5:], seqs[2][5:]]
    assert c.exists("/dur/t1") and c.exists("/dur/t2")
    assert all(c.get(f"/dur/many{i}")[0] == str(i).encode() for i in range(50))
    with pytest.raises(NoAuthError):
        c.get("/dur/secret")
    c.add_auth("digest", "alice:pw")
    assert c.get("/dur/secret")[0] == b"s"
    # counters and zxids continue
    nxt = c.create("/dur/s-", sequence=True)
    assert int(nxt[-10:]) == stat_dur.cversion - 1, "the counter (creates, not the one delete) continues"
    _, st = c.create("/dur/after", include_data=True)
    assert st.czxid > last


def test_durability_across_repeated_restarts(server, make_client):
    for round_ in range(3):
        c = make_client(hosts=server.client_addr)
        c.create(f"/r{round_}", str(round_).encode())
        for prev in range(round_ + 1):
            assert c.get(f"/r{prev}")[0] == str(prev).encode()
        c.stop()
        if round_ % 2:
            server.stop()
            server.start()
        else:
            server.kill_and_restart()
    c = make_client(hosts=server.client_addr)
    assert sorted(x for x in c.get_children("/") if x.startswith("r")) == ["r0", "r1", "r2"]


def test_durability_with_snapshots_and_compaction(start_server, make_client):
    srv = start_server("--snapshot-every", "20")
    c = make_client(hosts=srv.client_addr)
    c.create("/snap")
    for i in range(120):
        c.create(f"/snap/n{i:03d}", str(i).encode())
    for i in range(0, 120, 3):
        c.delete(f"/snap/n{i:03d}")
    c.set("/snap", b"top")
    expected = {name: c.get(f"/snap/{name}")[0] for name in c.get_children("/snap")}
    parent = c.exists("/snap")
    c.stop()
    srv.kill_and_restart()
    c2 = make_client(hosts=srv.client_addr)
    assert c2.exists("/snap") == parent
    assert {name: c2.get(f"/snap/{name}")[0] for name in c2.get_children("/snap")} == expected
    for i in range(30):
        c2.create(f"/snap/m{i}")
    c2.stop()
    srv.kill_and_restart()
    c3 = make_client(hosts=srv.client_addr)
    assert len(c3.get_children("/snap")) == len(expected) + 30


def test_expired_session_ephemerals_removed_after_restart(server, make_client):
    raw = RawSession(server.host, server.port, timeout_ms=1000)
    raw.create("/orphan", flags=zkproto.EPHEMERAL)
    raw.abandon()
    server.kill_and_restart()
    c = make_client(hosts=server.client_addr)
    # the session got a fresh full timeout at restart, then nobody touched it
    wait_until(lambda: c.exists("/orphan") is None, timeout=15, message="orphaned ephemeral removed")


def test_session_resume_across_restart(start_server, make_client):
    srv = start_server("--tick-ms", "1000")  # sessions of up to 20 s
    owner = make_client(hosts=srv.client_addr, timeout=10.0,
                        connection_retry=dict(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0))
    assert owner._session_timeout == 10000
    owner.create("/resume")
    owner.create("/resume/eph", b"mine", ephemeral=True)
    # kazoo drops one-shot watches on disconnect (it fires them with EventType.NONE); its
    # DataWatch/ChildrenWatch recipes re-arm themselves after the reconnect
    data_seen, kids_seen = Events(), Events()
    DataWatch(owner, "/resume/eph", func=lambda data, stat: data_seen(data))
    ChildrenWatch(owner, "/resume", func=lambda children: kids_seen(sorted(children)))
    data_seen.wait(1)
    kids_seen.wait(1)
    session = owner.client_id
    states = Events()
    owner.add_listener(states)

    srv.kill_and_restart()

    states.wait_for(lambda xs: KazooState.SUSPENDED in xs and xs[-1] == KazooState.CONNECTED, timeout=30,
                    what="SUSPENDED then CONNECTED")
    assert KazooState.LOST not in states.items, "the session was lost across the restart"
    assert owner.client_id == session
    other = make_client(hosts=srv.client_addr)
    st = other.exists("/resume/eph")
    assert st is not None and st.ephemeralOwner == session[0]
    other.set("/resume/eph", b"changed")
    data_seen.wait_for(lambda xs: xs[-1] == b"changed", timeout=15, what="DataWatch after restart")
    other.create("/resume/new")
    kids_seen.wait_for(lambda xs: xs[-1] == ["eph", "new"], timeout=15, what="ChildrenWatch after restart")
    # the session still owns the ephemeral: closing it removes the node
    owner.stop()
    wait_until(lambda: other.exists("/resume/eph") is None, timeout=10, message="ephemeral removed on close")


def test_set_watches_on_reconnect(server, make_client):
    """setWatches (what the Java client sends on reconnect): a watch whose node changed after the
    client's last zxid fires at once; the others are re-armed."""
    writer = make_client()
    writer.create("/sw", b"0")
    writer.create("/sw/kid")
    writer.create("/sw-untouched")
    writer.create("/sw-gone")
    s = RawSession(server.host, server.port, timeout_ms=5000)
    s.get_data("/sw", watch=True)
    zxid = s.last_zxid
    s.abandon()
    # while it is disconnected
    writer.set("/sw", b"1")
    writer.create("/sw/new")
    writer.create("/sw-late")
    writer.delete("/sw-gone")
    s2 = RawSession(server.host, server.port, timeout_ms=5000, session_id=s.session_id, passwd=s.passwd,
                    last_zxid=zxid)
    assert s2.session_id == s.session_id
    s2.set_watches(zxid, data=["/sw", "/sw-untouched", "/sw-gone"], exist=["/sw-late", "/sw-none"],
                   child=["/sw", "/sw-untouched"])
    got = {(t, p) for t, _, p in s2.wait_events(4)}
    assert got == {(zkproto.EV_CHANGED, "/sw"), (zkproto.EV_CHILD, "/sw"), (zkproto.EV_CREATED, "/sw-late"),
                   (zkproto.EV_DELETED, "/sw-gone")}
    writer.set("/sw-untouched", b"x")
    writer.create("/sw-none")
    writer.create("/sw-untouched/k")
    got = [(t, p) for t, _, p in s2.wait_events(7)[4:]]
    assert got == [(zkproto.EV_CHANGED, "/sw-untouched"), (zkproto.EV_CREATED, "/sw-none"),
                   (zkproto.EV_CHILD, "/sw-untouched")]
    s2.close_session()


def test_set_watches2_across_restart(start_server, make_client):
    srv = start_server("--tick-ms", "1000")
    s = RawSession(srv.host, srv.port, timeout_ms=10000)
    s.create("/pr2")
    s.get_data("/pr2", watch=True)
    s.add_watch("/pr2", zkproto.ADD_WATCH_PERSISTENT_RECURSIVE)
    zxid = s.last_zxid
    srv.kill_and_restart()
    s2 = RawSession(srv.host, srv.port, timeout_ms=10000, session_id=s.session_id, passwd=s.passwd, last_zxid=zxid)
    assert s2.session_id == s.session_id and s2.timeout_ms == 10000
    s2.set_watches(zxid, data=["/pr2"], persistent=[], recursive=["/pr2"])
    writer = make_client(hosts=srv.client_addr)
    writer.create("/pr2/a")
    writer.set("/pr2", b"x")
    writer.set("/pr2/a", b"y")
    events = [(t, p) for t, _, p in s2.wait_events(3)]
    assert events == [(zkproto.EV_CREATED, "/pr2/a"), (zkproto.EV_CHANGED, "/pr2"), (zkproto.EV_CHANGED, "/pr2/a")]
    s2.close_session()


def test_chroot(server, make_client):
    root = make_client()
    root.create("/app")
    c = make_client(hosts=server.client_addr + "/app")
    c.create("/x", b"1")
    assert root.get("/app/x")[0] == b"1"
    assert c.create("/s-", sequence=True) == "/s-0000000001"
    events = Events()
    c.get("/x", watch=events)
    root.set("/app/x", b"2")
    assert events.wait(1)[0].path == "/x"
