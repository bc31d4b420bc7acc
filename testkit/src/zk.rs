//! ZooKeeper-client helpers for process-level tests: session-state logs, retrying a request
//! whose connection was lost, a background writer that records what was acknowledged, and
//! subtree reads to compare nodes with each other and with what was acknowledged.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, Error as ZkError, SessionState};

use crate::cluster::Cluster;
use crate::wait::{wait_for_within, Bounded, POLL, WAIT};

/// How long one write may keep failing with ConnectionLoss before a writer calls it an error.
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// Persistent, world-open.
pub const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
/// Ephemeral, world-open.
pub const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
/// Persistent sequential, world-open.
pub const SEQUENTIAL: CreateOptions<'static> = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());

/// A client with `session` timeout over `connect`, failing eagerly (bounded by [`WAIT`]).
pub async fn connect(connect: &str, session: Duration) -> Result<Client, ZkError> {
    Client::connector().with_session_timeout(session).with_fail_eagerly().connect(connect).bounded().await
}

/// Every session state a client went through, recorded by a background task.
pub struct StateLog {
    states: Arc<Mutex<Vec<SessionState>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StateLog {
    /// Starts recording `client`'s state changes.
    pub fn watch(client: &Client) -> StateLog {
        let mut watcher = client.state_watcher();
        let states = Arc::new(Mutex::new(vec![watcher.state()]));
        let task = {
            let states = states.clone();
            tokio::spawn(async move {
                loop {
                    let state = watcher.changed().await;
                    states.lock().unwrap_or_else(|e| e.into_inner()).push(state);
                }
            })
        };
        StateLog { states, task }
    }

    /// The states so far.
    pub fn states(&self) -> Vec<SessionState> {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails the test if the session ever expired or closed.
    pub fn assert_never_expired(&self, who: &str) {
        let states = self.states();
        assert!(!states.iter().any(|s| s.is_terminated()), "{who} saw a terminal session state; states: {states:?}");
    }
}

impl Drop for StateLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `e` says the connection was lost with the request in flight (its outcome unknown):
/// ConnectionLoss, the client's own "no response from connection" / socket errors, which
/// `zookeeper-client` reports as `Custom`, and ConnectionLoss (-4) answered by a server whose
/// write could not commit in time, which it reports as an unexpected code.
pub fn lost_connection(e: &ZkError) -> bool {
    matches!(e, ZkError::ConnectionLoss | ZkError::Custom(_) | ZkError::UnexpectedErrorCode(-4))
}

/// Runs `op` until it succeeds, retrying ConnectionLoss (the outcome of the lost attempt is
/// unknown, so `op` must be safe to repeat); other errors are returned.
pub async fn retrying<T, F, Fut>(what: &str, mut op: F) -> Result<T, ZkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ZkError>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        match tokio::time::timeout(WAIT, op()).await {
            Ok(Err(e)) if lost_connection(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Ok(result) => return result,
            Err(_) => panic!("{what}: no answer in {WAIT:?}"),
        }
    }
}

/// Creates `path` (persistent, no data), retrying ConnectionLoss; an existing node is fine.
pub async fn ensure_node(client: &Client, path: &str) {
    match retrying(path, || client.create(path, b"", &PERSISTENT)).await {
        Ok(_) | Err(ZkError::NodeExists) => {}
        Err(e) => panic!("failed to create {path}: {e}"),
    }
}

/// What a [`Writer`] did.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Paths whose create was acknowledged (directly, or a retry found it already there).
    pub acked: Vec<String>,
    /// Lost connections (ConnectionLoss and the like) that were retried.
    pub retries: usize,
    /// Anything else that went wrong.
    pub errors: Vec<String>,
}

/// A background task creating `PARENT/w-NNNNNN` one after another through one client, retrying
/// ConnectionLoss, counting acknowledged creates.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<WriterReport>,
}

