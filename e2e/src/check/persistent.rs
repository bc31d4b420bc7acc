//! Persistent watch delivery (addWatch, modes PERSISTENT and PERSISTENT_RECURSIVE), per session.
//! The input is the same as [`super::watches`]'s — each session's ordered stream of replies,
//! events and reconnections, and the known changes of paths — for sessions that set persistent
//! watches only. A persistent watch stays set until removed; after a reconnection the client
//! sets it again with setWatches, whose reply is the first one on the new connection (what a
//! server changed while the client was away is not told, as in ZooKeeper). The rules, each its
//! own named violation:
//!
//! - **event without a watch**: an event no watch set on this connection covers (a persistent
//!   watch covers every change of its path; a recursive one the creation, deletion and data
//!   changes of its path and every path below it, never a children change); told apart as
//!   *before its watch was set again* after a reconnection;
//! - **event for an old change**: an event whose zxid is at or before the zxid of the reply that
//!   set the watch on this connection;
//! - **duplicate**: an event of a path at or before a zxid an earlier event of that path in the
//!   session had, on any of its connections;
//! - **events out of order**: a session's events go back in zxid;
//! - **event for no change**: on a path whose changes are all known, an event with no known
//!   change of its kind since the path's last event (or the watch) up to the event's zxid;
//! - **lost or late**: a reply whose zxid is at or past a known change that a watch set on this
//!   connection before that change covers, though no event of the path at or past the change
//!   has come before it (every reply counts, pings' too: the client has seen the change's
//!   effect, or a state past it, without being told of it). A change the stream never reached
//!   is not judged.
//!
//! An event usually carries its change's zxid, one event per change. A follower that installs a
//! snapshot knows only the state it jumped to: it tells each changed path once, with the
//! snapshot's zxid (docs/server.md, hole e). So an event of a path stands for every change of it
//! since its last event, up to the event's zxid.
//!
//! It relies on the client sending, when it reconnects, the highest zxid it has seen in replies
//! *and* events: a server that takes it has applied every change already told, so an event of
//! one of them on the new connection is a duplicate, not a server behind the old one.

use std::collections::{BTreeMap, BTreeSet};

use super::watches::{Change, EventKind, PathChanges, Received, SessionStream, WatchKind};

/// What [`check_persistent`] found in streams that hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sessions checked.
    pub sessions: usize,
    /// Persistent watches set (addWatch replies).
    pub watches: usize,
    /// Events received.
    pub events: usize,
    /// Known changes a watch on a connection covered and the connection's replies reached:
    /// each was told before the first such reply.
    pub told: usize,
}

/// Whether a watch on `watched` (recursive or not) covers a change of `kind` on `path`.
pub fn covers(watched: &str, recursive: bool, path: &str, kind: EventKind) -> bool {
    if recursive {
        kind != EventKind::ChildrenChanged && (path == watched || is_below(path, watched))
    } else {
        path == watched
    }
}

fn is_below(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return path != "/";
    }
    path.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('/'))
}

/// Checks every session's stream of persistent watches against the known changes of paths.
pub fn check_persistent(sessions: &[SessionStream], changes: &[PathChanges]) -> Result<Summary, Vec<String>> {
    let known = super::watches::by_path(changes);
    let mut problems = Vec::new();
    let mut summary = Summary { sessions: sessions.len(), ..Summary::default() };
    for stream in sessions {
        check_stream(stream, &known, &mut summary, &mut problems);
    }
    super::verdict(summary, problems)
}

/// A persistent watch of the session: recursive or not, and from which zxid it is set on the
/// current connection (`None` between a reconnection and the reply that sets it again).
struct Set {
    recursive: bool,
    from: Option<i64>,
}

