//! Sequential creates: the numbers a parent hands out. ZooKeeper appends the parent's child
//! version (a counter bumped by every create and delete of a child) to the name, in the txn
//! that creates the node, so:
//!
//! - **duplicate number**: no two acknowledged creates under one parent got the same number;
//! - **number out of zxid order**: numbers increase with the zxid of the creating txn (`czxid`);
//! - **number went back**: a create sent after another was acknowledged got a higher number
//!   (real-time order; creates whose calls overlap may be numbered either way);
//! - **lost**: every acknowledged create is in the final listing of its parent (taken after the
//!   workload, with a sync first); **appeared without a create**: every child in that listing
//!   comes from a create that was sent and not refused (names carry a prefix unique per call,
//!   so a child names its call).
//!
//! What it cannot see: creates of unknown outcome that did not land (they only may have), and
//! the numbers of creates whose answer was lost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One sequential create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqCreate {
    /// The workload client that sent it.
    pub client: u32,
    /// The parent the node was created under.
    pub parent: String,
    /// The name asked for (the server appends the number): unique per call in the run.
    pub prefix: String,
    /// When it was sent (ns since the run's start).
    pub invoked: u64,
    /// When its answer came; `None` exactly when the outcome is unknown.
    pub completed: Option<u64>,
    /// What came of it.
    pub outcome: SeqOutcome,
}

/// The answer to a [`SeqCreate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeqOutcome {
    /// Created with this number, by the txn at `czxid`.
    Created {
        /// The number appended to the prefix.
        number: i64,
        /// zxid of the creating txn.
        czxid: i64,
    },
    /// Refused: not created.
    Failed(String),
    /// Lost with the connection, or timed out: may or may not have been created.
    Unknown,
}

/// A parent's children at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalListing {
    /// The parent.
    pub parent: String,
    /// Its children's names.
    pub children: Vec<String>,
}

/// What [`check_sequential`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Acknowledged creates.
    pub created: usize,
    /// Pairs of acknowledged creates ordered in real time, checked.
    pub ordered: usize,
}

/// A child's name split into the asked prefix and the number: `c1-7-0000000042`.
fn split_name(name: &str) -> Option<(&str, i64)> {
    if name.len() < 10 || !name.is_char_boundary(name.len() - 10) {
        return None;
    }
    let (prefix, digits) = name.split_at(name.len() - 10);
    Some((prefix, digits.parse().ok()?))
}

fn describe(c: &SeqCreate, i: usize) -> String {
    format!("create #{i} ({}/{}, client {})", c.parent, c.prefix, c.client)
}

