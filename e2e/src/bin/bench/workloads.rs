//! The workloads, each driven through the ZooKeeper protocol (`zookeeper-client`) the same way
//! against either system: closed-loop throughput with pipelined requests, single-session
//! latency, watch fan-out, bulk load, whole-cluster restart and leader failover.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, Error as ZkError, MultiWriteError, TlsOptions};

use crate::ensemble::Ensemble;
use crate::stats::{Rng, Samples};

/// Persistent, world-open.
pub const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
/// Ephemeral, world-open.
pub const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
/// Persistent sequential, world-open.
pub const SEQUENTIAL: CreateOptions<'static> = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());

/// How long one request may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Session timeout asked of both systems (both clamp to 2–20 ticks of 2 s).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(15);
/// Keys the set / get / mixed workloads spread over.
pub const KEYS: usize = 1024;

/// How big and long the workloads are.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sessions of the throughput workloads, spread evenly over the three servers.
    pub sessions: usize,
    /// Requests in flight per session (pipelined).
    pub depth: usize,
    /// Unmeasured time before each throughput workload.
    pub warmup: Duration,
    /// Measured time of each throughput workload.
    pub measure: Duration,
    /// Measured time of each single-session latency workload.
    pub latency: Duration,
    /// Watchers of the fan-out workload.
    pub watchers: usize,
    /// Rounds of the fan-out workload.
    pub watch_rounds: usize,
    /// Znodes of the memory / restart data set.
    pub znodes: u64,
    /// Creates per multi while loading them.
    pub load_batch: u64,
    /// Leader kills.
    pub failover_trials: usize,
    /// Single-session latency through the leader instead of a follower.
    pub latency_on_leader: bool,
    /// Which phases run (`None`: all); see `--phases`.
    pub phases: Option<Vec<String>>,
}

impl Settings {
    /// Whether phase `name` (or, for a throughput workload, `throughput`) runs.
    pub fn wants(&self, name: &str, group: Option<&str>) -> bool {
        match &self.phases {
            None => true,
            Some(list) => list.iter().any(|p| p == name || Some(p.as_str()) == group),
        }
    }
}

/// One session to `connect`, bounded.
pub async fn connect(connect: &str) -> Result<Client> {
    connect_with(connect, None).await
}

/// One session to `connect`, bounded, with TLS options when the connect string names TLS ports.
pub async fn connect_with(connect: &str, tls: Option<&TlsOptions>) -> Result<Client> {
    let mut connector = Client::connector().with_session_timeout(SESSION_TIMEOUT).with_fail_eagerly();
    if let Some(tls) = tls {
        connector = connector.with_tls(tls.clone());
    }
    let connecting = connector.connect(connect);
    tokio::time::timeout(Duration::from_secs(20), connecting)
        .await
        .map_err(|_| anyhow!("no session to {connect} within 20 s"))?
        .with_context(|| format!("cannot open a session to {connect}"))
}

/// `count` sessions, session `i` to node `i % 3` only (so the load is spread evenly); to the
/// TLS ports with `tls`.
pub async fn connect_spread(ensemble: &Ensemble, count: usize, tls: Option<&TlsOptions>) -> Result<Vec<Client>> {
    let nodes = ensemble.nodes.len();
    let target = |i: usize| match tls {
        None => ensemble.connect_string(&[i % nodes]),
        Some(_) => ensemble.secure_connect_string(&[i % nodes]),
    };
    let targets: Vec<String> = (0..count).map(target).collect();
    let clients: Vec<Result<Client>> =
        futures::stream::iter(targets.iter()).map(|t| connect_with(t, tls)).buffered(50).collect().await;
    clients.into_iter().collect()
}

/// `/bench/kv/kNNNN`.
pub fn key(i: usize) -> String {
    format!("/bench/kv/k{i:04}")
}

fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..size).map(|_| b'a' + (rng.below(26) as u8)).collect()
}

/// Creates `path`; an existing node is fine.
async fn ensure(client: &Client, path: &str, data: &[u8]) -> Result<()> {
    match tokio::time::timeout(OP_TIMEOUT, client.create(path, data, &PERSISTENT)).await {
        Ok(Ok(_)) | Ok(Err(ZkError::NodeExists)) => Ok(()),
        Ok(Err(e)) => Err(anyhow!("cannot create {path}: {e}")),
        Err(_) => Err(anyhow!("create {path}: no answer within {OP_TIMEOUT:?}")),
    }
}

/// The directories and keys every workload uses.
pub async fn setup(client: &Client) -> Result<()> {
    for dir in ["/bench", "/bench/kv", "/bench/seq", "/bench/eph", "/bench/watch", "/bench/fo", "/bench/m"] {
        ensure(client, dir, b"").await?;
    }
    let data = payload(128, 1);
    let creates: Vec<Result<()>> = futures::stream::iter(0..KEYS)
        .map(|i| {
            let (path, data) = (key(i), &data);
            async move { ensure(client, &path, data).await }
        })
        .buffered(64)
        .collect()
        .await;
    creates.into_iter().collect()
}

