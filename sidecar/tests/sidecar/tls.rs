//! The sidecar over TLS: it dials a TLS-only server with its client certificate, and when both
//! sides' certificates are renewed from a new CA it reads its files again, so its next
//! connection (after the old one is cut) is made with the new ones: the session, and the lock
//! held on it, are kept.

use std::path::Path;

use hyper::{Method, StatusCode};
use paddock_testkit::pki::{Issued, Pki, Usage};
use tempfile::TempDir;

use crate::harness::{expect, wait_for, Proxy, Server, Sidecar, SidecarExt};

/// Replaces `files` (name → source) in `dir` one by one, each by a rename, as a Secret volume
/// update does; a source of several paths is their concatenation (a CA bundle).
fn install(dir: &Path, files: &[(&str, &[&Path])]) {
    std::fs::create_dir_all(dir).expect("dir");
    for (name, sources) in files {
        let text: String = sources.iter().map(|p| std::fs::read_to_string(p).expect("read")).collect();
        std::fs::write(dir.join("next"), text).expect("write");
        std::fs::rename(dir.join("next"), dir.join(name)).expect("rename");
    }
}

fn server_cert(pki: &Pki) -> Issued {
    pki.issue("server", "/CN=server", Usage::Server, &["IP:127.0.0.1".into()]).expect("server certificate")
}

#[tokio::test]
async fn renewed_certificates_keep_the_sidecars_session_and_its_lock() {
    let dir = TempDir::new().expect("temp dir");
    let old = Pki::new(&dir.path().join("old"), "old-ca").expect("old CA");
    let new = Pki::new(&dir.path().join("new"), "new-ca").expect("new CA");
    let (server_dir, sidecar_dir) = (dir.path().join("server"), dir.path().join("sidecar"));
    let old_server = server_cert(&old);
    install(
        &server_dir,
        &[("tls.key", &[&old_server.key]), ("tls.crt", &[&old_server.cert]), ("ca.crt", &[&old.ca()])],
    );
    let old_client = old.issue("pod-a", "/O=paddock/CN=pod-a", Usage::Client, &[]).expect("client certificate");
    install(
        &sidecar_dir,
        &[("tls.key", &[&old_client.key]), ("tls.crt", &[&old_client.cert]), ("ca.crt", &[&old.ca()])],
    );

    let file = |dir: &Path, name: &str| dir.join(name).to_str().expect("utf-8").to_owned();
    let server = Server::start_with(&[
        "--secure-client-addr",
        "127.0.0.1:0",
        "--no-plain-client",
        "--tls-cert",
        &file(&server_dir, "tls.crt"),
        "--tls-key",
        &file(&server_dir, "tls.key"),
        "--tls-ca",
        &file(&server_dir, "ca.crt"),
        "--tls-reload-ms",
        "100",
        "--max-session-timeout-ms",
        "20000",
    ])
    .await;
    let proxy = Proxy::start(server.client_addr).await;
    let sidecar = Sidecar::start(
        &server,
        &proxy.addr.to_string(),
        "pod-a",
        &[
            "--tls-ca",
            &file(&sidecar_dir, "ca.crt"),
            "--tls-cert",
            &file(&sidecar_dir, "tls.crt"),
            "--tls-key",
            &file(&sidecar_dir, "tls.key"),
            "--tls-reload-ms",
            "100",
            "--session-timeout-ms",
            "20000",
        ],
    )
    .await;
    let mut lock = sidecar.stream(Method::POST, "/v1/locks/l", None).await;
    expect(&mut lock, "waiting").await;
    expect(&mut lock, "acquired").await;

    // Both sides renewed from the new CA; the sidecar trusts the new CA alone from now on, the
    // server takes clients of either while they move over.
    let new_server = server_cert(&new);
    install(
        &server_dir,
        &[("tls.key", &[&new_server.key]), ("tls.crt", &[&new_server.cert]), ("ca.crt", &[&old.ca(), &new.ca()])],
    );
    let new_client = new.issue("pod-a", "/O=paddock/CN=pod-a", Usage::Client, &[]).expect("client certificate");
    install(
        &sidecar_dir,
        &[("tls.key", &[&new_client.key]), ("tls.crt", &[&new_client.cert]), ("ca.crt", &[&new.ca()])],
    );
    wait_for("the sidecar to load the renewed files", || async {
        let metrics = paddock_testkit::http(sidecar.http, "GET", "/metrics", None).await.ok()?;
        let loaded =
            paddock_testkit::http::metric(&metrics.body, r#"paddock_sidecar_tls_reloads_total{outcome="loaded"}"#);
        (loaded >= Some(1.0)).then_some(())
    })
    .await;

    // The open connection is cut: the next one is made with the new files, to a server that
    // shows the new certificate (once it has loaded it), and the same session comes back.
    proxy.cut();
    expect(&mut lock, "suspended").await;
    proxy.restore();
    expect(&mut lock, "reconnected").await;
    sidecar.ready().await;
    let try_again = sidecar.call(Method::POST, "/v1/locks/l?try", None).await;
    assert_eq!(try_again.status, StatusCode::CONFLICT, "the lock is still held across the rotation");
    assert!(sidecar.log().contains("TLS files reloaded"), "the sidecar says it reloaded:\n{}", sidecar.log());
}
