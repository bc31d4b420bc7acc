//! The wall clock, for the one server whose time the tree keeps: the leader stamps it into
//! every txn as it appends the entry (`write.rs` for its own writes, `peer/service.rs` for the
//! ones followers forward), so every replica applies the same leader-chosen time and ctime,
//! mtime, TTLs and container reaping never compare two machines' clocks. The tree never reads
//! it: apply stays deterministic.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch on this server's clock.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
