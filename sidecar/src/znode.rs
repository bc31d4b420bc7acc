//! Pure translation between the HTTP API's shapes and ZooKeeper's: znode paths and names, the
//! `{"data"}` / `{"data_b64"}` bodies, the node JSON with its stat, the data of the znodes that
//! say who holds something (the pod's identity and the app's value), `If-Match` versions and
//! sequential-node ordering. No I/O here; the handlers and recipes call these.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use zookeeper_client::Stat;

use crate::error::{Error, Result};
use crate::identity::PodIdentity;

/// The largest znode payload the sidecar forwards. The server refuses frames above 1 MiB
/// (`jute.maxbuffer`) by closing the connection, which would suspend every hold of the pod, so
/// an oversized write is refused here instead.
pub const MAX_DATA_BYTES: usize = 1_000_000;

/// Where the recipes keep their znodes, inside the namespace's chroot.
pub const RECIPE_ROOT: &str = "/_paddock";

/// Checks one path component (a lock, group, election or member name, a node name).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::BadInput(format!("{what} is empty")));
    }
    if name == "." || name == ".." {
        return Err(Error::BadInput(format!("{what} {name:?} is not allowed")));
    }
    if name.contains('/') {
        return Err(Error::BadInput(format!("{what} {name:?} contains '/'")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || ('\u{e000}'..='\u{f8ff}').contains(c) || ('\u{fff0}'..='\u{ffff}').contains(c))
    {
        return Err(Error::BadInput(format!("{what} {name:?} contains the character {c:?}")));
    }
    if name.len() > 1024 {
        return Err(Error::BadInput(format!("{what} is longer than 1024 bytes")));
    }
    Ok(())
}

/// Turns the `{path}` of a `/v1/nodes/{path}` URL (already percent-decoded, without the leading
/// slash) into an absolute znode path. Empty means the namespace root `/`.
pub fn node_path(raw: &str) -> Result<String> {
    let trimmed = raw.trim_start_matches('/');
    if trimmed.is_empty() {
        return Ok("/".to_owned());
    }
    if trimmed.ends_with('/') {
        return Err(Error::BadInput(format!("path /{trimmed} ends with '/'")));
    }
    for component in trimmed.split('/') {
        validate_name("path component", component).map_err(|e| Error::BadInput(format!("bad path /{trimmed}: {e}")))?;
    }
    Ok(format!("/{trimmed}"))
}

/// `parent` + `/` + `name`, without doubling the root's slash.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The parent of an absolute path (`/` for top-level nodes and for `/` itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of an absolute path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A write body: `{"data": "text"}`, `{"data_b64": "..."}`, or nothing (empty data).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataBody {
    data: Option<String>,
    data_b64: Option<String>,
}

impl DataBody {
    /// Parses a request body; an empty body is empty data.
    pub fn parse(body: &[u8]) -> Result<Vec<u8>> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let parsed: DataBody = parse_json(body)?;
        parsed.into_bytes()
    }

    fn into_bytes(self) -> Result<Vec<u8>> {
        let bytes = match (self.data, self.data_b64) {
            (Some(_), Some(_)) => return Err(Error::BadInput("give either data or data_b64, not both".to_owned())),
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| Error::BadInput(format!("data_b64 is not base64: {e}")))?,
            (None, None) => Vec::new(),
        };
        if bytes.len() > MAX_DATA_BYTES {
            return Err(Error::TooLarge(format!(
                "data is {} bytes; at most {MAX_DATA_BYTES} are allowed",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// Parses a JSON request body into `T`, answering 400 with serde's reason.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadInput(format!("bad JSON body: {e}")))
}

/// Data as the API shows it: `"data"` when it is UTF-8 text, else `"data": null` and `"data_b64"`.
pub fn data_fields(data: &[u8], into: &mut serde_json::Map<String, Value>) {
    match std::str::from_utf8(data) {
        Ok(text) => {
            into.insert("data".to_owned(), Value::String(text.to_owned()));
        }
        Err(_) => {
            into.insert("data".to_owned(), Value::Null);
            into.insert("data_b64".to_owned(), Value::String(base64::engine::general_purpose::STANDARD.encode(data)));
        }
    }
}

/// The stat subset the API exposes.
pub fn stat_json(stat: &Stat) -> Value {
    json!({
        "version": stat.version,
        "cversion": stat.cversion,
        "czxid": stat.czxid,
        "mzxid": stat.mzxid,
        "ephemeral": stat.ephemeral_owner != 0,
        "children": stat.num_children,
    })
}

/// `{"path", "data", "stat"}` for one znode.
pub fn node_json(path: &str, data: &[u8], stat: &Stat) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("path".to_owned(), Value::String(path.to_owned()));
    data_fields(data, &mut map);
    map.insert("stat".to_owned(), stat_json(stat));
    Value::Object(map)
}

/// The znode data of a lock holder, candidate, claimer or group member: who it is, plus the
/// app's `value`.
pub fn holder_data(identity: &PodIdentity, value: Option<&str>) -> Vec<u8> {
    let mut object = match serde_json::to_value(identity) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    if let Some(value) = value {
        object.insert("value".to_owned(), Value::String(value.to_owned()));
    }
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
}

/// Reads holder data back; data that is not a JSON object (written by someone else) is shown as
/// `{"data": ...}`.
pub fn holder_json(data: &[u8]) -> serde_json::Map<String, Value> {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(map)) => map,
        _ => {
            let mut map = serde_json::Map::new();
            data_fields(data, &mut map);
            map
        }
    }
}

