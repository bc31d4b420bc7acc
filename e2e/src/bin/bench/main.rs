//! `paddock-bench`: Paddock and Apache ZooKeeper side by side on one machine.
//!
//! Starts a three-node Apache ZooKeeper ensemble, runs every workload against it through the
//! ZooKeeper protocol, stops it; then the same with a three-node Paddock cluster (one system at a
//! time, same load generator, same run). Prints the comparison table and, with `--out`, writes
//! it into docs/benchmarks.md. Every process it starts is killed when it ends, also on error or
//! Ctrl-C; all traffic stays on 127.0.0.1.

mod contention;
mod ensemble;
mod proc;
mod report;
mod sidecar;
mod stats;
mod suite;
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::ensemble::{Kind, Launch};
use crate::suite::SuiteInput;
use crate::workloads::Settings;

#[derive(Debug, Parser)]
#[command(name = "paddock-bench", about = "Paddock and Apache ZooKeeper side by side (3 nodes each, loopback)")]
struct Args {
    /// The release `paddock-server` binary.
    #[arg(long)]
    paddock_server: PathBuf,
    /// The release `paddock-sidecar` binary (the sidecar figures are skipped without it).
    #[arg(long)]
    paddock_sidecar: Option<PathBuf>,
    /// The `java` executable for ZooKeeper.
    #[arg(long, default_value = "java")]
    java: String,
    /// ZooKeeper's class path (Debian's package).
    #[arg(long, default_value = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar")]
    zk_classpath: String,
    /// JVM flags of every ZooKeeper node, space-separated.
    #[arg(long, default_value = "-Xms1g -Xmx4g -XX:+UseG1GC")]
    jvm_flags: String,
    /// Which systems to run, comma-separated: zookeeper,paddock.
    #[arg(long, default_value = "zookeeper,paddock")]
    systems: String,
    /// Where the servers' data dirs go (a fresh subdirectory is made and removed at the end).
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Keep the data dirs and logs.
    #[arg(long)]
    keep: bool,
    /// Sessions of the throughput workloads (spread evenly over the 3 servers).
    #[arg(long, default_value_t = 24)]
    sessions: usize,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 16)]
    depth: usize,
    /// Warm-up seconds before each throughput workload.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Measured seconds of each throughput workload.
    #[arg(long, default_value_t = 10)]
    measure_secs: u64,
    /// Measured seconds of each single-session latency workload.
    #[arg(long, default_value_t = 8)]
    latency_secs: u64,
    /// Watchers of the fan-out workload.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Rounds of the fan-out workload.
    #[arg(long, default_value_t = 5)]
    watch_rounds: usize,
    /// Znodes of the memory / restart data set.
    #[arg(long, default_value_t = 1_000_000)]
    znodes: u64,
    /// Creates per multi while loading the data set.
    #[arg(long, default_value_t = 100)]
    load_batch: u64,
    /// Leader kills.
    #[arg(long, default_value_t = 3)]
    failover_trials: usize,
    /// Measure single-session latency through the leader rather than a follower.
    #[arg(long)]
    latency_on_leader: bool,
    /// Run only these phases, comma-separated (for profiling one row): load, memory, restart,
    /// throughput (or one of set1k, set128, get, mixed, createseq, ephemeral), latency, watch,
    /// failover, sidecar, tls (set and get over TLS, after a restart with TLS ports). Memory and
    /// restart need load.
    #[arg(long)]
    phases: Option<String>,
    /// Write the results into this markdown file (between its paddock-bench markers).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A fresh directory removed on drop (unless kept).
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("data dirs and logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn systems(list: &str) -> Result<Vec<Kind>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| match s.trim().to_ascii_lowercase().as_str() {
            "zookeeper" | "zk" => Ok(Kind::ZooKeeper),
            "paddock" => Ok(Kind::Paddock),
            other => bail!("unknown system {other:?} (zookeeper, paddock)"),
        })
        .collect()
}

fn phases(list: &str) -> Result<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if suite::PHASES.contains(&p) {
                Ok(p.to_owned())
            } else {
                bail!("unknown phase {p:?}; phases: {}", suite::PHASES.join(", "))
            }
        })
        .collect()
}

