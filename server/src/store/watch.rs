//! Watches registered on this server's connections, and firing them as txns are applied.
//! Watches are per server and per connection (a client re-sends them with setWatches after it
//! reconnects elsewhere); the data tree knows nothing of them.

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio::sync::mpsc;

use crate::proto::EventType;
use crate::tree::{changes_between, DataTree, WatchEvent};

/// A connection's id on this server.
pub type ConnId = u64;

/// A watch event on its way to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// zxid of the txn that fired it.
    pub zxid: i64,
    /// What happened.
    pub event: EventType,
    /// The znode it happened to (absolute, before any chroot the client strips itself).
    pub path: String,
}

/// The kinds of watch a connection can hold on a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// One-shot data watch (getData, or exists): fires on create, change, delete.
    Data,
    /// One-shot child watch (getChildren): fires on child create/delete and node delete.
    Child,
    /// Persistent watch on one node (addWatch mode 0).
    Persistent,
    /// Persistent watch on a node and every descendant (addWatch mode 1).
    PersistentRecursive,
}

const KINDS: [WatchKind; 4] =
    [WatchKind::Data, WatchKind::Child, WatchKind::Persistent, WatchKind::PersistentRecursive];

/// The `WatcherType` of removeWatches / checkWatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherType {
    /// Child watches (1).
    Children,
    /// Data watches (2).
    Data,
    /// Any watch, persistent ones included (3).
    Any,
    /// Persistent watches (4).
    Persistent,
    /// Persistent recursive watches (5).
    PersistentRecursive,
}

impl WatcherType {
    /// The type for a wire value, when valid.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => WatcherType::Children,
            2 => WatcherType::Data,
            3 => WatcherType::Any,
            4 => WatcherType::Persistent,
            5 => WatcherType::PersistentRecursive,
            _ => return None,
        })
    }

    fn covers(self, kind: WatchKind) -> bool {
        match self {
            WatcherType::Children => kind == WatchKind::Child,
            WatcherType::Data => kind == WatchKind::Data,
            WatcherType::Any => true,
            WatcherType::Persistent => kind == WatchKind::Persistent,
            WatcherType::PersistentRecursive => kind == WatchKind::PersistentRecursive,
        }
    }
}

/// All watches of this server.
#[derive(Default)]
pub struct WatchManager {
    senders: HashMap<ConnId, mpsc::UnboundedSender<Notification>>,
    by_path: HashMap<WatchKind, HashMap<String, HashSet<ConnId>>>,
    by_conn: HashMap<ConnId, HashSet<(WatchKind, String)>>,
    recursive_count: usize,
}

impl WatchManager {
    /// Lets `conn` receive notifications through `sender`.
    pub fn attach(&mut self, conn: ConnId, sender: mpsc::UnboundedSender<Notification>) {
        self.senders.insert(conn, sender);
    }

    /// Drops every watch of `conn` (its connection closed).
    pub fn detach(&mut self, conn: ConnId) {
        self.senders.remove(&conn);
        for (kind, path) in self.by_conn.remove(&conn).unwrap_or_default() {
            self.unindex(kind, &path, conn);
        }
    }

    fn unindex(&mut self, kind: WatchKind, path: &str, conn: ConnId) {
        let table = self.by_path.entry(kind).or_default();
        if let Some(conns) = table.get_mut(path) {
            if conns.remove(&conn) && kind == WatchKind::PersistentRecursive {
                self.recursive_count -= 1;
            }
            if conns.is_empty() {
                table.remove(path);
            }
        }
    }

    /// Registers a watch of `kind` on `path` for `conn`.
    pub fn add(&mut self, conn: ConnId, kind: WatchKind, path: &str) {
        let inserted = self.by_path.entry(kind).or_default().entry(path.to_owned()).or_default().insert(conn);
        if inserted {
            if kind == WatchKind::PersistentRecursive {
                self.recursive_count += 1;
            }
            self.by_conn.entry(conn).or_default().insert((kind, path.to_owned()));
        }
    }

