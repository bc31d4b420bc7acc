//! Znode path rules: ZooKeeper's `PathUtils.validatePath`, parent / name splitting and the
//! reserved `/zookeeper` paths.

use crate::proto::ErrorCode;

/// The root.
pub const ROOT: &str = "/";
/// ZooKeeper's own subtree.
pub const ZOOKEEPER: &str = "/zookeeper";
/// Quota settings (world-writable in ZooKeeper).
pub const QUOTA: &str = "/zookeeper/quota";
/// The dynamic configuration (world-readable only).
pub const CONFIG: &str = "/zookeeper/config";

/// Checks a path exactly as ZooKeeper's `PathUtils.validatePath` does: absolute, no trailing
/// slash except for the root, no empty, `.` or `..` segments, and none of the characters
/// ZooKeeper refuses (NUL, C0 / C1 controls, U+D800..U+F8FF — which in Java's UTF-16 includes
/// every character outside the BMP — and U+FFF0..U+FFFF). Fails with `BadArguments`.
pub fn validate_path(path: &str) -> Result<(), ErrorCode> {
    if is_valid(path) {
        Ok(())
    } else {
        Err(ErrorCode::BadArguments)
    }
}

fn is_valid(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    if rest.ends_with('/') {
        return false;
    }
    let bad_char = rest.chars().any(|c| {
        matches!(c,
            '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{e000}'..='\u{f8ff}'
            | '\u{fff0}'..)
    });
    !bad_char && rest.split('/').all(|segment| !matches!(segment, "" | "." | ".."))
}

/// Splits a path at its last slash into the parent's key in the tree and the child's name, as
/// ZooKeeper does (`"/a"` has the parent `"/"`). `None` when there is no slash at all.
pub(super) fn split_parent(path: &str) -> Option<(&str, &str)> {
    let slash = path.rfind('/')?;
    let parent = if slash == 0 { ROOT } else { &path[..slash] };
    Some((parent, &path[slash + 1..]))
}

/// The nodes ZooKeeper refuses to delete (`DataTree.isSpecialPath`).
pub(super) fn is_special(path: &str) -> bool {
    matches!(path, ROOT | ZOOKEEPER | QUOTA | CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/...",
            "/a/..b",
            "/a/b..",
            "/.a",
            "/ü/日本",
            "/a b",
            "/a/0000000001",
            "/\u{ffef}",
            "/\u{a0}",
        ] {
            assert_eq!(validate_path(p), Ok(()), "{p:?}");
        }
    }

    #[test]
    fn invalid_paths() {
        for p in [
            "",
            "a",
            "a/b",
            "//",
            "/a/",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/./b",
            "/a/../b",
            "/a\0b",
            "/a\u{1}",
            "/a\u{1f}",
            "/\u{7f}",
            "/\u{9f}",
            "/\u{e000}",
            "/\u{f8ff}",
            "/\u{fff0}",
            "/\u{fffd}",
            "/\u{ffff}",
            "/😀",
        ] {
            assert_eq!(validate_path(p), Err(ErrorCode::BadArguments), "{p:?}");
        }
    }

    #[test]
    fn parent_of_a_top_level_node_is_the_root() {
        assert_eq!(split_parent("/a"), Some(("/", "a")));
        assert_eq!(split_parent("/a/b"), Some(("/a", "b")));
        assert_eq!(split_parent("/"), Some(("/", "")));
        assert_eq!(split_parent("a"), None);
    }

    #[test]
    fn special_paths() {
        assert!(is_special("/"));
        assert!(is_special("/zookeeper"));
        assert!(is_special("/zookeeper/quota"));
        assert!(is_special("/zookeeper/config"));
        assert!(!is_special("/zookeeper/quota/x"));
    }
}
