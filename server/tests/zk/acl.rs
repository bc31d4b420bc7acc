//! ACLs: getACL / setACL with aversion, the world, digest, ip and auth schemes, InvalidACL,
//! the super user, whoAmI, and auth failure.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Error, Permission, SessionState};

use crate::harness::{Bounded, TestServer, PERSISTENT, SUPER_AUTH};
use paddock_testkit::raw::{self, code, op, Jute, RawConn};

/// ZooKeeper's digest id for `user:password`.
fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or_default();
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

fn acl(perms: Permission, scheme: &str, id: &str) -> Acl {
    Acl::new(perms, AuthId::new(scheme, id))
}

async fn authed(server: &TestServer, user_password: &str) -> Client {
    server
        .connect(
            Client::connector()
                .with_session_timeout(crate::harness::SESSION)
                .with_auth("digest", user_password.as_bytes()),
        )
        .await
}

fn who(users: Vec<zookeeper_client::AuthUser>) -> Vec<(String, String)> {
    let mut users: Vec<(String, String)> = users.iter().map(|u| (u.scheme().to_owned(), u.user().to_owned())).collect();
    users.sort();
    users
}

#[tokio::test]
async fn get_and_set_acl_track_aversion() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/a", b"", &PERSISTENT).bounded().await.expect("create");
    let (list, stat) = zk.get_acl("/a").bounded().await.expect("acl");
    assert_eq!(list, [acl(Permission::ALL, "world", "anyone")]);
    assert_eq!(stat.aversion, 0);

    let alice = digest("alice:secret");
    let new_acl = [acl(Permission::READ, "world", "anyone"), acl(Permission::ALL, "digest", &alice)];
    let stat = zk.set_acl("/a", &new_acl, Some(0)).bounded().await.expect("setACL");
    assert_eq!((stat.aversion, stat.version, stat.cversion), (1, 0, 0));
    assert_eq!(stat.mzxid, stat.czxid, "setACL does not touch mzxid");
    let (list, stat) = zk.get_acl("/a").bounded().await.expect("acl");
    // Without ADMIN the digest hash is hidden, as ZooKeeper does.
    assert_eq!(list, [acl(Permission::READ, "world", "anyone"), acl(Permission::ALL, "digest", "alice:x")]);
    assert_eq!(stat.aversion, 1);
    let (list, _) = authed(&server, "alice:secret").await.get_acl("/a").bounded().await.expect("acl");
    assert_eq!(list, new_acl, "ADMIN sees the full ACL");
    // Only ADMIN may set the ACL (checked before the version), and the world now has READ only.
    let any = [acl(Permission::ALL, "world", "anyone")];
    assert_eq!(zk.set_acl("/a", &any, None).bounded().await.expect_err("no admin"), Error::NoAuth);
    assert_eq!(zk.set_acl("/a", &any, Some(0)).bounded().await.expect_err("no admin"), Error::NoAuth);
    let admin = authed(&server, "alice:secret").await;
    assert_eq!(admin.set_acl("/a", &any, Some(0)).bounded().await.expect_err("stale"), Error::BadVersion);
    let stat = admin.set_acl("/a", &any, Some(1)).bounded().await.expect("setACL as alice");
    assert_eq!(stat.aversion, 2);
    assert_eq!(zk.set_acl("/missing", &any, None).bounded().await.expect_err("missing"), Error::NoNode);
}

#[tokio::test]
async fn digest_acl_admits_only_the_digest_user() {
    let server = TestServer::start().await;
    let alice = authed(&server, "alice:secret").await;
    let alice_id = digest("alice:secret");
    let only_alice = [acl(Permission::ALL, "digest", &alice_id)];
    alice
        .create("/secret", b"s", &CreateMode::Persistent.with_acls(Acls::new(&only_alice)))
        .bounded()
        .await
        .expect("create");
    alice.create("/secret/child", b"", &PERSISTENT).bounded().await.expect("create child");

    for stranger in [server.client().await, authed(&server, "alice:wrong").await, authed(&server, "bob:secret").await] {
        assert_eq!(stranger.get_data("/secret").bounded().await.expect_err("read"), Error::NoAuth);
        assert_eq!(stranger.set_data("/secret", b"x", None).bounded().await.expect_err("write"), Error::NoAuth);
        assert_eq!(stranger.list_children("/secret").bounded().await.expect_err("list"), Error::NoAuth);
        assert_eq!(stranger.get_acl("/secret").bounded().await.expect_err("getACL"), Error::NoAuth);
        assert_eq!(
            stranger.create("/secret/x", b"", &PERSISTENT).bounded().await.expect_err("create child"),
            Error::NoAuth
        );
        assert_eq!(stranger.delete("/secret/child", None).bounded().await.expect_err("delete child"), Error::NoAuth);
        // exists is not ACL-checked, as in ZooKeeper.
        assert!(stranger.check_stat("/secret").bounded().await.expect("exists").is_some());
    }
    assert_eq!(alice.get_data("/secret").bounded().await.expect("read").0, b"s");
    alice.set_data("/secret", b"t", None).bounded().await.expect("write");
    // An identity added after connecting counts from then on.
    let late = server.client().await;
    late.auth("digest", b"alice:secret").bounded().await.expect("auth");
    assert_eq!(late.get_data("/secret").bounded().await.expect("read").0, b"t");
}

