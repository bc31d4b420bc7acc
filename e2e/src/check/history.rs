//! The history of client ops on registers that the workload records and [`super::linearizable`]
//! and [`super::fifo`] check. A register is a znode that exists before the run starts, at
//! version 0 with an initial value, and is only read (`getData`) and written (`setData`).
//!
//! Times are nanoseconds since the run's start on the workload's monotonic clock. An op whose
//! outcome is unknown (the connection was lost with it in flight, or it timed out) has no
//! completion time: it may take effect at any time after its invocation, or never.

use serde::{Deserialize, Serialize};

/// One client call and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The workload client that made the call (its index in the workload).
    pub client: u32,
    /// The ZooKeeper session it was sent on.
    pub session: i64,
    /// What was asked.
    pub call: Call,
    /// When the request was sent.
    pub invoked: u64,
    /// When the answer came; `None` exactly when the outcome is [`Outcome::Unknown`].
    pub completed: Option<u64>,
    /// The answer.
    pub outcome: Outcome,
}

/// What a client asked of a register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// `getData(key)`.
    Read {
        /// The register's path.
        key: String,
    },
    /// `setData(key, value, expect.unwrap_or(-1))`.
    Write {
        /// The register's path.
        key: String,
        /// The value written; unique per write in the whole history, so a read names the write
        /// it saw.
        value: String,
        /// The version a conditional write expects; `None` for an unconditional one.
        expect: Option<i32>,
        /// The write's place in its session's send order (increasing, across all keys); the
        /// setData ops of one multi share it.
        seq: u64,
    },
}

impl Call {
    /// The register the call is on.
    pub fn key(&self) -> &str {
        match self {
            Call::Read { key } | Call::Write { key, .. } => key,
        }
    }
}

/// The answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A read's answer.
    Read {
        /// The data; `None` for a znode with no data, which equals the empty string.
        value: Option<String>,
        /// The znode's data version.
        version: i32,
        /// zxid of the txn that last set the data (the register's creation, before any write).
        mzxid: i64,
    },
    /// A write was applied.
    Written {
        /// The data version it produced.
        version: i32,
        /// Its zxid.
        mzxid: i64,
    },
    /// A conditional write was refused: the version was not the expected one.
    BadVersion,
    /// Any other ZooKeeper error but connection loss: the call was definitely not applied.
    Failed(String),
    /// The connection was lost with the call in flight, or it timed out: it may or may not
    /// have been applied.
    Unknown,
}

impl Op {
    /// A short description for problems: index, client, session and call.
    pub(crate) fn describe(&self, index: usize) -> String {
        let call = match &self.call {
            Call::Read { key } => format!("read of {key}"),
            Call::Write { key, value, expect: None, seq } => format!("write #{seq} of {value:?} to {key}"),
            Call::Write { key, value, expect: Some(v), seq } => {
                format!("write #{seq} of {value:?} to {key} if version {v}")
            }
        };
        format!("op {index} ({call}, client {}, session 0x{:x})", self.client, self.session)
    }
}

/// Ops for the checkers' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Client 0's unconditional write #`seq` of `value` to `key`, sent at `seq * 10` and, unless
    /// its outcome is unknown, answered 5 ns later.
    pub(crate) fn write(session: i64, seq: u64, key: &str, value: &str, outcome: Outcome) -> Op {
        Op {
            client: 0,
            session,
            call: Call::Write { key: key.to_owned(), value: value.to_owned(), expect: None, seq },
            invoked: seq * 10,
            completed: (outcome != Outcome::Unknown).then_some(seq * 10 + 5),
            outcome,
        }
    }

    /// Client 1's read of `key`, answered `value` at `version` (set at `mzxid`), from 1000 to
    /// 1001 ns.
    pub(crate) fn read(key: &str, value: &str, version: i32, mzxid: i64) -> Op {
        Op {
            client: 1,
            session: 9,
            call: Call::Read { key: key.to_owned() },
            invoked: 1000,
            completed: Some(1001),
            outcome: Outcome::Read { value: Some(value.to_owned()), version, mzxid },
        }
    }
}
