//! Jute primitives: a bounds-checked [`Reader`] over a frame's bytes, the [`Writer`] helpers that
//! append to a `Vec<u8>`, the [`Record`] trait shared by every composite record, and
//! [`write_frame`] for the 4-byte length prefix. Records themselves live in their own files.
//!
//! Jute is big-endian. Buffers and strings are an `i32` length then the bytes; vectors are an `i32`
//! count then the elements; `-1` means null. Znode data keeps null apart from empty, as ZooKeeper
//! does and its clients see ([`Reader::read_optional_buffer`]); everywhere else null decodes as
//! empty. A boolean is one byte, any non-zero value is true (as Java's `DataInput.readBoolean`).

use super::DecodeError;

/// The length prefix jute writes for a null buffer, string or vector.
const NULL_LEN: i32 = -1;

/// A record with a jute encoding.
pub trait Record: Sized {
    /// The fewest bytes any encoding of this record takes. [`Reader::read_vec`] uses it to reject
    /// an element count that the remaining bytes cannot hold, before allocating anything.
    const MIN_LEN: usize;

    /// Reads one record.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Appends the record's encoding.
    fn write(&self, out: &mut Vec<u8>);
}

/// A cursor over one frame's bytes. Every read checks bounds; nothing here panics or allocates
/// more than the input could describe.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// How many bytes are left unread.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(DecodeError::Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, tail) = self.buf.split_first_chunk::<N>().ok_or(DecodeError::Truncated)?;
        self.buf = tail;
        Ok(*head)
    }

    /// Reads a big-endian `int`.
    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        self.take_array().map(i32::from_be_bytes)
    }

    /// Reads a big-endian `long`.
    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        self.take_array().map(i64::from_be_bytes)
    }

    /// Reads a `boolean` (one byte, non-zero is true).
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        self.take_array::<1>().map(|[b]| b != 0)
    }

    /// Reads a length prefix: `None` for null (-1), `BadLength` for any other negative value.
    fn read_len(&mut self) -> Result<Option<usize>, DecodeError> {
        match self.read_i32()? {
            NULL_LEN => Ok(None),
            len => usize::try_from(len).map(Some).map_err(|_| DecodeError::BadLength(len)),
        }
    }

    fn read_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        match self.read_len()? {
            None => Ok(&[]),
            // A length past the end of the frame is a truncated record.
            Some(len) => self.take(len),
        }
    }

    /// Reads a `buffer`; null decodes as empty.
    pub fn read_buffer(&mut self) -> Result<Vec<u8>, DecodeError> {
        self.read_bytes().map(<[u8]>::to_vec)
    }

    /// Reads a `buffer` that may be null (`None`), as znode data may.
    pub fn read_optional_buffer(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.read_len()? {
            None => Ok(None),
            Some(len) => self.take(len).map(|bytes| Some(bytes.to_vec())),
        }
    }

    /// Reads a `ustring`; null decodes as empty. Invalid UTF-8 is rejected rather than replaced,
    /// so a path can never silently change on its way into the tree.
    pub fn read_string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.read_bytes()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError::BadUtf8)
    }

    /// Reads one record.
    pub fn read<T: Record>(&mut self) -> Result<T, DecodeError> {
        T::read(self)
    }

    /// Reads a `vector<T>`; null decodes as empty. A count the remaining bytes cannot hold is
    /// `BadLength`, so a forged count never drives an allocation.
    pub fn read_vec<T: Record>(&mut self) -> Result<Vec<T>, DecodeError> {
        let Some(count) = self.read_len()? else {
            return Ok(Vec::new());
        };
        if count > self.remaining() / T::MIN_LEN.max(1) {
            return Err(DecodeError::BadLength(i32::try_from(count).unwrap_or(i32::MAX)));
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::read(self)?);
        }
        Ok(items)
    }
}

/// Jute writers for the buffer a frame is built in. Encoding never fails.
pub trait Writer {
    /// Appends a big-endian `int`.
    fn write_i32(&mut self, v: i32);
    /// Appends a big-endian `long`.
    fn write_i64(&mut self, v: i64);
    /// Appends a `boolean` as 0 or 1.
    fn write_bool(&mut self, v: bool);
    /// Appends a `buffer` (length then bytes).
    fn write_buffer(&mut self, v: &[u8]);
    /// Appends a `buffer` that may be null (length -1).
    fn write_optional_buffer(&mut self, v: Option<&[u8]>);
    /// Appends a `ustring` (length then UTF-8 bytes).
    fn write_string(&mut self, v: &str);
    /// Appends one record.
    fn write_record<T: Record>(&mut self, v: &T);
    /// Appends a `vector<T>` (count then elements).
    fn write_vec<T: Record>(&mut self, v: &[T]);
}

/// A length or count as jute's `i32`. Anything that large is far beyond `jute.maxbuffer`, so the
/// server never builds one; saturating keeps encoding infallible.
fn wire_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

impl Writer for Vec<u8> {
    fn write_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_be_bytes());
    }

    fn write_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_be_bytes());
    }

    fn write_bool(&mut self, v: bool) {
        self.push(u8::from(v));
    }

    fn write_buffer(&mut self, v: &[u8]) {
        self.write_i32(wire_len(v.len()));
        self.extend_from_slice(v);
    }

    fn write_optional_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.write_buffer(v),
            None => self.write_i32(NULL_LEN),
        }
    }

    fn write_string(&mut self, v: &str) {
        self.write_buffer(v.as_bytes());
    }

    fn write_record<T: Record>(&mut self, v: &T) {
        v.write(self);
    }

    fn write_vec<T: Record>(&mut self, v: &[T]) {
        self.write_i32(wire_len(v.len()));
        for item in v {
            item.write(self);
        }
    }
}

