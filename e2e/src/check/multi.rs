//! Atomicity of multi: a multi's ops take effect together, in one txn, or not at all. The
//! workload records a multi of setData ops in the register history ([`super::history`]) as one
//! write per op, all of the same session and `seq` (so [`super::linearizable`] checks each
//! register with its part, and [`super::fifo`] orders the multi as one write). It writes the
//! registers of a *group* only together, each the same value, so the group's registers move in
//! lockstep; and it reads a group with one multi-read (getData of each in one request: one
//! state). The rules:
//!
//! - **torn multi**: the parts of one multi were applied at different zxids (learnt from the
//!   acknowledgement and from reads of the values, which are unique per write);
//! - **torn read**: one multi-read of a group saw its registers at different values, versions
//!   or zxids: part of a multi without the rest;
//! - **skewed multi**: an acknowledged multi on a group left its registers at different
//!   versions;
//! - **written alone**: a register of a group was written outside a multi over the whole group
//!   (then lockstep is not the workload's promise, and the rules above would lie).
//!
//! What it cannot see: a multi of unknown outcome whose values nobody read (it may have been
//! applied whole, or not at all), and atomicity across groups.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::history::{Call, Op, Outcome};

/// One register as a multi-read saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRead {
    /// The register.
    pub key: String,
    /// Its value (`None`: empty).
    pub value: Option<String>,
    /// Its data version.
    pub version: i32,
    /// zxid of the txn that last set it.
    pub mzxid: i64,
}

/// One multi-read of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The session it was sent on.
    pub session: i64,
    /// When it was sent.
    pub invoked: u64,
    /// Each register of the group, in the order read.
    pub reads: Vec<SnapshotRead>,
}

/// What [`check_multi`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Multis in the history.
    pub multis: usize,
    /// Of them, acknowledged.
    pub acknowledged: usize,
    /// Multi-reads of groups checked.
    pub snapshots: usize,
}