/// What a bulk load did.
pub struct Loaded {
    /// Wall time of the load.
    pub elapsed: Duration,
    /// Znodes created (parents included).
    pub znodes: u64,
    /// A znode created last, and its data, to probe for after a restart.
    pub probe: (String, Vec<u8>),
}

fn load_path(index: u64) -> String {
    format!("/bench/m/p{:04}/n{:04}", index / 1000, index % 1000)
}

fn load_data(index: u64) -> Vec<u8> {
    payload(128, index + 7)
}

/// Commits one multi of creates, retrying a lost connection (a retry answered NodeExists means
/// the lost attempt was applied: a multi is all or nothing).
async fn commit_creates(client: &Client, paths: &[(String, Vec<u8>)]) -> Result<()> {
    let mut retried = false;
    for _attempt in 0..5 {
        let mut multi = client.new_multi_writer();
        for (path, data) in paths {
            multi.add_create(path, data, &PERSISTENT).with_context(|| format!("bad create of {path}"))?;
        }
        match tokio::time::timeout(Duration::from_secs(60), multi.commit()).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(MultiWriteError::OperationFailed { source: ZkError::NodeExists, .. })) if retried => return Ok(()),
            Ok(Err(MultiWriteError::RequestFailed { source: ZkError::ConnectionLoss })) => {
                retried = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(e)) => bail!("multi create starting at {} failed: {e}", paths.first().map_or("?", |p| &p.0)),
            Err(_) => bail!("multi create: no answer within 60 s"),
        }
    }
    bail!("multi create kept losing its connection")
}

/// Creates `znodes` znodes of 128 random bytes under `/bench/m` (1000 per parent), in multis of
/// `batch` creates, `sessions` × `depth` multis in flight.
pub async fn load(ensemble: &Ensemble, znodes: u64, batch: u64, sessions: usize, depth: usize) -> Result<Loaded> {
    let clients = connect_spread(ensemble, sessions, None).await?;
    let first = clients.first().ok_or_else(|| anyhow!("no sessions"))?;
    let parents = znodes.div_ceil(1000);
    let start = Instant::now();
    let parent_paths: Vec<(String, Vec<u8>)> =
        (0..parents).map(|p| (format!("/bench/m/p{p:04}"), Vec::new())).collect();
    for chunk in parent_paths.chunks(100) {
        commit_creates(first, chunk).await?;
    }
    let next = Arc::new(AtomicU64::new(0));
    let batches = znodes.div_ceil(batch.max(1));
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..depth {
            let (client, next) = (client.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let range = b * batch..((b + 1) * batch).min(znodes);
                    let paths: Vec<(String, Vec<u8>)> = range.map(|i| (load_path(i), load_data(i))).collect();
                    commit_creates(&client, &paths).await?;
                }
            }));
        }
    }
    for task in tasks {
        task.await.context("load task panicked")??;
    }
    let last = znodes.saturating_sub(1);
    Ok(Loaded { elapsed: start.elapsed(), znodes: znodes + parents, probe: (load_path(last), load_data(last)) })
}

/// A throughput workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// setData of this many bytes on a random key.
    Set(usize),
    /// getData of a random key.
    Get,
    /// 90 % get, 10 % set (128 B).
    Mixed,
    /// create of a persistent sequential node, 128 B.
    CreateSeq,
    /// create of an ephemeral node, then its delete (one op = the pair).
    EphemeralPair,
}

impl Op {
    fn seed(self) -> u64 {
        match self {
            Op::Set(size) => 1 + size as u64,
            Op::Get => 2,
            Op::Mixed => 3,
            Op::CreateSeq => 4,
            Op::EphemeralPair => 5,
        }
    }
}

struct Shared {
    keys: Vec<String>,
    data128: Vec<u8>,
    data1k: Vec<u8>,
}

async fn one(client: &Client, op: Op, shared: &Shared, rng: &mut Rng, lane: usize, seq: u64) -> Result<(), ZkError> {
    let key = &shared.keys[rng.below(KEYS as u64) as usize];
    match op {
        Op::Set(size) => {
            let data = if size > 128 { &shared.data1k[..size.min(1024)] } else { &shared.data128[..size] };
            client.set_data(key, data, None).await.map(drop)
        }
        Op::Get => client.get_data(key).await.map(drop),
        Op::Mixed => {
            if rng.below(10) == 0 {
                client.set_data(key, &shared.data128, None).await.map(drop)
            } else {
                client.get_data(key).await.map(drop)
            }
        }
        Op::CreateSeq => client.create("/bench/seq/s-", &shared.data128, &SEQUENTIAL).await.map(drop),
        Op::EphemeralPair => {
            let path = format!("/bench/eph/e-{lane}-{seq}");
            client.create(&path, &shared.data128, &EPHEMERAL).await?;
            client.delete(&path, None).await
        }
    }
}