/// Appends one frame: a 4-byte big-endian length, then whatever `body` writes.
pub fn write_frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = wire_len(out.len() - start - 4);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

impl Record for String {
    const MIN_LEN: usize = 4;

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_string()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.write_string(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_big_endian() {
        let mut out = Vec::new();
        out.write_i32(0x0102_0304);
        out.write_i64(-2);
        out.write_bool(true);
        out.write_bool(false);
        assert_eq!(out, [1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1, 0]);

        let mut r = Reader::new(&out);
        assert_eq!(r.read_i32(), Ok(0x0102_0304));
        assert_eq!(r.read_i64(), Ok(-2));
        assert_eq!(r.read_bool(), Ok(true));
        assert_eq!(r.read_bool(), Ok(false));
        assert!(r.is_empty());
        assert_eq!(r.read_bool(), Err(DecodeError::Truncated));
    }

    #[test]
    fn any_nonzero_byte_is_true() {
        assert_eq!(Reader::new(&[7]).read_bool(), Ok(true));
    }

    #[test]
    fn strings_and_buffers_round_trip() {
        let mut out = Vec::new();
        out.write_string("/a/é");
        out.write_buffer(b"");
        out.write_buffer(&[0, 255]);
        assert_eq!(&out[..4], &[0, 0, 0, 5]);
        let mut r = Reader::new(&out);
        assert_eq!(r.read_string().as_deref(), Ok("/a/é"));
        assert_eq!(r.read_buffer(), Ok(vec![]));
        assert_eq!(r.read_buffer(), Ok(vec![0, 255]));
        assert!(r.is_empty());
    }

    #[test]
    fn optional_buffers_keep_null_apart_from_empty() {
        for value in [None, Some(vec![]), Some(b"ab".to_vec())] {
            let mut out = Vec::new();
            out.write_optional_buffer(value.as_deref());
            let mut r = Reader::new(&out);
            assert_eq!(r.read_optional_buffer(), Ok(value));
            assert!(r.is_empty());
        }
        assert_eq!(Reader::new(&(-1i32).to_be_bytes()).read_optional_buffer(), Ok(None));
        assert_eq!(Reader::new(&(-2i32).to_be_bytes()).read_optional_buffer(), Err(DecodeError::BadLength(-2)));
        assert!(Reader::new(&5i32.to_be_bytes()).read_optional_buffer().is_err(), "truncated");
    }

    #[test]
    fn null_decodes_as_empty() {
        let null = (-1i32).to_be_bytes();
        assert_eq!(Reader::new(&null).read_buffer(), Ok(vec![]));
        assert_eq!(Reader::new(&null).read_string(), Ok(String::new()));
        assert_eq!(Reader::new(&null).read_vec::<String>(), Ok(vec![]));
    }

    #[test]
    fn negative_lengths_are_rejected() {
        let bad = (-2i32).to_be_bytes();
        assert_eq!(Reader::new(&bad).read_buffer(), Err(DecodeError::BadLength(-2)));
        assert_eq!(Reader::new(&bad).read_string(), Err(DecodeError::BadLength(-2)));
        assert_eq!(Reader::new(&bad).read_vec::<String>(), Err(DecodeError::BadLength(-2)));
        let min = i32::MIN.to_be_bytes();
        assert_eq!(Reader::new(&min).read_buffer(), Err(DecodeError::BadLength(i32::MIN)));
    }

    #[test]
    fn lengths_past_the_end_are_truncated() {
        let mut out = Vec::new();
        out.write_i32(5);
        out.extend_from_slice(b"abc");
        assert_eq!(Reader::new(&out).read_buffer(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&out).read_string(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[0, 0]).read_i32(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[0; 7]).read_i64(), Err(DecodeError::Truncated));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        let mut out = Vec::new();
        out.write_buffer(&[0x2f, 0xc3, 0x28]);
        assert_eq!(Reader::new(&out).read_string(), Err(DecodeError::BadUtf8));
    }

    #[test]
    fn huge_vector_count_is_rejected_before_allocating() {
        let mut out = Vec::new();
        out.write_i32(i32::MAX);
        out.write_string("x");
        assert_eq!(Reader::new(&out).read_vec::<String>(), Err(DecodeError::BadLength(i32::MAX)));
        // Two strings need at least 8 bytes; 7 remain.
        let mut out = Vec::new();
        out.write_i32(2);
        out.extend_from_slice(&[0; 7]);
        assert_eq!(Reader::new(&out).read_vec::<String>(), Err(DecodeError::BadLength(2)));
    }

    #[test]
    fn vectors_round_trip() {
        let items = vec!["a".to_owned(), String::new(), "ccc".to_owned()];
        let mut out = Vec::new();
        out.write_vec(&items);
        let mut r = Reader::new(&out);
        assert_eq!(r.read_vec::<String>(), Ok(items));
        assert!(r.is_empty());
    }

    #[test]
    fn frame_prefixes_its_length() {
        let mut out = vec![9];
        write_frame(&mut out, |o| o.write_i64(1));
        assert_eq!(out, [9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
    }
}