/// Checks the sequential creates of a run against each other and against the final listings of
/// their parents (a parent with no listing is only checked for its numbers).
pub fn check_sequential(creates: &[SeqCreate], listings: &[FinalListing]) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    let mut summary = Summary::default();
    let mut by_parent: BTreeMap<&str, Vec<(usize, &SeqCreate, i64, i64)>> = BTreeMap::new();
    for (i, c) in creates.iter().enumerate() {
        if let SeqOutcome::Created { number, czxid } = c.outcome {
            by_parent.entry(&c.parent).or_default().push((i, c, number, czxid));
        }
    }
    for created in by_parent.values_mut() {
        summary.created += created.len();
        created.sort_by_key(|&(_, _, number, _)| number);
        for pair in created.windows(2) {
            let ((i, a, na, za), (j, b, nb, zb)) = (pair[0], pair[1]);
            if na == nb {
                problems.push(format!("duplicate number: {} and {} both got {na}", describe(a, i), describe(b, j)));
            } else if za >= zb {
                problems.push(format!(
                    "number out of zxid order: {} got {na} at zxid 0x{za:x}, {} got {nb} at zxid 0x{zb:x}",
                    describe(a, i),
                    describe(b, j)
                ));
            }
        }
        // Real time: for each create, the one with the highest number among those acknowledged
        // before it was sent must be below its own. Sorted by completion, a running maximum.
        let mut by_completion: Vec<_> = created.iter().map(|&(i, c, n, _)| (c.completed.unwrap_or(0), i, n)).collect();
        by_completion.sort_unstable();
        let mut by_invocation: Vec<_> = created.iter().map(|&(i, c, n, _)| (c.invoked, i, n)).collect();
        by_invocation.sort_unstable();
        let mut done = 0;
        let mut highest: Option<(i64, usize)> = None;
        for &(invoked, j, nb) in &by_invocation {
            while done < by_completion.len() && by_completion[done].0 < invoked {
                let (_, i, n) = by_completion[done];
                if highest.is_none_or(|(h, _)| n > h) {
                    highest = Some((n, i));
                }
                done += 1;
            }
            if let Some((na, i)) = highest {
                summary.ordered += 1;
                if na >= nb {
                    problems.push(format!(
                        "number went back: {} was sent after {} was acknowledged with {na}, but got {nb}",
                        describe(&creates[j], j),
                        describe(&creates[i], i)
                    ));
                }
            }
        }
    }
    let mut calls: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, c) in creates.iter().enumerate() {
        if let Some(other) = calls.insert((&c.parent, &c.prefix), i) {
            problems.push(format!("{} and {} ask for the same name", describe(&creates[other], other), describe(c, i)));
        }
    }
    for listing in listings {
        let mut present: BTreeMap<&str, i64> = BTreeMap::new();
        for name in &listing.children {
            let Some((prefix, number)) = split_name(name) else {
                problems.push(format!("appeared without a create: {}/{name} is no sequential name", listing.parent));
                continue;
            };
            present.insert(prefix, number);
            match calls.get(&(listing.parent.as_str(), prefix)).map(|&i| (i, &creates[i])) {
                None => {
                    problems.push(format!("appeared without a create: {}/{name} was never asked for", listing.parent))
                }
                Some((i, c)) => match &c.outcome {
                    SeqOutcome::Failed(why) => problems.push(format!(
                        "appeared without a create: {}/{name} is there though {} was refused ({why})",
                        listing.parent,
                        describe(c, i)
                    )),
                    SeqOutcome::Created { number: acked, .. } if *acked != number => problems.push(format!(
                        "{} was acknowledged with {acked} but its node is {}/{name}",
                        describe(c, i),
                        listing.parent
                    )),
                    _ => {}
                },
            }
        }
        for &(i, c, number, _) in by_parent.get(listing.parent.as_str()).into_iter().flatten() {
            if !present.contains_key(c.prefix.as_str()) {
                problems.push(format!(
                    "lost: {} was acknowledged with {number} but is not in {}",
                    describe(c, i),
                    c.parent
                ));
            }
        }
    }
    super::verdict(summary, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(client: u32, prefix: &str, invoked: u64, completed: Option<u64>, outcome: SeqOutcome) -> SeqCreate {
        SeqCreate { client, parent: "/s".to_owned(), prefix: prefix.to_owned(), invoked, completed, outcome }
    }

    fn created(prefix: &str, invoked: u64, completed: u64, number: i64, czxid: i64) -> SeqCreate {
        create(0, prefix, invoked, Some(completed), SeqOutcome::Created { number, czxid })
    }

    fn listing(children: &[&str]) -> Vec<FinalListing> {
        vec![FinalListing { parent: "/s".to_owned(), children: children.iter().map(|c| (*c).to_owned()).collect() }]
    }

    fn good() -> Vec<SeqCreate> {
        vec![
            created("a-", 0, 10, 0, 100),
            // Overlapping calls may be numbered either way.
            created("b-", 20, 40, 2, 120),
            created("c-", 25, 35, 1, 110),
            create(1, "d-", 50, None, SeqOutcome::Unknown),
            create(1, "e-", 60, Some(70), SeqOutcome::Failed("no node".to_owned())),
            created("f-", 80, 90, 4, 140),
        ]
    }

    #[test]
    fn good_histories_pass() {
        // The unknown create d- landed (number 3); it may as well not have.
        let summary = check_sequential(
            &good(),
            &listing(&["a-0000000000", "c-0000000001", "b-0000000002", "d-0000000003", "f-0000000004"]),
        )
        .expect("good");
        assert_eq!(summary, Summary { created: 4, ordered: 3 });
        assert!(check_sequential(&good(), &listing(&["a-0000000000", "c-0000000001", "b-0000000002", "f-0000000004"]))
            .is_ok());
    }

    #[test]
    fn a_duplicate_number_fails() {
        let creates = vec![created("a-", 0, 10, 5, 100), created("b-", 5, 15, 5, 101)];
        let problems = check_sequential(&creates, &[]).expect_err("duplicate");
        assert!(problems[0].starts_with("duplicate number: create #0"), "{problems:?}");
    }

    #[test]
    fn numbers_out_of_zxid_order_fail() {
        let creates = vec![created("a-", 0, 10, 1, 110), created("b-", 5, 15, 2, 100)];
        let problems = check_sequential(&creates, &[]).expect_err("zxid order");
        assert!(problems[0].starts_with("number out of zxid order"), "{problems:?}");
    }

    #[test]
    fn a_number_that_went_back_fails() {
        // b- was sent after a- was acknowledged, yet got a lower number.
        let creates = vec![created("a-", 0, 10, 3, 100), created("b-", 20, 30, 2, 90)];
        let problems = check_sequential(&creates, &[]).expect_err("went back");
        assert!(problems.iter().any(|p| p.starts_with("number went back: create #1")), "{problems:?}");
    }

    #[test]
    fn a_lost_create_fails() {
        let problems =
            check_sequential(&good(), &listing(&["a-0000000000", "c-0000000001", "f-0000000004"])).expect_err("lost");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("lost: create #1 (/s/b-"), "{problems:?}");
    }

    #[test]
    fn children_without_a_create_fail() {
        let all = ["a-0000000000", "c-0000000001", "b-0000000002", "f-0000000004"];
        let mut children = all.to_vec();
        children.push("e-0000000003");
        let refused = check_sequential(&good(), &listing(&children)).expect_err("refused but there");
        assert!(refused[0].contains("is there though create #4"), "{refused:?}");
        let mut children = all.to_vec();
        children.push("z-0000000009");
        let stray = check_sequential(&good(), &listing(&children)).expect_err("never asked for");
        assert!(stray[0].contains("was never asked for"), "{stray:?}");
        let mut children = all.to_vec();
        children[3] = "f-0000000005";
        let renumbered = check_sequential(&good(), &listing(&children)).expect_err("other number");
        assert!(renumbered[0].contains("was acknowledged with 4 but its node is /s/f-0000000005"), "{renumbered:?}");
    }
}
