//! Every RocksDB column family the server uses and how its keys are encoded. Nothing else names
//! a column family or builds a key.

/// Raft log entries, keyed by log index.
pub const CF_LOGS: &str = "logs";
/// Small records: vote, committed log id, last purged log id.
pub const CF_META: &str = "meta";
/// The newest snapshot (meta and compressed tree).
pub const CF_SNAPSHOT: &str = "snapshot";

/// All column families, for opening the database.
pub const ALL_CFS: [&str; 3] = [CF_LOGS, CF_META, CF_SNAPSHOT];

/// `meta` key of the persisted vote.
pub const META_VOTE: &[u8] = b"vote";
/// `meta` key of the persisted committed log id.
pub const META_COMMITTED: &[u8] = b"committed";
/// `meta` key of the last purged log id.
pub const META_LAST_PURGED: &[u8] = b"last_purged";

/// `snapshot` key of the newest snapshot's meta.
pub const SNAPSHOT_META: &[u8] = b"meta";
/// `snapshot` key of the newest snapshot's data.
pub const SNAPSHOT_DATA: &[u8] = b"data";

/// A log index as a key: big-endian, so RocksDB's byte order is index order.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index of a `logs` key, or `None` for a key that is not 8 bytes (a corrupt database).
pub fn log_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_round_trip_and_sort_by_index() {
        let indexes = [0u64, 1, 255, 256, 65_535, 1 << 40, u64::MAX];
        for &i in &indexes {
            assert_eq!(log_index(&log_key(i)), Some(i));
        }
        let mut keys: Vec<[u8; 8]> = indexes.iter().rev().map(|&i| log_key(i)).collect();
        keys.sort();
        let sorted: Vec<u64> = keys.iter().filter_map(|k| log_index(k)).collect();
        assert_eq!(sorted, indexes);
        assert_eq!(log_index(b"short"), None);
    }
}