async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let kinds = systems(&args.systems)?;
    if !args.paddock_server.is_file() && kinds.contains(&Kind::Paddock) {
        bail!("{} is not a file: build it first (make bench does)", args.paddock_server.display());
    }
    let work = WorkDir { path: args.work_dir.join(format!("paddock-bench-{}", std::process::id())), keep: args.keep };
    std::fs::create_dir_all(&work.path).with_context(|| format!("cannot create {}", work.path.display()))?;
    let settings = Settings {
        sessions: args.sessions.max(1),
        depth: args.depth.max(1),
        warmup: Duration::from_secs(args.warmup_secs),
        measure: Duration::from_secs(args.measure_secs.max(1)),
        latency: Duration::from_secs(args.latency_secs.max(1)),
        watchers: args.watchers.max(1),
        watch_rounds: args.watch_rounds.max(1),
        znodes: args.znodes.max(1),
        load_batch: args.load_batch.clamp(1, 1000),
        failover_trials: args.failover_trials,
        latency_on_leader: args.latency_on_leader,
        phases: match &args.phases {
            None => None,
            Some(list) => Some(phases(list)?),
        },
    };
    let launch = Launch {
        java: args.java.clone(),
        jvm_flags: args.jvm_flags.split_whitespace().map(str::to_owned).collect(),
        zk_classpath: args.zk_classpath.clone(),
        paddock_server: args.paddock_server.clone(),
    };
    let load: f64 = report::loadavg().split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(0.0);
    if load > 0.5 {
        eprintln!(
            "warning: the 1-minute load average is {load} before the run: other work on this machine skews results"
        );
    }
    let machine = report::machine(&work.path, &args.java).await;

    let contention = contention::Contention::start();
    let mut results = Vec::new();
    for kind in kinds {
        let dir = work.path.join(kind.name().to_lowercase());
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let input = SuiteInput {
            launch: launch.clone(),
            sidecar_bin: args.paddock_sidecar.clone(),
            dir: &dir,
            settings: &settings,
        };
        let _ = contention.take();
        let mut result = suite::run_system(kind, input).await.with_context(|| format!("{} run failed", kind.name()))?;
        result.other_cpu = contention.take();
        if result.other_cpu.0 > 0.1 {
            eprintln!(
                "warning: other processes used {:.2} CPU cores on average (up to {:.2}) during the {} run",
                result.other_cpu.0,
                result.other_cpu.1,
                kind.name()
            );
        }
        results.push(result);
    }

    let command: Vec<String> = std::env::args().collect();
    let date = proc::run_capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"], Duration::from_secs(5))
        .await
        .map(|d| d.trim().to_owned())
        .unwrap_or_default();
    let settings_lines = vec![
        format!(
            "throughput: {} sessions (spread evenly over the 3 servers) × {} requests in flight each, \
             {} s warm-up + {} s measured per workload; keys: 1024 znodes of 128 B",
            settings.sessions,
            settings.depth,
            settings.warmup.as_secs(),
            settings.measure.as_secs()
        ),
        format!(
            "single-session latency: one session on {}, one request outstanding, {} s per op",
            if settings.latency_on_leader { "the leader" } else { "a follower" },
            settings.latency.as_secs()
        ),
        format!(
            "watch fan-out: {} sessions spread over the 3 servers, one getData watch each, {} rounds",
            settings.watchers, settings.watch_rounds
        ),
        format!(
            "data set: {} znodes of 128 B (1000 per parent), loaded with multis of {} creates, 48 in flight",
            settings.znodes, settings.load_batch
        ),
        format!(
            "failover: {} trials; 8 sessions on the two followers each issue a setData every 5 ms without waiting",
            settings.failover_trials
        ),
    ];
    let report = report::Report {
        results: &results,
        machine: &machine,
        command: command.join(" "),
        jvm_flags: args.jvm_flags.clone(),
        settings: settings_lines,
        date,
        elapsed: started.elapsed(),
        znodes: settings.znodes,
        watchers: settings.watchers,
    };
    let section = report::render(&report);
    println!("{}", report::table(&results, settings.znodes, settings.watchers));
    for r in &results {
        for f in &r.failures {
            println!("{} FAILED: {f}", r.kind.name());
        }
    }
    if let Some(out) = &args.out {
        report::write(out, &section)?;
        println!("written to {}", out.display());
    } else {
        println!("{section}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    paddock_tls::install_default_provider();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    // Dropping the run on a signal kills every child process (their handles kill on drop).
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = terminate.recv() => bail!("terminated"),
    }
}
