//! Ephemeral nodes live exactly as long as their session, unless deleted. The input is every
//! ephemeral node the workload created or tried to (its create and delete, with times and
//! outcomes), what is known of each session's life (when it ended, when it still wrote), and
//! linearizable listings of the parents (a sync, then getChildren: invoked when the sync was
//! sent, completed when the children came). The rules, each its own named violation:
//!
//! - **outlived its session**: a listing sent after the session's end (its closeSession
//!   acknowledged, or its expiry observed by another session) still holds the node;
//! - **present after its delete**: a listing sent after the node's delete was acknowledged
//!   holds it;
//! - **appeared without a create**: a listing holds a node nobody asked for, one whose create
//!   was refused, or one before its create was sent;
//! - **lost while its session lived**: a listing sent after the create was acknowledged lacks
//!   the node, though no delete of it had been sent by the time the listing completed and the
//!   session was alive after it (a write of the session, sent after the listing completed, was
//!   acknowledged: sessions do not come back, so it had not expired before).
//!
//! What it cannot see: listings the workload did not take, and sessions that ended without
//! anyone learning when (their nodes are spared the first rule).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a create or a delete ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Done {
    /// Acknowledged.
    Ok,
    /// Refused: it did not happen.
    Failed(String),
    /// Lost with the connection, or timed out.
    Unknown,
}

/// One create or delete call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it was sent (ns since the run's start).
    pub invoked: u64,
    /// When its answer came; `None` exactly when the outcome is unknown.
    pub completed: Option<u64>,
    /// What came of it.
    pub outcome: Done,
}

impl Attempt {
    /// The completion time of an acknowledged call.
    fn acked(&self) -> Option<u64> {
        (self.outcome == Done::Ok).then_some(self.completed).flatten()
    }
}

/// One ephemeral node of the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ephemeral {
    /// The session that created it.
    pub session: i64,
    /// Its parent.
    pub parent: String,
    /// Its name under the parent: unique in the run.
    pub name: String,
    /// Its create.
    pub create: Attempt,
    /// Its delete, if one was sent.
    pub delete: Option<Attempt>,
}

/// What is known of one session's life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFacts {
    /// The session id.
    pub session: i64,
    /// When it was known to have ended: its closeSession acknowledged, or another session saw
    /// its expiry.
    pub ended: Option<u64>,
    /// When the session's acknowledged writes were sent.
    pub acked_writes: Vec<u64>,
}

/// A linearizable listing of a parent's children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The parent.
    pub parent: String,
    /// When its sync was sent.
    pub invoked: u64,
    /// When the children came.
    pub completed: u64,
    /// The children's names.
    pub children: Vec<String>,
}

/// What [`check_ephemerals`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Ephemeral nodes whose create was acknowledged.
    pub created: usize,
    /// Listings checked.
    pub listings: usize,
}

fn describe(e: &Ephemeral) -> String {
    format!("{}/{} of session 0x{:x}", e.parent, e.name, e.session)
}

