"""kazoo's own recipes (locks, elections, queues, barriers, counters, parties, semaphores,
watchers) against a real paddock-server."""

import threading
import time

import pytest
from kazoo.exceptions import CancelledError, ConnectionClosedError, LockTimeout

from conftest import wait_until


class Recorder:
    """A thread-safe event log with bounded waits."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def add(self, item):
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=15.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; log={self.items}")
                self.cond.wait(left)
            return list(self.items)


def start_thread(target, *args):
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def join_all(threads, timeout=60.0):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        assert not t.is_alive(), f"thread {t.name} did not finish within {timeout}s"


# --------------------------------------------------------------------------------------------
# Lock


def test_lock_mutual_exclusion(make_client):
    clients = [make_client() for _ in range(3)]
    inside = []
    max_inside = [0]
    guard = threading.Lock()
    counter = {"n": 0}

    def worker(client, ident):
        lock = client.Lock("/locks/mutex", identifier=ident)
        for _ in range(10):
            with lock:
                with guard:
                    inside.append(ident)
                    max_inside[0] = max(max_inside[0], len(inside))
                # a non-atomic read-modify-write that only a real lock keeps exact
                v = counter["n"]
                time.sleep(0.002)
                counter["n"] = v + 1
                with guard:
                    inside.remove(ident)

    join_all([start_thread(worker, c, f"w{i}") for i, c in enumerate(clients)], timeout=120)
    assert max_inside[0] == 1
    assert counter["n"] == 30


def test_lock_contention_order_and_contenders(make_client):
    holder, *waiters = [make_client() for _ in range(4)]
    first = holder.Lock("/locks/fifo", identifier="holder")
    assert first.acquire(timeout=10)
    order = Recorder()
    locks = []

    def wait_then_record(client, ident):
        lock = client.Lock("/locks/fifo", identifier=ident)
        locks.append(lock)
        with lock:
            order.add(ident)
            time.sleep(0.05)

    threads = []
    for i, c in enumerate(waiters):
        threads.append(start_thread(wait_then_record, c, f"waiter{i}"))
        # each waiter's node is queued before the next one starts
        wait_until(lambda: len(first.contenders()) == i + 2, timeout=10, message=f"waiter{i} queued")
    assert first.contenders() == ["holder", "waiter0", "waiter1", "waiter2"]
    assert order.items == []
    first.release()
    order.wait_for(lambda xs: len(xs) == 3, what="all waiters")
    join_all(threads)
    assert order.items == ["waiter0", "waiter1", "waiter2"], "a kazoo Lock is granted in queue order"


def test_lock_timeout_and_release_on_session_close(make_client):
    a, b = make_client(), make_client()
    la = a.Lock("/locks/t", identifier="a")
    lb = b.Lock("/locks/t", identifier="b")
    assert la.acquire(timeout=10)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout):
        lb.acquire(timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert lb.acquire(blocking=False) is False
    # the holder's session ends: its ephemeral lock node goes and b gets the lock
    got = Recorder()
    start_thread(lambda: got.add(lb.acquire(timeout=20)))
    time.sleep(0.2)
    a.stop()
    got.wait_for(lambda xs: xs == [True], what="lock after the holder's session closed")
    lb.release()


def test_read_write_lock(make_client):
    a, b, c = make_client(), make_client(), make_client()
    r1 = a.ReadLock("/locks/rw", identifier="r1")
    r2 = b.ReadLock("/locks/rw", identifier="r2")
    w = c.WriteLock("/locks/rw", identifier="w")
    assert r1.acquire(timeout=10)
    assert r2.acquire(timeout=10), "two readers share the lock"
    with pytest.raises(LockTimeout):
        w.acquire(timeout=0.5)
    r1.release()
    r2.release()
    assert w.acquire(timeout=10)
    r3 = a.ReadLock("/locks/rw", identifier="r3")
    with pytest.raises(LockTimeout):
        r3.acquire(timeout=0.5)
    w.release()
    assert r3.acquire(timeout=10)
    r3.release()


def test_lock_cancel(make_client):
    a, b = make_client(), make_client()
    la = a.Lock("/locks/c")
    lb = b.Lock("/locks/c")
    assert la.acquire(timeout=10)
    result = Recorder()

    def try_acquire():
        try:
            result.add(lb.acquire(timeout=30))
        except CancelledError:
            result.add("cancelled")

    t = start_thread(try_acquire)
    wait_until(lambda: len(la.contenders()) == 2, timeout=10, message="b queued")
    lb.cancel()
    result.wait_for(lambda xs: xs == ["cancelled"], what="cancel")
    join_all([t])
    la.release()
    wait_until(lambda: b.get_children("/locks/c") == [], timeout=10, message="b's node removed")


# --------------------------------------------------------------------------------------------
# Semaphore


def test_semaphore(make_client):
    clients = [make_client() for _ in range(4)]
    sems = [c.Semaphore("/sem", identifier=f"s{i}", max_leases=2) for i, c in enumerate(clients)]
    assert sems[0].acquire(timeout=10)
    assert sems[1].acquire(timeout=10)
    assert sorted(sems[0].lease_holders()) == ["s0", "s1"]
    with pytest.raises(LockTimeout):
        sems[2].acquire(timeout=0.5)
    got = Recorder()
    start_thread(lambda: got.add(sems[3].acquire(timeout=20)))
    time.sleep(0.2)
    sems[0].release()
    got.wait_for(lambda xs: xs == [True], what="lease after a release")
    assert sorted(sems[1].lease_holders()) == ["s1", "s3"]
    # a holder's session closing frees its lease
    clients[1].stop()
    assert sems[2].acquire(timeout=20)
    sems[2].release()
    sems[3].release()


# --------------------------------------------------------------------------------------------
# Election


def test_election_leader_and_takeover(make_client):
    a, b = make_client(), make_client()
    log = Recorder()
    stop_a = threading.Event()
    stop_b = threading.Event()

    def lead(name, stop):
        log.add(("lead", name))
        stop.wait(60)
        log.add(("resign", name))

    def run_a():
        try:
            ea.run(lead, "a", stop_a)
        except ConnectionClosedError:
            pass  # its client was stopped under it: that is the point of the test

    ea = a.Election("/election", identifier="a")
    ta = start_thread(run_a)
    log.wait_for(lambda xs: ("lead", "a") in xs, what="a leads")
    eb = b.Election("/election", identifier="b")
    tb = start_thread(eb.run, lead, "b", stop_b)
    wait_until(lambda: eb.contenders() == ["a", "b"], timeout=10, message="b contends")
    assert ("lead", "b") not in log.items
    # the first client stops (session closed): b takes over
    a.stop()
    log.wait_for(lambda xs: ("lead", "b") in xs, what="b takes over")
    assert eb.contenders()[0] == "b"
    stop_a.set()
    stop_b.set()
    join_all([ta, tb])


def test_election_cancel_and_rejoin(make_client):
    a, b = make_client(), make_client()
    log = Recorder()
    release = threading.Event()
    ea, eb = a.Election("/el2", "a"), b.Election("/el2", "b")
    ta = start_thread(ea.run, lambda: (log.add("a"), release.wait(60)))
    log.wait_for(lambda xs: xs == ["a"], what="a leads")
    tb = start_thread(eb.run, lambda: log.add("b"))
    wait_until(lambda: len(ea.contenders()) == 2, timeout=10, message="b contends")
    release.set()  # a's function returns: it gives up leadership
    log.wait_for(lambda xs: xs == ["a", "b"], what="b leads after a returns")
    join_all([ta, tb])


# --------------------------------------------------------------------------------------------
# Queues


def test_queue_order(make_client):
    producer, consumer = make_client(), make_client()
    q = producer.Queue("/queue")
    for i in range(10):
        q.put(f"item{i}".encode())
    q.put(b"urgent", priority=1)
    assert len(q) == 11
    cq = consumer.Queue("/queue")
    got = [cq.get() for _ in range(11)]
    assert got == [b"urgent"] + [f"item{i}".encode() for i in range(10)]
    assert cq.get() is None
    assert len(cq) == 0


def test_queue_concurrent_consumers_get_each_item_once(make_client):
    producer = make_client()
    q = producer.Queue("/q2")
    for i in range(60):
        q.put(str(i).encode())
    consumers = [make_client() for _ in range(3)]
    got = []
    guard = threading.Lock()

    def consume(c):
        cq = c.Queue("/q2")
        while True:
            item = cq.get()
            if item is None:
                return
            with guard:
                got.append(item)

    join_all([start_thread(consume, c) for c in consumers], timeout=120)
    assert sorted(got, key=int) == [str(i).encode() for i in range(60)]


def test_locking_queue(make_client):
    producer, c1, c2 = make_client(), make_client(), make_client()
    q = producer.LockingQueue("/lq")
    q.put(b"first")
    q.put(b"second")
    q.put(b"pri", priority=10)
    q.put_all([b"x", b"y"], priority=200)
    assert len(q) == 5
    q1 = c1.LockingQueue("/lq")
    assert q1.get(timeout=10) == b"pri"
    # taken but not consumed: another consumer gets the next entry
    q2 = c2.LockingQueue("/lq")
    assert q2.get(timeout=10) == b"first"
    assert q2.consume()
    # q1 holds its entry until its session ends; then it is handed out again
    c1.stop()
    got = [q2.get(timeout=10)]
    assert q2.consume()
    got.append(q2.get(timeout=10))
    assert q2.consume()
    assert got == [b"pri", b"second"]
    assert q2.get(timeout=10) == b"x" and q2.consume()
    assert q2.get(timeout=10) == b"y" and q2.consume()
    assert len(q2) == 0
    # get() blocks until a put arrives
    later = Recorder()
    start_thread(lambda: later.add(q2.get(timeout=20)))
    time.sleep(0.2)
    producer.LockingQueue("/lq").put(b"late")
    later.wait_for(lambda xs: xs == [b"late"], what="blocking get")


# --------------------------------------------------------------------------------------------
# Barriers


def test_barrier(make_client):
    controller, w1, w2 = make_client(), make_client(), make_client()
    barrier = controller.Barrier("/barrier")
    barrier.create()
    passed = Recorder()

    def waiter(c, name):
        if c.Barrier("/barrier").wait(timeout=30):
            passed.add(name)

    threads = [start_thread(waiter, w1, "w1"), start_thread(waiter, w2, "w2")]
    time.sleep(0.3)
    assert passed.items == [], "waiters must block while the barrier exists"
    assert w1.Barrier("/barrier").wait(timeout=0.2) is False
    barrier.remove()
    passed.wait_for(lambda xs: sorted(xs) == ["w1", "w2"], what="both waiters released")
    join_all(threads)
    assert controller.Barrier("/barrier").wait(timeout=1) is True


def test_double_barrier(make_client):
    n = 3
    clients = [make_client() for _ in range(n)]
    log = Recorder()

    def member(c, name):
        db = c.DoubleBarrier("/dbarrier", n, identifier=name)
        db.enter()
        log.add(("in", name))
        time.sleep(0.05)
        db.leave()
        log.add(("out", name))

    threads = [start_thread(member, clients[0], "m0"), start_thread(member, clients[1], "m1")]
    time.sleep(0.5)
    assert log.items == [], "nobody enters before all members arrived"
    threads.append(start_thread(member, clients[2], "m2"))
    items = log.wait_for(lambda xs: len(xs) == 2 * n, timeout=30, what="all in and out")
    join_all(threads)
    ins = [i for i, (kind, _) in enumerate(items) if kind == "in"]
    outs = [i for i, (kind, _) in enumerate(items) if kind == "out"]
    assert max(ins) < min(outs), f"someone left before everyone entered: {items}"


# --------------------------------------------------------------------------------------------
# Counter


def test_counter_concurrent_increments(make_client):
    clients = [make_client() for _ in range(4)]
    per_client = 25

    def bump(c):
        counter = c.Counter("/counter")
        for _ in range(per_client):
            counter += 1

    join_all([start_thread(bump, c) for c in clients], timeout=120)
    assert clients[0].Counter("/counter").value == 4 * per_client
    fc = clients[0].Counter("/fcounter", default=0.0)
    fc += 1.5
    fc -= 0.25
    assert fc.value == pytest.approx(1.25)


# --------------------------------------------------------------------------------------------
# Party / ShallowParty


@pytest.mark.parametrize("kind", ["Party", "ShallowParty"])
def test_party(make_client, kind):
    a, b, observer = make_client(), make_client(), make_client()
    pa = getattr(a, kind)("/party-" + kind, "alice")
    pb = getattr(b, kind)("/party-" + kind, "bob")
    view = getattr(observer, kind)("/party-" + kind)
    assert len(view) == 0
    pa.join()
    pb.join()
    assert len(view) == 2
    assert sorted(view) == ["alice", "bob"]
    pa.leave()
    assert sorted(view) == ["bob"]
    # membership is ephemeral: b's session closing removes it
    b.stop()
    wait_until(lambda: len(view) == 0, timeout=10, message="bob removed on session close")


# --------------------------------------------------------------------------------------------
# Watchers recipes, TreeCache, Lease


def test_children_and_data_watch_decorators(make_client):
    a, b = make_client(), make_client()
    a.ensure_path("/wr/items")
    kids, data = Recorder(), Recorder()

    @a.ChildrenWatch("/wr/items", send_event=True)
    def on_children(children, event):
        kids.add(sorted(children))

    @a.DataWatch("/wr/config")
    def on_data(value, stat):
        data.add(value)

    kids.wait_for(lambda xs: xs == [[]], what="initial children")
    data.wait_for(lambda xs: xs == [None], what="initial (missing) data")
    b.create("/wr/items/1")
    b.create("/wr/config", b"v1")
    kids.wait_for(lambda xs: xs[-1] == ["1"], what="child added")
    data.wait_for(lambda xs: xs[-1] == b"v1", what="node created")
    b.set("/wr/config", b"v2")
    data.wait_for(lambda xs: xs[-1] == b"v2", what="data changed")


def test_tree_cache(make_client):
    from kazoo.recipe.cache import TreeCache, TreeEvent

    a, b = make_client(), make_client()
    a.ensure_path("/tc")
    events = Recorder()
    cache = TreeCache(a, "/tc")
    cache.listen(lambda ev: events.add((ev.event_type, ev.event_data.path if ev.event_data else None)))
    cache.start()
    try:
        events.wait_for(lambda xs: (TreeEvent.INITIALIZED, None) in xs, what="initialized")
        b.create("/tc/a/b", b"deep", makepath=True)
        events.wait_for(lambda xs: (TreeEvent.NODE_ADDED, "/tc/a/b") in xs, what="deep add")
        assert cache.get_data("/tc/a/b").data == b"deep"
        b.set("/tc/a/b", b"deeper")
        events.wait_for(lambda xs: (TreeEvent.NODE_UPDATED, "/tc/a/b") in xs, what="update")
        assert cache.get_data("/tc/a/b").data == b"deeper"
        b.delete("/tc/a", recursive=True)
        events.wait_for(lambda xs: (TreeEvent.NODE_REMOVED, "/tc/a") in xs, what="removal")
        assert cache.get_children("/tc") == frozenset()
    finally:
        cache.close()


def test_non_blocking_lease(make_client):
    import datetime

    a, b = make_client(), make_client()
    lease_a = a.NonBlockingLease("/lease", datetime.timedelta(seconds=30), identifier="a")
    assert bool(lease_a)
    lease_b = b.NonBlockingLease("/lease", datetime.timedelta(seconds=30), identifier="b")
    assert not bool(lease_b), "the lease is held by a"


def test_set_partitioner(make_client):
    a, b = make_client(), make_client()
    items = [f"p{i}" for i in range(6)]
    pa = a.SetPartitioner("/partition", set=items, time_boundary=0.2, identifier="a")
    pb = b.SetPartitioner("/partition", set=items, time_boundary=0.2, identifier="b")

    def settle(*ps):
        deadline = time.monotonic() + 30
        while True:
            for p in ps:
                if p.release:
                    p.release_set()
                elif p.allocating or p.acquired:
                    pass
            if all(p.acquired for p in ps):
                return
            assert time.monotonic() < deadline, "partitioner did not settle"
            for p in ps:
                if p.allocating:
                    p.wait_for_acquire(timeout=1)

    try:
        settle(pa, pb)
        got_a, got_b = set(pa), set(pb)
        assert got_a | got_b == set(items) and not (got_a & got_b)
        assert len(got_a) == len(got_b) == 3
    finally:
        pa.finish()
        pb.finish()
