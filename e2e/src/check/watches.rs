//! One-shot watch delivery, per session (a session may span several connections). The input is,
//! for each session, the ordered stream of what its client received (replies, watch events,
//! reconnections), and the changes known to have happened to each watched path. The rules, each
//! its own named violation:
//!
//! - **event without a watch**: an event on a path with no pending watch it fires; told apart
//!   as *before its reply* (a later reply sets the watch: the event overtook the read that set
//!   it) or *duplicate* (a one-shot watch on it already fired);
//! - **event for an old change**: an event whose zxid is at or before the zxid of the read that
//!   set the watch (or, on a path whose changes are all known, with no change after it);
//! - **stale ordering**: a reply with a zxid at or after the first change that fires a pending
//!   watch arrived before that watch's event: the client saw the change's effect before being
//!   told of it;
//! - **events out of order**: a session's events go back in zxid (events without a zxid take
//!   that of the first known change after their watch);
//! - **lost notification**: a watch with a known change after it never fired although the
//!   session was alive to the end, across reconnects too.
//!
//! Watches follow ZooKeeper's tables: data and exists watches fire on creation, data change and
//! deletion; child watches on children changed and deletion. One event consumes every pending
//! watch it fires on that path (a deletion fires data and child watches with one event).
//!
//! What it cannot see: changes the workload did not learn of (a path whose list is not complete
//! is spared the "no change after it" rule), and what the client library did before recording.
//! Persistent watches (addWatch) are [`super::persistent`]'s: a stream here must not hold them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The one-shot watch a read set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// getData with watch.
    Data,
    /// exists with watch (also set when the node does not exist).
    Exists,
    /// getChildren with watch.
    Child,
    /// addWatch, mode PERSISTENT: every change of the path, until removed (judged by
    /// [`super::persistent`], never in a stream this checker reads).
    Persistent,
    /// addWatch, mode PERSISTENT_RECURSIVE: creations, deletions and data changes of the path
    /// and every path below it (judged by [`super::persistent`]).
    PersistentRecursive,
}

/// What happened to a path, as a change and as the event it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// NodeCreated.
    Created,
    /// NodeDeleted.
    Deleted,
    /// NodeDataChanged.
    DataChanged,
    /// NodeChildrenChanged.
    ChildrenChanged,
}

impl WatchKind {
    /// Whether a change of `kind` fires this watch.
    pub fn fired_by(self, kind: EventKind) -> bool {
        match self {
            WatchKind::Data | WatchKind::Exists => kind != EventKind::ChildrenChanged,
            WatchKind::Child => matches!(kind, EventKind::ChildrenChanged | EventKind::Deleted),
            WatchKind::Persistent => true,
            WatchKind::PersistentRecursive => kind != EventKind::ChildrenChanged,
        }
    }
}

/// One thing a session's client received, in the order received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Received {
    /// The reply to a request (pings included).
    Reply {
        /// The request's xid.
        xid: i32,
        /// The reply header's zxid.
        zxid: i64,
        /// The path the request read, if any.
        path: Option<String>,
        /// The watch the reply left set on `path`: only when the server set one (a successful
        /// read with watch, or exists with watch on a missing node).
        watch: Option<WatchKind>,
        /// When it arrived (ns since the run's start).
        at: u64,
    },
    /// A watch event.
    Event {
        /// The path it is for.
        path: String,
        /// What happened.
        kind: EventKind,
        /// The header's zxid, if the server sent one (ZooKeeper before 3.9 sends -1: `None`).
        zxid: Option<i64>,
        /// When it arrived.
        at: u64,
    },
    /// The client connected again (to any server) and kept its session.
    Reconnected {
        /// When.
        at: u64,
    },
}

/// Everything one session received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStream {
    /// The session id.
    pub session: i64,
    /// What it received, in order.
    pub received: Vec<Received>,
    /// The session was alive when the stream ended and had caught up with every known change
    /// (for example a sync and a read answered after the last change): only then is a watch
    /// that never fired lost.
    pub alive_at_end: bool,
}

/// One change of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The txn that made it.
    pub zxid: i64,
    /// What it did to the path.
    pub kind: EventKind,
}

