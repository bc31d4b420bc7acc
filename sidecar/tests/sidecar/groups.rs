//! Groups: `--join` membership, PUT/DELETE members, the watch stream's order, leaving on SIGTERM.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{expect, Server, Sidecar, SidecarExt};

fn ids(members: &Value) -> Vec<String> {
    members.as_array().expect("members").iter().map(|m| m["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test]
async fn members_join_and_leave_in_order_on_the_watch_stream() {
    let server = Server::start().await;
    let cluster = server.client_addr.to_string();
    let mut a = Sidecar::start(&server, &cluster, "pod-a", &["--join", "web", "--join", "all"]).await;
    let b = Sidecar::start(&server, &cluster, "pod-b", &[]).await;

    let mut watch = b.stream(Method::GET, "/v1/groups/web?watch", None).await;
    let snapshot = expect(&mut watch, "snapshot").await;
    assert_eq!(ids(&snapshot["members"]), vec!["pod-a"]);
    assert_eq!(snapshot["members"][0]["ip"], json!("127.0.0.1"));
    assert_eq!(snapshot["members"][0]["uid"], json!("uid-pod-a"));

    for (sidecar, id) in [(&b, "m1"), (&a, "m2"), (&b, "m3")] {
        let joined =
            sidecar.call(Method::PUT, &format!("/v1/groups/web/members/{id}"), Some(json!({"value": id}))).await;
        assert_eq!(joined.status, StatusCode::CREATED, "{:?}", joined.body);
    }
    let mut last_zxid = 0;
    for id in ["m1", "m2", "m3"] {
        let joined = expect(&mut watch, "joined").await;
        assert_eq!(joined["member"]["id"], json!(id));
        assert_eq!(joined["member"]["value"], json!(id));
        let zxid = joined["zxid"].as_i64().expect("zxid");
        assert!(zxid > last_zxid, "events in commit order");
        last_zxid = zxid;
    }
    let listed = b.call(Method::GET, "/v1/groups/web", None).await;
    assert_eq!(ids(&listed.body["members"]), vec!["pod-a", "m1", "m2", "m3"]);

    // Joining again with the same id from the same pod updates; from another pod conflicts.
    let again = b.call(Method::PUT, "/v1/groups/web/members/m1", Some(json!({"value": "new"}))).await;
    assert_eq!(again.status, StatusCode::OK);
    let updated = expect(&mut watch, "updated").await;
    assert_eq!(updated["member"]["value"], json!("new"));
    let taken = a.call(Method::PUT, "/v1/groups/web/members/m1", None).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);

    let left = b.call(Method::DELETE, "/v1/groups/web/members/m3", None).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    assert_eq!(expect(&mut watch, "left").await["id"], json!("m3"));
    let gone = b.call(Method::DELETE, "/v1/groups/web/members/m3", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // SIGTERM: pod-a's memberships (joined by flag and by PUT) go at once.
    a.sigterm();
    let mut left: Vec<String> = Vec::new();
    for _ in 0..2 {
        left.push(expect(&mut watch, "left").await["id"].as_str().expect("id").to_owned());
    }
    left.sort();
    assert_eq!(left, vec!["m2", "pod-a"]);
    assert!(a.exited().await.success());
    let listed = b.call(Method::GET, "/v1/groups/web", None).await;
    assert_eq!(ids(&listed.body["members"]), vec!["m1"]);
    let all = b.call(Method::GET, "/v1/groups/all", None).await;
    assert_eq!(ids(&all.body["members"]), Vec::<String>::new());
}
