//! The recorded workload. Register clients (`zookeeper-client`), each its own session over
//! every server (in a different order, so sessions start all over the cluster), as fast as they
//! can: read (sync + getData: linearizable), write and conditionally write a few registers
//! (znodes); write a pair of registers together with a multi (two setData, some conditional on
//! the version last seen) and read the pair with one multi-read (after a sync); and create
//! sequential nodes under one parent. Beside them the raw-wire sessions of [`crate::watchers`]: watches, pings,
//! ephemeral nodes, and an observer of their liveness nodes. Every operation is recorded with
//! its invocation and completion time and outcome; a lost connection or a timeout is an unknown
//! outcome. A session that expires is replaced by a new one (and counted: most scenarios expect
//! none).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_e2e::check::ephemerals::{Ephemeral, Listing, SessionFacts};
use paddock_e2e::check::history::{Call, Op, Outcome};
use paddock_e2e::check::multi::{Snapshot, SnapshotRead};
use paddock_e2e::check::sequential::{FinalListing, SeqCreate, SeqOutcome};
use paddock_e2e::check::sessions::SessionLife;
use paddock_e2e::check::watches::{Change, EventKind, PathChanges, SessionStream};
use paddock_testkit::zk::{connect, ensure_node, lost_connection, retrying, PERSISTENT, SEQUENTIAL};
use zookeeper_client::{Client, Error as ZkError, MultiReadResult, MultiWriteError, MultiWriteResult, SessionState};

use crate::harness::{wait_for, Cluster, SESSION, WAIT};
use crate::watchers::{Paths, Phase, Watchers};

/// How long one operation may take before its outcome counts as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(6);
/// Where the registers live.
pub const ROOT: &str = "/robust";
/// Raw-wire sessions beside the register clients.
pub const RAW_SESSIONS: usize = 3;

/// The register znodes' paths.
pub fn register(key: &str) -> String {
    format!("{ROOT}/{key}")
}

/// What a finished workload recorded, for [`crate::verdict::judge`].
#[derive(Debug, Default, serde::Serialize)]
pub struct Record {
    /// Every register operation, in invocation order per client (a multi's setData ops one
    /// write each, of the same `seq`; a multi-read's getData ops one read each).
    pub ops: Vec<Op>,
    /// Sessions that expired under the clients, raw ones included (ids).
    pub expired: Vec<i64>,
    /// Every register (each starts empty).
    pub keys: Vec<String>,
    /// Registers written only together, by multi.
    pub groups: Vec<Vec<String>>,
    /// The multi-reads of the groups.
    pub snapshots: Vec<Snapshot>,
    /// Sequential creates.
    pub seq: Vec<SeqCreate>,
    /// Their parent's children after the run.
    pub seq_listings: Vec<FinalListing>,
    /// What every raw session received.
    pub streams: Vec<SessionStream>,
    /// The streams of the sessions that set persistent watches.
    pub persistent_streams: Vec<SessionStream>,
    /// The known changes of every watched path.
    pub changes: Vec<PathChanges>,
    /// Raw sessions' pings and observed expiries.
    pub lives: Vec<SessionLife>,
    /// Raw sessions' ephemeral nodes.
    pub ephemerals: Vec<Ephemeral>,
    /// What is known of the raw sessions' ends.
    pub facts: Vec<SessionFacts>,
    /// Linearizable listings of the ephemeral nodes' parents (during the run and after it).
    pub listings: Vec<Listing>,
    /// The (xid, opcode) of every request of each raw session, for a look at a failing stream.
    pub requests: BTreeMap<i64, Vec<(i32, i32)>>,
}

/// What one register client recorded.
#[derive(Default)]
struct ClientRecord {
    ops: Vec<Op>,
    expired: Vec<i64>,
    snapshots: Vec<Snapshot>,
    seq: Vec<SeqCreate>,
}

/// A running workload.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<ClientRecord>>,
    watchers: Watchers,
    connect_all: String,
    clock: Clock,
    /// The plain registers.
    pub keys: Vec<String>,
    /// The pair written by multi.
    pair: Vec<String>,
    seq_parent: String,
    paths: Paths,
}

/// The run's clock: nanoseconds since the workload began.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Now, in ns since the start.
    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A small deterministic generator per client (no shared state, no extra crate).
pub struct Dice(pub u64);

