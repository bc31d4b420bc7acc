//! Judges a recorded history with every checker that applies to it.

use std::collections::BTreeMap;

use paddock_e2e::check;

use crate::traffic::Record;

/// What a history may show without being wrong.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allow {
    /// Sessions may expire (a client was cut off from every server for longer than its
    /// timeout); only not before their time ([`check::sessions`]).
    pub expiry: bool,
}

/// What the checkers found.
#[derive(Debug)]
pub struct Verdict {
    /// Operations in the history: register ops (a multi's or multi-read's parts one each) and
    /// sequential creates.
    pub ops: usize,
    /// Of them, with an unknown outcome.
    pub unknown: usize,
    /// What the checkers that passed checked, one line each.
    pub checked: Vec<String>,
    /// Every violation, as sentences.
    pub problems: Vec<String>,
}

/// Runs the checkers over `record` (its registers each starting as an empty znode); `name`
/// names the porcupine visualisation's directory.
pub fn judge(name: &str, record: &Record, allow: Allow) -> Verdict {
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    let initial: BTreeMap<String, String> = record.keys.iter().map(|k| (k.clone(), String::new())).collect();
    // Written only for a register found not linearizable, and kept past the test for a look.
    let viz = std::env::temp_dir().join(format!("paddock-robustness-{name}"));
    match check::linearizable::check_linearizable(&record.ops, &initial, &viz) {
        Ok(summary) if summary.undecided.is_empty() => {
            checked.push(format!("linearizable: {} registers, {} ops", summary.keys, summary.ops))
        }
        Ok(summary) => problems.push(format!("linearizability undecided in time for {:?}", summary.undecided)),
        Err(found) => problems.extend(found.into_iter().map(|p| format!("linearizability: {p}"))),
    }
    let mut run = |what: &str, result: Result<String, Vec<String>>| match result {
        Ok(summary) => checked.push(format!("{what}: {summary}")),
        Err(found) => problems.extend(found.into_iter().map(|p| format!("{what}: {p}"))),
    };
    run("session order", check::fifo::check_fifo(&record.ops).map(|s| format!("{s:?}")));
    run("multi", check::multi::check_multi(&record.ops, &record.snapshots, &record.groups).map(|s| format!("{s:?}")));
    run("sequential", check::sequential::check_sequential(&record.seq, &record.seq_listings).map(|s| format!("{s:?}")));
    run(
        "ephemerals",
        check::ephemerals::check_ephemerals(&record.ephemerals, &record.facts, &record.listings)
            .map(|s| format!("{s:?}")),
    );
    let alive = record.streams.iter().filter(|s| s.alive_at_end).count();
    let complete = record.changes.iter().filter(|p| p.complete).count();
    let changes: usize = record.changes.iter().map(|p| p.changes.len()).sum();
    run(
        "watches",
        check::watches::check_watches(&record.streams, &record.changes).map(|s| {
            format!(
                "{s:?}; {alive} of {} streams alive to the end; {changes} known changes of {} paths, {complete} \
                 complete",
                record.streams.len(),
                record.changes.len()
            )
        }),
    );
    run(
        "persistent watches",
        check::persistent::check_persistent(&record.persistent_streams, &record.changes).map(|s| format!("{s:?}")),
    );
    run("session liveness", check::sessions::check_sessions(&record.lives).map(|s| format!("{s:?}")));
    if !allow.expiry && !record.expired.is_empty() {
        problems.push(format!("sessions expired that should have lived: {:x?}", record.expired));
    }
    if !problems.is_empty() {
        // The whole record beside the visualisations, for a look at what the checkers saw.
        let _ = std::fs::create_dir_all(&viz);
        let path = viz.join("record.json");
        match serde_json::to_vec(record).map(|json| std::fs::write(&path, json)) {
            Ok(Ok(())) => problems.push(format!("the record is in {}", path.display())),
            _ => problems.push(format!("could not write the record to {}", path.display())),
        }
    }
    let unknown = record.ops.iter().filter(|op| op.completed.is_none()).count()
        + record.seq.iter().filter(|c| c.completed.is_none()).count();
    Verdict { ops: record.ops.len() + record.seq.len(), unknown, checked, problems }
}

impl Verdict {
    /// Fails the test with every finding.
    pub fn assert_clean(&self, name: &str) {
        eprintln!("{name}: {} operations, {} with unknown outcome", self.ops, self.unknown);
        for line in &self.checked {
            eprintln!("{name}: {line}");
        }
        assert!(self.problems.is_empty(), "{name}: {} problems:\n{}", self.problems.len(), self.problems.join("\n"));
    }
}
