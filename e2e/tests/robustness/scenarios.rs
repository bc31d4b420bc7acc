//! One test per fault (and per combination worth its own): the workload runs before, during and
//! after the fault, the cluster must make progress once the fault is healed, and the history must
//! pass every checker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use paddock_e2e::check;
use paddock_testkit::zk::{connect, retrying, EPHEMERAL, PERSISTENT};
use zookeeper_client::{Client, EventType, SessionState};

use crate::harness::{start_cluster, Cluster, SESSION, WAIT};
use crate::traffic::{Record, Traffic};

/// Clients of the workload (sessions spread over every server).
const CLIENTS: u32 = 6;
/// Registers.
const KEYS: usize = 5;
/// Completed operations the workload must reach before a fault, and again after its heal.
const PROGRESS: usize = 150;
/// How long the workload may take for [`PROGRESS`] while a fault lasts (a degraded cluster is
/// slow, not stopped).
const FAULT_WAIT: Duration = Duration::from_secs(60);

/// What a scenario lets happen.
#[derive(Default)]
struct Allow {
    /// Sessions may expire (a client was cut off from every server for longer than its
    /// timeout).
    expiry: bool,
}

/// Starts `size` servers with `flags`, runs the workload, applies `fault` while it runs, waits
/// for progress after it, and judges the history.
async fn scenario(
    name: &str,
    size: u64,
    flags: &[&str],
    allow: Allow,
    fault: impl AsyncFnOnce(&mut Cluster, &Traffic),
) {
    let mut cluster = start_cluster(size, flags).await;
    let traffic = Traffic::start(&cluster, CLIENTS, KEYS).await;
    traffic.wait_progress(PROGRESS, WAIT).await;
    fault(&mut cluster, &traffic).await;
    // Healed: every server answers as one cluster again, and the workload goes on.
    let all = cluster.running();
    cluster.wait_leader(&all, None).await;
    cluster.wait_ready(&all).await;
    traffic.wait_progress(PROGRESS, WAIT).await;
    let keys = traffic.keys.clone();
    let record = traffic.finish().await;
    judge(name, &keys, &record, &allow);
}

/// Fails the test with every checker's findings.
fn judge(name: &str, keys: &[String], record: &Record, allow: &Allow) {
    let mut problems = Vec::new();
    // Every register starts as an empty znode.
    let initial: BTreeMap<String, String> = keys.iter().map(|k| (k.clone(), String::new())).collect();
    // Written only for a register found not linearizable, and kept past the test for a look.
    let viz = std::env::temp_dir().join(format!("paddock-robustness-{name}"));
    match check::linearizable::check_linearizable(&record.ops, &initial, &viz) {
        Ok(summary) if summary.undecided.is_empty() => eprintln!("{name}: linearizable: {summary:?}"),
        Ok(summary) => problems.push(format!("linearizability undecided in time for {:?}", summary.undecided)),
        Err(found) => problems.extend(found.into_iter().map(|p| format!("linearizability: {p}"))),
    }
    match check::fifo::check_fifo(&record.ops) {
        Ok(summary) => eprintln!("{name}: session order: {summary:?}"),
        Err(found) => problems.extend(found.into_iter().map(|p| format!("session order: {p}"))),
    }
    if !allow.expiry && !record.expired.is_empty() {
        problems.push(format!("sessions expired that should have lived: {:x?}", record.expired));
    }
    let unknown = record.ops.iter().filter(|op| op.completed.is_none()).count();
    eprintln!("{name}: {} operations, {unknown} with unknown outcome", record.ops.len());
    assert!(problems.is_empty(), "{name}: {} problems:\n{}", problems.len(), problems.join("\n"));
}

