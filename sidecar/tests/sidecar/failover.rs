//! A sidecar on a three-node cluster keeps its holds across a SIGKILL of the cluster's leader:
//! its streams say `suspended` then `reconnected`, nothing is lost, another sidecar's campaign
//! and lock waiter never take over while the holder lives, and leader terms only grow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use paddock_sidecar::client::EventLines;
use serde_json::{json, Value};

use crate::harness::{eventually, expect, start_cluster, wait_for, Sidecar, SidecarExt};

/// Every event of a stream, each with whether the holder had let go when it arrived.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<(Value, bool)>>>);

impl Recording {
    /// Records `stream` in the background until it ends.
    fn start(mut stream: EventLines, let_go: Arc<AtomicBool>) -> (Recording, tokio::task::JoinHandle<()>) {
        let recording = Recording::default();
        let events = recording.0.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(event)) = stream.next().await {
                let after = let_go.load(Ordering::SeqCst);
                events.lock().expect("events").push((event, after));
            }
        });
        (recording, task)
    }

    fn events(&self) -> Vec<(Value, bool)> {
        self.0.lock().expect("events").clone()
    }

    fn first(&self, kind: &str) -> Option<(Value, bool)> {
        self.events().into_iter().find(|(event, _)| event["type"] == kind)
    }
}

/// The `leader` objects an observer stream reported, in order, with whether the holder had let go.
fn observed_leaders(recording: &Recording) -> Vec<(Value, bool)> {
    recording
        .events()
        .into_iter()
        .filter(|(event, _)| event["type"] == "snapshot" || event["type"] == "leader")
        .map(|(event, after)| (event["leader"].clone(), after))
        .collect()
}

