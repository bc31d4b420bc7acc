"""The TLS client port with real clients: kazoo (`use_ssl`) and the Java client (zkCli.sh with
the Netty socket and `zookeeper.client.secure`), and the x509 ACL scheme as ZooKeeper's
X509AuthenticationProvider defines it: the client certificate's subject (RFC 2253) is the id."""

import pytest
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_acl

from pki import TestCA
from test_zkcli import zkcli_session

ALICE = "CN=alice,OU=apps,O=paddock"


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca", "paddock-test-ca")


@pytest.fixture
def tls_server(start_server, ca):
    """A server whose client port is TLS only, needing client certificates of `ca`."""
    cert, key, _ = ca.server()
    return start_server(
        "--secure-client-addr", "127.0.0.1:0", "--no-plain-client",
        "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca.ca,
        "--x509-super-user", "CN=admin,O=paddock",
    )


@pytest.fixture
def tls_client(make_client, tls_server, ca):
    """Factory: tls_client(name, subject=None, start=True) -> kazoo over TLS with a certificate
    for `subject` (default /O=paddock/OU=apps/CN=<name>), or none when name is None."""

    def make(name, subject=None, start=True):
        kwargs = dict(use_ssl=True, verify_certs=True, ca=ca.ca)
        if name is not None:
            cert, key, _ = ca.issue(name, subject or f"/O=paddock/OU=apps/CN={name}")
            kwargs.update(certfile=cert, keyfile=key)
        return make_client(hosts=tls_server.client_addr, start=start, **kwargs)

    return make


def test_kazoo_over_tls(tls_client):
    zk = tls_client("alice")
    zk.create("/tls/node", b"over tls", makepath=True)
    assert zk.get("/tls/node")[0] == b"over tls"
    seen = []
    zk.get("/tls/node", watch=seen.append)
    zk.set("/tls/node", b"changed")
    other = tls_client("bob")
    assert other.get("/tls/node")[0] == b"changed"
    zk.sync("/tls/node")
    assert [e.type for e in seen] == ["CHANGED"]


def test_a_client_without_a_certificate_is_turned_away(tls_client):
    anonymous = tls_client(None, start=False)
    with pytest.raises(KazooTimeoutError):
        anonymous.start(timeout=5)


def test_plain_text_gets_nothing_from_the_tls_port(make_client, tls_server):
    plain = make_client(hosts=tls_server.client_addr, start=False)
    with pytest.raises(KazooTimeoutError):
        plain.start(timeout=5)


def test_x509_acl_allows_the_subject_and_denies_others(tls_client):
    alice, bob, admin = tls_client("alice"), tls_client("bob"), tls_client("admin", "/O=paddock/CN=admin")
    alice.create("/alice", b"mine", acl=[make_acl("x509", ALICE, all=True)])
    assert alice.get("/alice")[0] == b"mine"
    with pytest.raises(NoAuthError):
        bob.get("/alice")
    with pytest.raises(NoAuthError):
        bob.set("/alice", b"theirs")
    assert admin.get("/alice")[0] == b"mine", "the x509 super user"
    # Read for everyone, write for alice only.
    alice.create("/shared", b"v1", acl=[make_acl("world", "anyone", read=True), make_acl("x509", ALICE, write=True)])
    assert bob.get("/shared")[0] == b"v1"
    with pytest.raises(NoAuthError):
        bob.set("/shared", b"v2")
    alice.set("/shared", b"v2")
    # `auth` takes the creator's certificate identity.
    alice.create("/creator", b"", acl=[make_acl("auth", "", all=True)])
    acls, _ = alice.get_acls("/creator")
    assert [(a.id.scheme, a.id.id, a.perms) for a in acls] == [("x509", ALICE, 31)]


@pytest.fixture
def zkcli_tls(tls_server, ca):
    _, _, pem = ca.issue("zkcli", "/O=paddock/CN=zkcli")
    flags = " ".join([
        # Debian's zookeeper.jar names netty's handler and transport in its manifest but not the
        # resolver and codec they need, without which the Netty socket (the only one with TLS)
        # fails to connect; zkCli.sh lets this later -cp win.
        "-cp", ":".join(["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar",
                         "/usr/share/java/netty-resolver.jar", "/usr/share/java/netty-codec.jar"]),
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        "-Dzookeeper.client.secure=true",
        f"-Dzookeeper.ssl.keyStore.location={pem}",
        "-Dzookeeper.ssl.keyStore.type=PEM",
        f"-Dzookeeper.ssl.trustStore.location={ca.ca}",
        "-Dzookeeper.ssl.trustStore.type=PEM",
    ])
    with zkcli_session(tls_server.client_addr, jvm_flags=flags) as cli:
        yield cli


def test_zkcli_over_tls(zkcli_tls, tls_client):
    cli = zkcli_tls
    cli.expect(r"WatchedEvent state:SyncConnected type:None path:null", timeout=60)
    cli.run("create /zkcli-tls hello", r"^Created /zkcli-tls$")
    cli.run("get /zkcli-tls", r"^hello$")
    cli.run("create /zkcli-x509 secret auth::cdrwa", r"^Created /zkcli-x509$")
    # zkCli prints ids URL-encoded: the id is "CN=zkcli,O=paddock".
    cli.run("getAcl /zkcli-x509", r"^'x509,'CN=zkcli%2CO=paddock$")
    cli.expect(r"^: cdrwa$")
    cli.run("get /zkcli-x509", r"^secret$")
    bob = tls_client("bob")
    assert bob.get("/zkcli-tls")[0] == b"hello"
    with pytest.raises(NoAuthError):
        bob.get_acls("/zkcli-x509")  # getACL needs READ or ADMIN, as in ZooKeeper 3.5+
    acls, _ = tls_client("admin", "/O=paddock/CN=admin").get_acls("/zkcli-x509")
    assert [(a.id.scheme, a.id.id) for a in acls] == [("x509", "CN=zkcli,O=paddock")]
    with pytest.raises(NoAuthError):
        bob.get("/zkcli-x509")
