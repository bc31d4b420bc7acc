//! TLS on the client and admin ports: the TLS-only client port, client certificates as `x509`
//! ACL identities, certificates renewed under a running client, and the admin API's
//! client-certificate check. Certificates come from testkit's openssl CA.

use std::path::Path;
use std::time::Duration;

use paddock_contract::admin as api;
use paddock_testkit::http::{https, tls_client};
use paddock_testkit::pki::{Issued, Pki, Usage};
use paddock_testkit::zk::{StateLog, Writer};
use tempfile::TempDir;
use zookeeper_client::TlsOptions;
use zookeeper_client::{Acl, Acls, AuthId, Client, CreateMode, Error as ZkError, Permission};

use crate::harness::{Bounded, TestServer, PERSISTENT, SESSION};

fn loopback_server(pki: &Pki, name: &str) -> Issued {
    pki.issue(name, &format!("/CN={name}"), Usage::Server, &["IP:127.0.0.1".into(), "DNS:localhost".into()])
        .expect("server certificate")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Client options trusting `ca`, showing `identity` if given.
fn tls_options(ca: &Path, identity: Option<&Issued>) -> TlsOptions {
    // zookeeper-client builds its configurations with the process's default provider.
    paddock_tls::install_default_provider();
    let options = TlsOptions::new().with_pem_ca(&read(ca)).expect("CA parses");
    match identity {
        None => options,
        Some(issued) => options.with_pem_identity(&read(&issued.cert), &read(&issued.key)).expect("identity parses"),
    }
}

async fn tls_connect(server: &TestServer, options: TlsOptions) -> Result<Client, ZkError> {
    Client::connector()
        .with_session_timeout(SESSION)
        .with_tls(options)
        .with_fail_eagerly()
        .connect(&format!("tcp+tls://{}", server.client_addr))
        .bounded()
        .await
}

/// A TLS-only server: `client=` is the TLS port.
async fn tls_server(server_cert: &Issued, ca: &Path, extra: &[&str]) -> TestServer {
    let mut args = vec![
        "--secure-client-addr",
        "127.0.0.1:0",
        "--no-plain-client",
        "--tls-cert",
        path(&server_cert.cert),
        "--tls-key",
        path(&server_cert.key),
        "--tls-ca",
        path(ca),
    ];
    args.extend_from_slice(extra);
    TestServer::start_with(&args).await
}

#[tokio::test]
async fn the_tls_port_serves_clients_with_a_certificate_of_the_ca_and_nothing_else() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new(&dir.path().join("ca"), "paddock-test-ca").expect("CA");
    let other = Pki::new(&dir.path().join("other"), "someone-else").expect("other CA");
    let server_cert = loopback_server(&pki, "server");
    let alice = pki.issue("alice", "/O=paddock/CN=alice", Usage::Client, &[]).expect("client certificate");
    let stranger = other.issue("stranger", "/CN=stranger", Usage::Client, &[]).expect("foreign certificate");
    let server = tls_server(&server_cert, &pki.ca(), &[]).await;

    let client = tls_connect(&server, tls_options(&pki.ca(), Some(&alice))).await.expect("TLS client connects");
    client.create("/over-tls", b"secret", &PERSISTENT).await.expect("create over TLS");
    assert_eq!(client.get_data("/over-tls").await.expect("read over TLS").0, b"secret");

    // No certificate, a certificate of another CA, and plain text are all turned away.
    assert!(tls_connect(&server, tls_options(&pki.ca(), None)).await.is_err(), "a client without a certificate");
    assert!(tls_connect(&server, tls_options(&pki.ca(), Some(&stranger))).await.is_err(), "another CA's client");
    let plain = server.try_connect(Client::connector().with_session_timeout(SESSION)).await;
    assert!(plain.is_err(), "plain text on the TLS port");
    // A client that does not trust the server's CA refuses it.
    assert!(tls_connect(&server, tls_options(&other.ca(), Some(&alice))).await.is_err(), "an untrusted server");

    let metrics = paddock_testkit::http(server.admin_addr, "GET", "/metrics", None).await.expect("metrics");
    let failures = paddock_testkit::http::metric(&metrics.body, "paddock_client_tls_handshake_failures_total");
    assert!(failures >= Some(3.0), "refused handshakes are counted: {failures:?}");
}

