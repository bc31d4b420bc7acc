//! Reply bodies: one [`Response`] variant per response record, the per-operation
//! [`MultiResult`]s of multi and multiRead, and [`encode_reply`], which frames a reply header and
//! body. Decoders are here too, for tests and load generators. Deciding which response an
//! operation gets is the handlers' job.
//!
//! # Errors and multi
//!
//! A failed single operation is answered with the reply header alone (`err` = its code). ZooKeeper
//! itself sometimes serializes a record after such a header (e.g. a `CreateResponse` with a null
//! path), but clients only read a body when `err == 0` (Java `ClientCnxn.readResponse`) and skip
//! to the next frame by its length, so omitting it is equivalent.
//!
//! A multi that fails is *not* an error at the header level. ZooKeeper's `FinalRequestProcessor`
//! deliberately does not rethrow a multi's exception (`if (ke != null && request.type !=
//! OpCode.multi) throw ke;`), builds a `MultiResponse` from the per-operation txn results and
//! sends it with `err = 0`; every result is then an error result: 0 (`Ok`) for the operations
//! before the failing one, its own code for it, -2 (`RuntimeInconsistency`) for those after. The
//! Java client (`ZooKeeper.multiInternal`) throws on a non-zero header `err` *without* looking at
//! results, and only otherwise scans them for the first non-zero `ErrorResult` and throws that
//! code with the results attached (`KeeperException.getResults()`). So a failed multi must be sent
//! as `ReplyHeader { err: 0 }` + `Response::Multi(results)`; a non-zero header `err` on a multi is
//! only for failures of the request as a whole (e.g. a marshalling error). multiRead is the same,
//! except that its reads are independent: each failed read is an error result and the others
//! still return data.

use super::header::{MultiHeader, ReplyHeader};
use super::jute::{write_frame, Reader, Record, Writer};
use super::{Acl, DecodeError, ErrorCode, OpCode, Stat};

/// One authenticated identity of a session, as whoAmI reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The auth scheme (`ip`, `digest`, ...).
    pub auth_scheme: String,
    /// The identity within the scheme.
    pub user: String,
}

impl Record for ClientInfo {
    const MIN_LEN: usize = 8;

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ClientInfo { auth_scheme: r.read_string()?, user: r.read_string()? })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.write_string(&self.auth_scheme);
        out.write_string(&self.user);
    }
}

/// The outcome of one operation inside a multi or multiRead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiResult {
    /// A create sent as plain create (result type 1).
    Create {
        /// The created path (with its sequence suffix).
        path: String,
    },
    /// A create2, createContainer or createTTL (result type 15, as ZooKeeper reports all three).
    Create2 {
        /// The created path.
        path: String,
        /// The new node's Stat.
        stat: Stat,
    },
    /// A delete (type 2, no body).
    Delete,
    /// A setData (type 5).
    SetData {
        /// The node's Stat after the write.
        stat: Stat,
    },
    /// A check (type 13, no body).
    Check,
    /// A getData in a multiRead (type 4).
    GetData {
        /// The data; `None` for a node whose data is null.
        data: Option<Vec<u8>>,
        /// The node's Stat.
        stat: Stat,
    },
    /// A getChildren in a multiRead (type 8).
    GetChildren {
        /// Child names (not full paths).
        children: Vec<String>,
    },
    /// An error result (type -1): see the module docs for what a failed multi carries.
    Error(ErrorCode),
}

impl MultiResult {
    /// The `MultiHeader` type this result is sent under.
    pub fn op_type(&self) -> i32 {
        let op = match self {
            MultiResult::Create { .. } => OpCode::Create,
            MultiResult::Create2 { .. } => OpCode::Create2,
            MultiResult::Delete => OpCode::Delete,
            MultiResult::SetData { .. } => OpCode::SetData,
            MultiResult::Check => OpCode::Check,
            MultiResult::GetData { .. } => OpCode::GetData,
            MultiResult::GetChildren { .. } => OpCode::GetChildren,
            MultiResult::Error(_) => OpCode::Error,
        };
        op as i32
    }