    fn matching(&self, conn: ConnId, path: &str, ty: WatcherType) -> Vec<WatchKind> {
        KINDS
            .into_iter()
            .filter(|&kind| ty.covers(kind))
            .filter(|kind| self.by_path.get(kind).and_then(|t| t.get(path)).is_some_and(|c| c.contains(&conn)))
            .collect()
    }

    /// Whether `conn` holds a watch of type `ty` on `path`.
    pub fn check(&self, conn: ConnId, path: &str, ty: WatcherType) -> bool {
        !self.matching(conn, path, ty).is_empty()
    }

    /// Removes `conn`'s watches of type `ty` on `path`; false when there was none.
    pub fn remove(&mut self, conn: ConnId, path: &str, ty: WatcherType) -> bool {
        let kinds = self.matching(conn, path, ty);
        for &kind in &kinds {
            self.unindex(kind, path, conn);
            if let Some(set) = self.by_conn.get_mut(&conn) {
                set.remove(&(kind, path.to_owned()));
            }
        }
        !kinds.is_empty()
    }

    /// Fires the watches the events of one applied txn trigger. One-shot watches are consumed;
    /// each connection gets one notification per event however many of its watches match.
    pub fn trigger(&mut self, zxid: i64, events: &[WatchEvent]) {
        if self.senders.is_empty() {
            return;
        }
        for ev in events {
            let mut targets: HashSet<ConnId> = HashSet::new();
            let one_shot: &[WatchKind] = match ev.event {
                EventType::NodeCreated | EventType::NodeDataChanged => &[WatchKind::Data],
                EventType::NodeDeleted => &[WatchKind::Data, WatchKind::Child],
                EventType::NodeChildrenChanged => &[WatchKind::Child],
                _ => &[],
            };
            for &kind in one_shot {
                if let Some(conns) = self.by_path.get_mut(&kind).and_then(|t| t.remove(&ev.path)) {
                    for conn in conns {
                        if let Some(set) = self.by_conn.get_mut(&conn) {
                            set.remove(&(kind, ev.path.clone()));
                        }
                        targets.insert(conn);
                    }
                }
            }
            if let Some(conns) = self.by_path.get(&WatchKind::Persistent).and_then(|t| t.get(&ev.path)) {
                targets.extend(conns);
            }
            // Recursive watches see node events of the subtree, never NodeChildrenChanged.
            if self.recursive_count > 0 && ev.event != EventType::NodeChildrenChanged {
                if let Some(table) = self.by_path.get(&WatchKind::PersistentRecursive) {
                    for prefix in ancestors_and_self(&ev.path) {
                        if let Some(conns) = table.get(prefix) {
                            targets.extend(conns);
                        }
                    }
                }
            }
            for conn in targets {
                if let Some(sender) = self.senders.get(&conn) {
                    // A closed receiver means the connection is going away; detach cleans up.
                    let _ = sender.send(Notification { zxid, event: ev.event, path: ev.path.clone() });
                }
            }
        }
    }

    /// Fires what replacing the tree `old` with `new` at `zxid` changed on the watched paths
    /// (every path under a recursive watch included): a snapshot install skips the txns it
    /// covers, and with them the events they would have fired (issue 12 e). Each path's change
    /// is judged from its Stat, as [`changes_between`] does; the events carry `zxid`.
    pub fn trigger_replaced(&mut self, zxid: i64, old: &DataTree, new: &DataTree) {
        if self.senders.is_empty() {
            return;
        }
        let mut paths: BTreeSet<&str> = BTreeSet::new();
        for (kind, table) in &self.by_path {
            if *kind == WatchKind::PersistentRecursive {
                for root in table.keys() {
                    paths.extend(old.subtree(root));
                    paths.extend(new.subtree(root));
                }
            } else {
                paths.extend(table.keys().map(String::as_str));
            }
        }
        let events: Vec<WatchEvent> = paths
            .into_iter()
            .flat_map(|path| {
                changes_between(old.get(path), new.get(path))
                    .into_iter()
                    .map(move |event| WatchEvent { path: path.to_owned(), event })
            })
            .collect();
        self.trigger(zxid, &events);
    }