#[tokio::test]
async fn world_read_only_acl() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/ro", b"r", &CreateMode::Persistent.with_acls(Acls::anyone_read())).bounded().await.expect("create");
    assert_eq!(zk.get_data("/ro").bounded().await.expect("read").0, b"r");
    assert_eq!(zk.set_data("/ro", b"x", None).bounded().await.expect_err("write"), Error::NoAuth);
    assert_eq!(zk.create("/ro/c", b"", &PERSISTENT).bounded().await.expect_err("create"), Error::NoAuth);
    // Deleting needs DELETE on the parent (the open root), not on the node.
    zk.delete("/ro", None).bounded().await.expect("delete");

    let no_delete = [acl(Permission::READ | Permission::CREATE, "world", "anyone")];
    zk.create("/nd", b"", &CreateMode::Persistent.with_acls(Acls::new(&no_delete))).bounded().await.expect("create");
    zk.create("/nd/c", b"", &PERSISTENT).bounded().await.expect("CREATE permits a child");
    assert_eq!(zk.delete("/nd/c", None).bounded().await.expect_err("no DELETE"), Error::NoAuth);
}

#[tokio::test]
async fn ip_acl_matches_the_client_address() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    for (path, id, allowed) in [
        ("/ip-exact", "127.0.0.1", true),
        ("/ip-net", "127.0.0.0/8", true),
        ("/ip-other", "10.0.0.1", false),
        ("/ip-other-net", "192.168.0.0/16", false),
    ] {
        let only = [acl(Permission::READ | Permission::WRITE | Permission::ADMIN, "ip", id)];
        zk.create(path, b"", &CreateMode::Persistent.with_acls(Acls::new(&only))).bounded().await.expect("create");
        let read = zk.get_data(path).bounded().await;
        if allowed {
            read.expect("loopback is admitted");
            zk.set_data(path, b"x", None).bounded().await.expect("write");
        } else {
            assert_eq!(read.expect_err("refused"), Error::NoAuth, "{path}");
        }
    }
}

#[tokio::test]
async fn auth_scheme_means_the_creators_identities() {
    let server = TestServer::start().await;
    let anonymous = server.client().await;
    assert_eq!(
        anonymous
            .create("/mine", b"", &CreateMode::Persistent.with_acls(Acls::creator_all()))
            .bounded()
            .await
            .expect_err("no identity"),
        Error::InvalidAcl
    );
    let alice = authed(&server, "alice:secret").await;
    alice
        .create("/mine", b"", &CreateMode::Persistent.with_acls(Acls::creator_all()))
        .bounded()
        .await
        .expect("create with auth scheme");
    let (list, _) = alice.get_acl("/mine").bounded().await.expect("acl");
    assert_eq!(list, [acl(Permission::ALL, "digest", &digest("alice:secret"))]);
    let bob = authed(&server, "bob:pw").await;
    assert_eq!(bob.get_data("/mine").bounded().await.expect_err("bob"), Error::NoAuth);
    alice.get_data("/mine").bounded().await.expect("alice reads");
}

#[tokio::test]
async fn invalid_acls_are_refused() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    zk.create("/target", b"", &PERSISTENT).bounded().await.expect("create");
    let invalid = [
        acl(Permission::ALL, "world", "somebody"),
        acl(Permission::ALL, "ip", "not-an-address"),
        acl(Permission::ALL, "ip", "10.0.0.1/99"),
        acl(Permission::ALL, "digest", "no-colon"),
        acl(Permission::ALL, "kerberos", "alice"),
        acl(Permission::ALL, "auth", ""),
    ];
    for entry in invalid {
        let list = [entry];
        let options = CreateMode::Persistent.with_acls(Acls::new(&list));
        assert_eq!(
            zk.create("/bad", b"", &options).bounded().await.expect_err("create"),
            Error::InvalidAcl,
            "{list:?}"
        );
        assert_eq!(
            zk.set_acl("/target", &list, None).bounded().await.expect_err("setACL"),
            Error::InvalidAcl,
            "{list:?}"
        );
    }
    // An empty ACL list (the client crate will not send one).
    let mut raw = RawConn::connect(server.client_addr).await;
    let reply = raw.request(op::CREATE2, &Jute::new().str("/bad").buf(b"").acl(&[]).i32(0).bytes()).await;
    assert_eq!(reply.err, code::INVALID_ACL);
    assert_eq!(zk.check_stat("/bad").bounded().await.expect("exists"), None);
    assert_eq!(zk.get_acl("/target").bounded().await.expect("acl").1.aversion, 0);
}

