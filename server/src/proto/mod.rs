//! The ZooKeeper client wire protocol (jute): pure `&[u8]` in, typed records out, and back.
//! No I/O and no async here; framing on sockets belongs to `zk::connection`.
#![deny(missing_docs)]

pub mod acl;
pub mod connect;
pub mod create_mode;
pub mod error;
pub mod event;
pub mod header;
pub mod jute;
pub mod opcode;
pub mod request;
pub mod response;
pub mod stat;
pub mod watch;

pub use acl::{perms, Acl, Id};
pub use connect::{ConnectRequest, ConnectResponse};
pub use create_mode::CreateMode;
pub use error::ErrorCode;
pub use event::{EventType, KeeperState};
pub use header::{MultiHeader, ReplyHeader, RequestHeader, AUTH_XID, NOTIFICATION_XID, PING_XID, SET_WATCHES_XID};
pub use jute::{write_frame, Reader, Record, Writer};
pub use opcode::OpCode;
pub use request::Request;
pub use response::{encode_reply, ClientInfo, MultiResult, Response};
pub use stat::Stat;
pub use watch::{add_watch_mode, watcher_type, WatcherEvent};

/// Why a record could not be decoded. Every variant is the client's fault; the caller answers
/// with an error code or closes that one connection, never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record ended before all its fields were read.
    #[error("record truncated")]
    Truncated,
    /// A length prefix was negative (other than -1 for null) or larger than the frame.
    #[error("bad length {0}")]
    BadLength(i32),
    /// A string field was not valid UTF-8.
    #[error("string is not utf-8")]
    BadUtf8,
    /// The opcode is not one ZooKeeper defines.
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    /// The create flags are not a known mode.
    #[error("unknown create mode {0}")]
    BadCreateMode(i32),
    /// Some other field held a value outside its domain.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}
