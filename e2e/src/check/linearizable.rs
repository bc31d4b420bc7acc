//! Linearizability of every register, decided by porcupine (e2e/porcupine/main.go, a Go tool
//! built by scripts/porcupine.sh), the checker etcd's robustness suite uses. Each key is checked
//! on its own (linearizability is compositional) against a register with versions: reads see
//! the latest value and version, an acknowledged write produced the version it was acknowledged
//! with, a conditional write applies iff the version is the expected one, and a write of unknown
//! outcome may take effect at any point after it was sent, or never. Failed ops are left out.
//!
//! What it cannot see: ops the workload did not record, and zxids (the order of writes across
//! keys is [`super::fifo`]'s business). Its search is NP-hard; a key porcupine could not decide
//! within the time budget is reported in [`Summary::undecided`], neither passed nor failed.
//!
//! The tool is found through `PADDOCK_PORCUPINE` (set by `make rust-test`); without it,
//! scripts/porcupine.sh is run once per process to build or find it.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::history::{Call, Op, Outcome};

/// How long porcupine may search, for all keys together.
pub const SEARCH_BUDGET: Duration = Duration::from_secs(60);

/// How much longer than the search budget the tool may take to start, read the history and
/// write visualisations before it is killed.
const SLACK: Duration = Duration::from_secs(60);

/// What [`check_linearizable`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Keys checked.
    pub keys: usize,
    /// Ops porcupine linearized (failed ops and reads of unknown outcome left out).
    pub ops: usize,
    /// Keys porcupine could not decide within the budget: not shown illegal, not proven legal.
    pub undecided: Vec<String>,
}

/// Checks that every register of `history` is linearizable. `initial` holds each register's
/// value at version 0 (a key not in it starts empty). For each key that is not, porcupine's
/// HTML visualisation is written into `viz_dir` and named in the problem.
pub fn check_linearizable(
    history: &[Op],
    initial: &BTreeMap<String, String>,
    viz_dir: &Path,
) -> Result<Summary, Vec<String>> {
    check_within(history, initial, viz_dir, SEARCH_BUDGET)
}

fn check_within(
    history: &[Op],
    initial: &BTreeMap<String, String>,
    viz_dir: &Path,
    budget: Duration,
) -> Result<Summary, Vec<String>> {
    let input = tool_input(history, initial).map_err(|problem| vec![problem])?;
    let tool = tool_path().map_err(|problem| vec![problem])?;
    let stdout = run_tool(&tool, &input, viz_dir, budget).map_err(|problem| vec![problem])?;
    let verdicts = parse_verdicts(&stdout).map_err(|problem| vec![problem])?;
    judge(history, &verdicts)
}

/// One op as the tool reads it.
#[derive(Debug, Serialize)]
struct ToolOp<'a> {
    id: usize,
    client: u32,
    session: i64,
    key: &'a str,
    kind: &'static str,
    value: &'a str,
    expect: Option<i32>,
    call: i64,
    #[serde(rename = "return")]
    returned: Option<i64>,
    outcome: &'static str,
    read_value: &'a str,
    version: i32,
}

#[derive(Debug, Serialize)]
struct ToolInput<'a> {
    initial: &'a BTreeMap<String, String>,
    ops: Vec<ToolOp<'a>>,
}

/// The tool's verdict on one key.
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct Verdict {
    key: String,
    result: String,
    ops: usize,
    #[serde(default)]
    visualization: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Verdicts {
    keys: Vec<Verdict>,
}

fn time(op: &Op, index: usize, t: u64) -> Result<i64, String> {
    i64::try_from(t).map_err(|_| format!("{}: time {t} ns is out of range", op.describe(index)))
}

fn tool_input(history: &[Op], initial: &BTreeMap<String, String>) -> Result<Vec<u8>, String> {
    // When each value was first seen by a read: an unknown write whose value a read returned
    // took effect before that read completed, which bounds its search (values are unique).
    let mut seen: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for op in history {
        if let (Outcome::Read { value: Some(value), .. }, Some(done)) = (&op.outcome, op.completed) {
            let first = seen.entry((op.call.key(), value.as_str())).or_insert(done);
            *first = (*first).min(done);
        }
    }
    let mut ops = Vec::with_capacity(history.len());
    for (id, op) in history.iter().enumerate() {
        let (kind, value, expect) = match &op.call {
            Call::Read { .. } => ("read", "", None),
            Call::Write { value, expect, .. } => ("write", value.as_str(), *expect),
        };
        let (outcome, read_value, version) = match &op.outcome {
            Outcome::Read { value, version, .. } => ("read", value.as_deref().unwrap_or(""), *version),
            Outcome::Written { version, .. } => ("written", "", *version),
            Outcome::BadVersion => ("bad_version", "", 0),
            Outcome::Failed(_) => ("failed", "", 0),
            Outcome::Unknown => ("unknown", "", 0),
        };
        let definite = !matches!(op.outcome, Outcome::Unknown | Outcome::Failed(_));
        let returned = match op.completed {
            Some(t) => Some(time(op, id, t)?),
            None if definite => return Err(format!("{} has an answer but no completion time", op.describe(id))),
            None => match &op.call {
                Call::Write { key, value, .. } => {
                    seen.get(&(key.as_str(), value.as_str())).map(|t| time(op, id, *t)).transpose()?
                }
                Call::Read { .. } => None,
            },
        };
        ops.push(ToolOp {
            id,
            client: op.client,
            session: op.session,
            key: op.call.key(),
            kind,
            value,
            expect,
            call: time(op, id, op.invoked)?,
            returned,
            outcome,
            read_value,
            version,
        });
    }
    serde_json::to_vec(&ToolInput { initial, ops }).map_err(|e| format!("failed to encode the history: {e}"))
}

/// The porcupine tool: `PADDOCK_PORCUPINE`, or what scripts/porcupine.sh builds (once per
/// process: the tests of this module would otherwise all build it at once).
fn tool_path() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| paddock_testkit::tool_from_script("PADDOCK_PORCUPINE", "porcupine.sh")).clone()
}

