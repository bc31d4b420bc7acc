//! The greeting that opens every peer link: a 4-byte big-endian length, then a postcard-encoded
//! [`Hello`]. The dialer sends it first; the answering server replies with its own greeting.
//! Nothing else may come first, and it is small: a listener reads at most [`MAX_HELLO`] bytes
//! from a dialer it does not know yet.

use serde::{Deserialize, Serialize};

/// The longest greeting a server accepts (its body, without the length prefix).
pub const MAX_HELLO: usize = 1024;

/// Who is on the other end of a peer link.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's Raft id.
    pub id: u64,
    /// The sender's admin address (so followers can point callers at the leader's).
    pub admin_addr: String,
}

/// Why a greeting was refused.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// Longer than [`MAX_HELLO`].
    #[error("peer greeting of {0} bytes is longer than {MAX_HELLO}")]
    TooLong(usize),
    /// Not a greeting.
    #[error("malformed peer greeting: {0}")]
    Malformed(#[from] postcard::Error),
}

impl Hello {
    /// The greeting as it goes on the wire, length prefix included.
    pub fn to_frame(&self) -> Result<Vec<u8>, HelloError> {
        let body = postcard::to_stdvec(self)?;
        if body.len() > MAX_HELLO {
            return Err(HelloError::TooLong(body.len()));
        }
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    /// Decodes a greeting's body (the bytes after the length prefix).
    pub fn from_body(body: &[u8]) -> Result<Hello, HelloError> {
        if body.len() > MAX_HELLO {
            return Err(HelloError::TooLong(body.len()));
        }
        Ok(postcard::from_bytes(body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_round_trips() {
        let hello = Hello { id: 3, admin_addr: "127.0.0.1:8080".into() };
        let frame = hello.to_frame().expect("encode");
        let len = u32::from_be_bytes(frame[..4].try_into().expect("prefix")) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(Hello::from_body(&frame[4..]).expect("decode"), hello);
    }

    #[test]
    fn long_or_malformed_greetings_are_errors() {
        let long = Hello { id: 1, admin_addr: "x".repeat(MAX_HELLO) };
        assert!(matches!(long.to_frame(), Err(HelloError::TooLong(_))));
        assert!(matches!(Hello::from_body(&[0xff; 3]), Err(HelloError::Malformed(_))));
        assert!(matches!(Hello::from_body(&[0; MAX_HELLO + 1]), Err(HelloError::TooLong(_))));
    }
}