impl Dice {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The znodes one round works on, named `<prefix>...`: each round of a soak has its own.
struct Layout {
    keys: Vec<String>,
    pair: Vec<String>,
    seq_parent: String,
    paths: Paths,
}

impl Layout {
    fn new(keys: usize, prefix: &str) -> Layout {
        let keys: Vec<String> = (0..keys).map(|k| format!("{prefix}r{k}")).collect();
        let pair: Vec<String> = (0..2).map(|k| format!("{prefix}m{k}")).collect();
        let registers = keys.iter().chain(&pair).map(|k| register(k)).collect();
        Layout {
            keys,
            pair,
            seq_parent: format!("{ROOT}/{prefix}seq"),
            paths: Paths { registers, kids: format!("{ROOT}/{prefix}kids"), live: format!("{ROOT}/{prefix}live") },
        }
    }
}

impl Traffic {
    /// Creates `keys` registers (named `<prefix>r<k>`), the pair, the parents, and starts
    /// `clients` register clients and [`RAW_SESSIONS`] raw ones over every server of `cluster`.
    pub async fn start(cluster: &Cluster, clients: u32, keys: usize, prefix: &str) -> Traffic {
        let ids = cluster.ids();
        let connect_all = cluster.connect_all();
        let setup = connect(&connect_all, SESSION).await.expect("setup client");
        let Layout { keys, pair, seq_parent, paths } = Layout::new(keys, prefix);
        ensure_node(&setup, ROOT).await;
        for key in &keys {
            ensure_node(&setup, &register(key)).await;
        }
        // The pair in one txn: in lockstep from the start.
        let created = retrying("the pair", || {
            let mut multi = setup.new_multi_writer();
            for key in &pair {
                multi.add_create(&register(key), b"", &PERSISTENT).expect("a valid create");
            }
            let commit = multi.commit();
            async move { commit.await.map_err(ZkError::from) }
        })
        .await;
        assert!(matches!(created, Ok(_) | Err(ZkError::NodeExists)), "create the pair: {created:?}");
        for path in [&seq_parent, &paths.kids, &paths.live] {
            ensure_node(&setup, path).await;
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
            let work = Work { keys: keys.clone(), pair: pair.clone(), seq_parent: seq_parent.clone() };
            let (stop, done) = (stop.clone(), done.clone());
            tasks.push(tokio::spawn(async move { run_client(c, connect_string, work, clock, stop, done).await }));
        }
        let addrs: Vec<_> = ids.iter().map(|id| cluster.node(*id).client_addr).collect();
        let watchers = Watchers::start(RAW_SESSIONS, &addrs, connect_all.clone(), paths.clone(), clock);
        Traffic { stop, done, tasks, watchers, connect_all, clock, keys, pair, seq_parent, paths }
    }

    /// Operations of the register clients completed so far with a known outcome.
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

