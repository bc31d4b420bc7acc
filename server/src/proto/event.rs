//! Watch event types and session states, as carried in a `WatcherEvent` notification.

use serde::{Deserialize, Serialize};

use super::DecodeError;

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

impl EventType {
    /// The value sent on the wire.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl TryFrom<i32> for EventType {
    type Error = DecodeError;

    fn try_from(value: i32) -> Result<Self, DecodeError> {
        use EventType::*;
        Ok(match value {
            -1 => None,
            1 => NodeCreated,
            2 => NodeDeleted,
            3 => NodeDataChanged,
            4 => NodeChildrenChanged,
            5 => DataWatchRemoved,
            6 => ChildWatchRemoved,
            7 => PersistentWatchRemoved,
            _ => return Err(DecodeError::Invalid("unknown event type")),
        })
    }
}

impl KeeperState {
    /// The value sent on the wire.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl TryFrom<i32> for KeeperState {
    type Error = DecodeError;

    fn try_from(value: i32) -> Result<Self, DecodeError> {
        use KeeperState::*;
        Ok(match value {
            0 => Disconnected,
            3 => SyncConnected,
            4 => AuthFailed,
            5 => ConnectedReadOnly,
            6 => SaslAuthenticated,
            -112 => Expired,
            7 => Closed,
            _ => return Err(DecodeError::Invalid("unknown keeper state")),
        })
    }
}