/// Parses an `If-Match` value: a version number, bare or as an entity tag (`"3"`, `W/"3"`).
pub fn parse_if_match(value: &str) -> Result<i32> {
    let trimmed = value.trim();
    let unweak = trimmed.strip_prefix("W/").unwrap_or(trimmed);
    let unquoted = unweak.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(unweak);
    match unquoted.parse::<i32>() {
        Ok(version) if version >= 0 => Ok(version),
        _ => Err(Error::BadInput(format!("If-Match {value:?} is not a znode version"))),
    }
}

/// The sequence number ZooKeeper appended to a sequential node's name (its trailing digits).
pub fn sequence_of(name: &str) -> Option<i64> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits < 10 {
        return None;
    }
    name[name.len() - digits..].parse().ok()
}

/// The sequential children of a recipe directory in queue order (lowest sequence first);
/// names without a sequence are ignored.
pub fn queue_order(children: Vec<String>) -> Vec<String> {
    let mut sequenced: Vec<(i64, String)> =
        children.into_iter().filter_map(|name| sequence_of(&name).map(|seq| (seq, name))).collect();
    sequenced.sort();
    sequenced.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_are_validated() {
        assert_eq!(node_path("").ok().as_deref(), Some("/"));
        assert_eq!(node_path("a/b").ok().as_deref(), Some("/a/b"));
        assert_eq!(node_path("/a").ok().as_deref(), Some("/a"));
        for bad in ["a//b", "a/", "a/./b", "a/../b", "..", "a/\u{0}b", "a/\u{7}"] {
            assert!(matches!(node_path(bad), Err(Error::BadInput(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_one_component() {
        assert!(validate_name("lock", "db-migrate").is_ok());
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            assert!(validate_name("lock", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_split_and_join() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(basename("/a/b"), "b");
    }

    #[test]
    fn data_bodies() {
        assert_eq!(DataBody::parse(b"").ok(), Some(vec![]));
        assert_eq!(DataBody::parse(br#"{"data":"hi"}"#).ok(), Some(b"hi".to_vec()));
        assert_eq!(DataBody::parse(br#"{"data_b64":"AAE="}"#).ok(), Some(vec![0, 1]));
        assert_eq!(DataBody::parse(b"{}").ok(), Some(vec![]));
        for bad in [&br#"{"data":"a","data_b64":"AA=="}"#[..], b"{", br#"{"data_b64":"!!"}"#, br#"{"x":1}"#, b"[]"] {
            assert!(matches!(DataBody::parse(bad), Err(Error::BadInput(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(MAX_DATA_BYTES + 1));
        assert!(matches!(DataBody::parse(big.as_bytes()), Err(Error::TooLarge(_))));
    }

    #[test]
    fn binary_data_is_shown_as_base64() {
        let mut map = serde_json::Map::new();
        data_fields(&[0xff, 0], &mut map);
        assert_eq!(map.get("data"), Some(&Value::Null));
        assert_eq!(map.get("data_b64"), Some(&Value::String("/wA=".into())));
        let mut map = serde_json::Map::new();
        data_fields(b"text", &mut map);
        assert_eq!(map.get("data"), Some(&Value::String("text".into())));
        assert!(!map.contains_key("data_b64"));
    }

    #[test]
    fn if_match_versions() {
        assert_eq!(parse_if_match("3").ok(), Some(3));
        assert_eq!(parse_if_match("\"3\"").ok(), Some(3));
        assert_eq!(parse_if_match("W/\"0\"").ok(), Some(0));
        for bad in ["", "-1", "x", "\"", "*"] {
            assert!(parse_if_match(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn queue_order_sorts_by_sequence_not_name() {
        let children = vec![
            "lock-b-0000000012".to_owned(),
            "lock-a-0000000010".to_owned(),
            "junk".to_owned(),
            "lock-c-0000000002".to_owned(),
        ];
        assert_eq!(queue_order(children), vec!["lock-c-0000000002", "lock-a-0000000010", "lock-b-0000000012"]);
        assert_eq!(sequence_of("n-0000000007"), Some(7));
        assert_eq!(sequence_of("n-7"), None);
    }
}