    fn write(&self, out: &mut Vec<u8>) {
        let err = match self {
            MultiResult::Error(code) => code.code(),
            _ => 0,
        };
        out.write_record(&MultiHeader { op_type: self.op_type(), done: false, err });
        match self {
            MultiResult::Create { path } => out.write_string(path),
            MultiResult::Create2 { path, stat } => {
                out.write_string(path);
                out.write_record(stat);
            }
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::SetData { stat } => out.write_record(stat),
            MultiResult::GetData { data, stat } => {
                out.write_optional_buffer(data.as_deref());
                out.write_record(stat);
            }
            MultiResult::GetChildren { children } => out.write_vec(children),
            // ErrorResponse { err }: clients take the code from here, not from the header.
            MultiResult::Error(code) => out.write_i32(code.code()),
        }
    }

    /// Reads the record after a (not done) `MultiHeader` of type `op_type`.
    fn read(op_type: i32, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let op = OpCode::try_from(op_type)?;
        Ok(match op {
            OpCode::Create => MultiResult::Create { path: r.read_string()? },
            OpCode::Create2 => MultiResult::Create2 { path: r.read_string()?, stat: r.read()? },
            OpCode::Delete => MultiResult::Delete,
            OpCode::SetData => MultiResult::SetData { stat: r.read()? },
            OpCode::Check => MultiResult::Check,
            OpCode::GetData => MultiResult::GetData { data: r.read_optional_buffer()?, stat: r.read()? },
            OpCode::GetChildren => MultiResult::GetChildren { children: r.read_vec()? },
            OpCode::Error => MultiResult::Error(
                ErrorCode::from_code(r.read_i32()?)
                    .ok_or(DecodeError::Invalid("unknown error code in multi result"))?,
            ),
            _ => return Err(DecodeError::Invalid("unexpected result type in multi response")),
        })
    }
}

/// A successful reply's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// create (`CreateResponse`).
    Create {
        /// The created path.
        path: String,
    },
    /// create2, createContainer, createTTL (`Create2Response`).
    Create2 {
        /// The created path.
        path: String,
        /// The new node's Stat.
        stat: Stat,
    },
    /// exists, setData, setACL and check: each answers a bare Stat.
    Stat(Stat),
    /// getData and reconfig (`GetDataResponse`).
    GetData {
        /// The data; `None` for a node whose data is null.
        data: Option<Vec<u8>>,
        /// The node's Stat.
        stat: Stat,
    },
    /// getACL.
    GetAcl {
        /// The ACL.
        acl: Vec<Acl>,
        /// The node's Stat.
        stat: Stat,
    },
    /// getChildren.
    GetChildren {
        /// Child names.
        children: Vec<String>,
    },
    /// getChildren2.
    GetChildren2 {
        /// Child names.
        children: Vec<String>,
        /// The parent's Stat.
        stat: Stat,
    },
    /// sync.
    Sync {
        /// The synced path.
        path: String,
    },
    /// No body: delete, ping, auth, setWatches, checkWatches, removeWatches, closeSession.
    Empty,
    /// addWatch: ZooKeeper answers with an `ErrorResponse { err: 0 }` body (4 bytes), and the
    /// Java client reads it.
    AddWatch,
    /// multi: one result per operation, in order.
    Multi(Vec<MultiResult>),
    /// multiRead: one result per read, in order.
    MultiRead(Vec<MultiResult>),
    /// getEphemerals.
    GetEphemerals {
        /// The session's ephemeral paths.
        paths: Vec<String>,
    },
    /// getAllChildrenNumber.
    AllChildrenNumber(i32),
    /// whoAmI.
    WhoAmI(Vec<ClientInfo>),
    /// sasl (`SetSASLResponse`).
    Sasl {
        /// The server's SASL token.
        token: Vec<u8>,
    },
}

