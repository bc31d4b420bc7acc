//! One system's whole run: start a three-node ensemble, load the data set, measure memory and a
//! whole-cluster restart, then the throughput, latency, fan-out and failover workloads (and, for
//! Paddock, the sidecar figures), then stop it. A workload that fails is recorded as such and
//! left out of the table; the others still run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::ensemble::{Ensemble, Kind, Launch};
use crate::proc::run_capture;
use crate::sidecar::{self, SidecarFigures};
use crate::stats::{median, Samples};
use crate::workloads::{self, Op, Settings};

/// The throughput workloads in the order they run, with their keys in [`SystemResult::values`].
pub const THROUGHPUT: &[(&str, &str, Op)] = &[
    ("tput.set1k", "set 1 KiB", Op::Set(1024)),
    ("tput.set128", "set 128 B", Op::Set(128)),
    ("tput.get", "get 128 B", Op::Get),
    ("tput.mixed", "mixed 90% get / 10% set", Op::Mixed),
    ("tput.createseq", "create sequential 128 B", Op::CreateSeq),
    ("tput.ephemeral", "ephemeral create + delete (pairs)", Op::EphemeralPair),
];

/// The throughput workloads over TLS (the `tls` phase).
pub const TLS_THROUGHPUT: &[(&str, &str, Op)] =
    &[("tput.tls.set128", "set 128 B over TLS", Op::Set(128)), ("tput.tls.get", "get 128 B over TLS", Op::Get)];

/// Every phase name `--phases` takes.
pub const PHASES: &[&str] = &[
    "load",
    "memory",
    "restart",
    "throughput",
    "set1k",
    "set128",
    "get",
    "mixed",
    "createseq",
    "ephemeral",
    "latency",
    "watch",
    "failover",
    "sidecar",
    "tls",
];

/// Per-throughput-workload details.
#[derive(Debug, Clone)]
pub struct ThroughputDetail {
    /// Workload label.
    pub label: &'static str,
    /// Completed in the window.
    pub ops: u64,
    /// Errors and time-outs.
    pub errors: u64,
    /// The first error.
    pub first_error: Option<String>,
    /// Latency under load.
    pub p50_ms: Option<f64>,
    /// Latency under load.
    pub p99_ms: Option<f64>,
    /// CPU cores the three servers used together during the workload (of `nproc`).
    pub server_cores: f64,
    /// CPU cores the load generator used.
    pub loadgen_cores: f64,
}

/// Everything one system measured.
#[derive(Debug)]
pub struct SystemResult {
    /// Which system.
    pub kind: Kind,
    /// The first line of `srvr` (`Zookeeper version: ...`).
    pub version: String,
    /// Measured values by row key.
    pub values: BTreeMap<&'static str, f64>,
    /// Throughput details.
    pub throughput: Vec<ThroughputDetail>,
    /// Free-form measured facts for the details section.
    pub notes: Vec<String>,
    /// Workloads that failed, with why.
    pub failures: Vec<String>,
    /// Paddock only.
    pub sidecar: Option<SidecarFigures>,
    /// CPU cores other processes on the machine took during this system's run: (average, max).
    pub other_cpu: (f64, f64),
}

/// What the suite needs besides the settings.
pub struct SuiteInput<'a> {
    /// How to start servers.
    pub launch: Launch,
    /// The `paddock-sidecar` binary (Paddock runs only; `None` skips the sidecar figures).
    pub sidecar_bin: Option<PathBuf>,
    /// The work dir of this system.
    pub dir: &'a Path,
    /// Sizes.
    pub settings: &'a Settings,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs everything against `kind`.
