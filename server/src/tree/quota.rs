//! ZooKeeper's quotas: a subtree `P` has one when `/zookeeper/quota<P>/zookeeper_limits` exists;
//! `/zookeeper/quota<P>/zookeeper_stats` holds its usage — `count` (znodes, `P` itself
//! included) and `bytes` (data lengths) — which the tree recomputes when the stats node is
//! created (zkCli's `setquota` creates it after the limits) and keeps current on every create,
//! delete and setData below `P`, in place (no version, zxid or watch change), as ZooKeeper's
//! `DataTree.updateCountBytes`. Only the deepest quota on a path counts (zkCli refuses nested
//! ones).
//!
//! Hard limits (`countHardLimit`, `byteHardLimit`: zkCli's `setquota -N` / `-B`) are enforced:
//! a create or setData that would go past one fails with `QuotaExceeded`, as ZooKeeper with
//! `zookeeper.enforceQuota=true` — always, since every replica must judge alike. Soft limits
//! (`count`, `bytes`) are recorded and never refuse.
//!
//! The data is ZooKeeper's `StatsTrack` text: `count=N,bytes=M`, further keys after `=;` sorted
//! (`count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2`); pairs split at `,` or `;`, a
//! missing or unreadable value reads as -1.

use std::collections::BTreeMap;

use super::path::{QUOTA, ROOT, ZOOKEEPER};

/// Name of the limits node in a quota directory.
pub const LIMITS: &str = "zookeeper_limits";
/// Name of the usage node in a quota directory.
pub const STATS: &str = "zookeeper_stats";

/// ZooKeeper's `StatsTrack`: named values, -1 when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsTrack(BTreeMap<String, i64>);

impl StatsTrack {
    /// Parses the data of a limits or stats node.
    pub fn parse(data: &[u8]) -> StatsTrack {
        let text = String::from_utf8_lossy(data);
        let mut values = BTreeMap::new();
        for pair in text.split([',', ';']).filter(|p| !p.is_empty()) {
            // Java's split drops trailing empty parts: "bytes=-1=" is bytes and -1.
            let mut parts = pair.split('=');
            let key = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default();
            values.insert(key.to_owned(), value.trim().parse().unwrap_or(-1));
        }
        StatsTrack(values)
    }

    fn get(&self, key: &str) -> i64 {
        self.0.get(key).copied().unwrap_or(-1)
    }

    /// Usage or soft limit of znodes.
    pub fn count(&self) -> i64 {
        self.get("count")
    }

    /// Usage or soft limit of bytes.
    pub fn bytes(&self) -> i64 {
        self.get("bytes")
    }

    /// The hard znode limit (-1: none).
    pub fn count_hard_limit(&self) -> i64 {
        self.get("countHardLimit")
    }

    /// The hard byte limit (-1: none).
    pub fn byte_hard_limit(&self) -> i64 {
        self.get("byteHardLimit")
    }

    /// The usage moved by `count` znodes and `bytes` bytes.
    pub fn add(&mut self, count: i64, bytes: i64) {
        let (c, b) = (self.count().saturating_add(count), self.bytes().saturating_add(bytes));
        self.0.insert("count".to_owned(), c);
        self.0.insert("bytes".to_owned(), b);
    }

    /// Usage of `count` znodes and `bytes` bytes.
    pub fn usage(count: i64, bytes: i64) -> StatsTrack {
        StatsTrack(BTreeMap::from([("count".to_owned(), count), ("bytes".to_owned(), bytes)]))
    }

    /// The text ZooKeeper writes.
    pub fn render(&self) -> String {
        let mut text = format!("count={},bytes={}", self.count(), self.bytes());
        let rest: Vec<String> =
            self.0.iter().filter(|(k, _)| *k != "count" && *k != "bytes").map(|(k, v)| format!("{k}={v}")).collect();
        if !rest.is_empty() {
            text.push_str("=;");
            text.push_str(&rest.join(";"));
        }
        text
    }
}

