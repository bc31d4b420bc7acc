//! History checkers: given what the processes of a scenario recorded, decide whether the
//! system kept its promises.
//!
//! - [`check_fenced`]: the fenced resource written by lock holders and elected leaders. Every
//!   acknowledged write is there; fencing tokens never go down; each token is one holder's
//!   contiguous block that starts with its `begin`. (That no holder acted while another held
//!   shows in the writers' records: none of their writes was fenced off.)
//! - [`check_register`]: a znode written by many clients with `set_data`. Every acknowledged
//!   write got its own version, the final state is the last acknowledged write or one whose
//!   outcome was unknown, and no reader saw versions go backwards.

use std::collections::{BTreeMap, BTreeSet};

use crate::fence::Entry;

/// What [`check_fenced`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FencedSummary {
    /// Holds (distinct tokens), in order.
    pub tokens: Vec<i64>,
    /// The pods that held, in the order of their holds.
    pub holders: Vec<String>,
}

/// Checks the fenced resource `entries` against the writes its writers saw acknowledged.
pub fn check_fenced(entries: &[Entry], acked: &[Entry]) -> Result<FencedSummary, Vec<String>> {
    let mut problems = Vec::new();
    let present: BTreeSet<(i64, &str, &str)> =
        entries.iter().map(|e| (e.token, e.pod.as_str(), e.what.as_str())).collect();
    let missing: Vec<&Entry> =
        acked.iter().filter(|e| !present.contains(&(e.token, e.pod.as_str(), e.what.as_str()))).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} acknowledged writes are missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        ));
    }
    let mut summary = FencedSummary::default();
    let mut blocks: Vec<&[Entry]> = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || entries[i].token != entries[start].token {
            blocks.push(&entries[start..i]);
            start = i;
        }
    }
    let mut seen = BTreeSet::new();
    for block in &blocks {
        let token = block[0].token;
        if let Some(last) = summary.tokens.last().filter(|last| **last > token) {
            problems.push(format!("token {token} written after token {last}: the fence let a stale holder through"));
        }
        if !seen.insert(token) {
            problems.push(format!("token {token} appears in two separate blocks: two holds interleaved"));
        }
        let pods: BTreeSet<&str> = block.iter().map(|e| e.pod.as_str()).collect();
        if pods.len() > 1 {
            problems.push(format!("token {token} used by several pods {pods:?}: one hold, several holders"));
        }
        if block[0].what != "begin" {
            problems.push(format!("the hold with token {token} does not start with begin: {:?}", block[0]));
        }
        summary.tokens.push(token);
        summary.holders.push(block[0].pod.clone());
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

/// One `set_data` of the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterWrite {
    /// The value written (unique per write).
    pub value: String,
    /// `Some(version)` when acknowledged; `None` when its outcome is unknown (the connection
    /// was lost with it in flight). Refused writes are not recorded.
    pub version: Option<i32>,
}

/// Checks a register history: `writes` by every writer, the final `(value, version)` read after
/// all writers stopped, and each reader's observed versions in the order it read them.
pub fn check_register(
    writes: &[RegisterWrite],
    last: (&str, i32),
    reads: &BTreeMap<String, Vec<i32>>,
) -> Result<usize, Vec<String>> {
    let mut problems = Vec::new();
    let mut by_version: BTreeMap<i32, &str> = BTreeMap::new();
    for write in writes {
        if let Some(version) = write.version {
            if let Some(other) = by_version.insert(version, &write.value) {
                problems.push(format!(
                    "writes {other:?} and {:?} were both acknowledged as version {version}",
                    write.value
                ));
            }
        }
    }
    let (value, version) = last;
    if let Some((highest, _)) = by_version.last_key_value() {
        if version < *highest {
            problems.push(format!("the register is at version {version} but version {highest} was acknowledged"));
        }
    }
    match by_version.get(&version) {
        Some(expected) if *expected != value => problems.push(format!(
            "the register holds {value:?} at version {version}, but that version was acknowledged for {expected:?}"
        )),
        Some(_) => {}
        None => {
            let unknown = writes.iter().any(|w| w.version.is_none() && w.value == value);
            if !unknown && version > 0 {
                problems.push(format!("the register holds {value:?} (version {version}), which no write produced"));
            }
        }
    }
    for (reader, versions) in reads {
        if let Some(pair) = versions.windows(2).find(|pair| pair[1] < pair[0]) {
            problems.push(format!("reader {reader} saw version {} after version {}", pair[1], pair[0]));
        }
    }
    if problems.is_empty() {
        Ok(by_version.len())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(token: i64, pod: &str, what: &str) -> Entry {
        Entry { token, pod: pod.to_owned(), what: what.to_owned() }
    }

    #[test]
    fn a_clean_lock_history_passes() {
        let entries = vec![e(3, "a", "begin"), e(3, "a", "w0"), e(3, "a", "end"), e(7, "b", "begin"), e(7, "b", "w0")];
        let summary = check_fenced(&entries, &entries[..4]).expect("valid");
        assert_eq!(summary.tokens, vec![3, 7]);
        assert_eq!(summary.holders, vec!["a", "b"]);
    }

    #[test]
    fn each_violation_is_caught() {
        let lost = check_fenced(&[e(3, "a", "begin")], &[e(3, "a", "w0")]).expect_err("lost write");
        assert!(lost[0].contains("missing"), "{lost:?}");
        let down = check_fenced(&[e(7, "b", "begin"), e(3, "a", "begin")], &[]).expect_err("token down");
        assert!(down.iter().any(|p| p.contains("stale holder")), "{down:?}");
        let interleaved =
            check_fenced(&[e(3, "a", "begin"), e(4, "b", "begin"), e(3, "a", "w1")], &[]).expect_err("interleaved");
        assert!(interleaved.iter().any(|p| p.contains("two separate blocks")), "{interleaved:?}");
        let shared = check_fenced(&[e(3, "a", "begin"), e(3, "b", "w0")], &[]).expect_err("shared token");
        assert!(shared[0].contains("several pods"), "{shared:?}");
        // A hold may end without `end` (its holder died or was paused).
        assert!(check_fenced(&[e(3, "a", "begin"), e(4, "b", "begin")], &[]).is_ok());
        let headless = check_fenced(&[e(3, "a", "w0")], &[]).expect_err("no begin");
        assert!(headless[0].contains("does not start with begin"), "{headless:?}");
    }

    fn w(value: &str, version: Option<i32>) -> RegisterWrite {
        RegisterWrite { value: value.to_owned(), version }
    }

    #[test]
    fn register_histories() {
        let writes = vec![w("a", Some(1)), w("b", Some(2)), w("c", None)];
        let reads = BTreeMap::from([("r".to_owned(), vec![0, 1, 1, 2])]);
        assert_eq!(check_register(&writes, ("b", 2), &reads), Ok(2));
        assert!(check_register(&writes, ("c", 3), &reads).is_ok(), "an unknown write may have landed");
        assert!(check_register(&writes, ("a", 1), &reads).is_err(), "acknowledged version 2 lost");
        assert!(check_register(&writes, ("x", 3), &reads).is_err(), "a value nobody wrote");
        assert!(check_register(&writes, ("a", 2), &reads).is_err(), "version 2 holds the wrong value");
        let doubled = vec![w("a", Some(1)), w("b", Some(1))];
        assert!(check_register(&doubled, ("b", 1), &BTreeMap::new()).is_err(), "one version, two writes");
        let backwards = BTreeMap::from([("r".to_owned(), vec![2, 1])]);
        assert!(check_register(&writes, ("b", 2), &backwards).is_err(), "a reader went back in time");
    }
}
