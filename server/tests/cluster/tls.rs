//! Mutual TLS between members: a cluster whose peer links all run over TLS replicates, fails
//! over and takes a learner; a dialer without a member certificate of the cluster's CA, or one
//! that claims another member's id, gets no frame through; a dialer refuses a server that is
//! not the member it dialed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paddock_contract::peer::Hello;
use paddock_testkit::pki::{Issued, Pki, Usage};
use paddock_tls::{member_server_name, member_uri, Reloading, Role, TlsFiles};
use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// The cluster's CA and one peer certificate per member id.
struct MemberCerts {
    _dir: TempDir,
    pki: Pki,
}

impl MemberCerts {
    fn new() -> MemberCerts {
        let dir = TempDir::new().expect("temp dir");
        let pki = Pki::new(dir.path(), "paddock-peer-ca").expect("CA");
        MemberCerts { _dir: dir, pki }
    }

    fn member(&self, id: u64) -> Issued {
        let name = format!("member-{id}");
        self.pki
            .issue(&name, &format!("/CN={name}"), Usage::Both, &[format!("URI:{}", member_uri(id))])
            .expect("member certificate")
    }

    fn path(&self, file: &str) -> PathBuf {
        self.pki.dir().join(file)
    }

    /// Peer TLS flags for a node: its own `member-<id>` files.
    fn launcher(&self, ids: &[u64]) -> paddock_testkit::cluster::Launcher {
        for id in ids {
            self.member(*id);
        }
        let dir = self.pki.dir().to_owned();
        Arc::new(move |spec: &NodeSpec| {
            let mut command = spec.server_command(Path::new(env!("CARGO_BIN_EXE_paddock-server")));
            let file = |ext: &str| dir.join(format!("member-{}.{ext}", spec.id));
            command
                .args(["--tick-ms", "200", "--enable-fault-injection"])
                .arg("--peer-tls-cert")
                .arg(file("crt"))
                .arg("--peer-tls-key")
                .arg(file("key"))
                .arg("--peer-tls-ca")
                .arg(dir.join("ca.crt"));
            command
        })
    }
}

/// Sends a greeting claiming `id` on `stream` and says whether a greeting came back within
/// a few seconds (a refused link closes without one).
async fn welcomed<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, id: u64) -> bool {
    let hello = Hello { id, admin_addr: "127.0.0.1:1".into() }.to_frame().expect("hello frame");
    if stream.write_all(&hello).await.is_err() || stream.flush().await.is_err() {
        return false;
    }
    let answer = async {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await.ok()?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > paddock_contract::peer::MAX_HELLO {
            return None;
        }
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await.ok()?;
        Hello::from_body(&body).ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(5), answer).await, Ok(Some(_)))
}

/// A TLS client showing `issued`, trusting `ca` (no host name check: the peer check is the
/// member name, which this test client does not need).
fn dialer(issued: &Issued, ca: &Path) -> tokio_rustls::TlsConnector {
    let tls = Reloading::load(
        "test",
        TlsFiles { cert: issued.cert.clone(), key: issued.key.clone(), ca: Some(ca.into()) },
        Role::Peer,
    )
    .expect("dialer TLS");
    tls.current().connector.clone().expect("connector")
}

#[tokio::test]
async fn members_replicate_fail_over_and_take_a_learner_over_mutual_tls() {
    let certs = MemberCerts::new();
    let mut cluster = Cluster::start(3, certs.launcher(&[1, 2, 3, 4])).await;
    let client = cluster.client(&[1, 2, 3]).await;
    ensure_node(&client, "/tls").await;
    let writer = Writer::spawn(client, "/tls");
    writer.wait_progress(20, WAIT).await;

    let leader = cluster.leader().await;
    cluster.node_mut(leader).kill9();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    cluster.wait_leader(&others, Some(leader)).await;
    writer.wait_progress(20, WAIT).await;
    cluster.node_mut(leader).start().await;

    cluster.start_joiner(4).await;
    let addr = cluster.node(4).peer_addr.to_string();
    let answer = cluster.admin_on_leader("POST", "/v1/cluster/learners", Some(&json!({ "id": 4, "addr": addr }))).await;
    assert_eq!(answer.status, 200, "adding learner 4 over TLS: {answer:?}");
    writer.wait_progress(20, WAIT).await;
    let report = writer.finish().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // The restarted member and the learner catch up over their TLS links too.
    cluster.wait_ready(&[1, 2, 3, 4]).await;
    cluster.wait_caught_up(leader, &[1, 2, 3]).await;
    cluster.wait_caught_up(4, &[1, 2, 3]).await;
    assert_same_everywhere(&cluster, &[1, 2, 3, 4], "/tls", &report.acked).await;
}

