"""Fixtures that run the real `paddock-server` binary for the kazoo suites.

The binary comes from $PADDOCK_SERVER_BIN (`make kazoo-test` sets it). Each test gets its own
server on 127.0.0.1 with free ports (port 0) and a fresh data dir; the server's readiness is the
stdout line `paddock-server listening client=ADDR admin=ADDR`.
"""

import logging
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
from kazoo.client import KazooClient

READY_RE = re.compile(r"^paddock-server listening client=(\S+) admin=(\S+)(?P<rest>(?: \S+=\S+)*)\s*$")
START_TIMEOUT = 60.0  # first boot initializes RocksDB and a one-voter Raft cluster
STOP_TIMEOUT = 15.0
# Sessions may last up to 10 s (kazoo asks for 10 s) so that a loaded machine (2 cores, cargo
# building) does not expire them; tests of expiry ask for short timeouts themselves.
DEFAULT_ARGS = ("--tick-ms", "100", "--reap-interval-ms", "100", "--max-session-timeout-ms", "10000")
# The SHA-1 digest of "super:test" (DigestAuthenticationProvider.generateDigest).
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="

logging.getLogger("kazoo").setLevel(logging.WARNING)


def wait_until(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Polls `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def server_binary():
    path = os.environ.get("PADDOCK_SERVER_BIN")
    if not path:
        pytest.fail(
            "PADDOCK_SERVER_BIN is not set: point it at the built paddock-server binary "
            "(`make kazoo-test` does this)",
            pytrace=False,
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"PADDOCK_SERVER_BIN={path!r} is not an executable file", pytrace=False)
    return path


def merged_args(extra_args):
    """DEFAULT_ARGS, minus the flags that extra_args sets itself, then extra_args."""
    given = {a for a in extra_args if a.startswith("--")}
    defaults = []
    for flag, value in zip(DEFAULT_ARGS[::2], DEFAULT_ARGS[1::2]):
        if flag not in given:
            defaults += [flag, value]
    return [*defaults, *extra_args]


class PaddockServer:
    """One paddock-server process on a data dir that outlives restarts."""

    def __init__(self, binary, data_dir, log_path, extra_args=()):
        self.binary = binary
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self.extra_args = list(extra_args)
        self.proc = None
        self.client_addr = None  # "127.0.0.1:PORT"; kept across restarts
        self.admin_addr = None
        self.peer_addr = None  # kept across restarts too (it is recorded in the membership)
        self._stdout_lines = queue.Queue()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout=START_TIMEOUT):
        """Starts the process and waits for its readiness line. On a restart the client port is
        the same as before, so connected clients reconnect to the same address."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        client = self.client_addr or "127.0.0.1:0"
        cmd = [
            self.binary,
            "--data-dir", self.data_dir,
            "--client-addr", client,
            "--admin-addr", "127.0.0.1:0",
            "--peer-addr", self.peer_addr or "127.0.0.1:0",
            *merged_args(self.extra_args),
        ]
        env = dict(os.environ)
        env.setdefault("PADDOCK_LOG", "info,openraft=warn")
        log = open(self.log_path, "ab")
        log.write(f"\n===== start: {' '.join(cmd)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        lines = queue.Queue()
        self._stdout_lines = lines
        proc = self.proc

        def pump():
            for raw in proc.stdout:
                lines.put(raw.decode(errors="replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(
                    f"paddock-server printed no readiness line within {timeout}s; "
                    f"stdout={seen!r}\n{self.log_tail()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = proc.wait(timeout=STOP_TIMEOUT)
                raise RuntimeError(
                    f"paddock-server exited with {code} before it was ready; "
                    f"stdout={seen!r}\n{self.log_tail()}"
                )
            seen.append(line)
            m = READY_RE.match(line)
            if m:
                self.client_addr, self.admin_addr = m.group(1), m.group(2)
                extra = dict(kv.split("=", 1) for kv in m.group("rest").split())
                self.peer_addr = extra.get("peer", self.peer_addr)
                return self

    def stop(self):
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"paddock-server ignored SIGTERM for {STOP_TIMEOUT}s")

    def kill(self):
        """SIGKILL: no shutdown work at all, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def kill_and_restart(self):
        self.kill()
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- helpers -----------------------------------------------------------------------------

    @property
    def host(self):
        return self.client_addr.rsplit(":", 1)[0]

    @property
    def port(self):
        return int(self.client_addr.rsplit(":", 1)[1])

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "---- paddock-server stderr (tail) ----\n" + "\n".join(lines[-n:])


class ReferenceZooKeeper(PaddockServer):
    """Apache ZooKeeper (Debian's package) in place of paddock-server, to check the tests
    themselves against the reference: PADDOCK_TEST_REFERENCE_ZK=1. The paddock flags the
    tests use are mapped to zoo.cfg / system properties."""

    CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"

    FLAGS_WITHOUT_VALUE = {"--no-plain-client", "--enable-fault-injection"}

    @classmethod
    def _parse(cls, args):
        opts, args = {}, list(args)
        while args:
            flag = args.pop(0)
            opts[flag] = True if flag in cls.FLAGS_WITHOUT_VALUE else args.pop(0)
        return opts

    def start(self, timeout=START_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        if self.client_addr is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.client_addr = "127.0.0.1:%d" % s.getsockname()[1]
        opts = dict(zip(DEFAULT_ARGS[::2], DEFAULT_ARGS[1::2]))
        opts.update(self._parse(self.extra_args))
        os.makedirs(self.data_dir, exist_ok=True)
        cfg = os.path.join(self.data_dir, "zoo.cfg")
        tls = "--secure-client-addr" in opts
        with open(cfg, "w") as f:
            f.write(
                f"tickTime={opts['--tick-ms']}\ndataDir={self.data_dir}\n"
                "4lw.commands.whitelist=*\nadmin.enableServer=false\n"
            )
            # With TLS alone, the one port is the secure one (ZooKeeper's secureClientPort).
            port_key = "secureClientPort" if tls and "--no-plain-client" in opts else "clientPort"
            f.write(f"{port_key}={self.port}\n{port_key}Address=127.0.0.1\n")
            if "--max-session-timeout-ms" in opts:
                f.write(f"maxSessionTimeout={opts['--max-session-timeout-ms']}\n")
        props = [
            "-Dzookeeper.extendedTypesEnabled=true",
            # paddock-server always enforces hard quota limits.
            "-Dzookeeper.enforceQuota=true",
            f"-Dznode.container.checkIntervalMs={opts['--reap-interval-ms']}",
        ]
        classpath = self.CLASSPATH
        if "--super-digest" in opts:
            props.append(f"-Dzookeeper.DigestAuthenticationProvider.superDigest={opts['--super-digest']}")
        if "--sasl-users" in opts:
            # ZooKeeper's DigestLoginModule takes its users from a JAAS Server section.
            users = [line.split(":", 1) for line in open(opts["--sasl-users"]).read().splitlines()
                     if line.strip() and not line.startswith("#")]
            jaas = os.path.join(self.data_dir, "server-jaas.conf")
            with open(jaas, "w") as f:
                entries = "".join(f'\n  user_{name}="{password}"' for name, password in users)
                f.write(f"Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required{entries};\n}};\n")
            props += [
                f"-Djava.security.auth.login.config={jaas}",
                "-Dzookeeper.authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            ]
            if "--sasl-super-user" in opts:
                props.append(f"-Dzookeeper.superUser={opts['--sasl-super-user']}")
        if tls:
            keystore = os.path.join(self.data_dir, "server.pem")
            with open(keystore, "w") as out, open(opts["--tls-key"]) as k, open(opts["--tls-cert"]) as c:
                out.write(k.read() + c.read())
            props += [
                "-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                f"-Dzookeeper.ssl.keyStore.location={keystore}", "-Dzookeeper.ssl.keyStore.type=PEM",
                "-Dzookeeper.authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
            ]
            if "--tls-ca" in opts:
                props += [f"-Dzookeeper.ssl.trustStore.location={opts['--tls-ca']}",
                          "-Dzookeeper.ssl.trustStore.type=PEM"]
            else:
                props.append("-Dzookeeper.ssl.clientAuth=none")
            if "--x509-super-user" in opts:
                props.append(f"-Dzookeeper.X509AuthenticationProvider.superUser={opts['--x509-super-user']}")
            # Debian's manifest misses netty's resolver and codec (see test_tls.py).
            classpath += ":/usr/share/java/netty-resolver.jar:/usr/share/java/netty-codec.jar"
        cmd = ["java", *props, "-cp", classpath,
               "org.apache.zookeeper.server.ZooKeeperServerMain", cfg]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zookeeper exited early\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as s:
                    if tls:
                        return self  # the secure port opens once the database is loaded
                    s.sendall(b"srvr")  # ruok answers before the server serves sessions
                    if s.recv(4096).startswith(b"Zookeeper version"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"zookeeper not ready within {timeout}s\n{self.log_tail()}")


@pytest.fixture
def start_server(tmp_path, request):
    """Factory: start_server(*extra_args) -> a running PaddockServer. All are stopped at the end."""
    reference = os.environ.get("PADDOCK_TEST_REFERENCE_ZK") == "1"
    binary = None if reference else server_binary()
    servers = []
    request.node._paddock_servers = servers

    def start(*extra_args):
        n = len(servers)
        cls = ReferenceZooKeeper if reference else PaddockServer
        srv = cls(
            binary, tmp_path / f"data{n}", tmp_path / f"server{n}.log", extra_args
        )
        servers.append(srv)
        return srv.start()

    yield start
    for srv in servers:
        try:
            srv.stop()
        finally:
            srv.kill()


@pytest.fixture
def server(start_server):
    """A running server with the default test flags."""
    return start_server()


@pytest.fixture
def zk_hosts(server):
    """The client address ("127.0.0.1:PORT") of a running server."""
    return server.client_addr


@pytest.fixture
def make_client(request, start_server):
    """Factory: make_client(hosts=None, **kazoo_kwargs) -> a started KazooClient against `hosts`
    (default: the `server` fixture); every client is stopped and closed at the end of the test."""
    clients = []

    def make(hosts=None, start=True, timeout=10.0, **kwargs):
        if hosts is None:
            hosts = request.getfixturevalue("server").client_addr
        c = KazooClient(hosts=hosts, timeout=timeout, **kwargs)
        clients.append(c)
        if start:
            c.start(timeout=15)
        return c

    yield make
    for c in clients:
        try:
            c.stop()
        except Exception:
            pass
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def zk(make_client):
    """One connected kazoo client."""
    return make_client()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the server's stderr tail to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for i, srv in enumerate(getattr(item, "_paddock_servers", [])):
            report.sections.append((f"paddock-server {i} log", srv.log_tail()))


TEST_TIMEOUT = float(os.environ.get("PADDOCK_TEST_TIMEOUT", "180"))


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A hard per-test time limit (pytest-timeout is not a dependency): SIGALRM raises in the
    test's thread, so a hung test fails instead of hanging the suite."""

    def on_alarm(signum, frame):
        raise TestTimeout(f"test exceeded {TEST_TIMEOUT}s (PADDOCK_TEST_TIMEOUT)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