/// Runs the tool on `input` and returns what it printed, killing it if it takes longer than
/// the budget and [`SLACK`].
fn run_tool(tool: &Path, input: &[u8], viz_dir: &Path, budget: Duration) -> Result<Vec<u8>, String> {
    let mut child = Command::new(tool)
        .arg("-viz")
        .arg(viz_dir)
        .arg("-timeout")
        .arg(format!("{}ms", budget.as_millis()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("failed to start the porcupine checker {}: {e}", tool.display()))?;
    // Pipes are fed and drained on their own threads, so a large history or verdict cannot
    // block the tool while this thread watches the clock.
    let stdin = child.stdin.take().map(|mut pipe| {
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input))
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + budget + SLACK;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the porcupine checker {} took longer than {:?} and was killed",
                    tool.display(),
                    budget + SLACK
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("failed to wait for the porcupine checker: {e}")),
        }
    };
    let written = stdin.map(|t| t.join());
    let stdout = stdout.join().map_err(|_| "the porcupine checker's stdout reader panicked".to_owned())?;
    let stderr = stderr.join().map_err(|_| "the porcupine checker's stderr reader panicked".to_owned())?;
    let stderr = String::from_utf8_lossy(&stderr.unwrap_or_default()).trim().to_owned();
    if !status.success() {
        return Err(format!("the porcupine checker failed ({status}): {stderr}"));
    }
    match written {
        Some(Ok(Err(e))) => return Err(format!("failed to send the history to the porcupine checker: {e}")),
        Some(Err(_)) => return Err("the porcupine checker's stdin writer panicked".to_owned()),
        Some(Ok(Ok(()))) | None => {}
    }
    stdout.map_err(|e| format!("failed to read the porcupine checker's answer: {e}"))
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_end(&mut out)?;
        }
        Ok(out)
    })
}

fn parse_verdicts(stdout: &[u8]) -> Result<Vec<Verdict>, String> {
    let verdicts: Verdicts = serde_json::from_slice(stdout).map_err(|e| {
        format!("the porcupine checker's answer is not the expected JSON ({e}): {:?}", String::from_utf8_lossy(stdout))
    })?;
    Ok(verdicts.keys)
}