    /// Stops every writer after its current operation, lets the raw sessions read once more
    /// and close, lists what the ephemeral and sequential nodes' parents hold, and returns the
    /// record.
    pub async fn finish(self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        self.watchers.advance(Phase::Quiesce).await;
        let mut record = Record::default();
        for task in self.tasks {
            let client =
                tokio::time::timeout(OP_TIMEOUT + WAIT, task).await.expect("client stops").expect("client task");
            record.ops.extend(client.ops);
            record.expired.extend(client.expired);
            record.snapshots.extend(client.snapshots);
            record.seq.extend(client.seq);
        }
        self.watchers.advance(Phase::Final).await;
        let raw = self.watchers.close().await;

        // After every session closed: the parents, through a sync (linearizable).
        let reader = connect(&self.connect_all, SESSION).await.expect("a client for the final listings");
        let seq = listing(&reader, &self.seq_parent, self.clock).await;
        record.seq_listings.push(FinalListing { parent: seq.parent, children: seq.children });
        record.listings.push(listing(&reader, &self.paths.kids, self.clock).await);
        record.listings.push(listing(&reader, &self.paths.live, self.clock).await);
        drop(reader);

        record.keys = self.keys.iter().chain(&self.pair).cloned().collect();
        record.groups = vec![self.pair.clone()];
        // The known changes of every watched path: the registers' from the register history,
        // `kids/`'s from the raw sessions.
        record.changes = register_changes(&record.ops, &record.keys);
        let mut kids = PathChanges { path: self.paths.kids.clone(), changes: Vec::new(), complete: true };
        for (path, change) in &raw.changes {
            if *path == kids.path {
                kids.changes.push(*change);
            }
        }
        kids.complete = !raw.unknown.contains(&kids.path);
        record.changes.push(kids);
        // Each node's under `kids/` (its creation and deletion, when acknowledged), for the
        // recursive watch; never complete, as a node may go with its session.
        let mut below: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
        let prefix = format!("{}/", self.paths.kids);
        for (path, change) in &raw.changes {
            if path.starts_with(&prefix) {
                below.entry(path).or_default().push(*change);
            }
        }
        record.changes.extend(below.into_iter().map(|(path, changes)| PathChanges {
            path: path.to_owned(),
            changes,
            complete: false,
        }));
        let last_change = record.changes.iter().flat_map(|p| &p.changes).map(|c| c.zxid).max().unwrap_or(0);
        record.listings.extend(raw.listings);
        record.ephemerals = raw.ephemerals;
        for session in raw.sessions {
            let id = session.stream.session;
            let observed = raw.observed.get(&id).copied();
            let mut stream = session.stream;
            stream.alive_at_end &= session.final_zxid.is_some_and(|z| z >= last_change);
            if session.persistent {
                record.persistent_streams.push(stream);
            } else {
                record.streams.push(stream);
            }
            record.lives.push(SessionLife { expiry_observed: observed, ..session.life });
            let ended = match (session.closed, observed) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            record.facts.push(SessionFacts { session: id, ended, acked_writes: session.acked_writes });
            if session.expired && !session.doomed {
                record.expired.push(id);
            }
            record.requests.insert(id, session.requests);
        }
        record
    }
}

/// A sync and the children of `parent`, retried as one until they come.
async fn listing(client: &Client, parent: &str, clock: Clock) -> Listing {
    let invoked = clock.now();
    let children = retrying(parent, || async {
        client.sync(parent).await?;
        client.list_children(parent).await
    })
    .await
    .unwrap_or_else(|e| panic!("list {parent}: {e}"));
    Listing { parent: parent.to_owned(), invoked, completed: clock.now(), children }
}

/// Every register's changes the history shows: acknowledged writes at their zxid, and writes of
/// unknown outcome whose value a read returned, at the zxid the read saw. A register is complete
/// when every write of unknown outcome on it was read back.
fn register_changes(ops: &[Op], keys: &[String]) -> Vec<PathChanges> {
    let mut read_at: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for op in ops {
        if let (Call::Read { key }, Outcome::Read { value: Some(value), mzxid, .. }) = (&op.call, &op.outcome) {
            read_at.insert((key, value), *mzxid);
        }
    }
    let mut changes: BTreeMap<&str, (BTreeSet<i64>, bool)> =
        keys.iter().map(|k| (k.as_str(), (BTreeSet::new(), true))).collect();
    for op in ops {
        let Call::Write { key, value, .. } = &op.call else { continue };
        let Some((zxids, complete)) = changes.get_mut(key.as_str()) else { continue };
        match (&op.outcome, read_at.get(&(key.as_str(), value.as_str()))) {
            (Outcome::Written { mzxid, .. }, _) | (Outcome::Unknown, Some(mzxid)) => {
                zxids.insert(*mzxid);
            }
            (Outcome::Unknown, None) => *complete = false,
            _ => {}
        }
    }
    changes
        .into_iter()
        .map(|(key, (zxids, complete))| PathChanges {
            path: register(key),
            changes: zxids.into_iter().map(|zxid| Change { zxid, kind: EventKind::DataChanged }).collect(),
            complete,
        })
        .collect()
}

/// What one register client works on.
struct Work {
    keys: Vec<String>,
    pair: Vec<String>,
    seq_parent: String,
}

async fn run_client(
    c: u32,
    connect_string: String,
    work: Work,
    clock: Clock,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> ClientRecord {
    let mut me = RegisterClient {
        c,
        dice: Dice(0x9e37_79b9_7f4a_7c15 ^ (u64::from(c) + 1).wrapping_mul(0x1000_0001)),
        seen: vec![None; work.keys.len()],
        work,
        clock,
        seen_pair: None,
        seq: 0,
        names: 0,
        record: ClientRecord::default(),
    };
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
                me.record.expired.push(session);
                continue 'sessions;
            }
            let mut turn = Turn { client: &client, session, invoked: me.clock.now(), gone: false };
            let known = match me.dice.below(20) {
                0..=5 => me.read(&mut turn).await,
                roll @ 6..=11 => me.write(&mut turn, roll >= 9).await,
                12..=13 => me.create_sequential(&mut turn).await,
                roll @ 14..=16 => me.multi(&mut turn, roll == 16).await,
                _ => me.read_pair(&mut turn).await,
            };
            if known {
                done.fetch_add(1, Ordering::Relaxed);
            } else {
                // Not connected (or not answered): each unknown outcome costs the checker a
                // branch, so do not pile them up while the client reconnects.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if turn.gone {
                me.record.expired.push(session);
                continue 'sessions;
            }
        }
        // The session ends with the workload (dropping the client closes it); the close is not
        // part of the history.
        drop(client);
    }
    me.record
}

