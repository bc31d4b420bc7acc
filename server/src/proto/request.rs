//! Client request bodies: one [`Request`] variant per record ZooKeeper defines, decoded from the
//! bytes after the [`RequestHeader`](super::RequestHeader) given its opcode, and encoded back
//! (for tests and load generators). Validating paths, versions and ACLs is the handlers' job.
//!
//! Bytes after a complete record are ignored, as ZooKeeper's `ByteBufferInputStream` ignores
//! them; ping, closeSession and whoAmI have no record at all.

use super::header::MultiHeader;
use super::jute::{Reader, Writer};
use super::{Acl, CreateMode, DecodeError, OpCode};

/// A decoded client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// create, create2, createContainer (`CreateRequest`) and createTTL (`CreateTTLRequest`).
    Create {
        /// The node path (for sequential modes, the prefix).
        path: String,
        /// Initial data; `None` for null (length -1), which reads back as null.
        data: Option<Vec<u8>>,
        /// Initial ACL.
        acl: Vec<Acl>,
        /// The create flags.
        mode: CreateMode,
        /// The TTL; -1 for every opcode except createTTL, which always carries one.
        ttl_ms: i64,
    },
    /// delete.
    Delete {
        /// The node path.
        path: String,
        /// Expected data version, -1 for any.
        version: i32,
    },
    /// exists.
    Exists {
        /// The node path.
        path: String,
        /// Whether to leave a data/exists watch.
        watch: bool,
    },
    /// getData.
    GetData {
        /// The node path.
        path: String,
        /// Whether to leave a data watch.
        watch: bool,
    },
    /// setData.
    SetData {
        /// The node path.
        path: String,
        /// The new data; `None` for null (length -1).
        data: Option<Vec<u8>>,
        /// Expected data version, -1 for any.
        version: i32,
    },
    /// getACL.
    GetAcl {
        /// The node path.
        path: String,
    },
    /// setACL.
    SetAcl {
        /// The node path.
        path: String,
        /// The new ACL.
        acl: Vec<Acl>,
        /// Expected ACL version, -1 for any.
        version: i32,
    },
    /// getChildren and getChildren2 (the same record).
    GetChildren {
        /// The node path.
        path: String,
        /// Whether to leave a child watch.
        watch: bool,
    },
    /// sync.
    Sync {
        /// The path (echoed in the reply).
        path: String,
    },
    /// ping (no body).
    Ping,
    /// check (`CheckVersionRequest`), normally inside a multi.
    Check {
        /// The node path.
        path: String,
        /// Expected data version, -1 for any.
        version: i32,
    },
    /// multi: atomic writes, each with the opcode it was sent under (create, create2,
    /// createContainer, createTTL, delete, setData, check).
    Multi(Vec<(OpCode, Request)>),
    /// multiRead: independent reads (getChildren, getData), each with its opcode.
    MultiRead(Vec<(OpCode, Request)>),
    /// reconfig.
    Reconfig {
        /// Servers to add (incremental reconfig).
        joining: String,
        /// Server ids to remove (incremental reconfig).
        leaving: String,
        /// The whole new membership (non-incremental reconfig).
        new_members: String,
        /// The config version this change applies to, -1 for any.
        cur_config_id: i64,
    },
    /// checkWatches.
    CheckWatches {
        /// The watched path.
        path: String,
        /// A [`watcher_type`](super::watch::watcher_type) value.
        watch_type: i32,
    },
    /// removeWatches.
    RemoveWatches {
        /// The watched path.
        path: String,
        /// A [`watcher_type`](super::watch::watcher_type) value.
        watch_type: i32,
    },
    /// auth (`AuthPacket`, xid -4).
    Auth {
        /// Unused by ZooKeeper (always 0).
        auth_type: i32,
        /// The auth scheme, e.g. `digest`.
        scheme: String,
        /// Scheme-specific credentials, e.g. `user:password`.
        auth: Vec<u8>,
    },
    /// setWatches (the first three lists) and setWatches2 (all five), xid -8: watches a
    /// reconnecting client re-registers.
    SetWatches {
        /// The last zxid the client saw; events after it fire at once.
        relative_zxid: i64,
        /// Data watches.
        data: Vec<String>,
        /// Exists watches.
        exist: Vec<String>,
        /// Child watches.
        child: Vec<String>,
        /// Persistent watches (setWatches2 only).
        persistent: Vec<String>,
        /// Persistent recursive watches (setWatches2 only).
        persistent_recursive: Vec<String>,
    },
    /// getEphemerals.
    GetEphemerals {
        /// Only ephemerals whose path starts with this (empty or `/` for all).
        prefix: String,
    },
    /// getAllChildrenNumber.
    GetAllChildrenNumber {
        /// The node path.
        path: String,
    },
    /// addWatch.
    AddWatch {
        /// The node path.
        path: String,
        /// An [`add_watch_mode`](super::watch::add_watch_mode) value.
        mode: i32,
    },
    /// whoAmI (no body).
    WhoAmI,
    /// closeSession (no body).
    CloseSession,
    /// sasl (`GetSASLRequest`).
    Sasl {
        /// The SASL token.
        token: Vec<u8>,
    },
    /// deleteContainer. ZooKeeper only issues it internally (with the raw path bytes); Paddock
    /// encodes the path as a jute string like every other record.
    DeleteContainer {
        /// The container path.
        path: String,
    },
}