impl Response {
    /// Appends the body (no header, no frame length).
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Response::Create { path } | Response::Sync { path } => out.write_string(path),
            Response::Create2 { path, stat } => {
                out.write_string(path);
                out.write_record(stat);
            }
            Response::Stat(stat) => out.write_record(stat),
            Response::GetData { data, stat } => {
                out.write_optional_buffer(data.as_deref());
                out.write_record(stat);
            }
            Response::GetAcl { acl, stat } => {
                out.write_vec(acl);
                out.write_record(stat);
            }
            Response::GetChildren { children } | Response::GetEphemerals { paths: children } => {
                out.write_vec(children);
            }
            Response::GetChildren2 { children, stat } => {
                out.write_vec(children);
                out.write_record(stat);
            }
            Response::Empty => {}
            Response::AddWatch => out.write_i32(0),
            Response::Multi(results) | Response::MultiRead(results) => {
                for result in results {
                    result.write(out);
                }
                out.write_record(&MultiHeader::END);
            }
            Response::AllChildrenNumber(n) => out.write_i32(*n),
            Response::WhoAmI(infos) => out.write_vec(infos),
            Response::Sasl { token } => out.write_buffer(token),
        }
    }

    /// Decodes the body of a successful (`err == 0`) reply to a request sent under `op`. Bytes
    /// after the record are ignored.
    pub fn decode_body(op: OpCode, body: &[u8]) -> Result<Response, DecodeError> {
        use OpCode as Op;
        let r = &mut Reader::new(body);
        Ok(match op {
            Op::Create => Response::Create { path: r.read_string()? },
            Op::Create2 | Op::CreateContainer | Op::CreateTtl => {
                Response::Create2 { path: r.read_string()?, stat: r.read()? }
            }
            Op::Exists | Op::SetData | Op::SetAcl | Op::Check => Response::Stat(r.read()?),
            Op::GetData | Op::Reconfig => Response::GetData { data: r.read_optional_buffer()?, stat: r.read()? },
            Op::GetAcl => Response::GetAcl { acl: r.read_vec()?, stat: r.read()? },
            Op::GetChildren => Response::GetChildren { children: r.read_vec()? },
            Op::GetChildren2 => Response::GetChildren2 { children: r.read_vec()?, stat: r.read()? },
            Op::Sync => Response::Sync { path: r.read_string()? },
            Op::Delete
            | Op::DeleteContainer
            | Op::Ping
            | Op::Auth
            | Op::SetWatches
            | Op::SetWatches2
            | Op::CheckWatches
            | Op::RemoveWatches
            | Op::CloseSession => Response::Empty,
            Op::AddWatch => {
                r.read_i32()?;
                Response::AddWatch
            }
            Op::Multi => Response::Multi(read_results(r)?),
            Op::MultiRead => Response::MultiRead(read_results(r)?),
            Op::GetEphemerals => Response::GetEphemerals { paths: r.read_vec()? },
            Op::GetAllChildrenNumber => Response::AllChildrenNumber(r.read_i32()?),
            Op::WhoAmI => Response::WhoAmI(r.read_vec()?),
            Op::Sasl => Response::Sasl { token: r.read_buffer()? },
            Op::Notification | Op::CreateSession | Op::Error => {
                return Err(DecodeError::Invalid("opcode has no reply body"))
            }
        })
    }
}

/// Reads results up to the header marked done; each consumes at least its 9-byte header, so the
/// count is bounded by the frame.
fn read_results(r: &mut Reader<'_>) -> Result<Vec<MultiResult>, DecodeError> {
    let mut results = Vec::new();
    loop {
        let header: MultiHeader = r.read()?;
        if header.done {
            return Ok(results);
        }
        results.push(MultiResult::read(header.op_type, r)?);
    }
}

