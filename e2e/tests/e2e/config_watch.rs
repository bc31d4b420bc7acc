//! Config propagation: five pods watch `/config/flag` while a sixth rewrites it fifty times and
//! the leader server is killed half-way; every watcher sees the final value, and the values each
//! one saw only go forward.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use crate::harness::{next, pods_dir, start_cluster, Pod, PodSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_reach_every_sidecar_in_order() {
    let mut cluster = start_cluster(3).await;
    let dir = pods_dir();
    let writer = Pod::start(&cluster, dir.path(), "deployer", &PodSpec::default()).await;
    let put = |n: u32| {
        let writer = &writer;
        async move {
            loop {
                let reply = writer
                    .sidecar
                    .call(Method::PUT, "/v1/nodes/config/flag", Some(json!({ "data": n.to_string() })))
                    .await;
                if reply.status.is_success() {
                    return;
                }
                // 503 while the sidecar's session moves to another server: try again.
                assert_eq!(reply.status.as_u16(), 503, "PUT {n}: {:?}", reply.body);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    put(0).await;
    let mut watchers = Vec::new();
    for i in 0..5 {
        let pod = Pod::start(&cluster, dir.path(), &format!("web-{i}"), &PodSpec::default()).await;
        let stream = pod.sidecar.stream(Method::GET, "/v1/nodes/config/flag?watch", None).await;
        watchers.push((pod, stream));
    }
    for n in 1..=50 {
        if n == 25 {
            let leader = cluster.leader().await;
            cluster.node_mut(leader).kill9();
        }
        put(n).await;
    }

    for (pod, stream) in &mut watchers {
        let mut seen: Vec<u32> = Vec::new();
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            while seen.last() != Some(&50) {
                let Some(event) = next(stream).await else { return Err("stream ended") };
                let value = match event["type"].as_str() {
                    Some("snapshot") | Some("changed") | Some("created") => event["node"]["data"].as_str(),
                    _ => None,
                };
                if let Some(value) = value.and_then(|v| v.parse().ok()) {
                    seen.push(value);
                }
            }
            Ok(())
        })
        .await;
        assert!(matches!(outcome, Ok(Ok(()))), "{} never saw 50 ({outcome:?}); saw {seen:?}", pod.name);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{} saw values go back: {seen:?}", pod.name);
    }
}