impl Request {
    /// Decodes the body of a request sent under `op`. Opcodes that are not client requests
    /// (notification, createSession, error) are `Invalid`.
    pub fn decode(op: OpCode, body: &[u8]) -> Result<Request, DecodeError> {
        Self::read(op, &mut Reader::new(body))
    }

    fn read(op: OpCode, r: &mut Reader<'_>) -> Result<Request, DecodeError> {
        use OpCode as Op;
        Ok(match op {
            Op::Create | Op::Create2 | Op::CreateContainer | Op::CreateTtl => Request::Create {
                path: r.read_string()?,
                data: r.read_optional_buffer()?,
                acl: r.read_vec()?,
                mode: CreateMode::from_flag(r.read_i32()?)?,
                ttl_ms: if op == Op::CreateTtl { r.read_i64()? } else { -1 },
            },
            Op::Delete => Request::Delete { path: r.read_string()?, version: r.read_i32()? },
            Op::Exists => Request::Exists { path: r.read_string()?, watch: r.read_bool()? },
            Op::GetData => Request::GetData { path: r.read_string()?, watch: r.read_bool()? },
            Op::SetData => {
                Request::SetData { path: r.read_string()?, data: r.read_optional_buffer()?, version: r.read_i32()? }
            }
            Op::GetAcl => Request::GetAcl { path: r.read_string()? },
            Op::SetAcl => Request::SetAcl { path: r.read_string()?, acl: r.read_vec()?, version: r.read_i32()? },
            Op::GetChildren | Op::GetChildren2 => {
                Request::GetChildren { path: r.read_string()?, watch: r.read_bool()? }
            }
            Op::Sync => Request::Sync { path: r.read_string()? },
            Op::Ping => Request::Ping,
            Op::Check => Request::Check { path: r.read_string()?, version: r.read_i32()? },
            Op::Multi => Request::Multi(read_multi(r, OpCode::in_multi)?),
            Op::MultiRead => Request::MultiRead(read_multi(r, OpCode::in_multi_read)?),
            Op::Reconfig => Request::Reconfig {
                joining: r.read_string()?,
                leaving: r.read_string()?,
                new_members: r.read_string()?,
                cur_config_id: r.read_i64()?,
            },
            Op::CheckWatches => Request::CheckWatches { path: r.read_string()?, watch_type: r.read_i32()? },
            Op::RemoveWatches => Request::RemoveWatches { path: r.read_string()?, watch_type: r.read_i32()? },
            Op::Auth => Request::Auth { auth_type: r.read_i32()?, scheme: r.read_string()?, auth: r.read_buffer()? },
            Op::SetWatches | Op::SetWatches2 => {
                let relative_zxid = r.read_i64()?;
                let data = r.read_vec()?;
                let exist = r.read_vec()?;
                let child = r.read_vec()?;
                let (persistent, persistent_recursive) =
                    if op == Op::SetWatches2 { (r.read_vec()?, r.read_vec()?) } else { (Vec::new(), Vec::new()) };
                Request::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive }
            }
            Op::GetEphemerals => Request::GetEphemerals { prefix: r.read_string()? },
            Op::GetAllChildrenNumber => Request::GetAllChildrenNumber { path: r.read_string()? },
            Op::AddWatch => Request::AddWatch { path: r.read_string()?, mode: r.read_i32()? },
            Op::WhoAmI => Request::WhoAmI,
            Op::CloseSession => Request::CloseSession,
            Op::Sasl => Request::Sasl { token: r.read_buffer()? },
            Op::DeleteContainer => Request::DeleteContainer { path: r.read_string()? },
            Op::Notification | Op::CreateSession | Op::Error => {
                return Err(DecodeError::Invalid("opcode is not a client request"))
            }
        })
    }

    /// Appends the body of this request as sent under `op`. The opcode matters only where
    /// several share a variant: `Create` writes `ttl_ms` only under createTTL, `SetWatches` writes
    /// the two persistent lists only under setWatches2. A `Multi` / `MultiRead` writes each
    /// operation under its own opcode.
    pub fn encode(&self, op: OpCode, out: &mut Vec<u8>) {
        match self {
            Request::Create { path, data, acl, mode, ttl_ms } => {
                out.write_string(path);
                out.write_optional_buffer(data.as_deref());
                out.write_vec(acl);
                out.write_i32(mode.flag());
                if op == OpCode::CreateTtl {
                    out.write_i64(*ttl_ms);
                }
            }
            Request::Delete { path, version } | Request::Check { path, version } => {
                out.write_string(path);
                out.write_i32(*version);
            }
            Request::Exists { path, watch }
            | Request::GetData { path, watch }
            | Request::GetChildren { path, watch } => {
                out.write_string(path);
                out.write_bool(*watch);
            }
            Request::SetData { path, data, version } => {
                out.write_string(path);
                out.write_optional_buffer(data.as_deref());
                out.write_i32(*version);
            }
            Request::GetAcl { path }
            | Request::Sync { path }
            | Request::GetAllChildrenNumber { path }
            | Request::DeleteContainer { path }
            | Request::GetEphemerals { prefix: path } => out.write_string(path),
            Request::SetAcl { path, acl, version } => {
                out.write_string(path);
                out.write_vec(acl);
                out.write_i32(*version);
            }
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
            Request::Multi(ops) | Request::MultiRead(ops) => {
                for (op, request) in ops {
                    out.write_record(&MultiHeader { op_type: *op as i32, done: false, err: -1 });
                    request.encode(*op, out);
                }
                out.write_record(&MultiHeader::END);
            }
            Request::Reconfig { joining, leaving, new_members, cur_config_id } => {
                out.write_string(joining);
                out.write_string(leaving);
                out.write_string(new_members);
                out.write_i64(*cur_config_id);
            }
            Request::CheckWatches { path, watch_type }
            | Request::RemoveWatches { path, watch_type }
            | Request::AddWatch { path, mode: watch_type } => {
                out.write_string(path);
                out.write_i32(*watch_type);
            }
            Request::Auth { auth_type, scheme, auth } => {
                out.write_i32(*auth_type);
                out.write_string(scheme);
                out.write_buffer(auth);
            }
            Request::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
                out.write_i64(*relative_zxid);
                out.write_vec(data);
                out.write_vec(exist);
                out.write_vec(child);
                if op == OpCode::SetWatches2 {
                    out.write_vec(persistent);
                    out.write_vec(persistent_recursive);
                }
            }
            Request::Sasl { token } => out.write_buffer(token),
        }
    }
}

