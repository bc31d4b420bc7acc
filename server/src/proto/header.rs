//! Request and reply headers, which start every frame after the handshake, the reserved xids, and
//! the `MultiHeader` that precedes each operation and result inside a multi. What follows a header
//! (the record body) is decoded in `request` and `response`.

use super::jute::{Reader, Record, Writer};
use super::{DecodeError, ErrorCode, OpCode};

/// The xid of a server-to-client watch notification.
pub const NOTIFICATION_XID: i32 = -1;
/// The xid of a ping and its reply.
pub const PING_XID: i32 = -2;
/// The xid of an auth packet and its reply.
pub const AUTH_XID: i32 = -4;
/// The xid of setWatches / setWatches2 and their reply.
pub const SET_WATCHES_XID: i32 = -8;

/// The header of a client request: its xid (echoed in the reply) and opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// The client's request id, echoed in the reply; negative values are reserved.
    pub xid: i32,
    /// The operation.
    pub op: OpCode,
}

impl RequestHeader {
    /// Encoded length.
    pub const LEN: usize = 8;

    /// Decodes the header at the start of a frame and returns the rest of the frame (the body).
    /// An unknown opcode is `UnknownOpCode`; [`RequestHeader::read_xid`] still yields the xid to
    /// answer it with.
    pub fn decode(frame: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(frame);
        let xid = r.read_i32()?;
        let op = OpCode::try_from(r.read_i32()?)?;
        Ok((RequestHeader { xid, op }, r.rest()))
    }

    /// The xid of a frame whose header did not decode (ZooKeeper answers an unknown opcode with
    /// `Unimplemented` under the request's xid rather than dropping the connection).
    pub fn read_xid(frame: &[u8]) -> Result<i32, DecodeError> {
        Reader::new(frame).read_i32()
    }

    /// Appends the header.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.write_i32(self.xid);
        out.write_i32(self.op as i32);
    }
}

/// The header of every server-to-client frame after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The request's xid, or a reserved xid.
    pub xid: i32,
    /// The zxid the server had applied when it answered (-1 on notifications).
    pub zxid: i64,
    /// 0, or a `KeeperException` code ([`ErrorCode`]).
    pub err: i32,
}

impl ReplyHeader {
    /// Encoded length.
    pub const LEN: usize = 16;

    /// A header carrying `err`.
    pub fn new(xid: i32, zxid: i64, err: ErrorCode) -> Self {
        ReplyHeader { xid, zxid, err: err.code() }
    }

    /// A success header.
    pub fn ok(xid: i32, zxid: i64) -> Self {
        Self::new(xid, zxid, ErrorCode::Ok)
    }

    /// Appends the header.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.write_i32(self.xid);
        out.write_i64(self.zxid);
        out.write_i32(self.err);
    }

    /// Decodes the header at the start of a frame and returns the rest of the frame (the body).
    pub fn decode(frame: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(frame);
        let header = ReplyHeader { xid: r.read_i32()?, zxid: r.read_i64()?, err: r.read_i32()? };
        Ok((header, r.rest()))
    }
}

/// The header before each operation of a multi request and each result of a multi response. The
/// sequence ends with a header whose `done` is true (written as `{-1, true, -1}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiHeader {
    /// The operation's opcode, or -1 for an error result and for the end marker.
    pub op_type: i32,
    /// True only on the end marker.
    pub done: bool,
    /// An error result's code; 0 on other results; -1 on requests and the end marker.
    pub err: i32,
}

impl MultiHeader {
    /// The header that ends a multi request or response.
    pub const END: MultiHeader = MultiHeader { op_type: -1, done: true, err: -1 };
}

impl Record for MultiHeader {
    const MIN_LEN: usize = 9;

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MultiHeader { op_type: r.read_i32()?, done: r.read_bool()?, err: r.read_i32()? })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.write_i32(self.op_type);
        out.write_bool(self.done);
        out.write_i32(self.err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_layout_and_body() {
        let frame = [0, 0, 0, 7, 0, 0, 0, 4, 0xaa];
        let (header, body) = RequestHeader::decode(&frame).expect("valid header");
        assert_eq!(header, RequestHeader { xid: 7, op: OpCode::GetData });
        assert_eq!(body, &[0xaa]);
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(out, &frame[..RequestHeader::LEN]);
    }

    #[test]
    fn unknown_opcode_keeps_the_xid_readable() {
        let frame = [0, 0, 0, 9, 0, 0, 0, 99];
        assert_eq!(RequestHeader::decode(&frame), Err(DecodeError::UnknownOpCode(99)));
        assert_eq!(RequestHeader::read_xid(&frame), Ok(9));
    }

    #[test]
    fn truncated_headers_are_errors() {
        let frame = [0, 0, 0, 9, 0, 0, 0, 1];
        for len in 0..frame.len() {
            assert_eq!(RequestHeader::decode(&frame[..len]), Err(DecodeError::Truncated));
        }
        let mut out = Vec::new();
        ReplyHeader::ok(1, 2).encode(&mut out);
        for len in 0..out.len() {
            assert_eq!(ReplyHeader::decode(&out[..len]), Err(DecodeError::Truncated));
        }
    }

    #[test]
    fn multi_end_marker_layout() {
        let mut out = Vec::new();
        out.write_record(&MultiHeader::END);
        assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(Reader::new(&out).read(), Ok(MultiHeader::END));
    }

    #[test]
    fn reply_header_round_trips() {
        let header = ReplyHeader::new(PING_XID, 0x1_0000_0002, ErrorCode::NoNode);
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(out, [0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0x9b]);
        assert_eq!(ReplyHeader::decode(&out), Ok((header, &[][..])));
    }
}