fn assert_terms_only_grow(who: &str, leaders: &[(Value, bool)]) {
    let terms: Vec<i64> = leaders.iter().filter_map(|(leader, _)| leader["term"].as_i64()).collect();
    assert!(terms.windows(2).all(|w| w[0] < w[1]), "{who} saw leader terms {terms:?}: {leaders:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_survive_a_sigkill_of_the_cluster_leader() {
    let mut cluster = start_cluster(3).await;
    let connect = cluster.connect_all();
    // Sessions far longer than a failover: nothing may expire.
    let flags = ["--session-timeout-ms", "10000"];
    let a = Sidecar::start_in(cluster.dir(), &connect, "pod-a", &flags).await;
    // The holder's session must be on the node that dies: find it, and make it the leader.
    let a_node = wait_for("pod-a's server", || async {
        let mut with_clients = Vec::new();
        for node in cluster.nodes.values() {
            if node.has_clients().await {
                with_clients.push(node.id);
            }
        }
        (with_clients.len() == 1).then(|| with_clients[0])
    })
    .await;
    cluster.transfer_leader(a_node).await;
    let b = Sidecar::start_in(cluster.dir(), &connect, "pod-b", &flags).await;
    // A sidecar whose probe met the transfer (no server answers for a moment) is suspended and
    // turns requests away until it reconnects: start once both are connected.
    a.ready().await;
    b.ready().await;

    let mut campaign = a.stream(Method::POST, "/v1/elections/primary/campaign", Some(json!({"value": "a"}))).await;
    let led = expect(&mut campaign, "leader").await;
    let first_term = led["term"].as_i64().expect("term");
    let mut lock = a.stream(Method::POST, "/v1/locks/ledger", None).await;
    expect(&mut lock, "waiting").await;
    let first_token = expect(&mut lock, "acquired").await["token"].as_i64().expect("token");

    let let_go = Arc::new(AtomicBool::new(false));
    let mut rival = b.stream(Method::POST, "/v1/elections/primary/campaign", None).await;
    assert_eq!(expect(&mut rival, "follower").await["leader"]["term"], json!(first_term));
    let mut waiter = b.stream(Method::POST, "/v1/locks/ledger", None).await;
    assert_eq!(expect(&mut waiter, "waiting").await["ahead"], json!(1));
    let (rival, rival_task) = Recording::start(rival, let_go.clone());
    let (waiter, waiter_task) = Recording::start(waiter, let_go.clone());
    let mut observers = Vec::new();
    for s in [&a, &b] {
        let stream = s.stream(Method::GET, "/v1/elections/primary?watch", None).await;
        observers.push(Recording::start(stream, let_go.clone()));
    }

    cluster.node_mut(a_node).kill9();
    for stream in [&mut campaign, &mut lock] {
        expect(stream, "suspended").await;
        expect(stream, "reconnected").await;
    }
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, a_node);
    // The other sidecar's session may have been on the dead node too.
    a.ready().await;
    b.ready().await;

    // Nothing was lost: the holder still leads and holds the lock, with the same term and token.
    let observed = wait_for("the election read through pod-b", || async {
        let reply = b.call(Method::GET, "/v1/elections/primary", None).await;
        (reply.status == StatusCode::OK).then_some(reply.body)
    })
    .await;
    assert_eq!(observed["leader"]["pod"], json!("pod-a"), "{observed}");
    assert_eq!(observed["leader"]["term"], json!(first_term));
    let busy = wait_for("a try-lock through pod-b", || async {
        let reply = b.call(Method::POST, "/v1/locks/ledger?try", None).await;
        (reply.status != StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
    })
    .await;
    assert_eq!(busy.status, StatusCode::CONFLICT, "{:?}", busy.body);
    let written = wait_for("a write through pod-a", || async {
        let reply = a.call(Method::PUT, "/v1/nodes/after-failover", Some(json!({"data": "ok"}))).await;
        (reply.status != StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
    })
    .await;
    assert!(written.status.is_success(), "{:?}", written.body);
    let (campaign, campaign_task) = Recording::start(campaign, let_go.clone());
    let (lock, lock_task) = Recording::start(lock, let_go.clone());

    // The holder lets go (dropping a recorder drops its stream): only now do the rival and the
    // waiter take over, with larger numbers.
    let_go.store(true, Ordering::SeqCst);
    campaign_task.abort();
    lock_task.abort();
    // Until then the holder's streams said nothing but session changes (another server may
    // have taken the session and dropped it again while the cluster elected its new leader).
    for (recording, what) in [(&campaign, "campaign"), (&lock, "lock")] {
        for (event, _) in recording.events() {
            assert!(
                event["type"] == "suspended" || event["type"] == "reconnected",
                "the holder's {what} stream said {event}"
            );
        }
    }
    eventually("the rival to lead", || async { rival.first("leader").is_some() }).await;
    eventually("the waiter to hold the lock", || async { waiter.first("acquired").is_some() }).await;
    let (led, after) = rival.first("leader").expect("leader");
    assert!(after, "the rival led while the holder still did: {:?}", rival.events());
    assert!(led["term"].as_i64().expect("term") > first_term);
    let (acquired, after) = waiter.first("acquired").expect("acquired");
    assert!(after, "the waiter got the lock while the holder still had it: {:?}", waiter.events());
    assert!(acquired["token"].as_i64().expect("token") > first_token);
    for (recording, what) in [(&rival, "rival"), (&waiter, "waiter")] {
        for (event, _) in recording.events() {
            let kind = event["type"].as_str().unwrap_or_default();
            assert!(
                ["follower", "leader", "waiting", "acquired", "suspended", "reconnected"].contains(&kind),
                "the {what} saw {event}"
            );
        }
    }
    let second_term = led["term"].as_i64().expect("term");
    for ((observer, _), who) in observers.iter().zip(["pod-a", "pod-b"]) {
        eventually(&format!("{who}'s observer to see the rival lead"), || async {
            observed_leaders(observer).iter().any(|(leader, _)| leader["term"] == json!(second_term))
        })
        .await;
        let leaders = observed_leaders(observer);
        assert_terms_only_grow(who, &leaders);
        for (leader, after) in &leaders {
            if !after {
                assert_eq!(leader["term"], json!(first_term), "{who} saw another leader during the failover");
            }
        }
    }
    for task in [rival_task, waiter_task].into_iter().chain(observers.into_iter().map(|(_, task)| task)) {
        task.abort();
    }
}