impl Writer {
    /// Starts writing under `parent` (which must exist).
    pub fn spawn(client: Client, parent: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let parent = parent.to_owned();
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut report = WriterReport::default();
                let mut i = 0usize;
                'writes: while !stop.load(Ordering::Relaxed) {
                    let path = format!("{parent}/w-{i:06}");
                    let deadline = tokio::time::Instant::now() + RETRY_FOR;
                    let mut retried = false;
                    loop {
                        let outcome = tokio::time::timeout(WAIT, client.create(&path, path.as_bytes(), &PERSISTENT));
                        match outcome.await {
                            Ok(Ok(_)) => break,
                            Ok(Err(ZkError::NodeExists)) if retried => break,
                            Ok(Err(e)) if lost_connection(&e) && tokio::time::Instant::now() < deadline => {
                                report.retries += 1;
                                retried = true;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Ok(Err(e)) => {
                                report.errors.push(format!("{path}: {e}"));
                                if matches!(e, ZkError::SessionExpired | ZkError::ClientClosed) {
                                    break 'writes;
                                }
                                // The outcome is unknown only for a lost connection; skip this one.
                                i += 1;
                                continue 'writes;
                            }
                            Err(_) => {
                                report.errors.push(format!("{path}: no answer in {WAIT:?}"));
                                break 'writes;
                            }
                        }
                    }
                    report.acked.push(path);
                    acked.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                report
            })
        };
        Writer { stop, acked, task }
    }

    /// Acknowledged creates so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` creates beyond the current count are acknowledged.
    pub async fn wait_progress(&self, more: usize, within: Duration) {
        let target = self.acked() + more;
        wait_for_within(&format!("the writer to reach {target} acknowledged creates"), within, || async {
            (self.acked() >= target).then_some(())
        })
        .await;
    }

    /// Stops the writer after its current create and returns its report.
    pub async fn finish(self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        // One create may be retrying for up to RETRY_FOR.
        tokio::time::timeout(RETRY_FOR + WAIT, self.task)
            .await
            .expect("writer stops in time")
            .expect("writer task does not panic")
    }
}

/// The subtree under `root` as seen through `client` after `sync`: every descendant's path and
/// data (the root itself excluded).
pub async fn read_subtree(client: &Client, root: &str) -> BTreeMap<String, Vec<u8>> {
    retrying("sync", || client.sync(root)).await.expect("sync");
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let children = retrying("list", || client.list_children(&dir)).await.expect("list children");
        let paths: Vec<String> =
            children.iter().map(|c| if dir == "/" { format!("/{c}") } else { format!("{dir}/{c}") }).collect();
        let reads = futures::stream::iter(paths.iter())
            .map(|path| async move {
                let data = retrying("get", || client.get_data(path)).await.expect("get data");
                (path.clone(), data.0, data.1.num_children)
            })
            .buffered(64)
            .collect::<Vec<_>>()
            .bounded()
            .await;
        for (path, data, children) in reads {
            if children > 0 {
                pending.push(path.clone());
            }
            out.insert(path, data);
        }
    }
    out
}

/// Fails the test unless every node of `ids` holds the same subtree under `root`, and that
/// subtree holds every path in `acked`. Returns the subtree.
pub async fn assert_same_everywhere(
    cluster: &Cluster,
    ids: &[u64],
    root: &str,
    acked: &[String],
) -> BTreeMap<String, Vec<u8>> {
    let mut first: Option<(u64, BTreeMap<String, Vec<u8>>)> = None;
    for id in ids {
        let client = connect(&cluster.connect_string(&[*id]), Duration::from_secs(4))
            .await
            .unwrap_or_else(|e| panic!("client to node {id} failed to connect: {e}"));
        let tree = read_subtree(&client, root).await;
        let missing: Vec<&String> = acked.iter().filter(|p| !tree.contains_key(*p)).collect();
        assert!(
            missing.is_empty(),
            "node {id} lacks {} acknowledged writes under {root} (of {}), e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        match &first {
            None => first = Some((*id, tree)),
            Some((other, expected)) => {
                if &tree != expected {
                    let only_here: Vec<&String> = tree.keys().filter(|k| !expected.contains_key(*k)).collect();
                    let only_there: Vec<&String> = expected.keys().filter(|k| !tree.contains_key(*k)).collect();
                    let differ: Vec<&String> = tree
                        .iter()
                        .filter(|(k, v)| expected.get(*k).is_some_and(|e| e != *v))
                        .map(|(k, _)| k)
                        .collect();
                    panic!(
                        "node {id} and node {other} differ under {root}: only on {id}: {only_here:?}, only on \
                         {other}: {only_there:?}, different data: {differ:?}"
                    );
                }
            }
        }
    }
    first.map(|(_, tree)| tree).unwrap_or_default()
}