/// Appends one reply frame: the 4-byte length, `header`, then `body` — only when `header.err`
/// is 0, because clients read no body on an error (see the module docs; a failed multi is sent
/// with `err` 0 and error results). Pings and other body-less replies pass `None`.
pub fn encode_reply(header: &ReplyHeader, body: Option<&Response>, out: &mut Vec<u8>) {
    write_frame(out, |out| {
        header.encode(out);
        if header.err == ErrorCode::Ok.code() {
            if let Some(body) = body {
                body.encode_body(out);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::acl::Id;
    use crate::proto::header::PING_XID;

    fn stat(n: i64) -> Stat {
        Stat { czxid: n, mzxid: n + 1, version: 2, data_length: 3, ..Stat::default() }
    }

    fn samples() -> Vec<(OpCode, Response)> {
        let names = vec!["a".to_owned(), "b".to_owned()];
        vec![
            (OpCode::Create, Response::Create { path: "/q/item-0000000001".to_owned() }),
            (OpCode::Create2, Response::Create2 { path: "/c".to_owned(), stat: stat(5) }),
            (OpCode::CreateTtl, Response::Create2 { path: "/t".to_owned(), stat: stat(6) }),
            (OpCode::Exists, Response::Stat(stat(7))),
            (OpCode::SetData, Response::Stat(stat(8))),
            (OpCode::GetData, Response::GetData { data: Some(b"v".to_vec()), stat: stat(9) }),
            (
                OpCode::GetAcl,
                Response::GetAcl { acl: vec![Acl { perms: 1, id: Id::new("ip", "10.0.0.1") }], stat: stat(10) },
            ),
            (OpCode::GetChildren, Response::GetChildren { children: names.clone() }),
            (OpCode::GetChildren2, Response::GetChildren2 { children: vec![], stat: stat(11) }),
            (OpCode::Sync, Response::Sync { path: "/".to_owned() }),
            (OpCode::Delete, Response::Empty),
            (OpCode::Ping, Response::Empty),
            (
                OpCode::Multi,
                Response::Multi(vec![
                    MultiResult::Create { path: "/m1".to_owned() },
                    MultiResult::Create2 { path: "/m2".to_owned(), stat: stat(12) },
                    MultiResult::Delete,
                    MultiResult::SetData { stat: stat(13) },
                    MultiResult::Check,
                ]),
            ),
            (
                OpCode::Multi,
                Response::Multi(vec![
                    MultiResult::Error(ErrorCode::Ok),
                    MultiResult::Error(ErrorCode::BadVersion),
                    MultiResult::Error(ErrorCode::RuntimeInconsistency),
                ]),
            ),
            (
                OpCode::MultiRead,
                Response::MultiRead(vec![
                    MultiResult::GetData { data: None, stat: stat(14) },
                    MultiResult::Error(ErrorCode::NoNode),
                    MultiResult::GetChildren { children: names.clone() },
                ]),
            ),
            (OpCode::GetEphemerals, Response::GetEphemerals { paths: names }),
            (OpCode::GetAllChildrenNumber, Response::AllChildrenNumber(12)),
            (
                OpCode::WhoAmI,
                Response::WhoAmI(vec![ClientInfo { auth_scheme: "ip".to_owned(), user: "127.0.0.1".to_owned() }]),
            ),
            (OpCode::Sasl, Response::Sasl { token: vec![1] }),
        ]
    }

    fn body(response: &Response) -> Vec<u8> {
        let mut out = Vec::new();
        response.encode_body(&mut out);
        out
    }

    #[test]
    fn every_response_round_trips() {
        for (op, response) in samples() {
            let bytes = body(&response);
            assert_eq!(Response::decode_body(op, &bytes), Ok(response), "{op:?}");
        }
    }

    #[test]
    fn truncated_responses_are_errors() {
        for (op, response) in samples() {
            let bytes = body(&response);
            for len in 0..bytes.len() {
                assert!(Response::decode_body(op, &bytes[..len]).is_err(), "{op:?} cut at {len}");
            }
        }
    }

    #[test]
    fn failed_multi_layout() {
        let response = Response::Multi(vec![MultiResult::Error(ErrorCode::Ok), MultiResult::Error(ErrorCode::NoNode)]);
        let expected = [
            0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, // {type -1, done false, err 0}
            0, 0, 0, 0, // ErrorResponse { err 0 }
            0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0x9b, // {type -1, done false, err -101}
            0xff, 0xff, 0xff, 0x9b, // ErrorResponse { err -101 }
            0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff, // end {-1, true, -1}
        ];
        assert_eq!(body(&response), expected);

        // The whole frame: header err stays 0 so the client reads the per-op results.
        let mut frame = Vec::new();
        encode_reply(&ReplyHeader::ok(5, 77), Some(&response), &mut frame);
        assert_eq!(&frame[..4], &(16 + expected.len() as i32).to_be_bytes());
        let (header, rest) = ReplyHeader::decode(&frame[4..]).expect("header");
        assert_eq!(header, ReplyHeader::ok(5, 77));
        assert_eq!(Response::decode_body(OpCode::Multi, rest), Ok(response));
    }

    #[test]
    fn successful_multi_result_types() {
        let response = Response::Multi(vec![MultiResult::Delete, MultiResult::Check]);
        assert_eq!(
            body(&response),
            [
                0, 0, 0, 2, 0, 0, 0, 0, 0, // {delete, false, 0}
                0, 0, 0, 13, 0, 0, 0, 0, 0, // {check, false, 0}
                0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff,
            ]
        );
    }

    #[test]
    fn error_reply_has_no_body() {
        let mut frame = Vec::new();
        let header = ReplyHeader::new(3, 10, ErrorCode::NodeExists);
        encode_reply(&header, Some(&Response::Create { path: "/x".to_owned() }), &mut frame);
        let mut expected = vec![0, 0, 0, 16];
        header.encode(&mut expected);
        assert_eq!(frame, expected);
    }

    #[test]
    fn ping_reply_is_a_bare_header() {
        let mut frame = Vec::new();
        encode_reply(&ReplyHeader::ok(PING_XID, 4), None, &mut frame);
        assert_eq!(frame.len(), 20);
        assert_eq!(&frame[..8], &[0, 0, 0, 16, 0xff, 0xff, 0xff, 0xfe]);
    }

    #[test]
    fn get_data_reply_frame() {
        let mut frame = Vec::new();
        let response = Response::GetData { data: Some(b"hi".to_vec()), stat: stat(1) };
        encode_reply(&ReplyHeader::ok(1, 2), Some(&response), &mut frame);
        assert_eq!(frame.len(), 4 + 16 + 4 + 2 + 68);
        assert_eq!(&frame[..4], &90i32.to_be_bytes());
        assert_eq!(Response::decode_body(OpCode::GetData, &frame[20..]), Ok(response));
    }

    #[test]
    fn unknown_multi_result_is_an_error() {
        let mut bytes = Vec::new();
        bytes.write_record(&MultiHeader { op_type: OpCode::Sync as i32, done: false, err: 0 });
        bytes.write_string("/x");
        bytes.write_record(&MultiHeader::END);
        assert!(Response::decode_body(OpCode::Multi, &bytes).is_err());

        let mut bytes = Vec::new();
        bytes.write_record(&MultiHeader { op_type: -1, done: false, err: -9999 });
        bytes.write_i32(-9999);
        bytes.write_record(&MultiHeader::END);
        assert!(Response::decode_body(OpCode::Multi, &bytes).is_err());
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let ops: Vec<OpCode> = (-20..=200).filter_map(|c| OpCode::try_from(c).ok()).collect();
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 120) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let b = state.rotate_left(i as u32 * 8) as u8;
                    if i % 5 == 0 {
                        b & 0x03
                    } else {
                        b
                    }
                })
                .collect();
            for &op in &ops {
                let _ = Response::decode_body(op, &bytes);
            }
            let _ = crate::proto::ConnectResponse::decode(&bytes);
            let _ = crate::proto::WatcherEvent::decode(&bytes);
        }
    }
}
