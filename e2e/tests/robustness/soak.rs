//! The soak (`make soak DURATION=30m`): one cluster of three servers and the workload for as
//! long as asked, every fault of [`Fault::ALL`] in turn, one round each. Each round has its own
//! registers and history, judged at its end (so porcupine's search stays bounded however long
//! the soak runs); the first anomaly fails the soak. A markdown table of the rounds goes to
//! `PADDOCK_SOAK_REPORT` (docs/reliability.md holds the last 30-minute run);
//! `PADDOCK_SOAK_FAULTS=isolated-leader,kill` runs only those faults.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::faults::{healed, Fault, PROGRESS};
use crate::harness::{start_cluster, WAIT};
use crate::scenarios::{CLIENTS, KEYS};
use crate::traffic::Traffic;
use crate::verdict::{judge, Allow};

/// zookeeper-client's own account of a round's connections (its debug log), kept in memory and
/// written next to the node logs when the round fails: which server a client tried, and why it
/// gave up on its session (a server said expired, or it could not reconnect in time).
#[derive(Clone, Default)]
struct ClientLog(Arc<Mutex<Vec<u8>>>);

impl ClientLog {
    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::io::Write for ClientLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lines().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ClientLog {
    type Writer = ClientLog;

    fn make_writer(&'a self) -> ClientLog {
        self.clone()
    }
}

/// `30m`, `90s`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by `make soak`"]
async fn soak() {
    let asked = std::env::var("PADDOCK_SOAK_DURATION").unwrap_or_else(|_| "30m".into());
    let duration =
        parse_duration(&asked).unwrap_or_else(|| panic!("PADDOCK_SOAK_DURATION={asked:?}: say 30m, 90s or 1h"));
    // PADDOCK_SOAK_FAULTS=kill,lossy runs only those (names as in the report).
    let faults: Vec<Fault> = match std::env::var("PADDOCK_SOAK_FAULTS") {
        Ok(names) => names
            .split(',')
            .map(|name| {
                Fault::ALL.into_iter().find(|f| f.name() == name.trim()).unwrap_or_else(|| panic!("no fault {name:?}"))
            })
            .collect(),
        Err(_) => Fault::ALL.to_vec(),
    };
    let clients = ClientLog::default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("zookeeper_client=debug"))
        .with_writer(clients.clone())
        .with_ansi(false)
        .try_init();
    let mut cluster = start_cluster(3, &Fault::SNAPSHOT_FLAGS).await;
    let began = Instant::now();
    let mut table =
        String::from("| round | fault | operations | unknown outcome | anomalies |\n|---|---|---|---|---|\n");
    let (mut rounds, mut total_ops) = (0usize, 0usize);
    while began.elapsed() < duration {
        let fault = faults[rounds % faults.len()];
        clients.lines().clear();
        let traffic = Traffic::start(&cluster, CLIENTS, KEYS, &format!("s{rounds}")).await;
        traffic.wait_progress(PROGRESS, WAIT).await;
        fault.run(&mut cluster, &traffic).await;
        healed(&cluster, &traffic).await;
        let record = traffic.finish().await;
        let name = format!("soak-{rounds}-{}", fault.name());
        let verdict = judge(&name, &record, Allow::default());
        let _ = writeln!(
            table,
            "| {rounds} | {} | {} | {} | {} |",
            fault.name(),
            verdict.ops,
            verdict.unknown,
            verdict.problems.len()
        );
        if let Ok(path) = std::env::var("PADDOCK_SOAK_REPORT") {
            let _ = std::fs::write(&path, &table);
        }
        if !verdict.problems.is_empty() {
            let path = cluster.dir().join(format!("clients-{name}.log"));
            let _ = std::fs::write(&path, clients.lines().as_slice());
            eprintln!("the clients' log of the round is in {}", path.display());
        }
        verdict.assert_clean(&name);
        total_ops += verdict.ops;
        rounds += 1;
    }
    let summary = format!(
        "{rounds} rounds, {total_ops} operations in {:.0} minutes, no anomaly\n",
        began.elapsed().as_secs_f64() / 60.0
    );
    eprintln!("{table}\n{summary}");
    if let Ok(path) = std::env::var("PADDOCK_SOAK_REPORT") {
        let _ = std::fs::write(&path, format!("{table}\n{summary}"));
    }
}

#[test]
fn durations_read_as_make_soak_takes_them() {
    assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
    assert_eq!(parse_duration("5d"), None);
    assert_eq!(parse_duration("m"), None);
}