/// Checks every listing against the ephemeral nodes of its parent.
pub fn check_ephemerals(
    nodes: &[Ephemeral],
    sessions: &[SessionFacts],
    listings: &[Listing],
) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    let mut by_name: BTreeMap<(&str, &str), &Ephemeral> = BTreeMap::new();
    for node in nodes {
        if by_name.insert((&node.parent, &node.name), node).is_some() {
            problems.push(format!("two creates of {}", describe(node)));
        }
    }
    let facts: BTreeMap<i64, &SessionFacts> = sessions.iter().map(|s| (s.session, s)).collect();
    for (k, listing) in listings.iter().enumerate() {
        let what = format!("listing #{k} of {} (sent at {} ns)", listing.parent, listing.invoked);
        for name in &listing.children {
            let Some(node) = by_name.get(&(listing.parent.as_str(), name.as_str())) else {
                problems.push(format!("appeared without a create: {what} holds {name}, which nobody created"));
                continue;
            };
            let fact = facts.get(&node.session);
            if let Done::Failed(why) = &node.create.outcome {
                problems.push(format!(
                    "appeared without a create: {what} holds {}, whose create was refused ({why})",
                    describe(node)
                ));
            } else if listing.completed < node.create.invoked {
                problems.push(format!(
                    "appeared without a create: {what} holds {}, whose create was sent only at {} ns",
                    describe(node),
                    node.create.invoked
                ));
            }
            if let Some(ended) = fact.and_then(|f| f.ended).filter(|ended| *ended < listing.invoked) {
                problems.push(format!(
                    "outlived its session: {what} holds {}, whose session was known ended at {ended} ns",
                    describe(node)
                ));
            }
            if let Some(deleted) = node.delete.as_ref().and_then(Attempt::acked).filter(|d| *d < listing.invoked) {
                problems.push(format!(
                    "present after its delete: {what} holds {}, whose delete was acknowledged at {deleted} ns",
                    describe(node)
                ));
            }
        }
        for node in nodes.iter().filter(|n| n.parent == listing.parent) {
            let Some(created) = node.create.acked().filter(|c| *c < listing.invoked) else { continue };
            if listing.children.contains(&node.name)
                || node.delete.as_ref().is_some_and(|d| d.invoked <= listing.completed)
            {
                continue;
            }
            let alive = facts
                .get(&node.session)
                .and_then(|f| f.acked_writes.iter().copied().filter(|w| *w > listing.completed).min());
            if let Some(alive) = alive {
                problems.push(format!(
                    "lost while its session lived: {what} lacks {}, created at {created} ns and not deleted, though \
                     a write the session sent at {alive} ns was acknowledged",
                    describe(node)
                ));
            }
        }
    }
    let created = nodes.iter().filter(|n| n.create.acked().is_some()).count();
    super::verdict(Summary { created, listings: listings.len() }, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(invoked: u64, completed: Option<u64>, outcome: Done) -> Attempt {
        Attempt { invoked, completed, outcome }
    }

    fn ok(invoked: u64, completed: u64) -> Attempt {
        attempt(invoked, Some(completed), Done::Ok)
    }

    fn node(session: i64, name: &str, create: Attempt, delete: Option<Attempt>) -> Ephemeral {
        Ephemeral { session, parent: "/e".to_owned(), name: name.to_owned(), create, delete }
    }

    fn listing(invoked: u64, completed: u64, children: &[&str]) -> Listing {
        Listing {
            parent: "/e".to_owned(),
            invoked,
            completed,
            children: children.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    /// Session 1 creates a (deleted at 40), b (unknown), c (refused); session 2 creates d and
    /// is closed at 100; session 1 writes at 10, 30 and 60.
    fn nodes() -> Vec<Ephemeral> {
        vec![
            node(1, "a", ok(0, 10), Some(ok(30, 40))),
            node(1, "b", attempt(20, None, Done::Unknown), None),
            node(1, "c", attempt(21, Some(22), Done::Failed("exists".to_owned())), None),
            node(2, "d", ok(5, 15), None),
        ]
    }

    fn sessions() -> Vec<SessionFacts> {
        vec![
            SessionFacts { session: 1, ended: None, acked_writes: vec![0, 30, 60] },
            SessionFacts { session: 2, ended: Some(100), acked_writes: vec![5] },
        ]
    }

    fn problems(listings: &[Listing]) -> Vec<String> {
        check_ephemerals(&nodes(), &sessions(), listings).expect_err("a violation")
    }

    #[test]
    fn good_histories_pass() {
        let listings = vec![
            listing(12, 14, &["a"]),
            // d is created concurrently: either way.
            listing(13, 16, &["a", "d"]),
            // The delete of a is in flight; b may have landed.
            listing(35, 38, &["a", "b", "d"]),
            listing(45, 50, &["d"]),
            // Session 2 is closed; b landed after all.
            listing(110, 120, &["b"]),
        ];
        let summary = check_ephemerals(&nodes(), &sessions(), &listings).expect("good");
        assert_eq!(summary, Summary { created: 2, listings: 5 });
    }

    #[test]
    fn a_node_that_outlived_its_session_fails() {
        let found = problems(&[listing(110, 120, &["d"])]);
        assert!(found[0].starts_with("outlived its session: listing #0 of /e"), "{found:?}");
    }

    #[test]
    fn a_node_present_after_its_delete_fails() {
        let found = problems(&[listing(45, 50, &["a", "d"])]);
        assert!(found[0].starts_with("present after its delete"), "{found:?}");
    }

    #[test]
    fn nodes_without_a_create_fail() {
        let stray = problems(&[listing(45, 50, &["d", "z"])]);
        assert!(stray[0].contains("holds z, which nobody created"), "{stray:?}");
        let refused = problems(&[listing(45, 50, &["c", "d"])]);
        assert!(refused[0].contains("whose create was refused"), "{refused:?}");
        let early = problems(&[listing(1, 3, &["d"])]);
        assert!(early[0].contains("whose create was sent only at 5 ns"), "{early:?}");
    }

    #[test]
    fn a_node_lost_while_its_session_lived_fails() {
        // Session 2 wrote nothing after the listing: d may have gone with an expiry nobody saw.
        assert!(check_ephemerals(&nodes(), &sessions(), &[listing(45, 50, &[])]).is_ok());
        // a was created, not yet deleted, and session 1 wrote at 30, after the listing.
        let found = problems(&[listing(12, 14, &[])]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("lost while its session lived: listing #0 of /e"), "{found:?}");
        assert!(found[0].contains("/e/a of session 0x1"), "{found:?}");
    }
}
