//! One test per fault: the workload runs before, during and after it, the cluster must make
//! progress once the fault is healed, and the history must pass every checker. And the tests of
//! holes found by the review, each a fault that a checker or an assertion here caught.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paddock_testkit::zk::{connect, retrying, EPHEMERAL, PERSISTENT};
use zookeeper_client::{Client, EventType, SessionState};

use crate::faults::{follower, healed, Fault, FAULT_WAIT, PROGRESS};
use crate::harness::{start_cluster, SESSION, WAIT};
use crate::traffic::Traffic;
use crate::verdict::{judge, Allow};

/// Clients of the workload (sessions spread over every server).
pub const CLIENTS: u32 = 6;
/// Registers.
pub const KEYS: usize = 5;

/// Three servers, the workload, `fault`, and the verdict.
async fn scenario(fault: Fault) {
    let mut cluster = start_cluster(3, &Fault::SNAPSHOT_FLAGS).await;
    let traffic = Traffic::start(&cluster, CLIENTS, KEYS, "").await;
    traffic.wait_progress(PROGRESS, WAIT).await;
    fault.run(&mut cluster, &traffic).await;
    healed(&cluster, &traffic).await;
    let record = traffic.finish().await;
    judge(fault.name(), &record, Allow::default()).assert_clean(fault.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_then_a_follower() {
    scenario(Fault::KillLeaderThenFollower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_paused_longer_than_a_session() {
    scenario(Fault::PauseFollower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_isolated_by_a_blackhole() {
    scenario(Fault::IsolateLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asymmetric_cut_between_the_leader_and_one_follower() {
    scenario(Fault::AsymmetricCut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_links_between_every_server() {
    scenario(Fault::LossyLinks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_throttled_at_a_tenth_of_a_cpu() {
    scenario(Fault::LeaderCpuQuota).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_to_the_leader() {
    scenario(Fault::SlowLeaderLink).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_lagging_past_the_snapshot_point() {
    scenario(Fault::LaggingFollower).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_isolated_then_the_next_one_killed() {
    scenario(Fault::IsolateLeaderThenKillTheNext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_rejoining_empty_under_packet_loss() {
    scenario(Fault::RejoinEmptyUnderLoss).await;
}

/// Hole a: AppendEntries batches of legal ~1 MB values, through a follower, in a debug build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_near_the_size_limit_through_a_follower() {
    let cluster = start_cluster(3, &[]).await;
    let traffic = Traffic::start(&cluster, CLIENTS, KEYS, "").await;
    traffic.wait_progress(PROGRESS, WAIT).await;
    let via = follower(&cluster).await;
    let client = connect(&cluster.connect_string(&[via]), SESSION).await.expect("client of a follower");
    // The packet limit is 1 MiB: each value is an AppendEntries batch of its own that a
    // follower needs a while for.
    let value = vec![b'x'; 1_000_000];
    for i in 0..3 {
        let path = format!("/big-{i}");
        retrying(&path, || client.create(&path, &value, &PERSISTENT)).await.expect("create a big value");
        traffic.wait_progress(PROGRESS / 3, FAULT_WAIT).await;
    }
    healed(&cluster, &traffic).await;
    let record = traffic.finish().await;
    judge("big-values", &record, Allow::default()).assert_clean("big-values");
}

/// Hole b: a follower cut off from the majority together with its (old) leader must stop
/// serving its clients before the majority can expire their sessions: its client is told it is
/// disconnected before an observer on the majority sees the session's ephemeral node go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_follower_stops_serving_before_its_sessions_expire() {
    let cluster = start_cluster(5, &[]).await;
    let all = cluster.ids();
    let leader = cluster.leader().await;
    let stranded_on = follower(&cluster).await;
    let minority = [leader, stranded_on];
    let majority: Vec<u64> = all.iter().copied().filter(|id| !minority.contains(id)).collect();

    let stranded = connect(&cluster.connect_string(&[stranded_on]), SESSION).await.expect("stranded client");
    retrying("/held", || stranded.create("/held", b"", &EPHEMERAL)).await.expect("ephemeral");
    let observer = connect(&cluster.connect_string(&majority), SESSION).await.expect("observer");
    let (_, watcher) = observer.check_and_watch_stat("/held").await.expect("watch the ephemeral");
    let states = StateTimes::watch(&stranded);

    cluster.lab().partition(&minority);
    let event = tokio::time::timeout(WAIT, watcher.changed()).await.expect("the session expires on the majority");
    let deleted = Instant::now();
    assert_eq!(event.event_type, EventType::NodeDeleted);
    let left = states.first_not_connected();
    assert!(
        left.is_some_and(|at| at < deleted),
        "the stranded client was still told it is connected when its session's ephemeral node was deleted \
         (it left Connected at {:?}, the node went at {deleted:?})",
        left
    );
    let read = tokio::time::timeout(Duration::from_secs(2), stranded.get_data("/held")).await;
    assert!(!matches!(read, Ok(Ok(_))), "the minority served a read of a node the majority deleted: {read:?}");
    cluster.lab().heal();
}

/// When a client's session state first changed from Connected.
struct StateTimes {
    left: Arc<Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StateTimes {
    fn watch(client: &Client) -> StateTimes {
        let mut watcher = client.state_watcher();
        let left = Arc::new(Mutex::new(None));
        let task = {
            let left = left.clone();
            tokio::spawn(async move {
                loop {
                    let state = watcher.changed().await;
                    if state != SessionState::SyncConnected {
                        left.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Instant::now);
                    }
                    if state.is_terminated() {
                        return;
                    }
                }
            })
        };
        StateTimes { left, task }
    }

    fn first_not_connected(&self) -> Option<Instant> {
        *self.left.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for StateTimes {
    fn drop(&mut self) {
        self.task.abort();
    }
}