    /// Sends one notification to `conn` directly (setWatches on reconnect).
    pub fn notify(&self, conn: ConnId, notification: Notification) {
        if let Some(sender) = self.senders.get(&conn) {
            let _ = sender.send(notification);
        }
    }

    /// Number of watches (each kind on each path for each connection counts once).
    pub fn watch_count(&self) -> usize {
        self.by_conn.values().map(HashSet::len).sum()
    }

    /// Number of distinct watched paths.
    pub fn path_count(&self) -> usize {
        let mut paths: HashSet<&str> = HashSet::new();
        for table in self.by_path.values() {
            paths.extend(table.keys().map(String::as_str));
        }
        paths.len()
    }

    /// Number of connections holding at least one watch.
    pub fn watching_connections(&self) -> usize {
        self.by_conn.values().filter(|w| !w.is_empty()).count()
    }

    /// Watched paths per connection, for the `wchc` style listings.
    pub fn paths_of(&self, conn: ConnId) -> Vec<String> {
        let mut paths: Vec<String> =
            self.by_conn.get(&conn).map(|w| w.iter().map(|(_, p)| p.clone()).collect()).unwrap_or_default();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// `/a/b/c`, `/a/b`, `/a`, `/`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            Some(0) if current.len() > 1 => Some("/"),
            Some(0) | None => None,
            Some(i) => Some(&current[..i]),
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(path: &str, event: EventType) -> WatchEvent {
        WatchEvent { path: path.into(), event }
    }

    fn conn(wm: &mut WatchManager, id: ConnId) -> mpsc::UnboundedReceiver<Notification> {
        let (tx, rx) = mpsc::unbounded_channel();
        wm.attach(id, tx);
        rx
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Notification>) -> Vec<(EventType, String)> {
        let mut out = vec![];
        while let Ok(n) = rx.try_recv() {
            out.push((n.event, n.path));
        }
        out
    }

    /// Applies writes of session 9 (created first) to `tree`, from zxid `first` on.
    fn write(tree: &mut DataTree, first: i64, ops: Vec<crate::tree::WriteOp>) {
        use crate::tree::{Txn, TxnKind};
        if tree.session(9).is_none() {
            let create = TxnKind::CreateSession { session_id: 9, password: vec![0; 16], timeout_ms: 4000 };
            tree.apply(first - 1, None, &Txn { time_ms: 1, kind: create });
        }
        for (i, op) in ops.into_iter().enumerate() {
            let kind = TxnKind::Write { session_id: 9, auth: vec![], op };
            tree.apply(first + i as i64, None, &Txn { time_ms: 1, kind });
        }
    }

    fn create(path: &str) -> crate::tree::WriteOp {
        crate::tree::WriteOp::Create {
            path: path.into(),
            data: Some(vec![]),
            acl: crate::proto::Acl::open_unsafe(),
            mode: crate::proto::CreateMode::Persistent,
            ttl_ms: crate::tree::NO_TTL,
        }
    }

    fn set(path: &str) -> crate::tree::WriteOp {
        crate::tree::WriteOp::SetData { path: path.into(), data: Some(b"x".to_vec()), version: -1 }
    }

    fn delete(path: &str) -> crate::tree::WriteOp {
        crate::tree::WriteOp::Delete { path: path.into(), version: -1 }
    }

    /// Hole e: a tree replaced by a snapshot fires what the skipped txns would have: each
    /// watch once, by what its path's Stat says changed, recursive watches for the subtree.
    #[test]
    fn a_replaced_tree_fires_the_watches_its_changes_trigger() {
        let mut old = DataTree::new();
        write(&mut old, 2, vec![create("/a"), create("/gone"), create("/p"), create("/same"), create("/again")]);
        let mut new = old.clone();
        write(&mut new, 10, vec![set("/a"), delete("/gone"), create("/p/c"), create("/new"), delete("/again")]);
        write(&mut new, 20, vec![create("/again")]);

        let mut wm = WatchManager::default();
        let mut rx = conn(&mut wm, 1);
        for path in ["/a", "/gone", "/new", "/same", "/again"] {
            wm.add(1, WatchKind::Data, path);
        }
        wm.add(1, WatchKind::Child, "/p");
        let mut recursive = conn(&mut wm, 2);
        wm.add(2, WatchKind::PersistentRecursive, "/p");
        wm.trigger_replaced(20, &old, &new);
        let mut fired = drain(&mut rx);
        fired.sort_by(|a, b| a.1.cmp(&b.1));
        use EventType::*;
        let expected = [
            (NodeDataChanged, "/a"),
            (NodeDeleted, "/again"),
            (NodeDeleted, "/gone"),
            (NodeCreated, "/new"),
            (NodeChildrenChanged, "/p"),
        ];
        assert_eq!(fired, expected.map(|(e, p)| (e, p.to_owned())));
        assert_eq!(wm.watch_count(), 2, "the watch on /same stays, with the recursive one");
        assert_eq!(drain(&mut recursive), vec![(NodeCreated, "/p/c".to_owned())]);
        // Nothing changed: nothing fires.
        wm.trigger_replaced(21, &new, &new);
        assert!(drain(&mut rx).is_empty() && drain(&mut recursive).is_empty());
    }

    #[test]
    fn ancestors() {
        assert_eq!(ancestors_and_self("/a/b/c").collect::<Vec<_>>(), ["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(ancestors_and_self("/").collect::<Vec<_>>(), ["/"]);
    }

    #[test]
    fn one_shot_data_watch_fires_once() {
        let mut wm = WatchManager::default();
        let mut rx = conn(&mut wm, 1);
        wm.add(1, WatchKind::Data, "/a");
        wm.trigger(5, &[ev("/a", EventType::NodeDataChanged)]);
        wm.trigger(6, &[ev("/a", EventType::NodeDataChanged)]);
        assert_eq!(drain(&mut rx), vec![(EventType::NodeDataChanged, "/a".into())]);
        assert_eq!(wm.watch_count(), 0);
    }

    #[test]
    fn delete_fires_data_and_child_watches_once_per_connection() {
        let mut wm = WatchManager::default();
        let mut rx = conn(&mut wm, 1);
        wm.add(1, WatchKind::Data, "/a");
        wm.add(1, WatchKind::Child, "/a");
        wm.trigger(5, &[ev("/a", EventType::NodeDeleted)]);
        assert_eq!(drain(&mut rx), vec![(EventType::NodeDeleted, "/a".into())]);
    }

    #[test]
    fn persistent_and_recursive() {
        let mut wm = WatchManager::default();
        let mut p = conn(&mut wm, 1);
        let mut r = conn(&mut wm, 2);
        wm.add(1, WatchKind::Persistent, "/a");
        wm.add(2, WatchKind::PersistentRecursive, "/a");
        wm.trigger(5, &[ev("/a/b", EventType::NodeCreated), ev("/a", EventType::NodeChildrenChanged)]);
        wm.trigger(6, &[ev("/a", EventType::NodeDataChanged)]);
        assert_eq!(
            drain(&mut p),
            vec![(EventType::NodeChildrenChanged, "/a".into()), (EventType::NodeDataChanged, "/a".into())]
        );
        assert_eq!(
            drain(&mut r),
            vec![(EventType::NodeCreated, "/a/b".into()), (EventType::NodeDataChanged, "/a".into())]
        );
        assert_eq!(wm.watch_count(), 2);
    }

    #[test]
    fn remove_check_and_detach() {
        let mut wm = WatchManager::default();
        let _rx = conn(&mut wm, 1);
        wm.add(1, WatchKind::Data, "/a");
        wm.add(1, WatchKind::Child, "/a");
        assert!(wm.check(1, "/a", WatcherType::Children));
        assert!(!wm.check(1, "/a", WatcherType::Persistent));
        assert!(wm.remove(1, "/a", WatcherType::Children));
        assert!(!wm.check(1, "/a", WatcherType::Children));
        assert!(wm.check(1, "/a", WatcherType::Any));
        assert!(!wm.remove(1, "/b", WatcherType::Any));
        wm.add(1, WatchKind::PersistentRecursive, "/");
        wm.detach(1);
        assert_eq!(wm.watch_count(), 0);
        assert_eq!(wm.path_count(), 0);
    }
}