/// Checks the multis of `history` and the `snapshots` of the `groups` (sets of registers
/// written only together).
pub fn check_multi(history: &[Op], snapshots: &[Snapshot], groups: &[Vec<String>]) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    let group_of: BTreeMap<&str, usize> =
        groups.iter().enumerate().flat_map(|(g, keys)| keys.iter().map(move |k| (k.as_str(), g))).collect();
    // Each request's writes: a multi has several, a plain setData one.
    let mut requests: BTreeMap<(i64, u64), Vec<usize>> = BTreeMap::new();
    let mut writes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Call::Write { key, value, seq, .. } = &op.call {
            requests.entry((op.session, *seq)).or_default().push(i);
            writes.insert((key, value), i);
        }
    }
    // The zxid each write was applied at, with the op that told.
    let mut zxids: BTreeMap<usize, Vec<(i64, usize)>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        match (&op.call, &op.outcome) {
            (Call::Write { .. }, Outcome::Written { mzxid, .. }) => zxids.entry(i).or_default().push((*mzxid, i)),
            (Call::Read { key }, Outcome::Read { value: Some(value), mzxid, .. }) => {
                if let Some(&w) = writes.get(&(key.as_str(), value.as_str())) {
                    zxids.entry(w).or_default().push((*mzxid, i));
                }
            }
            _ => {}
        }
    }
    let mut summary = Summary { snapshots: snapshots.len(), ..Summary::default() };
    for parts in requests.values() {
        let keys: BTreeSet<&str> = parts.iter().map(|&i| history[i].call.key()).collect();
        let groups_hit: BTreeSet<usize> = keys.iter().filter_map(|k| group_of.get(k).copied()).collect();
        for g in &groups_hit {
            let whole = groups[*g].iter().all(|k| keys.contains(k.as_str()));
            if !whole || parts.len() != keys.len() {
                problems.push(format!(
                    "written alone: {} writes {:?} of the group {:?}, not each once",
                    history[parts[0]].describe(parts[0]),
                    keys,
                    groups[*g]
                ));
            }
        }
        if parts.len() < 2 {
            continue;
        }
        summary.multis += 1;
        let first = parts[0];
        let known: Vec<(usize, i64, usize)> = parts
            .iter()
            .flat_map(|&p| zxids.get(&p).into_iter().flatten().map(move |&(z, from)| (p, z, from)))
            .collect();
        if let Some(&(p, z, from)) = known.first() {
            if let Some(&(q, y, other)) = known.iter().find(|(_, y, _)| *y != z) {
                problems.push(format!(
                    "torn multi: its part {} was applied at zxid 0x{z:x} (by {}), its part {} at zxid 0x{y:x} (by {})",
                    history[p].describe(p),
                    history[from].describe(from),
                    history[q].describe(q),
                    history[other].describe(other)
                ));
            }
        }
        if matches!(history[first].outcome, Outcome::Written { .. }) {
            summary.acknowledged += 1;
            let versions: BTreeSet<i32> = parts
                .iter()
                .filter(|&&p| group_of.contains_key(history[p].call.key()))
                .filter_map(|&p| match history[p].outcome {
                    Outcome::Written { version, .. } => Some(version),
                    _ => None,
                })
                .collect();
            if versions.len() > 1 {
                problems.push(format!(
                    "skewed multi: {} left its group at versions {versions:?}",
                    history[first].describe(first)
                ));
            }
        }
    }
    for (k, snapshot) in snapshots.iter().enumerate() {
        let Some(first) = snapshot.reads.first() else { continue };
        if let Some(other) =
            snapshot.reads.iter().find(|r| (&r.value, r.version, r.mzxid) != (&first.value, first.version, first.mzxid))
        {
            problems.push(format!(
                "torn read: multi-read #{k} (session 0x{:x}, sent at {} ns) saw {} at {:?} v{} (zxid 0x{:x}) but {} at \
                 {:?} v{} (zxid 0x{:x})",
                snapshot.session,
                snapshot.invoked,
                first.key,
                first.value,
                first.version,
                first.mzxid,
                other.key,
                other.value,
                other.version,
                other.mzxid
            ));
        }
    }
    super::verdict(summary, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::fixtures::{read, write};

    fn multi(session: i64, seq: u64, value: &str, outcome: &[Outcome; 2]) -> Vec<Op> {
        vec![write(session, seq, "m0", value, outcome[0].clone()), write(session, seq, "m1", value, outcome[1].clone())]
    }

    fn acked(version: i32, mzxid: i64) -> Outcome {
        Outcome::Written { version, mzxid }
    }

    fn snapshot(reads: &[(&str, &str, i32, i64)]) -> Snapshot {
        Snapshot {
            session: 9,
            invoked: 2000,
            reads: reads
                .iter()
                .map(|&(key, value, version, mzxid)| SnapshotRead {
                    key: key.to_owned(),
                    value: Some(value.to_owned()),
                    version,
                    mzxid,
                })
                .collect(),
        }
    }

    fn groups() -> Vec<Vec<String>> {
        vec![vec!["m0".to_owned(), "m1".to_owned()]]
    }

    fn good() -> Vec<Op> {
        let mut history = multi(1, 0, "a", &[acked(1, 10), acked(1, 10)]);
        history.extend(multi(1, 1, "b", &[Outcome::Unknown, Outcome::Unknown]));
        history.extend(multi(2, 0, "c", &[Outcome::BadVersion, Outcome::Failed("runtime inconsistency".into())]));
        // A plain write to another register.
        history.push(write(2, 1, "r0", "x", acked(1, 11)));
        // b (unknown) was applied at 12: both parts read back there.
        history.push(read("m0", "b", 2, 12));
        history.push(read("m1", "b", 2, 12));
        history
    }

    #[test]
    fn atomic_multis_pass() {
        let snapshots = vec![snapshot(&[("m0", "a", 1, 10), ("m1", "a", 1, 10)])];
        let summary = check_multi(&good(), &snapshots, &groups()).expect("good");
        assert_eq!(summary, Summary { multis: 3, acknowledged: 1, snapshots: 1 });
    }

    #[test]
    fn a_torn_multi_fails() {
        let mut history = good();
        // Its m1 part read back at another zxid than the m0 part's acknowledgement.
        history.push(read("m1", "a", 1, 11));
        let problems = check_multi(&history, &[], &groups()).expect_err("torn");
        assert!(problems[0].starts_with("torn multi: its part op 0"), "{problems:?}");
    }

    #[test]
    fn a_torn_read_fails() {
        let snapshots = vec![snapshot(&[("m0", "b", 2, 12), ("m1", "a", 1, 10)])];
        let problems = check_multi(&good(), &snapshots, &groups()).expect_err("torn read");
        assert!(problems[0].starts_with("torn read: multi-read #0"), "{problems:?}");
    }

    #[test]
    fn a_skewed_multi_fails() {
        let history = multi(1, 0, "a", &[acked(1, 10), acked(2, 10)]);
        let problems = check_multi(&history, &[], &groups()).expect_err("skewed");
        assert!(problems[0].starts_with("skewed multi"), "{problems:?}");
    }

    #[test]
    fn a_group_register_written_alone_fails() {
        let mut history = good();
        history.push(write(3, 0, "m0", "z", acked(3, 20)));
        let problems = check_multi(&history, &[], &groups()).expect_err("alone");
        assert!(problems[0].starts_with("written alone"), "{problems:?}");
    }
}
