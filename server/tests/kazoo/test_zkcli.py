"""A scripted session of the official Java client (Debian's zookeeper package, zkCli.sh)
against a real paddock-server. One JVM for the whole script: commands go to zkCli's stdin
one at a time and each waits (bounded) for its expected output."""

import contextlib
import os
import queue
import re
import subprocess
import threading
import time

import pytest
from kazoo.exceptions import NoAuthError
from kazoo.security import make_digest_acl

from conftest import wait_until

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
SESSION_TIMEOUT = 120.0  # whole script, JVM start included


class ZkCli:
    def __init__(self, hosts, jvm_flags=""):
        env = dict(os.environ)
        env.setdefault("CLIENT_JVMFLAGS", "-Xshare:auto -XX:TieredStopAtLevel=1")
        env["CLIENT_JVMFLAGS"] = f"{env['CLIENT_JVMFLAGS']} {jvm_flags}".strip()
        self.proc = subprocess.Popen(
            [ZKCLI, "-server", hosts],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.lines = queue.Queue()
        self.transcript = []  # every output line
        self.cursor = 0  # expectations match output after this line
        self.deadline = time.monotonic() + SESSION_TIMEOUT

        def pump():
            for raw in self.proc.stdout:
                self.lines.put(raw.decode(errors="replace").rstrip("\n"))
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def _drain(self, wait):
        try:
            line = self.lines.get(timeout=wait)
        except queue.Empty:
            return True
        if line is None:
            return False
        self.transcript.append(line)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                return False
            self.transcript.append(line)

    def send(self, command):
        self.transcript.append(f">>> {command}")
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, pattern, timeout=30.0):
        """Waits until an output line after the cursor matches `pattern` (a regex); moves the
        cursor past it and returns the match."""
        rx = re.compile(pattern)
        deadline = min(time.monotonic() + timeout, self.deadline)
        while True:
            for i in range(self.cursor, len(self.transcript)):
                line = self.transcript[i]
                if line.startswith(">>> "):
                    continue
                m = rx.search(line)
                if m:
                    self.cursor = i + 1
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"zkCli printed no line matching {pattern!r}\n{self.dump()}")
            if not self._drain(min(left, 0.5)) and self.lines.empty():
                # the process ended; one last look is done by the loop above
                if all(not rx.search(l) for l in self.transcript[self.cursor:]):
                    raise AssertionError(f"zkCli exited before printing {pattern!r}\n{self.dump()}")

    def run(self, command, pattern, timeout=30.0):
        self.send(command)
        return self.expect(pattern, timeout)

    def output_since(self, start):
        return [l for l in self.transcript[start:] if not l.startswith(">>> ")]

    def dump(self):
        return "---- zkCli transcript ----\n" + "\n".join(self.transcript[-80:])

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@contextlib.contextmanager
def zkcli_session(hosts, jvm_flags=""):
    """A ZkCli for the length of a `with`, its transcript printed after (shown for failures,
    and with -rP); skips the test when Debian's zookeeper package is missing."""
    if not os.access(ZKCLI, os.X_OK):
        pytest.skip(f"{ZKCLI} is not installed (Debian package `zookeeper`); `make system-deps` installs it")
    cli = ZkCli(hosts, jvm_flags=jvm_flags)
    try:
        yield cli
    finally:
        cli.close()
        print(cli.dump())


@pytest.fixture
def zkcli(server):
    with zkcli_session(server.client_addr) as cli:
        yield cli