/// One register client's state across its sessions.
struct RegisterClient {
    c: u32,
    work: Work,
    clock: Clock,
    dice: Dice,
    /// The version this client last saw of each register, and of the pair, for conditional
    /// writes.
    seen: Vec<Option<i32>>,
    seen_pair: Option<i32>,
    /// Writes sent (the place of each in the send order).
    seq: u64,
    /// Sequential creates sent.
    names: u64,
    record: ClientRecord,
}

/// One operation's context.
struct Turn<'a> {
    client: &'a Client,
    session: i64,
    invoked: u64,
    /// The session ended under it.
    gone: bool,
}

impl Turn<'_> {
    /// An error's outcome, noting an ended session.
    fn failed(&mut self, e: &ZkError) -> Outcome {
        self.gone |= matches!(e, ZkError::SessionExpired | ZkError::ClientClosed);
        failed(e)
    }
}

impl RegisterClient {
    /// Records `ops` of one call (all completed now, unless unknown); whether every outcome is
    /// known.
    fn record(&mut self, turn: &Turn<'_>, ops: Vec<(Call, Outcome)>) -> bool {
        let known = ops.iter().all(|(_, outcome)| *outcome != Outcome::Unknown);
        let now = self.clock.now();
        for (call, outcome) in ops {
            let completed = (outcome != Outcome::Unknown).then_some(now);
            let op = Op { client: self.c, session: turn.session, call, invoked: turn.invoked, completed, outcome };
            self.record.ops.push(op);
        }
        known
    }

    fn key(&mut self) -> usize {
        self.dice.below(self.work.keys.len())
    }

    /// sync + getData of a register. The sync first: a read alone may be served by a follower
    /// that is behind (ZooKeeper's reads are sequentially consistent); sync + read is
    /// linearizable.
    async fn read(&mut self, turn: &mut Turn<'_>) -> bool {
        let k = self.key();
        let path = register(&self.work.keys[k]);
        let read = async {
            turn.client.sync(&path).await?;
            turn.client.get_data(&path).await
        };
        let outcome = match tokio::time::timeout(OP_TIMEOUT, read).await {
            Ok(Ok((data, stat))) => {
                self.seen[k] = Some(stat.version);
                Outcome::Read { value: value_of(&data), version: stat.version, mzxid: stat.mzxid }
            }
            Ok(Err(e)) => turn.failed(&e),
            Err(_) => Outcome::Unknown,
        };
        let call = Call::Read { key: self.work.keys[k].clone() };
        self.record(turn, vec![(call, outcome)])
    }

    /// setData of a register, `conditional` on the version last seen.
    async fn write(&mut self, turn: &mut Turn<'_>, conditional: bool) -> bool {
        let k = self.key();
        let path = register(&self.work.keys[k]);
        self.seq += 1;
        let value = format!("c{}-{}", self.c, self.seq);
        let expect = if conditional { self.seen[k] } else { None };
        let write = turn.client.set_data(&path, value.as_bytes(), expect);
        let outcome = match tokio::time::timeout(OP_TIMEOUT, write).await {
            Ok(Ok(stat)) => {
                self.seen[k] = Some(stat.version);
                Outcome::Written { version: stat.version, mzxid: stat.mzxid }
            }
            Ok(Err(ZkError::BadVersion)) => {
                self.seen[k] = None;
                Outcome::BadVersion
            }
            Ok(Err(e)) => turn.failed(&e),
            Err(_) => Outcome::Unknown,
        };
        let call = Call::Write { key: self.work.keys[k].clone(), value, expect, seq: self.seq };
        self.record(turn, vec![(call, outcome)])
    }

    /// A persistent sequential node under the sequential parent.
    async fn create_sequential(&mut self, turn: &mut Turn<'_>) -> bool {
        self.names += 1;
        let prefix = format!("c{}-{}-", self.c, self.names);
        let asked = format!("{}/{prefix}", self.work.seq_parent);
        let create = turn.client.create(&asked, b"", &SEQUENTIAL);
        let (completed, outcome) = match tokio::time::timeout(OP_TIMEOUT, create).await {
            Ok(Ok((stat, number))) => {
                (Some(self.clock.now()), SeqOutcome::Created { number: number.into_i64(), czxid: stat.czxid })
            }
            Ok(Err(e)) => match turn.failed(&e) {
                Outcome::Failed(why) => (Some(self.clock.now()), SeqOutcome::Failed(why)),
                _ => (None, SeqOutcome::Unknown),
            },
            Err(_) => (None, SeqOutcome::Unknown),
        };
        let parent = self.work.seq_parent.clone();
        self.record.seq.push(SeqCreate { client: self.c, parent, prefix, invoked: turn.invoked, completed, outcome });
        completed.is_some()
    }