fn check_stream(
    stream: &SessionStream,
    known: &BTreeMap<&str, (Vec<Change>, bool)>,
    summary: &mut Summary,
    problems: &mut Vec<String>,
) {
    let session = stream.session;
    let mut watches: BTreeMap<&str, Set> = BTreeMap::new();
    // The highest zxid each path was told at, and the changes judged already.
    let mut told: BTreeMap<&str, i64> = BTreeMap::new();
    let mut judged: BTreeSet<(&str, i64)> = BTreeSet::new();
    let mut last_event: Option<i64> = None;
    let mut resetting = false;
    for (i, received) in stream.received.iter().enumerate() {
        match received {
            Received::Reconnected { .. } => {
                for set in watches.values_mut() {
                    set.from = None;
                }
                resetting = true;
            }
            Received::Reply { zxid, path, watch, .. } => {
                if resetting {
                    // The setWatches reply: every watch is set again from its zxid.
                    for set in watches.values_mut() {
                        set.from = Some(*zxid);
                    }
                    resetting = false;
                }
                if let (Some(path), Some(kind @ (WatchKind::Persistent | WatchKind::PersistentRecursive))) =
                    (path, watch)
                {
                    summary.watches += 1;
                    let recursive = *kind == WatchKind::PersistentRecursive;
                    watches.insert(path, Set { recursive, from: Some(*zxid) });
                }
                // Every change a watch covered since it was set, up to this reply's zxid, was
                // told before it.
                for (watched, set) in &watches {
                    let Some(from) = set.from else { continue };
                    for (path, (changes, _)) in known {
                        for change in changes.iter().filter(|c| c.zxid > from && c.zxid <= *zxid) {
                            if !covers(watched, set.recursive, path, change.kind)
                                || judged.contains(&(*path, change.zxid))
                            {
                                continue;
                            }
                            judged.insert((path, change.zxid));
                            if told.get(path).is_some_and(|at| *at >= change.zxid) {
                                summary.told += 1;
                            } else {
                                problems.push(format!(
                                    "session 0x{session:x}: lost or late: reply #{i} (zxid 0x{zxid:x}) came before \
                                     the event of the {:?} change of {path} at zxid 0x{:x}, which the persistent \
                                     watch on {watched} (set at zxid 0x{from:x}) covers",
                                    change.kind, change.zxid
                                ));
                            }
                        }
                    }
                }
            }
            Received::Event { path, kind, zxid, .. } => {
                summary.events += 1;
                let covering = watches
                    .iter()
                    .filter(|(watched, set)| covers(watched, set.recursive, path, *kind))
                    .collect::<Vec<_>>();
                if covering.is_empty() {
                    problems.push(format!(
                        "session 0x{session:x}: event without a watch: event #{i} ({kind:?} of {path}) is covered \
                         by no persistent watch of the session"
                    ));
                    continue;
                }
                let Some(zxid) = *zxid else { continue };
                let from = covering.iter().filter_map(|(_, set)| set.from).min();
                match from {
                    None => problems.push(format!(
                        "session 0x{session:x}: event without a watch: event #{i} ({kind:?} of {path}, zxid \
                         0x{zxid:x}) came before its watch was set again after a reconnection"
                    )),
                    Some(from) if zxid <= from => problems.push(format!(
                        "session 0x{session:x}: event for an old change: event #{i} ({kind:?} of {path}, zxid \
                         0x{zxid:x}) is at or before the zxid 0x{from:x} its watch was set at"
                    )),
                    Some(_) => {}
                }
                let before = told.get(path.as_str()).copied();
                if before.is_some_and(|at| zxid <= at) {
                    problems.push(format!(
                        "session 0x{session:x}: duplicate: event #{i} ({kind:?} of {path}, zxid 0x{zxid:x}) after \
                         an event of the path at zxid 0x{:x}",
                        before.unwrap_or_default()
                    ));
                }
                told.insert(path, before.map_or(zxid, |at| at.max(zxid)));
                if last_event.is_some_and(|last| zxid < last) {
                    problems.push(format!(
                        "session 0x{session:x}: events out of order: event #{i} ({kind:?} of {path}) has zxid \
                         0x{zxid:x}, after an event of zxid 0x{:x}",
                        last_event.unwrap_or_default()
                    ));
                }
                last_event = Some(last_event.map_or(zxid, |last| last.max(zxid)));
                if let Some((changes, true)) = known.get(path.as_str()) {
                    let since = before.max(from).unwrap_or(i64::MIN);
                    if !changes.iter().any(|c| c.zxid > since && c.zxid <= zxid && c.kind == *kind) {
                        problems.push(format!(
                            "session 0x{session:x}: event for no change: event #{i} ({kind:?} of {path}, zxid \
                             0x{zxid:x}) matches no known change of the path since zxid 0x{since:x}"
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;

    fn set(path: &str, recursive: bool, zxid: i64) -> Received {
        let watch = if recursive { WatchKind::PersistentRecursive } else { WatchKind::Persistent };
        Received::Reply { xid: 1, zxid, path: Some(path.into()), watch: Some(watch), at: 0 }
    }
    fn reply(zxid: i64) -> Received {
        Received::Reply { xid: 2, zxid, path: None, watch: None, at: 0 }
    }
    fn event(path: &str, kind: EventKind, zxid: i64) -> Received {
        Received::Event { path: path.into(), kind, zxid: Some(zxid), at: 0 }
    }
    fn stream(received: Vec<Received>) -> Vec<SessionStream> {
        vec![SessionStream { session: 1, received, alive_at_end: true }]
    }
    fn changes() -> Vec<PathChanges> {
        vec![
            PathChanges {
                path: "/r".into(),
                changes: vec![Change { zxid: 10, kind: DataChanged }, Change { zxid: 20, kind: DataChanged }],
                complete: true,
            },
            PathChanges { path: "/k/a".into(), changes: vec![Change { zxid: 15, kind: Created }], complete: false },
            PathChanges {
                path: "/k".into(),
                changes: vec![Change { zxid: 15, kind: ChildrenChanged }],
                complete: true,
            },
        ]
    }
    fn problems(received: Vec<Received>) -> Vec<String> {
        check_persistent(&stream(received), &changes()).err().unwrap_or_default()
    }

    #[test]
    fn every_change_told_once_in_order_before_newer_replies_passes() {
        let good = vec![
            set("/r", false, 5),
            set("/k", true, 6),
            event("/r", DataChanged, 10),
            reply(12),
            event("/k/a", Created, 15),
            event("/r", DataChanged, 20),
            reply(20),
        ];
        let summary = check_persistent(&stream(good), &changes()).expect("a good stream");
        assert_eq!(summary, Summary { sessions: 1, watches: 2, events: 3, told: 3 });
    }

    #[test]
    fn a_reply_past_a_change_whose_event_never_came_is_lost() {
        let lost = problems(vec![set("/r", false, 5), reply(12), event("/r", DataChanged, 20)]);
        assert!(lost.iter().any(|p| p.contains("lost or late") && p.contains("0xa")), "{lost:?}");
    }

    #[test]
    fn a_change_below_a_recursive_watch_is_owed_but_a_children_change_is_not() {
        let lost = problems(vec![set("/k", true, 5), reply(16)]);
        assert!(lost.iter().any(|p| p.contains("lost or late") && p.contains("/k/a")), "{lost:?}");
        assert!(!lost.iter().any(|p| p.contains("ChildrenChanged")), "{lost:?}");
        let plain = problems(vec![set("/k", false, 5), reply(16)]);
        assert!(plain.iter().any(|p| p.contains("ChildrenChanged")), "{plain:?}");
    }

    #[test]
    fn an_event_told_twice_or_going_back_in_zxid_is_caught() {
        let twice = problems(vec![set("/r", false, 5), event("/r", DataChanged, 10), event("/r", DataChanged, 10)]);
        assert!(twice.iter().any(|p| p.contains("duplicate")), "{twice:?}");
        let back = problems(vec![set("/r", false, 5), event("/r", DataChanged, 20), event("/r", DataChanged, 10)]);
        assert!(back.iter().any(|p| p.contains("out of order")), "{back:?}");
    }

    #[test]
    fn an_event_of_no_watch_of_an_old_change_or_of_no_change_is_caught() {
        let unwatched = problems(vec![set("/r", false, 5), event("/k/a", Created, 15)]);
        assert!(unwatched.iter().any(|p| p.contains("event without a watch")), "{unwatched:?}");
        let old = problems(vec![set("/r", false, 12), event("/r", DataChanged, 10)]);
        assert!(old.iter().any(|p| p.contains("old change")), "{old:?}");
        let none = problems(vec![set("/r", false, 5), event("/r", Deleted, 10)]);
        assert!(none.iter().any(|p| p.contains("no change")), "{none:?}");
    }

    #[test]
    fn one_event_at_a_snapshot_install_tells_every_change_it_skipped() {
        let installed = vec![set("/r", false, 5), event("/r", DataChanged, 25), reply(25)];
        assert!(check_persistent(&stream(installed), &changes()).is_ok());
        let nothing_new =
            problems(vec![set("/r", false, 5), event("/r", DataChanged, 20), event("/r", DataChanged, 25)]);
        assert!(nothing_new.iter().any(|p| p.contains("no change")), "{nothing_new:?}");
    }

    #[test]
    fn after_a_reconnection_the_watch_counts_from_the_set_watches_reply() {
        // What changed while away (zxid 10) is not owed; an event before the watch is set again
        // is caught; what changes after it is owed.
        let away = vec![set("/r", false, 5), Received::Reconnected { at: 0 }, reply(12), event("/r", DataChanged, 20)];
        assert!(check_persistent(&stream(away), &changes()).is_ok());
        let early = problems(vec![set("/r", false, 5), Received::Reconnected { at: 0 }, event("/r", DataChanged, 10)]);
        assert!(early.iter().any(|p| p.contains("set again")), "{early:?}");
        let lost = problems(vec![set("/r", false, 5), Received::Reconnected { at: 0 }, reply(8), reply(20)]);
        assert!(lost.iter().any(|p| p.contains("lost or late")), "{lost:?}");
    }
}