/// What a closed-loop run measured.
#[derive(Debug, Default)]
pub struct Throughput {
    /// Operations completed per second in the measured window.
    pub ops_per_sec: f64,
    /// Operations completed in the window.
    pub ops: u64,
    /// Failed or timed-out operations (whole run).
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Latency of the operations started and completed in the window (sorted).
    pub latency: Samples,
}

struct LaneResult {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    samples: Samples,
}

/// Runs `op` in closed loop on every client with `depth` requests in flight per client:
/// `warmup` unmeasured, then `measure` measured.
pub async fn closed_loop(
    clients: &[Client],
    depth: usize,
    op: Op,
    warmup: Duration,
    measure: Duration,
) -> Result<Throughput> {
    let shared =
        Arc::new(Shared { keys: (0..KEYS).map(key).collect(), data128: payload(128, 11), data1k: payload(1024, 12) });
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + measure;
    let mut tasks = Vec::new();
    for (s, client) in clients.iter().enumerate() {
        for d in 0..depth {
            let lane = s * depth + d;
            let (client, shared) = (client.clone(), shared.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(lane as u64 + 100_000 * op.seed());
                let mut result = LaneResult { ops: 0, errors: 0, first_error: None, samples: Samples::default() };
                let mut seq = 0u64;
                loop {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let outcome =
                        tokio::time::timeout(OP_TIMEOUT, one(&client, op, &shared, &mut rng, lane, seq)).await;
                    seq += 1;
                    let done = Instant::now();
                    match outcome {
                        Ok(Ok(())) => {
                            if done >= window_start && done <= end {
                                result.ops += 1;
                                if began >= window_start {
                                    result.samples.record(done - began);
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            result.errors += 1;
                            result.first_error.get_or_insert_with(|| e.to_string());
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(_) => {
                            result.errors += 1;
                            result.first_error.get_or_insert_with(|| format!("no answer within {OP_TIMEOUT:?}"));
                        }
                    }
                }
                result
            }));
        }
    }
    let mut total = Throughput::default();
    for task in tasks {
        let lane = task.await.context("workload task panicked")?;
        total.ops += lane.ops;
        total.errors += lane.errors;
        if total.first_error.is_none() {
            total.first_error = lane.first_error;
        }
        total.latency.merge(lane.samples);
    }
    total.latency.sort();
    total.ops_per_sec = total.ops as f64 / measure.as_secs_f64();
    Ok(total)
}

/// Watch fan-out: `watchers` sessions (spread over the servers) each watch `/bench/watch`; one
/// write; per round, the time from issuing the write until every watcher got its notification,
/// and every single notification's delay.
pub async fn watch_fanout(ensemble: &Ensemble, watchers: usize, rounds: usize) -> Result<(Vec<f64>, Samples)> {
    let clients = connect_spread(ensemble, watchers, None).await?;
    let writer = connect(&ensemble.connect_string(&[0])).await?;
    let mut all_ms = Vec::new();
    let mut each = Samples::default();
    for round in 0..rounds {
        let (armed_tx, mut armed_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
        let (fired_tx, mut fired_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut tasks = Vec::new();
        for client in &clients {
            let (client, armed_tx, fired_tx) = (client.clone(), armed_tx.clone(), fired_tx.clone());
            tasks.push(tokio::spawn(async move {
                let armed = tokio::time::timeout(OP_TIMEOUT, client.get_and_watch_data("/bench/watch")).await;
                let watcher = match armed {
                    Ok(Ok((_, _, watcher))) => watcher,
                    Ok(Err(e)) => {
                        let _ = armed_tx.send(Err(e.to_string()));
                        return;
                    }
                    Err(_) => {
                        let _ = armed_tx.send(Err("no answer".into()));
                        return;
                    }
                };
                let _ = armed_tx.send(Ok(()));
                if tokio::time::timeout(Duration::from_secs(60), watcher.changed()).await.is_ok() {
                    let _ = fired_tx.send(Instant::now());
                }
            }));
        }
        drop((armed_tx, fired_tx));
        let arm_deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..clients.len() {
            let left = arm_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, armed_rx.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => bail!("a watcher failed to set its watch: {e}"),
                Ok(None) | Err(_) => bail!("watchers did not all set their watch within 60 s"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        tokio::time::timeout(OP_TIMEOUT, writer.set_data("/bench/watch", format!("round {round}").as_bytes(), None))
            .await
            .map_err(|_| anyhow!("the fan-out write got no answer"))?
            .context("the fan-out write failed")?;
        let fire_deadline = t0 + Duration::from_secs(30);
        let mut last = t0;
        for got in 0..clients.len() {
            let left = fire_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, fired_rx.recv()).await {
                Ok(Some(at)) => {
                    each.record(at - t0);
                    last = last.max(at);
                }
                Ok(None) | Err(_) => bail!("only {got} of {} watchers were notified within 30 s", clients.len()),
            }
        }
        all_ms.push((last - t0).as_secs_f64() * 1000.0);
        for task in tasks {
            let _ = task.await;
        }
    }
    each.sort();
    Ok((all_ms, each))
}

/// Opens a session to `connect_string` and reads `path`; true when it holds `expected`.
async fn read_probe(connect_string: &str, path: &str, expected: &[u8]) -> bool {
    let attempt = async {
        let client = Client::connector()
            .with_session_timeout(SESSION_TIMEOUT)
            .with_connection_timeout(Duration::from_millis(1000))
            .with_fail_eagerly()
            .connect(connect_string)
            .await
            .ok()?;
        let (data, _) = client.get_data(path).await.ok()?;
        Some(data == expected)
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), attempt).await, Ok(Some(true)))
}

/// Stops every node (SIGTERM), starts them all again at once, and measures the time from the
/// start until a client reads `probe` (through any node), and until every node serves it.
pub async fn restart(
    ensemble: &mut Ensemble,
    probe: &(String, Vec<u8>),
    within: Duration,
) -> Result<(Duration, Duration)> {
    ensemble.stop_all(Duration::from_secs(60)).await;
    let t0 = Instant::now();
    for i in 0..ensemble.nodes.len() {
        ensemble.spawn(i)?;
    }
    let deadline = t0 + within;
    let all = ensemble.connect_all();
    let first = loop {
        if read_probe(&all, &probe.0, &probe.1).await {
            break t0.elapsed();
        }
        if Instant::now() >= deadline {
            bail!("no client read {} within {within:?} of the restart; logs:\n{}", probe.0, ensemble.log_tails(20));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut every = first;
    for i in 0..ensemble.nodes.len() {
        let one = ensemble.connect_string(&[i]);
        loop {
            if read_probe(&one, &probe.0, &probe.1).await {
                every = every.max(t0.elapsed());
                break;
            }
            if Instant::now() >= deadline {
                bail!("node {} did not serve {} within {within:?} of the restart", i + 1, probe.0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok((first, every))
}

/// Writers on the two followers issue setData open-loop (every 5 ms per session, never waiting
/// for earlier answers); the leader is killed with SIGKILL; the result is the time until the
/// first write issued after the kill is acknowledged. The killed node is started again and
/// waited for afterwards.
pub async fn failover(ensemble: &mut Ensemble, writers: usize) -> Result<Duration> {
    let leader = ensemble.leader().await?;
    let followers: Vec<usize> = (0..ensemble.nodes.len()).filter(|&i| i != leader).collect();
    let connect_string = ensemble.connect_string(&followers);
    let mut clients = Vec::new();
    for _ in 0..writers {
        clients.push(connect(&connect_string).await?);
    }
    for (w, client) in clients.iter().enumerate() {
        ensure(client, &format!("/bench/fo/w{w}"), b"").await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Instant, bool)>();
    let mut issuers = Vec::new();
    for (w, client) in clients.iter().enumerate() {
        let (client, stop, tx) = (client.clone(), stop.clone(), tx.clone());
        issuers.push(tokio::spawn(async move {
            let path = format!("/bench/fo/w{w}");
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let limit = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < limit {
                tick.tick().await;
                let issued = Instant::now();
                let write = client.set_data(&path, b"failover", None);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let ok = matches!(tokio::time::timeout(Duration::from_secs(30), write).await, Ok(Ok(_)));
                    let _ = tx.send((issued, Instant::now(), ok));
                });
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    ensemble.kill9(leader);
    let deadline = killed_at + Duration::from_secs(60);
    let unavailable = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some((issued, done, ok))) => {
                if ok && issued >= killed_at {
                    break done - killed_at;
                }
            }
            Ok(None) | Err(_) => {
                stop.store(true, Ordering::Relaxed);
                bail!("no write was acknowledged within 60 s of killing the leader (node {})", leader + 1);
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    for issuer in issuers {
        let _ = issuer.await;
    }
    drop(clients);
    ensemble.spawn(leader)?;
    let all: Vec<usize> = (0..ensemble.nodes.len()).collect();
    ensemble.wait_serving(&all, Duration::from_secs(120)).await.context("the killed node did not come back")?;
    Ok(unavailable)
}
