//! The one length-prefixed frame reader of the client and peer ports: a 4-byte big-endian
//! length, then that many bytes. The caller says how long a frame may be (jute.maxbuffer on the
//! client port; on the peer port a greeting is small and later frames may carry log batches); a
//! longer one, or a negative jute length, ends the connection before anything is allocated.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Socket error, or the peer went away.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix is over the limit (a negative jute length reads as over 2 GiB).
    #[error("frame length {len} over the limit of {max} bytes")]
    TooLong {
        /// The length the prefix announced.
        len: u64,
        /// The limit.
        max: usize,
    },
}

impl From<FrameError> for std::io::Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => e,
            e @ FrameError::TooLong { .. } => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }
    }
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await?;
    read_body(reader, prefix, max).await
}

/// Reads the body of a frame whose length prefix `prefix` was read already (the client port
/// reads four bytes first to tell a four-letter word from a frame).
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    prefix: [u8; 4],
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if len as u64 > max as u64 {
        return Err(FrameError::TooLong { len: len as u64, max });
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_in_turn() {
        let bytes = [0, 0, 0, 2, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        let mut reader = &bytes[..];
        assert_eq!(read_frame(&mut reader, 16).await.expect("first"), vec![7, 8]);
        assert_eq!(read_frame(&mut reader, 16).await.expect("empty"), Vec::<u8>::new());
        assert_eq!(read_frame(&mut reader, 16).await.expect("last"), vec![9]);
        assert!(matches!(read_frame(&mut reader, 16).await, Err(FrameError::Io(_))));
    }

    #[tokio::test]
    async fn long_and_negative_lengths_are_refused_before_reading() {
        let long = [0, 0, 0, 17];
        assert!(matches!(read_frame(&mut &long[..], 16).await, Err(FrameError::TooLong { len: 17, max: 16 })));
        let negative = (-1i32).to_be_bytes();
        assert!(matches!(read_frame(&mut &negative[..], 1 << 20).await, Err(FrameError::TooLong { .. })));
        let truncated = [0, 0, 0, 4, 1];
        assert!(matches!(read_frame(&mut &truncated[..], 16).await, Err(FrameError::Io(_))));
    }
}
