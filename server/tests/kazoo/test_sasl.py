"""SASL DIGEST-MD5 on the client port with real clients: kazoo (`sasl_options`, through
pure-sasl) and the Java client (zkCli.sh with a JAAS `Client` section), and the `sasl` ACL
scheme as ZooKeeper's SASLAuthenticationProvider defines it: the authenticated user is the id."""

import pytest
from kazoo.exceptions import AuthFailedError, NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_acl

from pki import TestCA
from test_zkcli import zkcli_session

USERS = {"bob": "bobsecret", "alice": "alicesecret", "root": "rootsecret"}


@pytest.fixture
def users_file(tmp_path):
    path = tmp_path / "sasl-users"
    path.write_text("# name:password\n" + "".join(f"{u}:{p}\n" for u, p in USERS.items()))
    return str(path)


@pytest.fixture
def sasl_server(start_server, users_file):
    return start_server("--sasl-users", users_file, "--sasl-super-user", "root")


def sasl(user, password=None):
    return {"mechanism": "DIGEST-MD5", "username": user, "password": password or USERS[user]}


def test_kazoo_digest_md5_and_the_sasl_scheme(make_client, sasl_server):
    bob = make_client(hosts=sasl_server.client_addr, sasl_options=sasl("bob"))
    alice = make_client(hosts=sasl_server.client_addr, sasl_options=sasl("alice"))
    root = make_client(hosts=sasl_server.client_addr, sasl_options=sasl("root"))
    anonymous = make_client(hosts=sasl_server.client_addr)

    bob.create("/bob", b"mine", acl=[make_acl("sasl", "bob", all=True)])
    assert bob.get("/bob")[0] == b"mine"
    for other in (alice, anonymous):
        with pytest.raises(NoAuthError):
            other.get("/bob")
    assert root.get("/bob")[0] == b"mine", "the SASL super user"
    # `auth` takes the authenticated user.
    bob.create("/bob-auth", b"", acl=[make_acl("auth", "", all=True)])
    acls, _ = bob.get_acls("/bob-auth")
    assert [(a.id.scheme, a.id.id, a.perms) for a in acls] == [("sasl", "bob", 31)]
    with pytest.raises(NoAuthError):
        alice.set("/bob-auth", b"theirs")


@pytest.mark.parametrize("user,password", [("bob", "wrong"), ("mallory", "bobsecret")])
def test_a_wrong_password_or_unknown_user_is_refused(make_client, sasl_server, user, password):
    client = make_client(hosts=sasl_server.client_addr, start=False, sasl_options=sasl(user, password))
    try:
        # kazoo says CONNECTED once the session is made, then runs SASL and, refused, closes.
        client.start(timeout=5)
    except (AuthFailedError, KazooTimeoutError):
        pass
    # Nothing is served to it: its requests fail with AuthFailed (as against ZooKeeper).
    with pytest.raises(AuthFailedError):
        client.get_async("/").get(timeout=5)


def test_kazoo_sasl_over_tls(make_client, start_server, users_file, tmp_path):
    ca = TestCA(tmp_path / "ca", "paddock-test-ca")
    cert, key, _ = ca.server()
    srv = start_server(
        "--secure-client-addr", "127.0.0.1:0", "--no-plain-client",
        "--tls-cert", cert, "--tls-key", key, "--sasl-users", users_file,
    )
    bob = make_client(hosts=srv.client_addr, use_ssl=True, verify_certs=True, ca=ca.ca, sasl_options=sasl("bob"))
    bob.create("/tls-sasl", b"x", acl=[make_acl("sasl", "bob", all=True)])
    alice = make_client(hosts=srv.client_addr, use_ssl=True, verify_certs=True, ca=ca.ca, sasl_options=sasl("alice"))
    with pytest.raises(NoAuthError):
        alice.get("/tls-sasl")


def test_zkcli_digest_md5(sasl_server, make_client, tmp_path):
    jaas = tmp_path / "client-jaas.conf"
    jaas.write_text(
        'Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n'
        '  username="alice"\n  password="alicesecret";\n};\n'
    )
    with zkcli_session(sasl_server.client_addr, jvm_flags=f"-Djava.security.auth.login.config={jaas}") as cli:
        cli.expect(r"WatchedEvent state:SaslAuthenticated type:None path:null", timeout=60)
        cli.run("create /zkcli-sasl secret auth::cdrwa", r"^Created /zkcli-sasl$")
        cli.run("getAcl /zkcli-sasl", r"^'sasl,'alice$")
        cli.expect(r"^: cdrwa$")
        cli.run("get /zkcli-sasl", r"^secret$")
    bob = make_client(hosts=sasl_server.client_addr, sasl_options=sasl("bob"))
    with pytest.raises(NoAuthError):
        bob.get("/zkcli-sasl")
