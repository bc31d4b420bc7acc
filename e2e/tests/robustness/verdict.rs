//! Judges a recorded history with every checker that applies to it.

use std::collections::BTreeMap;

use paddock_e2e::check;

use crate::traffic::Record;

/// What a history may show without being wrong.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allow {
    /// Sessions may expire (a client was cut off from every server for longer than its
    /// timeout).
    pub expiry: bool,
}

/// What the checkers found.
#[derive(Debug)]
pub struct Verdict {
    /// Operations in the history.
    pub ops: usize,
    /// Of them, with an unknown outcome.
    pub unknown: usize,
    /// Every violation, as sentences.
    pub problems: Vec<String>,
}

/// Runs the checkers over `record` of the registers `keys` (each starting as an empty znode);
/// `name` names the porcupine visualisation's directory.
pub fn judge(name: &str, keys: &[String], record: &Record, allow: Allow) -> Verdict {
    let mut problems = Vec::new();
    let initial: BTreeMap<String, String> = keys.iter().map(|k| (k.clone(), String::new())).collect();
    // Written only for a register found not linearizable, and kept past the test for a look.
    let viz = std::env::temp_dir().join(format!("paddock-robustness-{name}"));
    match check::linearizable::check_linearizable(&record.ops, &initial, &viz) {
        Ok(summary) if summary.undecided.is_empty() => {}
        Ok(summary) => problems.push(format!("linearizability undecided in time for {:?}", summary.undecided)),
        Err(found) => problems.extend(found.into_iter().map(|p| format!("linearizability: {p}"))),
    }
    if let Err(found) = check::fifo::check_fifo(&record.ops) {
        problems.extend(found.into_iter().map(|p| format!("session order: {p}")));
    }
    if !allow.expiry && !record.expired.is_empty() {
        problems.push(format!("sessions expired that should have lived: {:x?}", record.expired));
    }
    let unknown = record.ops.iter().filter(|op| op.completed.is_none()).count();
    Verdict { ops: record.ops.len(), unknown, problems }
}

impl Verdict {
    /// Fails the test with every finding.
    pub fn assert_clean(&self, name: &str) {
        eprintln!("{name}: {} operations, {} with unknown outcome", self.ops, self.unknown);
        assert!(self.problems.is_empty(), "{name}: {} problems:\n{}", self.problems.len(), self.problems.join("\n"));
    }
}
