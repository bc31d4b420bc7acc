//! Watch event types and session states, as carried in a `WatcherEvent` notification.

use serde::{Deserialize, Serialize};

/// What happened to the watched znode (`Watcher.Event.EventType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i32)]
pub enum EventType {
    /// A session state change, not about a znode.
    None = -1,
    /// The znode was created.
    NodeCreated = 1,
    /// The znode was deleted.
    NodeDeleted = 2,
    /// The znode's data changed.
    NodeDataChanged = 3,
    /// A child was created or deleted.
    NodeChildrenChanged = 4,
    /// A data watch was removed.
    DataWatchRemoved = 5,
    /// A child watch was removed.
    ChildWatchRemoved = 6,
    /// A persistent watch was removed.
    PersistentWatchRemoved = 7,
}

/// The session state sent with an event (`Watcher.Event.KeeperState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i32)]
pub enum KeeperState {
    /// Disconnected.
    Disconnected = 0,
    /// Connected.
    SyncConnected = 3,
    /// Authentication failed.
    AuthFailed = 4,
    /// Connected read-only.
    ConnectedReadOnly = 5,
    /// SASL authenticated.
    SaslAuthenticated = 6,
    /// The session expired.
    Expired = -112,
    /// The client closed the session.
    Closed = 7,
}