#[tokio::test]
async fn super_user_passes_every_acl() {
    let server = TestServer::with_super_digest().await;
    let alice = authed(&server, "alice:secret").await;
    let only_alice = [acl(Permission::ALL, "digest", &digest("alice:secret"))];
    alice
        .create("/locked", b"x", &CreateMode::Persistent.with_acls(Acls::new(&only_alice)))
        .bounded()
        .await
        .expect("create");
    let nobody = [acl(Permission::READ, "digest", &digest("nobody:pw"))];
    alice
        .create("/locked/sealed", b"y", &CreateMode::Persistent.with_acls(Acls::new(&nobody)))
        .bounded()
        .await
        .expect("create");
    let outsider = server.client().await;
    assert_eq!(outsider.get_data("/locked").bounded().await.expect_err("outsider"), Error::NoAuth);

    let root = server.connect(Client::connector().with_auth("digest", SUPER_AUTH)).await;
    assert_eq!(root.get_data("/locked").bounded().await.expect("super reads").0, b"x");
    assert_eq!(root.get_data("/locked/sealed").bounded().await.expect("super reads").0, b"y");
    root.set_data("/locked/sealed", b"z", None).bounded().await.expect("super writes");
    root.get_acl("/locked/sealed").bounded().await.expect("super reads the ACL");
    root.set_acl("/locked/sealed", &nobody, None).bounded().await.expect("super sets the ACL");
    root.create("/locked/more", b"", &PERSISTENT).bounded().await.expect("super creates");
    root.delete("/locked/sealed", None).bounded().await.expect("super deletes");
    assert_eq!(
        who(root.list_auth_users().bounded().await.expect("whoAmI")),
        [
            ("digest".to_owned(), "super".to_owned()),
            ("ip".to_owned(), "127.0.0.1".to_owned()),
            ("super".to_owned(), String::new())
        ]
    );
    // The same password on a server without --super-digest is just a digest user.
    let plain = TestServer::start().await;
    let zk = plain.client().await;
    zk.create("/locked", b"", &CreateMode::Persistent.with_acls(Acls::new(&only_alice)))
        .bounded()
        .await
        .expect("create");
    let not_root = plain.connect(Client::connector().with_auth("digest", SUPER_AUTH)).await;
    assert_eq!(not_root.get_data("/locked").bounded().await.expect_err("not super"), Error::NoAuth);
}

#[tokio::test]
async fn who_am_i_lists_the_connection_identities() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    assert_eq!(who(zk.list_auth_users().bounded().await.expect("whoAmI")), [("ip".to_owned(), "127.0.0.1".to_owned())]);
    zk.auth("digest", b"alice:secret").bounded().await.expect("auth");
    zk.auth("digest", b"bob:pw").bounded().await.expect("auth");
    assert_eq!(
        who(zk.list_auth_users().bounded().await.expect("whoAmI")),
        [
            ("digest".to_owned(), "alice".to_owned()),
            ("digest".to_owned(), "bob".to_owned()),
            ("ip".to_owned(), "127.0.0.1".to_owned()),
        ],
        "ZooKeeper reports the digest user name, not the digest"
    );
}

#[tokio::test]
async fn auth_failure_ends_the_session_connection() {
    let server = TestServer::start().await;
    let zk = server.client().await;
    let mut state = zk.state_watcher();
    assert_eq!(zk.auth("no-such-scheme", b"x").bounded().await.expect_err("auth"), Error::AuthFailed);
    let terminal = async {
        loop {
            let s = state.changed().await;
            if s.is_terminated() {
                return s;
            }
        }
    };
    assert_eq!(terminal.bounded().await, SessionState::AuthFailed);

    // On the wire: the auth reply (xid -4) says AuthFailed, then the server closes.
    let mut raw = RawConn::connect(server.client_addr).await;
    let body = Jute::new().i32(0).str("no-such-scheme").buf(b"x").bytes();
    let mut payload = Jute::new().i32(-4).i32(100).bytes();
    payload.extend_from_slice(&body);
    raw::write_frame(&mut raw.stream, &payload).bounded().await.expect("send auth");
    let frame = raw::read_frame(&mut raw.stream).bounded().await.expect("auth reply");
    let mut r = raw::Reader(&frame);
    let (xid, _zxid, err) = (r.i32(), r.i64(), r.i32());
    assert_eq!((xid, err), (-4, -115));
    raw::expect_closed(&mut raw.stream).await;

    // Others are unaffected.
    let other = server.client().await;
    other.create("/still-fine", b"", &PERSISTENT).bounded().await.expect("create");
}
