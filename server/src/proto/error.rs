//! ZooKeeper result codes (`KeeperException.Code`) as sent in reply headers and multi results.

use serde::{Deserialize, Serialize};

/// A ZooKeeper error code. `Ok` is 0; every other variant is a failure the client maps to a
/// `KeeperException`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[repr(i32)]
pub enum ErrorCode {
    /// Success.
    #[error("ok")]
    Ok = 0,
    /// A system error (never sent for a client mistake).
    #[error("system error")]
    SystemError = -1,
    /// Internal state inconsistency.
    #[error("runtime inconsistency")]
    RuntimeInconsistency = -2,
    /// Data inconsistency.
    #[error("data inconsistency")]
    DataInconsistency = -3,
    /// The connection to the server was lost.
    #[error("connection loss")]
    ConnectionLoss = -4,
    /// Error while marshalling or unmarshalling data.
    #[error("marshalling error")]
    MarshallingError = -5,
    /// Operation is unimplemented.
    #[error("unimplemented")]
    Unimplemented = -6,
    /// Operation timeout.
    #[error("operation timeout")]
    OperationTimeout = -7,
    /// Invalid arguments.
    #[error("bad arguments")]
    BadArguments = -8,
    /// No quorum of new config is connected (reconfig).
    #[error("new config has no quorum")]
    NewConfigNoQuorum = -13,
    /// Another reconfiguration is in progress.
    #[error("reconfig in progress")]
    ReconfigInProgress = -14,
    /// Unknown session (internal).
    #[error("unknown session")]
    UnknownSession = -12,
    /// Generic API error.
    #[error("api error")]
    ApiError = -100,
    /// Node does not exist.
    #[error("no node")]
    NoNode = -101,
    /// Not authenticated for this operation.
    #[error("not authenticated")]
    NoAuth = -102,
    /// Version conflict.
    #[error("bad version")]
    BadVersion = -103,
    /// Ephemeral nodes may not have children.
    #[error("ephemeral nodes may not have children")]
    NoChildrenForEphemerals = -108,
    /// The node already exists.
    #[error("node exists")]
    NodeExists = -110,
    /// The node has children.
    #[error("directory not empty")]
    NotEmpty = -111,
    /// The session has expired.
    #[error("session expired")]
    SessionExpired = -112,
    /// Invalid callback.
    #[error("invalid callback")]
    InvalidCallback = -113,
    /// Invalid ACL.
    #[error("invalid acl")]
    InvalidAcl = -114,
    /// Client authentication failed.
    #[error("auth failed")]
    AuthFailed = -115,
    /// Session moved to another server.
    #[error("session moved")]
    SessionMoved = -118,
    /// The server is read-only.
    #[error("not read only")]
    NotReadOnly = -119,
    /// Ephemeral node on a local session.
    #[error("ephemeral on local session")]
    EphemeralOnLocalSession = -120,
    /// No watcher matched (removeWatches / checkWatches).
    #[error("no watcher")]
    NoWatcher = -121,
    /// Request was rejected because the server is throttling.
    #[error("throttled")]
    Throttled = -127,
    /// Reconfig is disabled.
    #[error("reconfig disabled")]
    ReconfigDisabled = -123,
    /// The session was closed by the client.
    #[error("session closed require sasl auth")]
    SessionClosedRequireSaslAuth = -124,
    /// Quota exceeded.
    #[error("quota exceeded")]
    QuotaExceeded = -125,
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code for a wire value, when it is one we know.
    pub fn from_code(code: i32) -> Option<Self> {
        use ErrorCode::*;
        Some(match code {
            0 => Ok,
            -1 => SystemError,
            -2 => RuntimeInconsistency,
            -3 => DataInconsistency,
            -4 => ConnectionLoss,
            -5 => MarshallingError,
            -6 => Unimplemented,
            -7 => OperationTimeout,
            -8 => BadArguments,
            -12 => UnknownSession,
            -13 => NewConfigNoQuorum,
            -14 => ReconfigInProgress,
            -100 => ApiError,
            -101 => NoNode,
            -102 => NoAuth,
            -103 => BadVersion,
            -108 => NoChildrenForEphemerals,
            -110 => NodeExists,
            -111 => NotEmpty,
            -112 => SessionExpired,
            -113 => InvalidCallback,
            -114 => InvalidAcl,
            -115 => AuthFailed,
            -118 => SessionMoved,
            -119 => NotReadOnly,
            -120 => EphemeralOnLocalSession,
            -121 => NoWatcher,
            -123 => ReconfigDisabled,
            -124 => SessionClosedRequireSaslAuth,
            -125 => QuotaExceeded,
            -127 => Throttled,
            _ => return None,
        })
    }
}