/// Reads `MultiHeader` + record pairs up to the header marked done. Each pair consumes at least
/// the 9-byte header, so the number of operations is bounded by the frame size, and a multi
/// cannot nest (neither list allows multi), so recursion is one level deep.
fn read_multi(r: &mut Reader<'_>, allowed: fn(OpCode) -> bool) -> Result<Vec<(OpCode, Request)>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let header: MultiHeader = r.read()?;
        if header.done {
            return Ok(ops);
        }
        let op = OpCode::try_from(header.op_type)?;
        if !allowed(op) {
            return Err(DecodeError::Invalid("operation not allowed in this multi"));
        }
        ops.push((op, Request::read(op, r)?));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::acl::Id;
    use crate::proto::jute::Record;
    use crate::proto::perms;

    /// Every opcode, including the ones that are not client requests.
    fn all_opcodes() -> Vec<OpCode> {
        (-20..=200).filter_map(|code| OpCode::try_from(code).ok()).collect()
    }

    fn digest_acl() -> Vec<Acl> {
        vec![
            Acl { perms: perms::ALL, id: Id::new("digest", "bob:hash=") },
            Acl { perms: perms::READ, id: Id::anyone() },
        ]
    }

    fn create(mode: CreateMode, ttl_ms: i64) -> Request {
        Request::Create {
            path: "/app/lock-".to_owned(),
            data: Some(b"payload".to_vec()),
            acl: digest_acl(),
            mode,
            ttl_ms,
        }
    }

    /// One representative request for every client opcode (the dispatch table's tests use it
    /// too).
    pub(crate) fn samples() -> Vec<(OpCode, Request)> {
        let path = || "/a/b".to_owned();
        let names = |n: usize| (0..n).map(|i| format!("/w{i}")).collect::<Vec<_>>();
        vec![
            (OpCode::Create, create(CreateMode::EphemeralSequential, -1)),
            (OpCode::Create2, create(CreateMode::Persistent, -1)),
            (OpCode::CreateContainer, create(CreateMode::Container, -1)),
            (OpCode::CreateTtl, create(CreateMode::PersistentWithTtl, 60_000)),
            (OpCode::Delete, Request::Delete { path: path(), version: 3 }),
            (OpCode::Exists, Request::Exists { path: path(), watch: true }),
            (OpCode::GetData, Request::GetData { path: path(), watch: false }),
            (OpCode::SetData, Request::SetData { path: path(), data: Some(vec![0, 1]), version: -1 }),
            (OpCode::GetAcl, Request::GetAcl { path: path() }),
            (OpCode::SetAcl, Request::SetAcl { path: path(), acl: digest_acl(), version: 2 }),
            (OpCode::GetChildren, Request::GetChildren { path: path(), watch: true }),
            (OpCode::GetChildren2, Request::GetChildren { path: path(), watch: false }),
            (OpCode::Sync, Request::Sync { path: path() }),
            (OpCode::Ping, Request::Ping),
            (OpCode::Check, Request::Check { path: path(), version: 7 }),
            (
                OpCode::Multi,
                Request::Multi(vec![
                    (OpCode::Check, Request::Check { path: "/a".to_owned(), version: 1 }),
                    (OpCode::Create, create(CreateMode::Persistent, -1)),
                    (OpCode::CreateTtl, create(CreateMode::PersistentSequentialWithTtl, 5)),
                    (OpCode::SetData, Request::SetData { path: path(), data: None, version: 0 }),
                    (OpCode::Delete, Request::Delete { path: path(), version: -1 }),
                ]),
            ),
            (OpCode::Multi, Request::Multi(vec![])),
            (
                OpCode::MultiRead,
                Request::MultiRead(vec![
                    (OpCode::GetData, Request::GetData { path: path(), watch: false }),
                    (OpCode::GetChildren, Request::GetChildren { path: path(), watch: false }),
                ]),
            ),
            (
                OpCode::Reconfig,
                Request::Reconfig {
                    joining: "server.4=h4:2888:3888;2181".to_owned(),
                    leaving: "2".to_owned(),
                    new_members: String::new(),
                    cur_config_id: -1,
                },
            ),
            (OpCode::CheckWatches, Request::CheckWatches { path: path(), watch_type: 3 }),
            (OpCode::RemoveWatches, Request::RemoveWatches { path: path(), watch_type: 1 }),
            (OpCode::Auth, Request::Auth { auth_type: 0, scheme: "digest".to_owned(), auth: b"bob:secret".to_vec() }),
            (
                OpCode::SetWatches,
                Request::SetWatches {
                    relative_zxid: 99,
                    data: names(2),
                    exist: names(1),
                    child: vec![],
                    persistent: vec![],
                    persistent_recursive: vec![],
                },
            ),
            (
                OpCode::SetWatches2,
                Request::SetWatches {
                    relative_zxid: 100,
                    data: names(1),
                    exist: vec![],
                    child: names(3),
                    persistent: names(2),
                    persistent_recursive: names(1),
                },
            ),
            (OpCode::GetEphemerals, Request::GetEphemerals { prefix: "/app".to_owned() }),
            (OpCode::GetAllChildrenNumber, Request::GetAllChildrenNumber { path: path() }),
            (OpCode::AddWatch, Request::AddWatch { path: path(), mode: 1 }),
            (OpCode::WhoAmI, Request::WhoAmI),
            (OpCode::CloseSession, Request::CloseSession),
            (OpCode::Sasl, Request::Sasl { token: vec![1, 2, 3] }),
            (OpCode::DeleteContainer, Request::DeleteContainer { path: path() }),
        ]
    }

    fn encode(op: OpCode, request: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        request.encode(op, &mut out);
        out
    }

    #[test]
    fn every_request_round_trips() {
        for (op, request) in samples() {
            let bytes = encode(op, &request);
            assert_eq!(Request::decode(op, &bytes), Ok(request.clone()), "{op:?}");
            // Trailing bytes are ignored.
            let mut padded = bytes.clone();
            padded.extend_from_slice(&[0xde, 0xad]);
            assert_eq!(Request::decode(op, &padded), Ok(request), "{op:?} padded");
        }
    }

    #[test]
    fn every_client_opcode_has_a_sample() {
        let sampled: Vec<OpCode> = samples().into_iter().map(|(op, _)| op).collect();
        for op in all_opcodes() {
            let not_a_request = matches!(op, OpCode::Notification | OpCode::CreateSession | OpCode::Error);
            assert_eq!(sampled.contains(&op), !not_a_request, "{op:?}");
        }
    }

    #[test]
    fn truncated_requests_are_errors() {
        for (op, request) in samples() {
            let bytes = encode(op, &request);
            for len in 0..bytes.len() {
                assert!(Request::decode(op, &bytes[..len]).is_err(), "{op:?} cut at {len}");
            }
        }
    }

    #[test]
    fn bodiless_requests_ignore_their_body() {
        for (op, request) in [(OpCode::Ping, Request::Ping), (OpCode::WhoAmI, Request::WhoAmI)] {
            assert_eq!(Request::decode(op, &[]), Ok(request.clone()));
            assert_eq!(Request::decode(op, &[1, 2, 3]), Ok(request));
        }
        assert_eq!(Request::decode(OpCode::CloseSession, &[]), Ok(Request::CloseSession));
    }

    #[test]
    fn non_requests_are_rejected() {
        for op in [OpCode::Notification, OpCode::CreateSession, OpCode::Error] {
            assert_eq!(Request::decode(op, &[0; 64]), Err(DecodeError::Invalid("opcode is not a client request")));
        }
    }

    #[test]
    fn create_layout_matches_zookeeper() {
        let request = Request::Create {
            path: "/a".to_owned(),
            data: Some(vec![9]),
            acl: Acl::open_unsafe(),
            mode: CreateMode::Ephemeral,
            ttl_ms: -1,
        };
        let mut expected = vec![0, 0, 0, 2, b'/', b'a', 0, 0, 0, 1, 9];
        expected.write_vec(&Acl::open_unsafe());
        expected.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(encode(OpCode::Create, &request), expected);

        let ttl = Request::Create {
            path: "/a".to_owned(),
            data: Some(vec![9]),
            acl: Acl::open_unsafe(),
            mode: CreateMode::PersistentWithTtl,
            ttl_ms: 1000,
        };
        let bytes = encode(OpCode::CreateTtl, &ttl);
        assert_eq!(&bytes[bytes.len() - 12..], &[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
        assert_eq!(Request::decode(OpCode::CreateTtl, &bytes), Ok(ttl));
    }

    #[test]
    fn null_data_stays_null_and_other_null_fields_decode_as_empty() {
        // create(path, null data, null acl, persistent) as a Java client may send it.
        let mut body = Vec::new();
        body.write_string("/n");
        body.write_i32(-1);
        body.write_i32(-1);
        body.write_i32(0);
        assert_eq!(
            Request::decode(OpCode::Create, &body),
            Ok(Request::Create {
                path: "/n".to_owned(),
                data: None,
                acl: vec![],
                mode: CreateMode::Persistent,
                ttl_ms: -1,
            })
        );
    }

    #[test]
    fn unknown_create_flags_are_rejected() {
        let mut body = encode(OpCode::Create, &create(CreateMode::Persistent, -1));
        let len = body.len();
        body[len - 4..].copy_from_slice(&9i32.to_be_bytes());
        assert_eq!(Request::decode(OpCode::Create, &body), Err(DecodeError::BadCreateMode(9)));
    }

    #[test]
    fn multi_layout_matches_zookeeper() {
        let multi = Request::Multi(vec![(OpCode::Delete, Request::Delete { path: "/x".to_owned(), version: 4 })]);
        let expected = [
            0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff, // header {delete, false, -1}
            0, 0, 0, 2, b'/', b'x', 0, 0, 0, 4, // DeleteRequest
            0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff, // end {-1, true, -1}
        ];
        assert_eq!(encode(OpCode::Multi, &multi), expected);
        assert_eq!(Request::decode(OpCode::Multi, &expected), Ok(multi));
    }

    #[test]
    fn multi_ends_at_the_first_done_header_whatever_its_type() {
        let mut body = Vec::new();
        body.write_record(&MultiHeader { op_type: 13, done: true, err: 0 });
        assert_eq!(Request::decode(OpCode::Multi, &body), Ok(Request::Multi(vec![])));
    }

    #[test]
    fn multi_rejects_foreign_and_unknown_ops() {
        let read = Request::GetData { path: "/a".to_owned(), watch: false };
        let write = Request::Delete { path: "/a".to_owned(), version: -1 };
        let in_multi = Request::Multi(vec![(OpCode::GetData, read.clone())]);
        let in_multi_read = Request::MultiRead(vec![(OpCode::Delete, write)]);
        assert!(matches!(
            Request::decode(OpCode::Multi, &encode(OpCode::Multi, &in_multi)),
            Err(DecodeError::Invalid(_))
        ));
        assert!(matches!(
            Request::decode(OpCode::MultiRead, &encode(OpCode::MultiRead, &in_multi_read)),
            Err(DecodeError::Invalid(_))
        ));
        let nested = Request::Multi(vec![(OpCode::Multi, Request::Multi(vec![]))]);
        assert!(Request::decode(OpCode::Multi, &encode(OpCode::Multi, &nested)).is_err());

        let mut body = Vec::new();
        body.write_record(&MultiHeader { op_type: 77, done: false, err: -1 });
        assert_eq!(Request::decode(OpCode::Multi, &body), Err(DecodeError::UnknownOpCode(77)));
        // The error slot's type is not an operation either.
        let mut body = Vec::new();
        body.write_record(&MultiHeader { op_type: -1, done: false, err: -1 });
        assert!(Request::decode(OpCode::Multi, &body).is_err());
    }

    #[test]
    fn multi_without_end_marker_is_truncated() {
        let multi = Request::Multi(vec![(OpCode::Check, Request::Check { path: "/a".to_owned(), version: 1 })]);
        let bytes = encode(OpCode::Multi, &multi);
        assert_eq!(
            Request::decode(OpCode::Multi, &bytes[..bytes.len() - MultiHeader::MIN_LEN]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn set_watches_drops_persistent_lists() {
        let watches = Request::SetWatches {
            relative_zxid: 1,
            data: vec!["/d".to_owned()],
            exist: vec![],
            child: vec![],
            persistent: vec!["/p".to_owned()],
            persistent_recursive: vec![],
        };
        let v1 = encode(OpCode::SetWatches, &watches);
        let v2 = encode(OpCode::SetWatches2, &watches);
        assert_eq!(v1.len() + 4 + 6 + 4, v2.len());
        assert!(matches!(
            Request::decode(OpCode::SetWatches, &v1),
            Ok(Request::SetWatches { persistent, .. }) if persistent.is_empty()
        ));
    }

    /// xorshift64: deterministic, dependency-free noise.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> usize {
            usize::try_from(self.next() % n).unwrap_or(0)
        }

        /// Mostly small values so length prefixes sometimes fit; sometimes anything.
        fn bytes(&mut self, max_len: u64) -> Vec<u8> {
            let len = self.below(max_len);
            (0..len)
                .map(|_| match self.below(4) {
                    0 => 0xff,
                    1 => self.below(4) as u8,
                    _ => self.next() as u8,
                })
                .collect()
        }
    }

    /// Whatever decodes must re-encode to something that decodes to the same request.
    fn check_stable(op: OpCode, body: &[u8]) {
        if let Ok(request) = Request::decode(op, body) {
            assert_eq!(Request::decode(op, &encode(op, &request)), Ok(request), "{op:?} {body:?}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let ops = all_opcodes();
        for _ in 0..3000 {
            let body = noise.bytes(96);
            for &op in &ops {
                check_stable(op, &body);
            }
            let _ = crate::proto::ConnectRequest::decode(&body);
            let _ = crate::proto::RequestHeader::decode(&body);
        }
    }

    #[test]
    fn mutated_requests_never_panic() {
        let mut noise = Noise(42);
        let samples = samples();
        for _ in 0..20_000 {
            let (op, request) = &samples[noise.below(samples.len() as u64)];
            let mut body = encode(*op, request);
            for _ in 0..=noise.below(4) {
                if body.is_empty() {
                    break;
                }
                let at = noise.below(body.len() as u64);
                match noise.below(3) {
                    0 => body[at] = noise.next() as u8,
                    1 => body.truncate(at),
                    _ => body.insert(at, noise.next() as u8),
                }
            }
            check_stable(*op, &body);
        }
    }
}
