//! TLS as the CR's default: the operator issues the cluster's CA and certificates into Secrets,
//! members form over mutual TLS with certificates picked by id, kubelet probes the admin port
//! over HTTPS, the operator reads every member's view over the admin port with its client
//! certificate (which the servers demand: 401 without it), clients are served on 2281 alone —
//! Apache ZooKeeper's zkCli over TLS — and an injected sidecar reaches the cluster over TLS with
//! the CA the webhook gave it, checking the server's name. The NetworkPolicy is in place.

use paddock_testkit::kube::ControlPlane;

use crate::harness::{
    all_ready, available, describe, installed, installed_with, pod_ips, restarts, secret_value, served_certificate,
    wait, workers, zkcli_tls, AdminClient,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_cluster_speaks_tls_on_every_port() {
    let plane = installed();
    // Members, probes and the operator's reads all go over TLS: Available means they work.
    available(&plane, "{replicas: 3}");
    all_ready(&plane, 3);
    let status = plane.kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.status.clientEndpoint}"]).expect("status");
    assert_eq!(status.trim(), "zk-client.default.svc:2281");

    // The Secrets: the CA apart, the servers' certificates with one per member id.
    let keys = plane.kubectl(&["get", "secret", "zk-tls", "-o", "jsonpath={.data}"]).expect("zk-tls");
    let keys: serde_json::Value = serde_json::from_str(&keys).expect("data");
    for key in ["ca.crt", "admin-ca.crt", "server.crt", "server.key", "admin.crt", "member-1.crt", "member-9.key"] {
        assert!(keys.get(key).is_some(), "zk-tls has no {key}");
    }
    assert!(keys.get("ca.key").is_none(), "the CA's key stays in zk-ca");
    let ca_key = plane.kubectl(&["get", "secret", "zk-ca", "-o", "jsonpath={.data.ca\\.key}"]).expect("zk-ca");
    assert!(!ca_key.trim().is_empty());
    let args = plane
        .kubectl(&["get", "statefulset", "zk", "-o", "jsonpath={.spec.template.spec.containers[0].args}"])
        .expect("args");
    assert!(args.contains("member-{id}.crt") && args.contains("--no-plain-client"), "{args}");

    // The NetworkPolicy: clients anywhere, peers from the cluster, admin from the operator.
    let policy = plane.kubectl(&["get", "networkpolicy", "zk", "-o", "jsonpath={.spec.ingress}"]).expect("policy");
    let policy: serde_json::Value = serde_json::from_str(&policy).expect("ingress");
    let ports: Vec<i64> = policy
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| rule["ports"][0]["port"].as_i64().unwrap_or_default())
        .collect();
    assert_eq!(ports, [2281, 2888, 8080], "{policy}");
    assert_eq!(policy[2]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "paddock-operator");

    // The admin port: open probes, cluster routes only with the operator's certificate.
    let admin = AdminClient::new(&plane);
    let ip = pod_ips(&plane).into_iter().next().expect("a server pod");
    assert_eq!(admin.get(&plane, &ip, "/readyz", false).map(|(code, _)| code), Some(200));
    assert_eq!(admin.get(&plane, &ip, "/v1/cluster", false).map(|(code, _)| code), Some(401));
    let (code, body) = admin.get(&plane, &ip, "/v1/cluster", true).expect("an answer");
    assert_eq!(code, 200, "{body}");

    // No clear-text client port.
    let plain = plane.exec("curl", &["-sS", "--max-time", "3", &format!("http://{ip}:2181/")]);
    assert!(plain.as_ref().is_err_and(|e| e.contains("refused") || e.contains("Failed to connect")), "{plain:?}");

    // zkCli over TLS through the client Service.
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, secret_value(&plane, "default", "zk-tls", "ca.crt").expect("CA")).expect("write CA");
    let service = plane.kubectl(&["get", "service", "zk-client", "-o", "jsonpath={.spec.clusterIP}"]).expect("ip");
    let server = format!("{}:2281", service.trim());
    // (zkCli reports the create on stderr; the get below shows it landed.)
    zkcli_tls(&plane, &ca, &server, &["create", "/over-tls", "sealed"]).expect("zkCli create");
    let read = zkcli_tls(&plane, &ca, &server, &["get", "/over-tls"]).expect("zkCli get");
    assert!(read.lines().any(|l| l.trim() == "sealed"), "zkCli printed: {read}");

    // An injected sidecar: TLS to zk-client.default.svc:2281 with the CA from the webhook.
    plane.apply(&workers(1, "paddock.dev/inject: zk")).expect("apply the worker");
    plane
        .kubectl(&["rollout", "status", "deployment/worker", "--timeout=120s"])
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    let env = plane
        .kubectl(&["get", "pods", "-l", "app=worker", "-o", "jsonpath={.items[0].spec.initContainers[0].env[*].name}"])
        .expect("sidecar env");
    assert!(env.contains("PADDOCK_TLS_CA_PEM"), "{env}");
    // Its nodes are its namespace's alone (namespace isolation: zkCli has no token), but `stat`
    // asks no permission, as in ZooKeeper: the lock's directory shows the holder's node.
    plane
        .wait_until("the worker holds its lock", || {
            zkcli_tls(&plane, &ca, &server, &["stat", "/default/_paddock/locks/demo"])
                .is_ok_and(|out| out.lines().any(|l| l.trim() == "numChildren = 1"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    let listed = zkcli_tls(&plane, &ca, &server, &["ls", "/default/_paddock/locks/demo"]);
    assert!(!listed.as_ref().is_ok_and(|out| out.lines().any(|l| l.starts_with("[lock-"))), "{listed:?}");
}

/// The expiry (Unix seconds) of the certificate the TLS client port of the pod at `ip` shows.
fn served_expiry(plane: &ControlPlane, ip: &str) -> Option<i64> {
    paddock_operator::certs::not_after(&served_certificate(plane, ip)?)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_reach_the_servers_without_a_restart() {
    // Leaves of 90 s, renewed with 30 s left: the first ones expire a minute and a half in.
    let plane = installed_with(&["--set", "certificates.lifetimeSeconds=90"]);
    available(&plane, "{replicas: 3, tls: {plainClientPort: true}}");
    all_ready(&plane, 3);
    // A session that must live through the renewals (over the clear-text port: this test's
    // client cannot name the pods the certificates name).
    let (_forward, client) = crate::harness::zk_client(&plane, "zk-client").await;
    client.create("/alive", b"", &paddock_testkit::zk::EPHEMERAL).await.expect("ephemeral");
    let session = client.session_id();
    let issued = secret_value(&plane, "default", "zk-tls", "server.crt").expect("server certificate");
    let first_expiry = paddock_operator::certs::not_after(&issued).expect("expiry");
    let before = restarts(&plane);
    let ips = pod_ips(&plane);
    assert_eq!(ips.len(), 3);

    // Past the first certificates' expiry, every server shows a renewed one on its client
    // port: the operator renewed the Secret, the volume was updated, the servers reloaded.
    plane
        .wait_until("every server shows a renewed certificate after the first ones expired", || {
            now() > first_expiry + 2
                && ips.iter().all(|ip| served_expiry(&plane, ip).is_some_and(|expiry| expiry > first_expiry))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));
    let renewed = secret_value(&plane, "default", "zk-tls", "server.crt").expect("server certificate");
    assert_ne!(renewed, issued);
    // The admin ports' renewed certificates: the operator's reads and this test's verify them.
    let admin = AdminClient::new(&plane);
    for ip in &ips {
        let (code, body) = admin.get(&plane, ip, "/v1/cluster", true).expect("an answer from the admin port");
        assert_eq!(code, 200, "{ip}: {body}");
    }
    // zkCli over TLS on the renewed certificate.
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, secret_value(&plane, "default", "zk-tls", "ca.crt").expect("CA")).expect("write CA");
    let read = zkcli_tls(&plane, &ca, &format!("{}:2281", ips[0]), &["stat", "/alive"]).expect("zkCli");
    assert!(read.contains(&format!("ephemeralOwner = 0x{:x}", session.0)), "zkCli printed: {read}");
    // A member restarted now dials and is dialed with the renewed peer certificates.
    plane.kubectl(&["delete", "pod", "zk-2"]).expect("delete zk-2");
    wait(&plane, "zk-2 is Ready again", &["wait", "--for=condition=Ready", "--timeout=120s", "pod/zk-2"]);
    plane
        .wait_until("three ready members again", || {
            plane
                .kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.status.readyReplicas}"])
                .is_ok_and(|r| r.trim() == "3")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "default")));

    // Nothing restarted for the renewals, and the session lived through them.
    let after = restarts(&plane);
    for pod in ["zk-0", "zk-1"] {
        let count =
            |listing: &str| listing.split_whitespace().find(|p| p.starts_with(&format!("{pod}="))).map(str::to_owned);
        assert_eq!(count(&after), count(&before), "{pod} restarted: {before} → {after}");
    }
    let (_, stat) = client.get_data("/alive").await.expect("the session's node");
    assert_eq!(stat.ephemeral_owner, session.0, "the same session owns it");
    assert_eq!(client.session_id(), session);
}
