//! The recorded workload: clients, each its own session over every server (in a different
//! order, so sessions start all over the cluster), reading, writing and conditionally writing a
//! few registers (znodes) as fast as they can; a read is a sync and a getData (linearizable). Every operation is recorded with its invocation
//! and completion time and outcome; a lost connection or a timeout is an unknown outcome. A
//! session that expires is replaced by a new one (and counted: most scenarios expect none).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_e2e::check::history::{Call, Op, Outcome};
use paddock_testkit::zk::{connect, ensure_node, lost_connection};
use zookeeper_client::{Error as ZkError, SessionState};

use crate::harness::{wait_for, Cluster, SESSION, WAIT};

/// How long one operation may take before its outcome counts as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(6);
/// Where the registers live.
pub const ROOT: &str = "/robust";

/// The register znodes' paths.
pub fn register(key: &str) -> String {
    format!("{ROOT}/{key}")
}

/// What a finished workload recorded.
#[derive(Debug, Default)]
pub struct Record {
    /// Every operation, in invocation order per client.
    pub ops: Vec<Op>,
    /// Sessions that expired under the clients (ids).
    pub expired: Vec<i64>,
}

/// A running workload.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Op>, Vec<i64>)>>,
    /// The keys, each a register.
    pub keys: Vec<String>,
}

/// The run's clock: nanoseconds since the workload began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A small deterministic generator per client (no shared state, no extra crate).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

impl Traffic {
    /// Creates `keys` registers (named `<prefix>r<k>`: each round of a soak has its own) and
    /// starts `clients` clients over every server of `cluster`.
    pub async fn start(cluster: &Cluster, clients: u32, keys: usize, prefix: &str) -> Traffic {
        let ids = cluster.ids();
        let setup = connect(&cluster.connect_all(), SESSION).await.expect("setup client");
        let keys: Vec<String> = (0..keys).map(|k| format!("{prefix}r{k}")).collect();
        ensure_node(&setup, ROOT).await;
        for key in &keys {
            ensure_node(&setup, &register(key)).await;
        }
        let clock = Clock(Instant::now());
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for c in 0..clients {
            // Each client's server list starts at a different server.
            let mut order = ids.clone();
            order.rotate_left(c as usize % ids.len());
            let connect_string = cluster.connect_string(&order);
            let (stop, done, keys) = (stop.clone(), done.clone(), keys.clone());
            tasks.push(tokio::spawn(async move { run_client(c, connect_string, keys, clock, stop, done).await }));
        }
        Traffic { stop, done, tasks, keys }
    }

    /// Operations completed so far with a known outcome.
    pub fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `more` operations beyond the current count have completed with a known
    /// outcome — the cluster is live.
    pub async fn wait_progress(&self, more: usize, within: Duration) {
        let target = self.done() + more;
        wait_for(&format!("the workload to reach {target} completed operations"), within, || async {
            (self.done() >= target).then_some(())
        })
        .await;
    }

    /// Stops every client after its current operation and returns the record.
    pub async fn finish(self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        let mut record = Record::default();
        for task in self.tasks {
            let (ops, expired) =
                tokio::time::timeout(OP_TIMEOUT + WAIT, task).await.expect("client stops").expect("client task");
            record.ops.extend(ops);
            record.expired.extend(expired);
        }
        record
    }
}

async fn run_client(
    c: u32,
    connect_string: String,
    keys: Vec<String>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> (Vec<Op>, Vec<i64>) {
    let mut ops = Vec::new();
    let mut expired = Vec::new();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (u64::from(c) + 1).wrapping_mul(0x1000_0001));
    // The version this client last saw of each register, for conditional writes.
    let mut seen: Vec<Option<i32>> = vec![None; keys.len()];
    let mut seq = 0u64;
    'sessions: while !stop.load(Ordering::Relaxed) {
        let client = match connect(&connect_string, SESSION).await {
            Ok(client) => client,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let session = client.session_id().0;
        let mut states = client.state_watcher();
        while !stop.load(Ordering::Relaxed) {
            // A request sent while disconnected fails at once, outcome unknown to the history:
            // wait for the connection instead (each unknown outcome widens the checker's search).
            let mut state = client.state();
            while state == SessionState::Disconnected {
                match tokio::time::timeout(Duration::from_millis(500), states.changed()).await {
                    Ok(changed) => state = changed,
                    Err(_) => break,
                }
            }
            if state.is_terminated() {
                expired.push(session);
                continue 'sessions;
            }
            let k = dice.below(keys.len());
            let path = register(&keys[k]);
            let roll = dice.below(4);
            let invoked = clock.now();
            let mut gone = false;
            let (call, outcome) = if roll < 2 {
                let call = Call::Read { key: keys[k].clone() };
                // sync first: a read alone may be served by a follower that is behind (ZooKeeper's
                // reads are sequentially consistent); sync + read is linearizable.
                let read = async {
                    client.sync(&path).await?;
                    client.get_data(&path).await
                };
                let outcome = match tokio::time::timeout(OP_TIMEOUT, read).await {
                    Ok(Ok((data, stat))) => {
                        seen[k] = Some(stat.version);
                        let value = (!data.is_empty()).then(|| String::from_utf8_lossy(&data).into_owned());
                        Outcome::Read { value, version: stat.version, mzxid: stat.mzxid }
                    }
                    Ok(Err(e)) => {
                        gone = matches!(e, ZkError::SessionExpired | ZkError::ClientClosed);
                        failed(&e)
                    }
                    Err(_) => Outcome::Unknown,
                };
                (call, outcome)
            } else {
                seq += 1;
                let value = format!("c{c}-{seq}");
                let expect = if roll == 3 { seen[k] } else { None };
                let call = Call::Write { key: keys[k].clone(), value: value.clone(), expect, seq };
                let write = client.set_data(&path, value.as_bytes(), expect);
                let outcome = match tokio::time::timeout(OP_TIMEOUT, write).await {
                    Ok(Ok(stat)) => {
                        seen[k] = Some(stat.version);
                        Outcome::Written { version: stat.version, mzxid: stat.mzxid }
                    }
                    Ok(Err(ZkError::BadVersion)) => {
                        seen[k] = None;
                        Outcome::BadVersion
                    }
                    Ok(Err(e)) => {
                        gone = matches!(e, ZkError::SessionExpired | ZkError::ClientClosed);
                        failed(&e)
                    }
                    Err(_) => Outcome::Unknown,
                };
                (call, outcome)
            };
            let completed = (!matches!(outcome, Outcome::Unknown)).then(|| clock.now());
            if completed.is_some() {
                done.fetch_add(1, Ordering::Relaxed);
            }
            ops.push(Op { client: c, session, call, invoked, completed, outcome });
            if completed.is_none() {
                // Not connected (or not answered): each unknown outcome costs the checker a
                // branch, so do not pile them up while the client reconnects.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if gone {
                expired.push(session);
                continue 'sessions;
            }
        }
        // The session ends with the workload (dropping the client closes it); the close is not
        // part of the history.
        drop(client);
    }
    (ops, expired)
}

/// An error's outcome: a lost connection leaves it unknown; any other error means the
/// operation did not take effect.
fn failed(e: &ZkError) -> Outcome {
    if lost_connection(e) {
        Outcome::Unknown
    } else if matches!(e, ZkError::SessionExpired | ZkError::ClientClosed) {
        // Expiry races the request: it may have been applied just before.
        Outcome::Unknown
    } else {
        Outcome::Failed(e.to_string())
    }
}