def test_zkcli_session(zkcli, zk):
    cli = zkcli
    cli.expect(r"WatchedEvent state:SyncConnected type:None path:null", timeout=60)

    cli.run("create /zkcli hello", r"^Created /zkcli$")
    assert zk.get("/zkcli")[0] == b"hello", "the Java client's create is visible to kazoo"
    cli.run("get /zkcli", r"^hello$")
    cli.send("set /zkcli world")  # set prints nothing
    cli.send("get -s /zkcli")
    cli.expect(r"^world$")
    m = cli.expect(r"^cZxid = 0x([0-9a-f]+)$")
    stat = zk.exists("/zkcli")
    assert int(m.group(1), 16) == stat.czxid
    cli.expect(r"^mZxid = 0x%x$" % stat.mzxid)
    cli.expect(r"^dataVersion = 1$")
    cli.expect(r"^ephemeralOwner = 0x0$")
    cli.expect(r"^dataLength = 5$")

    cli.run("create /zkcli/child c1", r"^Created /zkcli/child$")
    cli.run("create -s /zkcli/seq- x", r"^Created /zkcli/seq-0000000001$")
    cli.run("create -e /zkcli/eph e", r"^Created /zkcli/eph$")
    cli.run("create /zkcli/child again", r"^Node already exists: /zkcli/child$")
    cli.run("ls /zkcli", r"^\[child, eph, seq-0000000001\]$")
    cli.send("stat /zkcli")
    cli.expect(r"^cversion = 3$")
    cli.expect(r"^numChildren = 3$")
    cli.run("stat /zkcli/missing", r"^Node does not exist: /zkcli/missing$")
    cli.run("set -v 7 /zkcli nope", r"version No is not valid : /zkcli")
    cli.run("getAcl /zkcli", r"^'world,'anyone$")
    cli.expect(r"^: cdrwa$")
    eph = zk.exists("/zkcli/eph")
    assert eph is not None and eph.ephemeralOwner != 0

    # a data watch set by zkCli fires when kazoo writes
    cli.run("get -w /zkcli", r"^world$")
    zk.set("/zkcli", b"from-kazoo")
    cli.expect(r"^WATCHER::$")
    cli.expect(r"WatchedEvent state:SyncConnected type:NodeDataChanged path:/zkcli$")
    cli.run("get /zkcli", r"^from-kazoo$")

    # a child watch
    cli.run("ls -w /zkcli", r"^\[child, eph, seq-0000000001\]$")
    zk.create("/zkcli/by-kazoo")
    cli.expect(r"WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/zkcli$")

    # deletes
    cli.run("delete /zkcli", r"^Node not empty: /zkcli$")
    cli.send("delete /zkcli/child")
    cli.run("ls /zkcli", r"^\[by-kazoo, eph, seq-0000000001\]$")
    cli.send("deleteall /zkcli")
    cli.run("ls /", r"^\[.*\]$")
    assert zk.exists("/zkcli") is None

    # quitting closes the session: the ephemeral it created goes with it
    zk.create("/zkcli-eph-probe")
    cli.run("create -e /zkcli-eph2 e", r"^Created /zkcli-eph2$")
    assert zk.exists("/zkcli-eph2") is not None
    cli.send("quit")
    cli.proc.wait(timeout=30)
    wait_until(lambda: zk.exists("/zkcli-eph2") is None, timeout=10, message="zkCli's ephemeral removed on quit")


def test_zkcli_persistent_recursive_watch(zkcli, zk):
    cli = zkcli
    cli.expect(r"WatchedEvent state:SyncConnected type:None path:null", timeout=60)
    zk.create("/zkpw/child", makepath=True)
    cli.send("addWatch -m PERSISTENT_RECURSIVE /zkpw")
    cli.run("stat /zkpw/child", r"^numChildren = 0$")  # a round trip: the watch is in place
    zk.create("/zkpw/child/deep")
    cli.expect(r"WatchedEvent state:SyncConnected type:NodeCreated path:/zkpw/child/deep$")
    zk.set("/zkpw/child/deep", b"x")
    cli.expect(r"WatchedEvent state:SyncConnected type:NodeDataChanged path:/zkpw/child/deep$")
    zk.delete("/zkpw/child/deep")
    cli.expect(r"WatchedEvent state:SyncConnected type:NodeDeleted path:/zkpw/child/deep$")
    assert not any("ConnectionLoss" in line or "Disconnected" in line for line in cli.transcript), cli.dump()
    cli.send("removewatches /zkpw")
    cli.run("ls /zkpw", r"^\[child\]$")
    zk.create("/zkpw/after")
    cli.run("ls /zkpw", r"^\[after, child\]$")
    assert not any("path:/zkpw/after" in line for line in cli.transcript), cli.dump()


def test_zkcli_container_ttl_and_acl(zkcli, zk):
    cli = zkcli
    cli.expect(r"WatchedEvent state:SyncConnected type:None path:null", timeout=60)
    cli.run("create -c /zkcli-container", r"^Created /zkcli-container$")
    cli.run("create -t 60000 /zkcli-ttl x", r"^Created /zkcli-ttl$")
    assert zk.exists("/zkcli-container").ephemeralOwner == 0
    assert zk.get("/zkcli-ttl")[0] == b"x"
    cli.send("stat /zkcli-ttl")
    cli.expect(r"^ephemeralOwner = 0x0$")
    # the container goes once its only child is deleted
    cli.run("create /zkcli-container/k", r"^Created /zkcli-container/k$")
    cli.send("delete /zkcli-container/k")
    wait_until(lambda: zk.exists("/zkcli-container") is None, timeout=10, message="container reaped")

    cli.send("addauth digest zuser:zpass")
    cli.run("create /zkcli-secret s auth:zuser:zpass:cdrwa", r"^Created /zkcli-secret$")
    cli.run("get /zkcli-secret", r"^s$")
    cli.run("getAcl /zkcli-secret", r"^'digest,'zuser:")
    cli.expect(r"^: cdrwa$")
    with pytest.raises(NoAuthError):
        zk.get("/zkcli-secret")
    zk.create("/zkcli-kazoo-secret", b"k", acl=[make_digest_acl("zuser", "zpass", all=True)])
    cli.run("get /zkcli-kazoo-secret", r"^k$")
    cli.send("setAcl /zkcli-secret world:anyone:r")
    cli.run("getAcl /zkcli-secret", r"^'world,'anyone$")
    cli.expect(r"^: r$")
    assert zk.get("/zkcli-secret")[0] == b"s"
    cli.run("create /zkcli-secret/x", r"Insufficient permission|NoAuth|not authorized", timeout=30)
