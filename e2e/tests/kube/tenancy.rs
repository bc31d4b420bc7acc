//! Namespace isolation on the real control plane: the webhook gives an injected sidecar its pod's
//! projected ServiceAccount token, the servers (bound to system:auth-delegator by the operator)
//! check it with the API server's TokenReview, and the operator lays out each namespace's
//! subtree as the client port's super user. A client of namespace A that goes around its sidecar
//! to the client port with A's own token (here the clear-text one,
//! which the test dials by the Service's address) reaches A's subtree and nothing of B's; a hard quota
//! refuses the write past it with ZooKeeper's QuotaExceeded; a subtree made before its namespace
//! used the cluster is taken back, every node of it; the servers' token-review binding goes with
//! the cluster.

use std::time::Duration;

use paddock_testkit::kube::ControlPlane;
use paddock_testkit::zk::PERSISTENT;
use zookeeper_client::{Acl, AuthId, Client, Error, Permission};

use crate::harness::{available, describe, installed, token, workers_in, zk_client_as};

/// The error of `create path`, `None` when it succeeded.
async fn create_error(client: &Client, path: &str) -> Option<Error> {
    client.create(path, b"x", &PERSISTENT).await.err()
}

fn namespace_acl(ns: &str) -> Vec<Acl> {
    vec![Acl::new(Permission::ALL, AuthId::new("k8s", &format!("ns:{ns}")))]
}

fn create_namespace(plane: &ControlPlane, ns: &str) {
    plane.kubectl(&["create", "namespace", ns]).unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_reaches_its_own_subtree_alone_and_quotas_refuse_past_the_limit() {
    let plane = installed();
    for ns in ["team-a", "team-b", "team-c"] {
        create_namespace(&plane, ns);
    }
    // The test's own clients use the clear-text port (isolation holds on every client port).
    let spec = "{replicas: 1, tls: {plainClientPort: true}, tenancy: {namespaces: [{name: team-b, maxZnodes: 3}]}}";
    available(&plane, spec);
    // The servers review tokens with their own ServiceAccount, bound by the operator.
    let binding = plane
        .kubectl(&["get", "clusterrolebinding", "paddock:default:zk:token-review", "-o", "jsonpath={.roleRef.name}"])
        .expect("the token-review binding");
    assert_eq!(binding.trim(), "system:auth-delegator");

    // A sidecar of team-a takes a lock: its session was let into /team-a by its pod's token.
    let app = workers_in("team-a", 1, "paddock.dev/inject: default/zk");
    plane.apply(&app).expect("apply the worker");
    plane
        .kubectl(&["rollout", "status", "deployment/worker", "-n", "team-a", "--timeout=120s"])
        .unwrap_or_else(|e| panic!("{e}\n{}", describe(&plane, "team-a")));
    let volume = plane
        .kubectl(&[
            "get",
            "pods",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.items[0].spec.volumes[?(@.name=='paddock-token')].projected.sources[0].serviceAccountToken.audience}",
        ])
        .expect("pod");
    assert_eq!(volume.trim(), "paddock", "the sidecar's token is for the servers' audience");

    let (token_a, token_b) = (token(&plane, "team-a"), token(&plane, "team-b"));
    let (_fa, a) = zk_client_as(&plane, "zk-client", Some(&token_a)).await;
    let (_fb, b) = zk_client_as(&plane, "zk-client", Some(&token_b)).await;
    let (_fn, nobody) = zk_client_as(&plane, "zk-client", None).await;
    let locks = "/team-a/_paddock/locks/demo";
    paddock_testkit::wait_for("team-a's sidecar holds the lock", || async {
        a.list_children(locks).await.ok().filter(|children| !children.is_empty())
    })
    .await;
    let (acl, _) = a.get_acl("/team-a").await.expect("team-a reads its root's ACL");
    assert_eq!(acl, namespace_acl("team-a"));

    // team-a's own token, around the sidecar: its subtree, and nothing of team-b's.
    assert_eq!(create_error(&a, "/team-a/direct").await, None);
    paddock_testkit::wait_for("the operator laid out team-b", || async {
        b.check_stat("/team-b").await.ok().flatten()
    })
    .await;
    assert_eq!(a.get_data("/team-b").await.err(), Some(Error::NoAuth));
    assert_eq!(a.list_children("/team-b").await.err(), Some(Error::NoAuth));
    assert_eq!(create_error(&a, "/team-b/from-a").await, Some(Error::NoAuth));
    assert_eq!(a.set_acl("/team-b", &namespace_acl("team-a"), None).await.err(), Some(Error::NoAuth));
    // Without a token: neither.
    assert_eq!(nobody.list_children(locks).await.err(), Some(Error::NoAuth));
    assert_eq!(create_error(&nobody, "/team-a/anonymous").await, Some(Error::NoAuth));
    // Nobody but the operator touches the quotas.
    let limits = "/zookeeper/quota/team-b/zookeeper_limits";
    assert_eq!(a.delete(limits, None).await.err(), Some(Error::NoAuth));
    assert_eq!(b.set_data(limits, b"count=-1,bytes=-1", None).await.err(), Some(Error::NoAuth));

    // team-b's quota: 3 znodes, its root included.
    assert_eq!(create_error(&b, "/team-b/1").await, None);
    assert_eq!(create_error(&b, "/team-b/2").await, None);
    assert_eq!(create_error(&b, "/team-b/3").await, Some(Error::QuotaExceeded));
    assert_eq!(b.list_children("/team-b").await.map(|c| c.len()).ok(), Some(2));

    // team-a makes /team-c before team-c uses the cluster (the root is open by default): once
    // team-c does, the operator takes the whole subtree back.
    assert_eq!(create_error(&a, "/team-c").await, None);
    assert_eq!(create_error(&a, "/team-c/_paddock").await, None);
    plane
        .kubectl(&[
            "patch",
            "pcc",
            "zk",
            "--type=merge",
            "-p",
            r#"{"spec":{"tenancy":{"namespaces":[{"name":"team-b","maxZnodes":3},{"name":"team-c"}]}}}"#,
        ])
        .expect("add team-c");
    let (_fc, c) = zk_client_as(&plane, "zk-client", Some(&token(&plane, "team-c"))).await;
    paddock_testkit::wait_for_within("team-c's subtree is taken back", Duration::from_secs(60), || async {
        let (acl, _) = c.get_acl("/team-c/_paddock").await.ok()?;
        (acl == namespace_acl("team-c")).then_some(())
    })
    .await;
    assert_eq!(a.get_data("/team-c/_paddock").await.err(), Some(Error::NoAuth));
    assert_eq!(create_error(&a, "/team-c/_paddock/again").await, Some(Error::NoAuth));
    assert_eq!(create_error(&c, "/team-c/_paddock/mine").await, None);

    // The binding is cluster-scoped and cannot be owned by the cluster: the operator deletes it
    // when the cluster goes.
    plane.kubectl(&["delete", "pcc", "zk", "--wait=false"]).expect("delete the cluster");
    plane
        .wait_until("the token-review binding is deleted with its cluster", || {
            plane.kubectl(&["get", "clusterrolebinding", "paddock:default:zk:token-review"]).is_err()
        })
        .expect("binding deleted");
}