fn judge(history: &[Op], verdicts: &[Verdict]) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    let mut summary = Summary::default();
    for verdict in verdicts {
        summary.keys += 1;
        summary.ops += verdict.ops;
        match verdict.result.as_str() {
            "ok" => {}
            "unknown" => summary.undecided.push(verdict.key.clone()),
            "illegal" => problems.push(match &verdict.visualization {
                Some(path) => format!(
                    "register {} is not linearizable ({} ops); porcupine's visualisation: {path}",
                    verdict.key, verdict.ops
                ),
                None => format!("register {} is not linearizable ({} ops)", verdict.key, verdict.ops),
            }),
            other => {
                problems.push(format!("the porcupine checker gave {:?} an unknown verdict {other:?}", verdict.key))
            }
        }
    }
    let mut keys: Vec<&str> = history.iter().map(|op| op.call.key()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        if !verdicts.iter().any(|v| v.key == key) {
            problems.push(format!("the porcupine checker gave no verdict on register {key}"));
        }
    }
    super::verdict(summary, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/r/0";

    fn write(client: u32, value: &str, expect: Option<i32>, at: (u64, Option<u64>), outcome: Outcome) -> Op {
        Op {
            client,
            session: i64::from(client) + 0x100,
            call: Call::Write { key: KEY.to_owned(), value: value.to_owned(), expect, seq: at.0 },
            invoked: at.0,
            completed: at.1,
            outcome,
        }
    }

    fn written(version: i32) -> Outcome {
        Outcome::Written { version, mzxid: i64::from(version) }
    }

    fn read(client: u32, at: (u64, u64), value: &str, version: i32) -> Op {
        Op {
            client,
            session: i64::from(client) + 0x100,
            call: Call::Read { key: KEY.to_owned() },
            invoked: at.0,
            completed: Some(at.1),
            outcome: Outcome::Read { value: Some(value.to_owned()).filter(|v| !v.is_empty()), version, mzxid: 0 },
        }
    }

    fn check(history: &[Op]) -> (Result<Summary, Vec<String>>, tempfile::TempDir) {
        let viz = tempfile::tempdir().expect("temp dir");
        let initial = BTreeMap::from([(KEY.to_owned(), String::new())]);
        (check_linearizable(history, &initial, viz.path()), viz)
    }

    fn assert_illegal(history: &[Op], what: &str) {
        let (result, _viz) = check(history);
        let problems = result.expect_err(what);
        assert!(problems[0].contains("not linearizable"), "{what}: {problems:?}");
        let path = problems[0].rsplit(": ").next().expect("a path");
        let html = std::fs::read_to_string(path).expect("the visualisation was written");
        assert!(html.contains("<html"), "{what}: not HTML");
    }

    #[test]
    fn linearizable_histories_pass() {
        let history = vec![
            // Two concurrent writes, acknowledged in either order of their versions.
            write(0, "a", None, (0, Some(20)), written(2)),
            write(1, "b", None, (5, Some(15)), written(1)),
            read(2, (10, 30), "a", 2),
            // A conditional write that applied and one that lost the race.
            write(0, "c", Some(2), (40, Some(50)), written(3)),
            write(1, "d", Some(2), (45, Some(55)), Outcome::BadVersion),
            // A write whose outcome is unknown, seen later, and one never seen.
            write(2, "e", None, (60, None), Outcome::Unknown),
            read(0, (70, 80), "c", 3),
            read(0, (90, 95), "e", 4),
            write(1, "f", Some(9), (100, None), Outcome::Unknown),
            // A failed write constrains nothing.
            write(1, "g", None, (110, Some(120)), Outcome::Failed("no auth".to_owned())),
            read(2, (130, 140), "e", 4),
        ];
        let (result, _viz) = check(&history);
        let summary = result.expect("linearizable");
        assert_eq!(summary, Summary { keys: 1, ops: 10, undecided: vec![] });
    }

    #[test]
    fn a_stale_read_fails() {
        let history = vec![write(0, "a", None, (0, Some(10)), written(1)), read(1, (20, 30), "", 0)];
        assert_illegal(&history, "stale read");
    }

    #[test]
    fn a_lost_acknowledged_write_fails() {
        // "b" landed at version 1, on top of the initial value: the acknowledged "a" is gone.
        let history = vec![
            write(0, "a", None, (0, Some(10)), written(1)),
            write(1, "b", None, (20, None), Outcome::Unknown),
            read(2, (40, 50), "b", 1),
        ];
        assert_illegal(&history, "lost acknowledged write");
    }

    #[test]
    fn a_version_acknowledged_twice_fails() {
        let history =
            vec![write(0, "a", None, (0, Some(10)), written(1)), write(1, "b", None, (0, Some(10)), written(1))];
        assert_illegal(&history, "two writes acknowledged at version 1");
    }

    #[test]
    fn an_undecided_key_is_neither_passed_nor_failed() {
        let viz = tempfile::tempdir().expect("temp dir");
        let history = vec![read(0, (0, 1), "", 0)];
        let summary = check_within(&history, &BTreeMap::new(), viz.path(), Duration::ZERO).expect("undecided");
        assert_eq!(summary.undecided, vec![KEY.to_owned()]);
    }

    #[test]
    fn bad_answers_are_errors_not_panics() {
        assert!(parse_verdicts(b"{\"keys\": [").is_err());
        assert!(parse_verdicts(b"not json").is_err());
        let verdicts = parse_verdicts(br#"{"keys":[{"key":"/x","result":"maybe","ops":1}]}"#).expect("well formed");
        let problems = judge(&[read(0, (0, 1), "", 0)], &verdicts).expect_err("unknown verdict, missing key");
        assert_eq!(problems.len(), 2, "{problems:?}");
        let unanswered = Op { completed: None, ..read(0, (0, 1), "", 0) };
        assert!(tool_input(&[unanswered], &BTreeMap::new()).is_err(), "an answer without a completion time");
    }
}
