//! The session handshake: `ConnectRequest` (the first frame a client sends, with no request
//! header) and `ConnectResponse`. Choosing the timeout and session belongs to the server.
//!
//! Both records may carry one trailing `readOnly` boolean after the jute record proper. Clients
//! since 3.4 send it, so a request with the usual 16-byte password is 44 bytes without it and 45
//! with it; the response echoes it only when the client sent it, because an old client would read
//! the extra byte as the start of the next frame.

use super::jute::{Reader, Writer};
use super::DecodeError;

/// A client's handshake (`ConnectRequest` plus the optional `readOnly` byte).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Protocol version (0 for every client in use).
    pub protocol_version: i32,
    /// The highest zxid the client has seen; a server behind it must refuse the session.
    pub last_zxid_seen: i64,
    /// Requested session timeout.
    pub timeout_ms: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// The session password (16 bytes when resuming; zeros or empty for a new session).
    pub password: Vec<u8>,
    /// Whether the client accepts a read-only server; `None` when the byte was absent.
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    /// Decodes the handshake frame body (without the 4-byte length). Bytes after the `readOnly`
    /// flag are ignored.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(ConnectRequest {
            protocol_version: r.read_i32()?,
            last_zxid_seen: r.read_i64()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            password: r.read_buffer()?,
            read_only: read_trailing_flag(&mut r)?,
        })
    }

    /// Appends the record (without a frame length).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.write_i32(self.protocol_version);
        out.write_i64(self.last_zxid_seen);
        out.write_i32(self.timeout_ms);
        out.write_i64(self.session_id);
        out.write_buffer(&self.password);
        if let Some(read_only) = self.read_only {
            out.write_bool(read_only);
        }
    }
}

/// The server's handshake answer (`ConnectResponse` plus the optional `readOnly` byte). A refused
/// session is `timeout_ms: 0, session_id: 0`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Protocol version (0).
    pub protocol_version: i32,
    /// The negotiated session timeout; 0 when the session is refused or expired.
    pub timeout_ms: i32,
    /// The session id; 0 when refused.
    pub session_id: i64,
    /// The session password the client presents when it reconnects.
    pub password: Vec<u8>,
    /// Whether this server is read-only; send `Some` only when the request carried the flag.
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    /// Appends the record (without a frame length; see [`super::jute::write_frame`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.write_i32(self.protocol_version);
        out.write_i32(self.timeout_ms);
        out.write_i64(self.session_id);
        out.write_buffer(&self.password);
        if let Some(read_only) = self.read_only {
            out.write_bool(read_only);
        }
    }

    /// Decodes the handshake answer frame body (without the 4-byte length).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(ConnectResponse {
            protocol_version: r.read_i32()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            password: r.read_buffer()?,
            read_only: read_trailing_flag(&mut r)?,
        })
    }
}

fn read_trailing_flag(r: &mut Reader<'_>) -> Result<Option<bool>, DecodeError> {
    if r.is_empty() {
        Ok(None)
    } else {
        r.read_bool().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(read_only: Option<bool>) -> ConnectRequest {
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0x0102,
            timeout_ms: 30_000,
            session_id: 0x7766_5544_3322_1100,
            password: (1..=16).collect(),
            read_only,
        }
    }

    fn request_bytes() -> Vec<u8> {
        let mut b = vec![0, 0, 0, 0];
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        b.extend_from_slice(&[0, 0, 0x75, 0x30]);
        b.extend_from_slice(&[0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00]);
        b.extend_from_slice(&[0, 0, 0, 16]);
        b.extend(1..=16u8);
        b
    }

    #[test]
    fn request_of_44_bytes_has_no_read_only_flag() {
        let bytes = request_bytes();
        assert_eq!(bytes.len(), 44);
        assert_eq!(ConnectRequest::decode(&bytes), Ok(request(None)));
        let mut out = Vec::new();
        request(None).encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn request_of_45_bytes_carries_read_only() {
        let mut bytes = request_bytes();
        bytes.push(1);
        assert_eq!(bytes.len(), 45);
        assert_eq!(ConnectRequest::decode(&bytes), Ok(request(Some(true))));
        let mut out = Vec::new();
        request(Some(true)).encode(&mut out);
        assert_eq!(out, bytes);
        bytes[44] = 0;
        assert_eq!(ConnectRequest::decode(&bytes), Ok(request(Some(false))));
    }

    #[test]
    fn new_session_with_empty_password() {
        let req = ConnectRequest { timeout_ms: 4000, ..ConnectRequest::default() };
        let mut out = Vec::new();
        req.encode(&mut out);
        assert_eq!(out.len(), 28);
        assert_eq!(ConnectRequest::decode(&out), Ok(req));
    }

    #[test]
    fn truncated_request_is_an_error() {
        let bytes = request_bytes();
        for len in 0..bytes.len() {
            assert_eq!(ConnectRequest::decode(&bytes[..len]), Err(DecodeError::Truncated), "len {len}");
        }
    }

    #[test]
    fn response_echoes_read_only_only_when_set() {
        let mut resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 10_000,
            session_id: 42,
            password: vec![7; 16],
            read_only: None,
        };
        let mut out = Vec::new();
        resp.encode(&mut out);
        assert_eq!(out.len(), 36);
        assert_eq!(&out[4..8], &10_000i32.to_be_bytes());
        assert_eq!(ConnectResponse::decode(&out), Ok(resp.clone()));

        resp.read_only = Some(false);
        let mut out = Vec::new();
        resp.encode(&mut out);
        assert_eq!(out.len(), 37);
        assert_eq!(out[36], 0);
        assert_eq!(ConnectResponse::decode(&out), Ok(resp));
    }
}