/// The known changes of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathChanges {
    /// The path.
    pub path: String,
    /// Its changes, in any order.
    pub changes: Vec<Change>,
    /// Every change of the path during the run is in `changes`.
    pub complete: bool,
}

/// What [`check_watches`] found in streams that hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sessions checked.
    pub sessions: usize,
    /// Watches set.
    pub watches: usize,
    /// Events received.
    pub events: usize,
}

/// A watch waiting for its event.
struct Pending {
    /// zxid of the reply that set it.
    zxid: i64,
    /// Index of that reply in the stream.
    reply: usize,
    /// The first known change after `zxid` that fires it.
    first_change: Option<Change>,
    /// The first reply that reflected `first_change` before the event came: (index, zxid).
    stale: Option<(usize, i64)>,
    /// Reconnections when it was set.
    reconnects: usize,
}

/// The known changes by path, each path's in zxid order, and whether they are all of them.
pub(super) fn by_path(changes: &[PathChanges]) -> BTreeMap<&str, (Vec<Change>, bool)> {
    let mut known: BTreeMap<&str, (Vec<Change>, bool)> = BTreeMap::new();
    for path in changes {
        let entry = known.entry(&path.path).or_default();
        entry.0.extend(&path.changes);
        entry.1 |= path.complete;
    }
    for (changes, _) in known.values_mut() {
        changes.sort_by_key(|c| c.zxid);
    }
    known
}

/// Checks every session's stream against the known changes of the paths.
pub fn check_watches(sessions: &[SessionStream], changes: &[PathChanges]) -> Result<Summary, Vec<String>> {
    let known = by_path(changes);
    let mut problems = Vec::new();
    let mut summary = Summary { sessions: sessions.len(), ..Summary::default() };
    for stream in sessions {
        check_stream(stream, &known, &mut summary, &mut problems);
    }
    super::verdict(summary, problems)
}