/// A follower of the current leader.
async fn follower(cluster: &Cluster) -> u64 {
    let leader = cluster.leader().await;
    cluster.running().into_iter().find(|id| *id != leader).expect("a follower")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_then_a_follower() {
    scenario("kill", 3, &[], Allow::default(), async |cluster, traffic| {
        let leader = cluster.leader().await;
        cluster.node_mut(leader).kill9();
        let rest: Vec<u64> = cluster.running();
        cluster.wait_leader(&rest, None).await;
        traffic.wait_progress(PROGRESS, FAULT_WAIT).await;
        cluster.node_mut(leader).start().await;
        let follower = follower(cluster).await;
        cluster.node_mut(follower).restart().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_paused_longer_than_a_session() {
    scenario("pause", 3, &[], Allow::default(), async |cluster, traffic| {
        let paused = follower(cluster).await;
        cluster.node(paused).signal(Signal::SIGSTOP);
        // Its clients move to the others within their session timeout.
        traffic.wait_progress(PROGRESS, FAULT_WAIT).await;
        tokio::time::sleep(SESSION + Duration::from_secs(1)).await;
        cluster.node(paused).signal(Signal::SIGCONT);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_isolated_by_a_blackhole() {
    scenario("isolated-leader", 3, &[], Allow::default(), async |cluster, traffic| {
        let leader = cluster.leader().await;
        cluster.lab().partition(&[leader]);
        let rest: Vec<u64> = cluster.running().into_iter().filter(|id| *id != leader).collect();
        cluster.wait_leader(&rest, Some(leader)).await;
        traffic.wait_progress(PROGRESS, FAULT_WAIT).await;
        cluster.lab().heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asymmetric_cut_between_the_leader_and_one_follower() {
    scenario("asymmetric", 3, &[], Allow::default(), async |cluster, traffic| {
        let leader = cluster.leader().await;
        let cut = follower(cluster).await;
        // Both still reach the third server.
        cluster.lab().blackhole(leader, cut);
        traffic.wait_progress(2 * PROGRESS, FAULT_WAIT).await;
        cluster.lab().heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_links_between_every_server() {
    scenario("lossy", 3, &[], Allow::default(), async |cluster, traffic| {
        let ids = cluster.ids();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                cluster.lab().lossy(*a, *b, 0.1);
            }
        }
        traffic.wait_progress(PROGRESS, FAULT_WAIT).await;
        cluster.lab().heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_throttled_at_a_tenth_of_a_cpu() {
    scenario("cpu-quota", 3, &[], Allow::default(), async |cluster, traffic| {
        let leader = cluster.leader().await;
        let pid = cluster.node(leader).pid().expect("leader runs");
        cluster.lab().limit_cpu(leader, pid, 100);
        traffic.wait_progress(PROGRESS, FAULT_WAIT).await;
        cluster.lab().unlimit(pid);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_to_the_leader() {
    scenario("slow-link", 3, &[], Allow::default(), async |cluster, traffic| {
        let leader = cluster.leader().await;
        cluster.lab().slow(leader, 256);
        traffic.wait_progress(PROGRESS, FAULT_WAIT).await;
        cluster.lab().heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_lagging_past_the_snapshot_point() {
    scenario("lagging", 3, &["--snapshot-every", "100"], Allow::default(), async |cluster, traffic| {
        let lagging = follower(cluster).await;
        cluster.lab().partition(&[lagging]);
        // Well past two snapshots: the leader's log no longer holds what the follower lacks.
        traffic.wait_progress(3 * PROGRESS, FAULT_WAIT).await;
        cluster.lab().heal();
        let all = cluster.ids();
        cluster.wait_caught_up(lagging, &all).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_near_the_size_limit_through_a_follower() {
    scenario("big-values", 3, &[], Allow::default(), async |cluster, traffic| {
        let via = follower(cluster).await;
        let client = connect(&cluster.connect_string(&[via]), SESSION).await.expect("client of a follower");
        // Legal values of ~1 MB (the packet limit is 1 MiB): each one AppendEntries batch of
        // its own that a follower needs a while for in a debug build.
        let value = vec![b'x'; 1_000_000];
        for i in 0..3 {
            let path = format!("/big-{i}");
            retrying(&path, || client.create(&path, &value, &PERSISTENT)).await.expect("create a big value");
            traffic.wait_progress(PROGRESS / 3, FAULT_WAIT).await;
        }
    })
    .await;
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