#[tokio::test]
async fn x509_acls_allow_the_certificate_subject_and_deny_everyone_else() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new(&dir.path().join("ca"), "paddock-test-ca").expect("CA");
    let server_cert = loopback_server(&pki, "server");
    let issue = |name: &str| {
        pki.issue(name, &format!("/O=paddock/OU=apps/CN={name}"), Usage::Client, &[]).expect("client certificate")
    };
    let (alice, bob, admin) = (issue("alice"), issue("bob"), issue("admin"));
    let server = tls_server(&server_cert, &pki.ca(), &["--x509-super-user", "CN=admin,OU=apps,O=paddock"]).await;
    let alice = tls_connect(&server, tls_options(&pki.ca(), Some(&alice))).await.expect("alice connects");
    let bob = tls_connect(&server, tls_options(&pki.ca(), Some(&bob))).await.expect("bob connects");
    let admin = tls_connect(&server, tls_options(&pki.ca(), Some(&admin))).await.expect("admin connects");

    // The id is the subject in RFC 2253 form, as Java's X500Principal.getName() writes it.
    let alice_id = "CN=alice,OU=apps,O=paddock";
    let only_alice = [Acl::new(Permission::ALL, AuthId::new("x509", alice_id))];
    let options = CreateMode::Persistent.with_acls(Acls::new(&only_alice));
    alice.create("/alice", b"mine", &options).await.expect("create with an x509 ACL");
    assert_eq!(alice.get_data("/alice").await.expect("the subject reads").0, b"mine");
    assert_eq!(bob.get_data("/alice").await.err(), Some(ZkError::NoAuth), "another subject is denied");
    assert_eq!(bob.set_data("/alice", b"theirs", None).await.err(), Some(ZkError::NoAuth));
    assert_eq!(admin.get_data("/alice").await.expect("the x509 super user reads").0, b"mine");

    // `auth` expands to the creator's certificate identity.
    let creator = CreateMode::Persistent.with_acls(Acls::creator_all());
    alice.create("/alice-auth", b"", &creator).await.expect("create with the creator's ACL");
    let (acl, _) = alice.get_acl("/alice-auth").await.expect("getAcl");
    assert_eq!(acl, vec![Acl::new(Permission::ALL, AuthId::new("x509", alice_id))]);
    assert_eq!(bob.get_data("/alice-auth").await.err(), Some(ZkError::NoAuth));

    // `addauth x509` succeeds on a connection with a certificate (it adds nothing new).
    alice.auth("x509", b"").await.expect("addauth x509 with a certificate");
    assert_eq!(alice.get_data("/alice").await.expect("still reads").0, b"mine");
}