fn check_stream(
    stream: &SessionStream,
    known: &BTreeMap<&str, (Vec<Change>, bool)>,
    summary: &mut Summary,
    problems: &mut Vec<String>,
) {
    let session = stream.session;
    let received = &stream.received;
    let mut pending: BTreeMap<(&str, WatchKind), Pending> = BTreeMap::new();
    // The one-shot watches that fired: the reply that set each, by path and kind.
    let mut fired: BTreeMap<(&str, WatchKind), usize> = BTreeMap::new();
    let mut last_event: Option<(i64, usize)> = None;
    let mut reconnects = 0;
    let stale_problem = |watch: &(&str, WatchKind), p: &Pending, (reply, zxid): (usize, i64)| {
        let change = p.first_change.map_or(0, |c| c.zxid);
        format!(
            "session 0x{session:x}: stale ordering: reply #{reply} (zxid 0x{zxid:x}) came before the event of the \
             {:?} watch on {} set by reply #{} (zxid 0x{:x}), though it reflects the change at zxid 0x{change:x} \
             that fires the watch",
            watch.1, watch.0, p.reply, p.zxid
        )
    };
    for (k, item) in received.iter().enumerate() {
        match item {
            Received::Reconnected { .. } => reconnects += 1,
            Received::Reply { zxid, path, watch, .. } => {
                for p in pending.values_mut() {
                    if p.stale.is_none() && p.first_change.is_some_and(|c| *zxid >= c.zxid) {
                        p.stale = Some((k, *zxid));
                    }
                }
                let Some(kind) = watch else { continue };
                let Some(path) = path else {
                    problems.push(format!("session 0x{session:x}: reply #{k} sets a {kind:?} watch but has no path"));
                    continue;
                };
                summary.watches += 1;
                // The server holds one watch per path and kind: a second read before the event
                // leaves the first in place.
                pending.entry((path.as_str(), *kind)).or_insert_with(|| Pending {
                    zxid: *zxid,
                    reply: k,
                    first_change: known.get(path.as_str()).and_then(|(changes, _)| {
                        changes.iter().find(|c| c.zxid > *zxid && kind.fired_by(c.kind)).copied()
                    }),
                    stale: None,
                    reconnects,
                });
            }
            Received::Event { path, kind, zxid, .. } => {
                summary.events += 1;
                let what = format!("session 0x{session:x}: event #{k} ({kind:?} on {path})");
                let watches: Vec<(&str, WatchKind)> =
                    pending.keys().filter(|(p, w)| p == path && w.fired_by(*kind)).copied().collect();
                if watches.is_empty() {
                    let duplicate = fired.iter().find(|((p, w), _)| p == path && w.fired_by(*kind));
                    let later = received[k + 1..].iter().position(|r| {
                        matches!(r, Received::Reply { path: Some(p), watch: Some(w), .. } if p == path && w.fired_by(*kind))
                    });
                    problems.push(match (duplicate, later) {
                        (Some(((_, w), reply)), _) => format!(
                            "{what}: duplicate of a one-shot watch: the {w:?} watch set by reply #{reply} had already \
                             fired"
                        ),
                        (None, Some(offset)) => format!(
                            "{what}: event before its reply: it came before reply #{}, the read that set its watch",
                            k + 1 + offset
                        ),
                        (None, None) => format!("{what}: event without a watch: no read set a watch it fires"),
                    });
                    continue;
                }
                let mut inferred = None;
                for watch in watches {
                    let Some(p) = pending.remove(&watch) else { continue };
                    fired.insert(watch, p.reply);
                    match zxid {
                        Some(z) if *z <= p.zxid => problems.push(format!(
                            "{what}: event for an old change: its zxid 0x{z:x} is not after that of reply #{} \
                             (zxid 0x{:x}), which set the {:?} watch",
                            p.reply, p.zxid, watch.1
                        )),
                        None if p.first_change.is_none() && known.get(path.as_str()).is_some_and(|(_, all)| *all) => {
                            problems.push(format!(
                                "{what}: event for an old change: no change of {path} after reply #{} (zxid 0x{:x}), \
                                 which set the {:?} watch, fires it",
                                p.reply, p.zxid, watch.1
                            ))
                        }
                        _ => {}
                    }
                    if let Some(stale) = p.stale {
                        problems.push(stale_problem(&watch, &p, stale));
                    }
                    inferred = inferred.or(p.first_change.map(|c| c.zxid));
                }
                if let Some(z) = zxid.or(inferred) {
                    if let Some((before, earlier)) = last_event.filter(|(before, _)| *before > z) {
                        problems.push(format!(
                            "{what}: events out of zxid order: zxid 0x{z:x} came after event #{earlier} at zxid \
                             0x{before:x}"
                        ));
                    }
                    last_event = Some((z, k));
                }
            }
        }
    }
    for (watch, p) in &pending {
        match (p.first_change, p.stale) {
            (Some(change), _) if stream.alive_at_end => problems.push(format!(
                "session 0x{session:x}: lost notification: the {:?} watch on {} set by reply #{} (zxid 0x{:x}) never \
                 fired, though the change at zxid 0x{:x} ({:?}) fires it ({} reconnections since it was set)",
                watch.1,
                watch.0,
                p.reply,
                p.zxid,
                change.zxid,
                change.kind,
                reconnects - p.reconnects
            )),
            (_, Some(stale)) => problems.push(stale_problem(watch, p, stale)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(xid: i32, zxid: i64, watch: Option<(&str, WatchKind)>) -> Received {
        Received::Reply {
            xid,
            zxid,
            path: watch.map(|(p, _)| p.to_owned()),
            watch: watch.map(|(_, w)| w),
            at: xid as u64,
        }
    }

    fn event(path: &str, kind: EventKind, zxid: Option<i64>) -> Received {
        Received::Event { path: path.to_owned(), kind, zxid, at: 0 }
    }

    fn stream(received: Vec<Received>) -> SessionStream {
        SessionStream { session: 7, received, alive_at_end: true }
    }

    fn changes(path: &str, changes: &[(i64, EventKind)], complete: bool) -> PathChanges {
        PathChanges {
            path: path.to_owned(),
            changes: changes.iter().map(|&(zxid, kind)| Change { zxid, kind }).collect(),
            complete,
        }
    }

    fn known() -> Vec<PathChanges> {
        use EventKind::*;
        vec![
            changes("/a", &[(10, DataChanged), (20, DataChanged), (30, Deleted)], true),
            changes("/p", &[(12, ChildrenChanged), (25, ChildrenChanged)], false),
        ]
    }

    fn problems(received: Vec<Received>) -> Vec<String> {
        check_watches(&[stream(received)], &known()).expect_err("a violation")
    }

    use EventKind::*;
    use WatchKind::*;

    #[test]
    fn good_streams_pass() {
        let received = vec![
            reply(1, 5, Some(("/a", Data))),
            reply(2, 6, Some(("/p", Child))),
            reply(3, 8, Some(("/a", Exists))),
            // One event for the data and exists watches on /a.
            event("/a", DataChanged, Some(10)),
            reply(4, 10, Some(("/a", Data))),
            Received::Reconnected { at: 50 },
            // An event without a zxid takes that of the first change after its watch.
            event("/p", ChildrenChanged, None),
            reply(5, 12, Some(("/p", Child))),
            event("/a", DataChanged, Some(20)),
            reply(6, 21, None),
            // One deletion, data and child watches on /a.
            reply(7, 22, Some(("/a", Data))),
            reply(8, 22, Some(("/a", Child))),
            event("/p", ChildrenChanged, Some(25)),
            event("/a", Deleted, Some(30)),
            reply(9, 31, None),
        ];
        let summary = check_watches(&[stream(received)], &known()).expect("good");
        assert_eq!(summary, Summary { sessions: 1, watches: 7, events: 5 });
        // The watch left on /p fired by its change at 25 is not lost when the session ended
        // dead; nor is a watch on a path with no known change after it when alive.
        let dead = SessionStream { alive_at_end: false, ..stream(vec![reply(1, 13, Some(("/p", Child)))]) };
        let quiet = stream(vec![reply(1, 30, Some(("/a", Exists)))]);
        assert!(check_watches(&[dead, quiet], &known()).is_ok());
    }

    #[test]
    fn an_event_before_its_reply_fails() {
        let problems = problems(vec![event("/a", DataChanged, Some(10)), reply(1, 5, Some(("/a", Data)))]);
        assert!(problems[0].contains("event before its reply: it came before reply #1"), "{problems:?}");
    }

    #[test]
    fn a_duplicate_one_shot_event_fails() {
        let problems = problems(vec![
            reply(1, 5, Some(("/a", Data))),
            event("/a", DataChanged, Some(10)),
            event("/a", DataChanged, Some(20)),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("event #2 (DataChanged on /a): duplicate of a one-shot watch"), "{problems:?}");
    }

    #[test]
    fn a_lost_notification_fails() {
        let problems =
            problems(vec![reply(1, 5, Some(("/a", Data))), Received::Reconnected { at: 9 }, reply(2, 9, None)]);
        assert!(problems[0].contains("lost notification: the Data watch on /a set by reply #0"), "{problems:?}");
        assert!(problems[0].contains("(1 reconnections since it was set)"), "{problems:?}");
    }

    #[test]
    fn the_other_violations_fail() {
        let old = problems(vec![reply(1, 10, Some(("/a", Data))), event("/a", DataChanged, Some(10))]);
        assert!(old[0].contains("event for an old change"), "{old:?}");
        let none_after = problems(vec![reply(1, 30, Some(("/a", Exists))), event("/a", Created, None)]);
        assert!(none_after[0].contains("event for an old change: no change of /a"), "{none_after:?}");
        let stale =
            problems(vec![reply(1, 5, Some(("/a", Data))), reply(2, 10, None), event("/a", DataChanged, Some(10))]);
        assert!(stale[0].contains("stale ordering: reply #1 (zxid 0xa)"), "{stale:?}");
        let unordered = problems(vec![
            reply(1, 5, Some(("/p", Child))),
            reply(2, 5, Some(("/a", Data))),
            event("/a", DataChanged, Some(10)),
            event("/p", ChildrenChanged, Some(9)),
        ]);
        assert!(unordered[0].contains("events out of zxid order"), "{unordered:?}");
        let stray = problems(vec![event("/b", Created, None)]);
        assert!(stray[0].contains("event without a watch"), "{stray:?}");
    }
}
