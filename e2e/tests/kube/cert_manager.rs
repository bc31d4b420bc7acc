//! Certificates from cert-manager on the real control plane: with cert-manager installed (its
//! CRDs and its controller, the SelfSigned and CA issuers), a new cluster's servers get their
//! certificates from cert-manager — a CA the operator asks cert-manager for, and a Certificate per
//! leaf — copied into `zk-tls`, with no CA of the operator's own; the members form over mutual
//! TLS with them, zkCli reaches 2281 trusting the CA cert-manager made, and a certificate
//! cert-manager issues again reaches every server without a restart.

use crate::harness::{all_ready, available, installed, pod_ips, restarts, secret_value, served_certificate, zkcli_tls};

/// The first certificate of a PEM chain (cert-manager's `tls.crt` may carry intermediates).
fn leaf(chain: &str) -> String {
    let end = chain.find("-----END CERTIFICATE-----").map_or(chain.len(), |i| i + "-----END CERTIFICATE-----".len());
    format!("{}\n", chain[..end].trim_start())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_cert_manager_runs_it_issues_the_servers_certificates_and_reissues_reach_them() {
    let mut plane = installed();
    plane.start_cert_manager().expect("cert-manager");
    // Members, probes and the operator's reads go over TLS: Available means the certificates
    // cert-manager issued work between members.
    available(&plane, "{replicas: 3}");
    all_ready(&plane, 3);

    let issued_by = plane
        .kubectl(&["get", "secret", "zk-tls", "-o", "jsonpath={.metadata.annotations.paddock\\.dev/issued-by}"])
        .expect("zk-tls");
    assert_eq!(issued_by.trim(), "cert-manager");
    assert!(plane.kubectl(&["get", "secret", "zk-ca"]).is_err(), "no CA of the operator's own");
    plane
        .kubectl(&["wait", "--for=condition=Ready", "--timeout=60s", "certificate", "--all"])
        .expect("cert-manager's Certificates are Ready");
    let server = secret_value(&plane, "default", "zk-cert-server", "tls.crt").expect("cert-manager's Secret");
    assert_eq!(secret_value(&plane, "default", "zk-tls", "server.crt").expect("copied"), server);
    let ca = secret_value(&plane, "default", "zk-cert-ca", "tls.crt").expect("the CA cert-manager made");
    assert_eq!(secret_value(&plane, "default", "zk-tls", "ca.crt").expect("copied CA"), ca);
    let owner = plane
        .kubectl(&["get", "secret", "zk-cert-member-2", "-o", "jsonpath={.metadata.ownerReferences[0].kind}"])
        .expect("owner");
    assert_eq!(owner.trim(), "CoordinationCluster", "deleted with the cluster");

    // zkCli over TLS, trusting the CA cert-manager made.
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).expect("write CA");
    let service = plane.kubectl(&["get", "service", "zk-client", "-o", "jsonpath={.spec.clusterIP}"]).expect("ip");
    let endpoint = format!("{}:2281", service.trim());
    zkcli_tls(&plane, &ca_file, &endpoint, &["create", "/issued-by", "cert-manager"]).expect("zkCli create");

    // cert-manager issues the server certificate again (a new key): every server shows it, none
    // restarted.
    let before = restarts(&plane);
    let ips = pod_ips(&plane);
    assert_eq!(ips.len(), 3);
    for ip in &ips {
        assert_eq!(served_certificate(&plane, ip), Some(leaf(&server)), "{ip} serves cert-manager's");
    }
    plane.kubectl(&["delete", "secret", "zk-cert-server"]).expect("delete the issued Secret");
    let mut reissued = String::new();
    plane
        .wait_until("cert-manager issues the server certificate again", || {
            reissued = secret_value(&plane, "default", "zk-cert-server", "tls.crt").unwrap_or_default();
            !reissued.is_empty() && reissued != server
        })
        .expect("reissued");
    plane
        .wait_until("every server shows the reissued certificate", || {
            ips.iter().all(|ip| served_certificate(&plane, ip) == Some(leaf(&reissued)))
        })
        .expect("reloaded");
    assert_eq!(restarts(&plane), before, "no server restarted");
    let read = zkcli_tls(&plane, &ca_file, &endpoint, &["get", "/issued-by"]).expect("zkCli get");
    assert!(read.lines().any(|l| l.trim() == "cert-manager"), "zkCli printed: {read}");
}
