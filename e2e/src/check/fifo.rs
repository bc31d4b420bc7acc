//! Per-session FIFO of writes: ZooKeeper applies a session's writes in the order it sent them.
//! Each write's apply zxid is learnt from its acknowledgement ([`Outcome::Written`]'s `mzxid`)
//! or from any read that returned its value ([`Outcome::Read`]'s `mzxid`: values are unique per
//! write). Ordered by `seq`, the known zxids of a session's writes must strictly increase; the
//! parts of one multi share their `seq` (one request, one txn: [`super::multi`] checks they
//! share their zxid too) and are ordered as one write against the others. A
//! write of unknown outcome seen applied after a later, acknowledged write of its session to the
//! same key undid that write; that is reported as such.
//!
//! What it cannot see: the order of writes whose zxid no answer revealed (unknown outcomes
//! never read back, writes overwritten before any read), and reads (their order is the
//! business of [`super::linearizable`]).

use std::collections::BTreeMap;

use super::history::{Call, Op, Outcome};

/// What [`check_fifo`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sessions with at least one write.
    pub sessions: usize,
    /// Writes whose apply zxid was known, so whose order was checked.
    pub ordered: usize,
}

/// Checks that every session's writes in `history` took effect in the order they were sent.
pub fn check_fifo(history: &[Op]) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    // The op of each written value, and its zxid as first learnt, with where it was learnt.
    let mut writes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Call::Write { key, value, .. } = &op.call {
            if let Some(other) = writes.insert((key, value), i) {
                problems.push(format!(
                    "{} and {} write the same value, so reads cannot tell them apart",
                    history[other].describe(other),
                    op.describe(i)
                ));
            }
        }
    }
    let mut zxids: BTreeMap<usize, (i64, usize)> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        let (write, zxid) = match (&op.call, &op.outcome) {
            (Call::Write { .. }, Outcome::Written { mzxid, .. }) => (i, *mzxid),
            (Call::Read { key }, Outcome::Read { value: Some(value), mzxid, .. }) => {
                match writes.get(&(key.as_str(), value.as_str())) {
                    Some(&write) => (write, *mzxid),
                    None => continue,
                }
            }
            _ => continue,
        };
        match zxids.get(&write) {
            Some(&(known, from)) if known != zxid => problems.push(format!(
                "{} was applied at zxid 0x{known:x} by {} but at zxid 0x{zxid:x} by {}",
                history[write].describe(write),
                history[from].describe(from),
                op.describe(i)
            )),
            Some(_) => {}
            None => {
                zxids.insert(write, (zxid, i));
            }
        }
    }
    let mut sessions: BTreeMap<i64, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        if let Call::Write { seq, .. } = op.call {
            sessions.entry(op.session).or_default().push((seq, i));
        }
    }
    let mut summary = Summary { sessions: sessions.len(), ordered: 0 };
    for sent in sessions.values_mut() {
        sent.sort_unstable();
        // The parts of one multi share their place; one register twice in one place is wrong.
        for (k, &(seq, i)) in sent.iter().enumerate() {
            if let Some(&(_, j)) = sent[k + 1..]
                .iter()
                .take_while(|(s, _)| *s == seq)
                .find(|(_, j)| history[*j].call.key() == history[i].call.key())
            {
                problems.push(format!(
                    "{} and {} have the same place in their session's send order",
                    history[i].describe(i),
                    history[j].describe(j)
                ));
            }
        }
        // The write applied last among those sent before, to compare each write with.
        let mut latest: Option<(i64, usize)> = None;
        for place in sent.chunk_by(|a, b| a.0 == b.0) {
            let mut last_here = None;
            for &(_, i) in place {
                let Some(&(zxid, _)) = zxids.get(&i) else { continue };
                summary.ordered += 1;
                if last_here.is_none_or(|(z, _)| zxid > z) {
                    last_here = Some((zxid, i));
                }
                let Some((before, earlier)) = latest.filter(|(before, _)| *before >= zxid) else { continue };
                let undone = history[earlier].outcome == Outcome::Unknown
                    && matches!(history[i].outcome, Outcome::Written { .. })
                    && history[earlier].call.key() == history[i].call.key();
                problems.push(if undone {
                    format!(
                        "acknowledged write undone by an older write of its session: {} (zxid 0x{zxid:x}) was \
                         overwritten by {}, sent before it but applied after it (zxid 0x{before:x})",
                        history[i].describe(i),
                        history[earlier].describe(earlier)
                    )
                } else {
                    format!(
                        "session writes reordered: {} was sent before {} but applied at zxid 0x{before:x}, \
                         not before 0x{zxid:x}",
                        history[earlier].describe(earlier),
                        history[i].describe(i)
                    )
                });
            }
            if let Some(here) = last_here {
                if latest.is_none_or(|(before, _)| here.0 > before) {
                    latest = Some(here);
                }
            }
        }
    }
    super::verdict(summary, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::fixtures::{read, write};

    fn acked(mzxid: i64) -> Outcome {
        Outcome::Written { version: 1, mzxid }
    }

    #[test]
    fn in_order_sessions_pass() {
        let history = vec![
            write(1, 0, "/a", "a0", acked(10)),
            write(2, 0, "/a", "b0", acked(11)),
            write(1, 1, "/b", "a1", Outcome::Unknown),
            write(1, 2, "/a", "a2", acked(14)),
            write(1, 3, "/a", "a3", Outcome::Failed("no node".to_owned())),
            write(2, 1, "/b", "b1", Outcome::Unknown),
            read("/b", "a1", 1, 12),
        ];
        assert_eq!(check_fifo(&history), Ok(Summary { sessions: 2, ordered: 4 }));
    }

    #[test]
    fn reordered_session_writes_fail() {
        let history = vec![write(1, 0, "/a", "a0", acked(20)), write(1, 1, "/b", "a1", acked(15))];
        let problems = check_fifo(&history).expect_err("reordered");
        assert!(problems[0].starts_with("session writes reordered: op 0"), "{problems:?}");
    }

    #[test]
    fn an_acknowledged_write_undone_by_an_older_one_fails() {
        // a0 (outcome unknown) was sent first but read back as the value after a1 was acked.
        let history = vec![
            write(1, 0, "/a", "a0", Outcome::Unknown),
            write(1, 1, "/a", "a1", acked(15)),
            read("/a", "a0", 1, 17),
        ];
        let problems = check_fifo(&history).expect_err("undone");
        assert!(problems[0].starts_with("acknowledged write undone by an older write of its session"), "{problems:?}");
    }

    #[test]
    fn a_multi_is_one_place_in_its_session_order() {
        let history = vec![
            write(1, 0, "/a", "a0", acked(10)),
            write(1, 1, "/m0", "a1", acked(12)),
            write(1, 1, "/m1", "a1", acked(12)),
            write(1, 2, "/a", "a2", acked(14)),
        ];
        assert_eq!(check_fifo(&history), Ok(Summary { sessions: 1, ordered: 4 }));
        let early = vec![
            write(1, 0, "/a", "a0", acked(10)),
            write(1, 1, "/m0", "a1", acked(9)),
            write(1, 1, "/m1", "a1", acked(9)),
        ];
        let problems = check_fifo(&early).expect_err("reordered multi");
        assert!(problems[0].starts_with("session writes reordered: op 0"), "{problems:?}");
        let twice = vec![write(1, 0, "/a", "a0", acked(10)), write(1, 0, "/a", "b0", acked(10))];
        let problems = check_fifo(&twice).expect_err("one register twice in one place");
        assert!(problems[0].contains("have the same place in their session's send order"), "{problems:?}");
    }

    #[test]
    fn a_write_seen_at_two_zxids_fails() {
        let history = vec![write(1, 0, "/a", "a0", acked(15)), read("/a", "a0", 1, 16)];
        let problems = check_fifo(&history).expect_err("two zxids");
        assert!(problems[0].contains("but at zxid 0x10"), "{problems:?}");
    }
}