pub async fn run_system(kind: Kind, input: SuiteInput<'_>) -> Result<SystemResult> {
    let settings = input.settings;
    let mut result = SystemResult {
        kind,
        version: String::new(),
        values: BTreeMap::new(),
        throughput: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
        sidecar: None,
        other_cpu: (0.0, 0.0),
    };
    let step = |name: &str| eprintln!("[{}] {name}", kind.name());

    step("starting 3 nodes");
    let mut ensemble = Ensemble::create(kind, input.launch.clone(), input.dir)?;
    let started = Instant::now();
    ensemble.start(Duration::from_secs(120)).await.context("the ensemble did not start")?;
    result
        .notes
        .push(format!("cold start of a new 3-node cluster until all serve: {:.2} s", started.elapsed().as_secs_f64()));
    result.version = ensemble.srvr(0).await.ok().and_then(|s| s.lines().next().map(str::to_owned)).unwrap_or_default();

    let admin = workloads::connect(&ensemble.connect_all()).await?;
    workloads::setup(&admin).await.context("creating /bench")?;
    drop(admin);

    // The data set: memory, disk, restart.
    let loaded = if settings.wants("load", None) {
        step(&format!("loading {} znodes", settings.znodes));
        Some(workloads::load(&ensemble, settings.znodes, settings.load_batch, 6, 8).await)
    } else {
        None
    };
    let probe = match loaded {
        None => None,
        Some(Ok(loaded)) => {
            result.values.insert("load.rate", loaded.znodes as f64 / loaded.elapsed.as_secs_f64());
            result.notes.push(format!(
                "bulk load: {} znodes (128 B each, 1000 per parent, multis of {}) in {:.1} s",
                loaded.znodes,
                settings.load_batch,
                loaded.elapsed.as_secs_f64()
            ));
            Some(loaded.probe)
        }
        Some(Err(e)) => {
            result.failures.push(format!("bulk load: {e:#}"));
            None
        }
    };
    if probe.is_some() && settings.wants("memory", None) {
        step("waiting for every node to hold the data set, then measuring memory");
        match memory(&ensemble, &mut result).await {
            Ok(()) => {}
            Err(e) => result.failures.push(format!("memory: {e:#}")),
        }
    }
    if let Some(probe) = probe.as_ref().filter(|_| settings.wants("restart", None)) {
        step("restarting the whole cluster");
        match workloads::restart(&mut ensemble, probe, Duration::from_secs(240)).await {
            Ok((first, all)) => {
                result.values.insert("restart.first", first.as_secs_f64());
                result.values.insert("restart.all", all.as_secs_f64());
            }
            Err(e) => result.failures.push(format!("restart: {e:#}")),
        }
        let all: Vec<usize> = (0..ensemble.nodes.len()).collect();
        ensemble.wait_serving(&all, Duration::from_secs(120)).await.context("the cluster did not come back")?;
        if let Ok(rss) = ensemble.rss() {
            result.notes.push(format!(
                "RSS per server right after the restart (MiB): {}",
                rss.iter().map(|b| format!("{:.0}", mib(*b))).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    // Throughput.
    let wanted: Vec<&(&str, &str, Op)> =
        THROUGHPUT.iter().filter(|(key, _, _)| settings.wants(&key.replace("tput.", ""), Some("throughput"))).collect();
    let clients = if wanted.is_empty() {
        Vec::new()
    } else {
        step("connecting the throughput sessions");
        let clients = workloads::connect_spread(&ensemble, settings.sessions, None).await?;
        step("warming up");
        let _ = workloads::closed_loop(&clients, settings.depth, Op::Mixed, Duration::ZERO, settings.warmup * 2).await;
        clients
    };
    for (key, label, op) in wanted {
        step(label);
        throughput(&ensemble, &clients, settings, (key, label, *op), &mut result).await;
    }
    drop(clients);
    if !result.throughput.is_empty() {
        result.values.insert("disk.after", mib(ensemble.data_bytes()));
    }

    // Single-session latency, through a follower.
    if settings.wants("latency", None) {
        step("single-session latency");
        if let Err(e) = latency(&ensemble, settings, &mut result).await {
            result.failures.push(format!("latency: {e:#}"));
        }
    }

    let fanout = if settings.wants("watch", None) {
        step(&format!("watch fan-out to {} sessions", settings.watchers));
        Some(workloads::watch_fanout(&ensemble, settings.watchers, settings.watch_rounds).await)
    } else {
        None
    };
    match fanout {
        None => {}
        Some(Ok((rounds, each))) => {
            if let Some(m) = median(&rounds) {
                result.values.insert("watch.all", m);
            }
            if let Some(p50) = each.percentile_ms(50.0) {
                result.values.insert("watch.p50", p50);
            }
            result.notes.push(format!(
                "watch fan-out, all {} notified, per round (ms): {}",
                settings.watchers,
                rounds.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(", ")
            ));
        }
        Some(Err(e)) => result.failures.push(format!("watch fan-out: {e:#}")),
    }

    let trials_wanted = if settings.wants("failover", None) { settings.failover_trials } else { 0 };
    if trials_wanted > 0 {
        step("leader failover");
    }
    let mut trials = Vec::new();
    for trial in 0..trials_wanted {
        match workloads::failover(&mut ensemble, 8).await {
            Ok(d) => trials.push(d.as_secs_f64() * 1000.0),
            Err(e) => {
                result.failures.push(format!("failover trial {}: {e:#}", trial + 1));
                break;
            }
        }
    }
    if let Some(m) = median(&trials) {
        result.values.insert("failover", m);
        result.notes.push(format!(
            "failover, each trial (ms): {}",
            trials.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", ")
        ));
    }

    if kind == Kind::Paddock && settings.wants("sidecar", None) {
        if let Some(bin) = &input.sidecar_bin {
            step("sidecar figures");
            match sidecar::measure(bin, &ensemble, input.dir, 300, 10).await {
                Ok(figures) => result.sidecar = Some(figures),
                Err(e) => result.failures.push(format!("sidecar: {e:#}")),
            }
        }
    }

    if settings.wants("tls", None) {
        step("restarting with TLS client ports");
        if let Err(e) = tls(&mut ensemble, input.dir, settings, &mut result).await {
            result.failures.push(format!("TLS: {e:#}"));
        }
    }

    step("stopping");
    ensemble.stop_all(Duration::from_secs(30)).await;
    Ok(result)
}

/// One throughput workload over `clients`: its rate under `key`, and its details.
async fn throughput(
    ensemble: &Ensemble,
    clients: &[zookeeper_client::Client],
    settings: &Settings,
    (key, label, op): (&'static str, &'static str, Op),
    result: &mut SystemResult,
) {
    let (servers_before, self_before, began) =
        (ensemble.cpu_ticks(), crate::proc::cpu_ticks("self").unwrap_or(0), Instant::now());
    let outcome = workloads::closed_loop(clients, settings.depth, op, settings.warmup, settings.measure).await;
    // /proc counts CPU time in USER_HZ ticks, 100 per second on Linux.
    let ticks_per_sec = 100.0 * began.elapsed().as_secs_f64();
    let server_cores = ensemble.cpu_ticks().saturating_sub(servers_before) as f64 / ticks_per_sec;
    let loadgen_cores = crate::proc::cpu_ticks("self").unwrap_or(0).saturating_sub(self_before) as f64 / ticks_per_sec;
    match outcome {
        Ok(t) => {
            if t.ops > 0 {
                result.values.insert(key, t.ops_per_sec);
            } else {
                result.failures.push(format!("{label}: nothing completed ({:?})", t.first_error));
            }
            result.throughput.push(ThroughputDetail {
                label,
                ops: t.ops,
                errors: t.errors,
                first_error: t.first_error,
                p50_ms: t.latency.percentile_ms(50.0),
                p99_ms: t.latency.percentile_ms(99.0),
                server_cores,
                loadgen_cores,
            });
        }
        Err(e) => result.failures.push(format!("{label}: {e:#}")),
    }
}

/// The TLS workloads: the ensemble restarted with TLS client ports (client certificates
/// needed, as each system's default with a CA), then the throughput sessions over TLS. Last,
/// because ZooKeeper's TLS needs its Netty connection factory on the plain port too.
async fn tls(ensemble: &mut Ensemble, dir: &Path, settings: &Settings, result: &mut SystemResult) -> Result<()> {
    let certs = crate::ensemble::BenchTls::create(&dir.join("tls"))?;
    let options = certs.client_options()?;
    ensemble.stop_all(Duration::from_secs(30)).await;
    ensemble.enable_tls(certs)?;
    ensemble.start(Duration::from_secs(240)).await.context("the ensemble did not come back with TLS")?;
    let clients = workloads::connect_spread(ensemble, settings.sessions, Some(&options)).await?;
    let _ = workloads::closed_loop(&clients, settings.depth, Op::Get, Duration::ZERO, settings.warmup).await;
    for (key, label, op) in TLS_THROUGHPUT {
        throughput(ensemble, &clients, settings, (key, label, *op), result).await;
    }
    Ok(())
}

async fn memory(ensemble: &Ensemble, result: &mut SystemResult) -> Result<()> {
    let leader = ensemble.leader().await?;
    let target = ensemble
        .srvr(leader)
        .await
        .ok()
        .as_deref()
        .and_then(crate::ensemble::srvr_node_count)
        .ok_or_else(|| anyhow!("the leader reports no node count"))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let counts = ensemble.node_counts().await;
        if counts.iter().all(|c| c.is_some_and(|c| c >= target)) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(anyhow!("not every node reached {target} znodes within 180 s: {counts:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = ensemble.rss()?;
    let max = rss.iter().copied().max().unwrap_or(0);
    result.values.insert("mem.rss.max", mib(max));
    result.values.insert("mem.rss.total", mib(rss.iter().sum()));
    result.values.insert("disk", mib(ensemble.data_bytes()));
    result.notes.push(format!(
        "RSS per server with {target} znodes (MiB): {}",
        rss.iter().map(|b| format!("{:.0}", mib(*b))).collect::<Vec<_>>().join(", ")
    ));
    if ensemble.kind == Kind::ZooKeeper {
        // The JVM's own view: the heap in use after a full GC is ZooKeeper's live data; RSS is what
        // the heap sizing (-Xms/-Xmx, G1's growth) made resident.
        let mut live = Vec::new();
        for node in &ensemble.nodes {
            let Some(pid) = node.pid() else { continue };
            let pid = pid.to_string();
            let info = match run_capture("jcmd", &[&pid, "GC.run"], Duration::from_secs(60)).await {
                Ok(_) => run_capture("jcmd", &[&pid, "GC.heap_info"], Duration::from_secs(30)).await,
                Err(e) => Err(e),
            };
            match info {
                Ok(info) => live.extend(heap_used_kib(&info).map(|used| used as f64 / 1024.0)),
                Err(e) => result.notes.push(format!("no heap figure for node {}: {e:#}", node.id)),
            }
        }
        if let Some(max) = live.iter().copied().reduce(f64::max) {
            result.values.insert("mem.zk_live_heap", max);
            result.notes.push(format!(
                "ZooKeeper heap in use after a full GC (jcmd GC.run; GC.heap_info), per server (MiB): {}",
                live.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Ok(rss) = ensemble.rss() {
            result.notes.push(format!(
                "ZooKeeper RSS per server after that full GC (MiB): {}",
                rss.iter().map(|b| format!("{:.0}", mib(*b))).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

/// `used NNNK` of `jcmd PID GC.heap_info`'s heap line.
fn heap_used_kib(info: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.contains("heap") && l.contains("used"))?;
    let after = line.split("used").nth(1)?.trim();
    after.trim_end_matches(|c: char| !c.is_ascii_digit()).split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

async fn latency(ensemble: &Ensemble, settings: &Settings, result: &mut SystemResult) -> Result<()> {
    let leader = ensemble.leader().await?;
    let follower = (0..ensemble.nodes.len()).find(|&i| i != leader).ok_or_else(|| anyhow!("no follower"))?;
    let (node, role) = if settings.latency_on_leader { (leader, "the leader") } else { (follower, "a follower") };
    let client = workloads::connect(&ensemble.connect_string(&[node])).await?;
    let clients = [client];
    for (op, name) in [(Op::Get, "get"), (Op::Set(128), "set")] {
        let t = workloads::closed_loop(&clients, 1, op, Duration::from_secs(1), settings.latency).await?;
        if t.errors > 0 {
            result.failures.push(format!("latency {name}: {} errors, first: {:?}", t.errors, t.first_error));
        }
        let samples: &Samples = &t.latency;
        for (p, suffix) in [(50.0, "p50"), (99.0, "p99"), (99.9, "p999")] {
            if let Some(v) = samples.percentile_ms(p) {
                let key: &'static str = match (name, suffix) {
                    ("get", "p50") => "lat.get.p50",
                    ("get", "p99") => "lat.get.p99",
                    ("get", _) => "lat.get.p999",
                    (_, "p50") => "lat.set.p50",
                    (_, "p99") => "lat.set.p99",
                    _ => "lat.set.p999",
                };
                result.values.insert(key, v);
            }
        }
        result.notes.push(format!("single-session {name}: {} samples through {role}", samples.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jcmd_heap_info() {
        let info = "12345:\n garbage-first heap   total 1048576K, used 412345K [0x0000000700000000, 0x0000000800000000)\n  region size 1024K";
        assert_eq!(heap_used_kib(info), Some(412345));
    }
}