#[tokio::test]
async fn only_the_member_a_certificate_names_gets_a_frame_through() {
    let certs = MemberCerts::new();
    let cluster = Cluster::start(3, certs.launcher(&[1, 2, 3])).await;
    let peer_port = cluster.node(1).peer_addr;
    let ca = certs.path("ca.crt");
    let name = member_server_name(1).expect("name");
    let tcp = || async { TcpStream::connect(peer_port).await.expect("peer port accepts") };

    // Member 2's own certificate and id: welcomed (what the refusals below are measured by).
    let member2 = certs.member(2);
    let link = dialer(&member2, &ca).connect(name.clone(), tcp().await).await.expect("handshake as member 2");
    assert!(welcomed(link, 2).await, "member 2 is welcomed as itself");

    // Plain text: the greeting is not even read as one.
    assert!(!welcomed(tcp().await, 2).await, "a plain-text dialer");
    // Member 2's certificate claiming id 3.
    let link = dialer(&member2, &ca).connect(name.clone(), tcp().await).await.expect("handshake as member 2");
    assert!(!welcomed(link, 3).await, "member 2 claiming to be member 3");
    // A certificate of the CA that names no member (a client's, say).
    let client_cert = certs.pki.issue("client", "/CN=some-client", Usage::Both, &[]).expect("certificate");
    let link = dialer(&client_cert, &ca).connect(name.clone(), tcp().await).await.expect("handshake");
    assert!(!welcomed(link, 2).await, "a certificate naming no member");
    // Member 2's name from another CA: the handshake fails.
    let other_dir = TempDir::new().expect("temp dir");
    let other = Pki::new(other_dir.path(), "another-ca").expect("CA");
    let forged = other.issue("forged", "/CN=member-2", Usage::Both, &[format!("URI:{}", member_uri(2))]).expect("cert");
    let refused = dialer(&forged, &other.ca()).connect(name.clone(), tcp().await).await;
    assert!(refused.is_err() || !welcomed(refused.expect("checked"), 2).await, "another CA's member certificate");

    let metrics = cluster.node(1).metric(r#"paddock_peer_links_refused_total{reason="wrong_member"}"#).await;
    assert_eq!(metrics, Some(1.0));
    let metrics = cluster.node(1).metric(r#"paddock_peer_links_refused_total{reason="no_member_name"}"#).await;
    assert_eq!(metrics, Some(1.0));
}

#[tokio::test]
async fn a_dialer_refuses_a_server_that_is_not_the_member_it_dialed() {
    let certs = MemberCerts::new();
    let (member2, member3) = (certs.member(2), certs.member(3));
    let ca = certs.path("ca.crt");
    let server_tls = Reloading::load(
        "test",
        TlsFiles { cert: member3.cert.clone(), key: member3.key.clone(), ca: Some(ca.clone()) },
        Role::Peer,
    )
    .expect("server TLS");
    let acceptor = server_tls.current().acceptor.clone().expect("acceptor");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    let connector = dialer(&member2, &ca);
    let as_member = |id| member_server_name(id).expect("name");
    let stream = TcpStream::connect(addr).await.expect("connect");
    assert!(connector.connect(as_member(2), stream).await.is_err(), "member 3's certificate when dialing member 2");
    let stream = TcpStream::connect(addr).await.expect("connect");
    assert!(connector.connect(as_member(3), stream).await.is_ok(), "member 3's certificate when dialing member 3");
}

/// Every member's peer files in `live/member-<id>/`, each a symlink into `..data`, which points
/// at a versioned directory: swapping `..data` changes all of a member's files at once, as a
/// Kubernetes Secret volume does.
struct LiveFiles {
    root: PathBuf,
    version: usize,
}

impl LiveFiles {
    fn new(root: &Path) -> LiveFiles {
        LiveFiles { root: root.to_owned(), version: 0 }
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("member-{id}"))
    }

    /// Installs, for each member, its certificate from `pki` and the CA bundle of `cas`.
    fn install(&mut self, ids: &[u64], pki: &Pki, cas: &[&Path]) {
        self.version += 1;
        let bundle: String = cas.iter().map(|ca| std::fs::read_to_string(ca).expect("CA")).collect();
        for id in ids {
            let name = format!("member-{id}");
            let issued = pki
                .issue(&name, &format!("/CN={name}"), Usage::Both, &[format!("URI:{}", member_uri(*id))])
                .expect("member certificate");
            let dir = self.dir(*id);
            let version = dir.join(format!("v{}", self.version));
            std::fs::create_dir_all(&version).expect("version dir");
            std::fs::copy(&issued.cert, version.join("tls.crt")).expect("cert");
            std::fs::copy(&issued.key, version.join("tls.key")).expect("key");
            std::fs::write(version.join("ca.crt"), &bundle).expect("CA bundle");
            let next = dir.join("..data_next");
            let _ = std::fs::remove_file(&next);
            std::os::unix::fs::symlink(format!("v{}", self.version), &next).expect("symlink");
            std::fs::rename(&next, dir.join("..data")).expect("swap");
            for file in ["tls.crt", "tls.key", "ca.crt"] {
                let link = dir.join(file);
                if std::fs::symlink_metadata(&link).is_err() {
                    std::os::unix::fs::symlink(format!("..data/{file}"), &link).expect("file symlink");
                }
            }
        }
    }
}

#[tokio::test]
async fn peer_certificates_move_to_a_new_ca_under_load_without_losing_a_session() {
    let dir = TempDir::new().expect("temp dir");
    let old = Pki::new(&dir.path().join("old"), "old-peer-ca").expect("old CA");
    let new = Pki::new(&dir.path().join("new"), "new-peer-ca").expect("new CA");
    let ids = [1, 2, 3];
    let mut live = LiveFiles::new(&dir.path().join("live"));
    live.install(&ids, &old, &[&old.ca()]);
    let root = live.root.clone();
    let launcher: paddock_testkit::cluster::Launcher = Arc::new(move |spec: &NodeSpec| {
        let mut command = spec.server_command(Path::new(env!("CARGO_BIN_EXE_paddock-server")));
        let member = root.join(format!("member-{}", spec.id));
        command
            .args(["--tick-ms", "200", "--enable-fault-injection", "--tls-reload-ms", "100"])
            .arg("--peer-tls-cert")
            .arg(member.join("tls.crt"))
            .arg("--peer-tls-key")
            .arg(member.join("tls.key"))
            .arg("--peer-tls-ca")
            .arg(member.join("ca.crt"));
        command
    });
    let cluster = Cluster::start(3, launcher).await;
    let client = cluster.client(&ids).await;
    let states = StateLog::watch(&client);
    ensure_node(&client, "/rotate").await;
    let writer = Writer::spawn(client, "/rotate");
    writer.wait_progress(20, WAIT).await;

    let loaded = r#"paddock_tls_reloads_total{outcome="loaded",port="peer"}"#;
    let wait_loaded = |count: f64| {
        let cluster = &cluster;
        async move {
            for id in [1, 2, 3] {
                wait_for(&format!("member {id} to load peer files #{count}"), WAIT, || async {
                    (cluster.node(id).metric(loaded).await >= Some(count)).then_some(())
                })
                .await;
            }
        }
    };
    // Trust both CAs, then certificates from the new one, then trust only the new one: each
    // step swaps every member's files at once, and each member loads them.
    live.install(&ids, &old, &[&old.ca(), &new.ca()]);
    wait_loaded(2.0).await;
    live.install(&ids, &new, &[&old.ca(), &new.ca()]);
    wait_loaded(3.0).await;
    live.install(&ids, &new, &[&new.ca()]);
    wait_loaded(4.0).await;

    // Links made from now on use the new files: cut each member's links in turn (its peers
    // dial it again, it dials them) and the cluster goes on serving the writer.
    for id in ids {
        cluster.node(id).isolate(true).await;
        wait_for(&format!("member {id} to stop serving while cut off"), WAIT, || async {
            (!cluster.node(id).ready().await).then_some(())
        })
        .await;
        cluster.node(id).isolate(false).await;
        cluster.wait_ready(&ids).await;
        writer.wait_progress(10, WAIT).await;
    }
    // The old CA is gone: a member certificate of it gets no greeting, one of the new CA does.
    let old_member =
        old.issue("stale-2", "/CN=member-2", Usage::Both, &[format!("URI:{}", member_uri(2))]).expect("cert");
    let new_member =
        new.issue("fresh-2", "/CN=member-2", Usage::Both, &[format!("URI:{}", member_uri(2))]).expect("cert");
    let name = member_server_name(1).expect("name");
    let peer_port = cluster.node(1).peer_addr;
    let stale =
        dialer(&old_member, &new.ca()).connect(name.clone(), TcpStream::connect(peer_port).await.expect("dial")).await;
    assert!(stale.is_err() || !welcomed(stale.expect("checked"), 2).await, "an old-CA member certificate");
    let fresh = dialer(&new_member, &new.ca()).connect(name, TcpStream::connect(peer_port).await.expect("dial")).await;
    assert!(welcomed(fresh.expect("handshake with the new CA"), 2).await, "a new-CA member certificate");

    let report = writer.finish().await;
    assert!(report.errors.is_empty(), "writes failed across the rotation: {:?}", report.errors);
    states.assert_never_expired("the writer's session");
    assert_same_everywhere(&cluster, &ids, "/rotate", &report.acked).await;
}