#[tokio::test]
async fn renewed_certificates_serve_new_connections_while_open_sessions_keep_theirs() {
    let dir = TempDir::new().expect("temp dir");
    let old = Pki::new(&dir.path().join("old"), "old-ca").expect("old CA");
    let new = Pki::new(&dir.path().join("new"), "new-ca").expect("new CA");
    // The files the server reads, replaced in place as a Secret volume is.
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).expect("live dir");
    let (cert, key, ca) = (live.join("tls.crt"), live.join("tls.key"), live.join("ca.crt"));
    let install = |issued: &Issued, ca_pems: &[&Path]| {
        let bundle: String = ca_pems.iter().map(|p| read(p)).collect();
        for (from, to) in [(&issued.key, &key), (&issued.cert, &cert)] {
            std::fs::copy(from, live.join("next")).expect("copy");
            std::fs::rename(live.join("next"), to).expect("rename");
        }
        std::fs::write(live.join("next"), bundle).expect("write CA bundle");
        std::fs::rename(live.join("next"), &ca).expect("rename CA bundle");
    };
    install(&loopback_server(&old, "server"), &[&old.ca()]);
    let old_client = old.issue("client", "/CN=client", Usage::Client, &[]).expect("old client certificate");
    let new_client = new.issue("client", "/CN=client", Usage::Client, &[]).expect("new client certificate");
    let live_cert = Issued { cert: cert.clone(), key: key.clone() };
    let server = tls_server(&live_cert, &ca, &["--tls-reload-ms", "100", "--max-session-timeout-ms", "10000"]).await;
    let target = format!("tcp+tls://{}", server.client_addr);
    let connect = |ca: &Path, identity: &Issued| {
        let connector = Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_tls(tls_options(ca, Some(identity)))
            .with_fail_eagerly();
        let target = target.clone();
        async move { connector.connect(&target).await }
    };
    let client = connect(&old.ca(), &old_client).bounded().await.expect("connects with the old CA");
    let session = client.session_id();
    let states = StateLog::watch(&client);
    client.create("/load", b"", &PERSISTENT).await.expect("parent");
    let writer = Writer::spawn(client.clone(), "/load");
    writer.wait_progress(20, Duration::from_secs(20)).await;

    // Rotate to a new CA: the server's certificate from it, and a CA bundle of both (so clients
    // of either CA are accepted while they move over).
    install(&loopback_server(&new, "server"), &[&old.ca(), &new.ca()]);
    paddock_testkit::wait_for("a client trusting only the new CA to connect", || async {
        connect(&new.ca(), &new_client).await.ok()
    })
    .await;
    assert!(
        connect(&new.ca(), &old_client).await.is_ok(),
        "a client certificate of the old CA is still accepted (the bundle has both)"
    );
    assert!(connect(&old.ca(), &old_client).await.is_err(), "new connections get the new certificate");

    // The session that was open all along kept its connection and went on writing.
    writer.wait_progress(20, Duration::from_secs(20)).await;
    let report = writer.finish().await;
    assert!(report.errors.is_empty(), "writes failed across the rotation: {:?}", report.errors);
    assert_eq!(client.session_id(), session);
    states.assert_never_expired("the client open across the rotation");
    let metrics = paddock_testkit::http(server.admin_addr, "GET", "/metrics", None).await.expect("metrics");
    assert!(
        metrics.body.contains(r#"paddock_tls_reloads_total{outcome="loaded",port="client"} 2"#),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn the_cluster_api_needs_the_admin_certificate_and_probes_do_not() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new(&dir.path().join("ca"), "paddock-admin-ca").expect("CA");
    let other = Pki::new(&dir.path().join("other"), "someone-else").expect("other CA");
    let server_cert = loopback_server(&pki, "admin");
    let operator = pki.issue("operator", "/CN=paddock-operator", Usage::Client, &[]).expect("operator certificate");
    let stranger = other.issue("stranger", "/CN=stranger", Usage::Client, &[]).expect("foreign certificate");
    let server = TestServer::start_with(&[
        "--admin-tls-cert",
        path(&server_cert.cert),
        "--admin-tls-key",
        path(&server_cert.key),
        "--admin-tls-ca",
        path(&pki.ca()),
        "--enable-fault-injection",
    ])
    .await;
    let addr = server.admin_addr;
    let anonymous = tls_client(&pki.ca(), None).expect("TLS client");
    let with_cert = tls_client(&pki.ca(), Some(&operator)).expect("TLS client");

    for open in ["/healthz", "/readyz", "/metrics"] {
        let answer = https(addr, "GET", open, None, &anonymous).await.expect("probe over TLS");
        assert_eq!(answer.status, 200, "{open} stays open: {answer:?}");
    }
    let isolate = serde_json::json!({ "isolated": true });
    for (method, route, body) in [
        ("GET", api::CLUSTER, None),
        ("POST", api::LEADER, Some(serde_json::json!({ "id": 1 }))),
        ("POST", api::LEARNERS, Some(serde_json::json!({ "id": 2, "addr": "127.0.0.1:1" }))),
        ("DELETE", "/v1/cluster/members/1", None),
        ("POST", api::ISOLATE, Some(isolate.clone())),
    ] {
        let answer = https(addr, method, route, body.as_ref(), &anonymous).await.expect("answer");
        assert_eq!(answer.status, 401, "{method} {route} without a certificate: {answer:?}");
    }
    let view = https(addr, "GET", "/v1/cluster", None, &with_cert).await.expect("cluster view");
    assert_eq!(view.status, 200, "{view:?}");
    assert_eq!(view.json()["leader"], 1, "{view:?}");
    // A certificate of another CA fails the handshake; plain HTTP gets no answer.
    let foreign = tls_client(&pki.ca(), Some(&stranger)).expect("TLS client");
    assert!(https(addr, "GET", "/v1/cluster", None, &foreign).await.is_err(), "another CA's certificate");
    assert!(paddock_testkit::http(addr, "GET", "/healthz", None).await.map(|a| a.status != 200).unwrap_or(true));
}

#[tokio::test]
async fn sockets_silent_in_their_handshake_count_against_the_connection_cap() {
    let dir = TempDir::new().expect("temp dir");
    let pki = Pki::new(&dir.path().join("ca"), "paddock-test-ca").expect("CA");
    let server_cert = loopback_server(&pki, "server");
    let alice = pki.issue("alice", "/CN=alice", Usage::Client, &[]).expect("client certificate");
    let server = tls_server(&server_cert, &pki.ca(), &["--max-connections", "2"]).await;
    // Two sockets that never start their handshake hold the two places...
    let silent: Vec<tokio::net::TcpStream> = silent_sockets(server.client_addr).await;
    let refused = tls_connect(&server, tls_options(&pki.ca(), Some(&alice))).await;
    assert!(refused.is_err(), "a third connection while two sockets sit in their handshake");
    // ...until they go.
    drop(silent);
    paddock_testkit::wait_for("a client to connect once the silent sockets closed", || async {
        tls_connect(&server, tls_options(&pki.ca(), Some(&alice))).await.ok()
    })
    .await;
}

/// Two connected sockets that send nothing.
async fn silent_sockets(addr: std::net::SocketAddr) -> Vec<tokio::net::TcpStream> {
    let mut sockets = Vec::new();
    for _ in 0..2 {
        sockets.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    sockets
}
