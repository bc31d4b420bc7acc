//! Mutual exclusion of locks held through the sidecar: no two holders of one lock believe they
//! hold it at the same real time. Each hold is the interval from when its holder learnt it had
//! the lock to the holder's own deadline for it (or when it released it), on the workload's
//! one monotonic clock.
//!
//! What it cannot see: holds the workload did not record, and whether a holder acted within
//! its interval (the fenced resource, [`crate::history::check_fenced`], sees that). One
//! holder's own overlapping holds (a re-acquire while holding) are not a violation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One holder's hold of one lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Who held it (a pod or app name).
    pub holder: String,
    /// The lock.
    pub lock: String,
    /// When the holder learnt it held the lock (ns since the run's start).
    pub acquired_at: u64,
    /// When the hold ended for the holder: its own deadline, or when it released the lock.
    pub valid_until: u64,
}

/// What [`check_holds`] found in a history that holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Locks with at least one hold.
    pub locks: usize,
    /// Holds checked.
    pub holds: usize,
}

/// Checks that no two holders' holds of the same lock overlap in time. Intervals are half-open:
/// one hold may end at the very instant the next begins.
pub fn check_holds(holds: &[Hold]) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    let mut by_lock: BTreeMap<&str, Vec<&Hold>> = BTreeMap::new();
    for hold in holds {
        if hold.valid_until < hold.acquired_at {
            problems.push(format!(
                "{}'s hold of {} ends at {} ns, before it began at {} ns",
                hold.holder, hold.lock, hold.valid_until, hold.acquired_at
            ));
        }
        by_lock.entry(&hold.lock).or_default().push(hold);
    }
    for (lock, holds) in &mut by_lock {
        holds.sort_by_key(|h| (h.acquired_at, h.valid_until));
        for (i, first) in holds.iter().enumerate() {
            for second in holds[i + 1..].iter().take_while(|h| h.acquired_at < first.valid_until) {
                if second.holder != first.holder {
                    problems.push(format!(
                        "{} and {} both held {lock}: {} from {} ns to {} ns, {} from {} ns to {} ns",
                        first.holder,
                        second.holder,
                        first.holder,
                        first.acquired_at,
                        first.valid_until,
                        second.holder,
                        second.acquired_at,
                        second.valid_until
                    ));
                }
            }
        }
    }
    super::verdict(Summary { locks: by_lock.len(), holds: holds.len() }, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(holder: &str, lock: &str, acquired_at: u64, valid_until: u64) -> Hold {
        Hold { holder: holder.to_owned(), lock: lock.to_owned(), acquired_at, valid_until }
    }

    #[test]
    fn turns_pass() {
        let holds = vec![
            hold("a", "l", 0, 10),
            hold("b", "l", 10, 20),
            hold("b", "l", 15, 25),
            hold("a", "m", 5, 30),
            hold("c", "l", 40, 50),
        ];
        assert_eq!(check_holds(&holds), Ok(Summary { locks: 2, holds: 5 }));
    }

    #[test]
    fn overlapping_holds_fail() {
        let holds = vec![hold("a", "l", 0, 100), hold("b", "l", 20, 30), hold("c", "l", 99, 120)];
        let problems = check_holds(&holds).expect_err("overlap");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("a and b both held l"), "{problems:?}");
        assert!(problems[1].starts_with("a and c both held l"), "{problems:?}");
    }
}
