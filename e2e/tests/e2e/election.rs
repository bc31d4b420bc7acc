//! Leader election of app pods: the leading app is killed, then paused, then its sidecar is
//! killed; each time another pod takes over with a higher term, and the fenced resource the
//! leaders write to shows one leader at a time with terms that only go up.

use std::path::Path;
use std::time::Duration;

use hyper::Method;
use nix::sys::signal::Signal;
use paddock_e2e::fence;
use paddock_e2e::history::check_fenced;

use crate::harness::{free_port, pods_dir, start_cluster, wait_for_within, Pod, PodSpec};

/// `(pod, term)` of the election's leader as `observer` reports it.
async fn leader(observer: &Pod) -> Option<(String, i64)> {
    let reply = observer.sidecar.call(Method::GET, "/v1/elections/primary", None).await;
    let leader = &reply.body["leader"];
    Some((leader["pod"].as_str()?.to_owned(), leader["term"].as_i64()?))
}

/// Waits until a pod other than `not` leads with a term above `above`, and has written to the
/// resource as leader.
async fn new_leader(observer: &Pod, resource: &Path, not: &str, above: i64) -> (String, i64) {
    // A paused app is noticed after 3 failed probes; an expired session after its timeout.
    wait_for_within(&format!("a leader other than {not} above term {above}"), Duration::from_secs(20), || async {
        let (pod, term) = leader(observer).await?;
        let wrote = fence::read(resource).ok()?.iter().any(|e| e.token == term && e.pod == pod);
        (pod != not && term > above && wrote).then_some((pod, term))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_when_the_leader_app_dies_pauses_or_loses_its_sidecar() {
    let cluster = start_cluster(3).await;
    let dir = pods_dir();
    let resource = dir.path().join("resource");
    let mut pods = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let spec = PodSpec { health_port: Some(port), ..PodSpec::default() };
        let mut pod = Pod::start(&cluster, dir.path(), &format!("app-{i}"), &spec).await;
        let health = format!("127.0.0.1:{port}");
        pod.start_app(&resource, &["elect", "--name", "primary", "--health-addr", &health]).await;
        pods.push(pod);
    }
    // An observer pod that does not campaign.
    let observer = Pod::start(&cluster, dir.path(), "observer", &PodSpec::default()).await;
    let index = |pods: &[Pod], name: &str| pods.iter().position(|p| p.name == name).expect("a pod of ours");

    let (first, term1) = new_leader(&observer, &resource, "", 0).await;

    // 1. The leader's app is killed: its campaign stream closes, the sidecar resigns at once.
    let i = index(&pods, &first);
    pods[i].app.as_mut().expect("app").kill9();
    let (second, term2) = new_leader(&observer, &resource, &first, term1).await;

    // 2. The new leader's app is paused: its health probes fail and the sidecar releases it.
    let j = index(&pods, &second);
    pods[j].app().signal(Signal::SIGSTOP);
    let (third, term3) = new_leader(&observer, &resource, &second, term2).await;
    // Thawed, the old leader must not write as leader any more: the fence refuses its term.
    pods[j].app().signal(Signal::SIGCONT);

    // 3. The leader's sidecar is killed (the pod's node died): its session expires.
    let k = index(&pods, &third);
    pods[k].sidecar.kill9();
    let (fourth, term4) = new_leader(&observer, &resource, &third, term3).await;
    assert!(term4 > term3 && term3 > term2 && term2 > term1);
    assert_ne!(fourth, third);

    // Freeze every app so the resource stops changing, then judge it.
    for pod in &pods {
        if let Some(app) = &pod.app {
            app.signal(Signal::SIGSTOP);
        }
    }
    let entries = fence::read(&resource).expect("read the resource");
    let acked: Vec<fence::Entry> = pods.iter().flat_map(|p| p.acks().0).collect();
    let summary =
        check_fenced(&entries, &acked).unwrap_or_else(|problems| panic!("election history broken: {problems:#?}"));
    for term in [term1, term2, term3, term4] {
        assert!(summary.tokens.contains(&term), "term {term} never wrote: {summary:?}");
    }
    // The thawed ex-leader's stale writes, if it made any, were all fenced off.
    let (_, fenced) = pods[j].acks();
    assert!(fenced.iter().all(|e| e.token <= term2), "{fenced:?}");
}
