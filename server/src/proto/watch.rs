//! The watch notification record (`WatcherEvent`) and the integer domains of watch requests
//! (watcher types for checkWatches / removeWatches, addWatch modes). Which watches fire is the
//! watch manager's business, not this module's.

use super::header::{ReplyHeader, NOTIFICATION_XID};
use super::jute::{write_frame, Reader, Record, Writer};
use super::{DecodeError, EventType, KeeperState};

/// `Watcher.WatcherType` values, as sent in checkWatches and removeWatches.
pub mod watcher_type {
    /// Child watches.
    pub const CHILDREN: i32 = 1;
    /// Data (and exists) watches.
    pub const DATA: i32 = 2;
    /// Every kind of watch.
    pub const ANY: i32 = 3;
    /// Persistent watches.
    pub const PERSISTENT: i32 = 4;
    /// Persistent recursive watches.
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// `AddWatchMode` values, as sent in addWatch.
pub mod add_watch_mode {
    /// A persistent watch on the node (data and children events, not removed when fired).
    pub const PERSISTENT: i32 = 0;
    /// A persistent watch on the node and every descendant.
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

/// A watch notification, sent under [`NOTIFICATION_XID`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatcherEvent {
    /// What happened.
    pub event_type: EventType,
    /// The session state.
    pub state: KeeperState,
    /// The znode the event is about (empty for session events).
    pub path: String,
}

impl WatcherEvent {
    /// Appends the record (no header).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.write(out);
    }

    /// Decodes a notification body (the frame after its reply header).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Reader::new(body).read()
    }

    /// Appends a whole notification frame: length, reply header `{xid: -1, zxid, err: 0}`, then
    /// the event. `zxid` is the txn that fired the watch, as ZooKeeper 3.9 sends it
    /// (ZOOKEEPER-4655; older servers sent -1).
    pub fn encode_notification(&self, zxid: i64, out: &mut Vec<u8>) {
        write_frame(out, |out| {
            ReplyHeader::ok(NOTIFICATION_XID, zxid).encode(out);
            self.write(out);
        });
    }
}

impl Record for WatcherEvent {
    const MIN_LEN: usize = 12;

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(WatcherEvent {
            event_type: EventType::try_from(r.read_i32()?)?,
            state: KeeperState::try_from(r.read_i32()?)?,
            path: r.read_string()?,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.write_i32(self.event_type.code());
        out.write_i32(self.state.code());
        out.write_string(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_frame_layout() {
        let event = WatcherEvent {
            event_type: EventType::NodeDataChanged,
            state: KeeperState::SyncConnected,
            path: "/a".to_owned(),
        };
        let mut out = Vec::new();
        event.encode_notification(0x0102, &mut out);
        let mut expected = vec![0, 0, 0, 30];
        expected.extend_from_slice(&[0xff; 4]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&[0; 4]);
        expected.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 2, b'/', b'a']);
        assert_eq!(out, expected);

        let (header, body) = ReplyHeader::decode(&out[4..]).expect("header");
        assert_eq!(header, ReplyHeader::ok(NOTIFICATION_XID, 0x0102));
        assert_eq!(WatcherEvent::decode(body), Ok(event));
    }

    #[test]
    fn every_event_type_and_state_round_trips() {
        use EventType::*;
        use KeeperState::*;
        let types = [
            None,
            NodeCreated,
            NodeDeleted,
            NodeDataChanged,
            NodeChildrenChanged,
            DataWatchRemoved,
            ChildWatchRemoved,
            PersistentWatchRemoved,
        ];
        let states = [Disconnected, SyncConnected, AuthFailed, ConnectedReadOnly, SaslAuthenticated, Expired, Closed];
        for event_type in types {
            for state in states {
                let event = WatcherEvent { event_type, state, path: String::new() };
                let mut out = Vec::new();
                event.encode(&mut out);
                assert_eq!(WatcherEvent::decode(&out), Ok(event));
            }
        }
    }

    #[test]
    fn unknown_event_type_is_an_error() {
        let body = [0, 0, 0, 42, 0, 0, 0, 3, 0, 0, 0, 0];
        assert_eq!(WatcherEvent::decode(&body), Err(DecodeError::Invalid("unknown event type")));
        let body = [0, 0, 0, 1, 0, 0, 0, 42, 0, 0, 0, 0];
        assert_eq!(WatcherEvent::decode(&body), Err(DecodeError::Invalid("unknown keeper state")));
        assert_eq!(WatcherEvent::decode(&body[..5]), Err(DecodeError::Truncated));
    }
}