    /// Both registers of the pair, the same value, in one multi (two setData), `conditional` on
    /// the version last seen of the pair.
    async fn multi(&mut self, turn: &mut Turn<'_>, conditional: bool) -> bool {
        self.seq += 1;
        let value = format!("m{}-{}", self.c, self.seq);
        let expect = if conditional { self.seen_pair } else { None };
        let pair = self.work.pair.clone();
        let mut multi = turn.client.new_multi_writer();
        for key in &pair {
            multi.add_set_data(&register(key), value.as_bytes(), expect).expect("a valid setData");
        }
        let outcomes: Vec<Outcome> = match tokio::time::timeout(OP_TIMEOUT, multi.commit()).await {
            Ok(Ok(results)) => results
                .iter()
                .map(|r| match r {
                    MultiWriteResult::SetData { stat } => {
                        self.seen_pair = Some(stat.version);
                        Outcome::Written { version: stat.version, mzxid: stat.mzxid }
                    }
                    other => Outcome::Failed(format!("unexpected multi result {other:?}")),
                })
                .collect(),
            Ok(Err(MultiWriteError::OperationFailed { index, source })) => {
                self.seen_pair = None;
                (0..pair.len())
                    .map(|i| match (&source, i == index) {
                        (ZkError::BadVersion, true) => Outcome::BadVersion,
                        (_, true) => turn.failed(&source),
                        // Not applied: the multi failed as a whole.
                        (_, false) => Outcome::Failed(format!("op {index} of the multi failed")),
                    })
                    .collect()
            }
            Ok(Err(MultiWriteError::RequestFailed { source })) => vec![turn.failed(&source); pair.len()],
            Err(_) => vec![Outcome::Unknown; pair.len()],
        };
        let ops = pair
            .into_iter()
            .zip(outcomes)
            .map(|(key, outcome)| (Call::Write { key, value: value.clone(), expect, seq: self.seq }, outcome))
            .collect();
        self.record(turn, ops)
    }

    /// The pair in one multi-read, after a sync: one linearizable state.
    async fn read_pair(&mut self, turn: &mut Turn<'_>) -> bool {
        let pair = self.work.pair.clone();
        let read = async {
            turn.client.sync(&register(&pair[0])).await?;
            let mut reader = turn.client.new_multi_reader();
            for key in &pair {
                reader.add_get_data(&register(key)).expect("a valid getData");
            }
            reader.commit().await
        };
        let outcomes: Vec<Outcome> = match tokio::time::timeout(OP_TIMEOUT, read).await {
            Ok(Ok(results)) if results.len() == pair.len() => results
                .into_iter()
                .map(|r| match r {
                    MultiReadResult::Data { data, stat } => {
                        self.seen_pair = Some(stat.version);
                        Outcome::Read { value: value_of(&data), version: stat.version, mzxid: stat.mzxid }
                    }
                    MultiReadResult::Error { err } => failed(&err),
                    other => Outcome::Failed(format!("unexpected multi-read result {other:?}")),
                })
                .collect(),
            Ok(Ok(results)) => vec![Outcome::Failed(format!("{} multi-read results", results.len())); pair.len()],
            Ok(Err(e)) => vec![turn.failed(&e); pair.len()],
            Err(_) => vec![Outcome::Unknown; pair.len()],
        };
        let reads: Vec<SnapshotRead> = pair
            .iter()
            .zip(&outcomes)
            .filter_map(|(key, outcome)| match outcome {
                Outcome::Read { value, version, mzxid } => {
                    Some(SnapshotRead { key: key.clone(), value: value.clone(), version: *version, mzxid: *mzxid })
                }
                _ => None,
            })
            .collect();
        if reads.len() == pair.len() {
            self.record.snapshots.push(Snapshot { session: turn.session, invoked: turn.invoked, reads });
        }
        let ops = pair.into_iter().zip(outcomes).map(|(key, outcome)| (Call::Read { key }, outcome)).collect();
        self.record(turn, ops)
    }
}

/// A register's value as the history holds it: `None` for empty data.
fn value_of(data: &[u8]) -> Option<String> {
    (!data.is_empty()).then(|| String::from_utf8_lossy(data).into_owned())
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