/// The quota directory of subtree `path`.
pub fn quota_dir(path: &str) -> String {
    format!("{QUOTA}{path}")
}

/// `path` itself and its ancestors, deepest first, without the root (no quota on `/`) and
/// without ZooKeeper's own subtree (a quota there would count its own stats node).
pub fn quota_candidates(path: &str) -> impl Iterator<Item = &str> {
    let own = path == ZOOKEEPER || path.starts_with("/zookeeper/");
    let mut next = (!own && path != ROOT).then_some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            Some(0) | None => None,
            Some(slash) => Some(&current[..slash]),
        };
        Some(current)
    })
}

/// The subtree whose quota directory a stats node at `stats_path` belongs to, if it is one.
pub fn subtree_of_stats(stats_path: &str) -> Option<&str> {
    let dir = stats_path.strip_suffix(&format!("/{STATS}"))?;
    let subtree = dir.strip_prefix(QUOTA)?;
    subtree.starts_with('/').then_some(subtree)
}

/// What a change to a subtree under a quota with `limits` and `usage` would break: whether
/// moving usage by `count` znodes and `bytes` bytes passes a hard limit (ZooKeeper's
/// `checkQuota`: each limit is looked at only when its own usage changes).
pub fn exceeds(limits: &StatsTrack, usage: &StatsTrack, count: i64, bytes: i64) -> bool {
    let over = |diff: i64, used: i64, hard: i64| diff != 0 && hard > -1 && used.saturating_add(diff) > hard;
    over(count, usage.count(), limits.count_hard_limit()) || over(bytes, usage.bytes(), limits.byte_hard_limit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_track_reads_and_writes_zookeepers_text() {
        let limits = StatsTrack::parse(b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2");
        assert_eq!(
            (limits.count(), limits.bytes(), limits.count_hard_limit(), limits.byte_hard_limit()),
            (-1, -1, 2, -1)
        );
        assert_eq!(limits.render(), "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2");
        let old = StatsTrack::parse(b"count=10,bytes=-1");
        assert_eq!((old.count(), old.count_hard_limit()), (10, -1));
        assert_eq!(old.render(), "count=10,bytes=-1");
        let mut usage = StatsTrack::parse(b"count=0,bytes=0");
        usage.add(3, 12);
        assert_eq!(usage.render(), "count=3,bytes=12");
        assert_eq!(StatsTrack::parse(b"").render(), "count=-1,bytes=-1");
        assert_eq!(StatsTrack::parse(b"count=x,bytes=").count(), -1, "unreadable values are -1");
    }

    #[test]
    fn the_deepest_quota_is_looked_for_first_and_never_on_the_root_or_zookeeper() {
        assert_eq!(quota_candidates("/a/b/c").collect::<Vec<_>>(), ["/a/b/c", "/a/b", "/a"]);
        assert_eq!(quota_candidates("/").count(), 0);
        assert_eq!(quota_candidates("/zookeeper/quota/a").count(), 0);
        assert_eq!(subtree_of_stats("/zookeeper/quota/a/b/zookeeper_stats"), Some("/a/b"));
        assert_eq!(subtree_of_stats("/zookeeper/quota/zookeeper_stats"), None);
        assert_eq!(subtree_of_stats("/a/zookeeper_stats"), None);
    }

    #[test]
    fn only_hard_limits_refuse_and_only_when_their_usage_moves() {
        let limits = StatsTrack::parse(b"count=1,bytes=1=;byteHardLimit=10;countHardLimit=3");
        let usage = StatsTrack::usage(3, 4);
        assert!(exceeds(&limits, &usage, 1, 0), "a fourth znode");
        assert!(!exceeds(&limits, &usage, 0, 6), "bytes up to the limit");
        assert!(exceeds(&limits, &usage, 0, 7));
        assert!(!exceeds(&limits, &usage, -1, 0), "deletes always pass");
        let soft = StatsTrack::parse(b"count=1,bytes=1");
        assert!(!exceeds(&soft, &usage, 5, 5), "soft limits never refuse");
    }
}
