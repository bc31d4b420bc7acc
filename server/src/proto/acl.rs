//! ACL records (`Id`, `ACL`) and permission bits.

use serde::{Deserialize, Serialize};

use super::jute::{Reader, Record, Writer};
use super::DecodeError;

/// Permission bits (`ZooDefs.Perms`).
pub mod perms {
    /// Read data and list children.
    pub const READ: i32 = 1;
    /// Set data.
    pub const WRITE: i32 = 2;
    /// Create children.
    pub const CREATE: i32 = 4;
    /// Delete children.
    pub const DELETE: i32 = 8;
    /// Set ACLs.
    pub const ADMIN: i32 = 16;
    /// Every permission.
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// An identity: a scheme (`world`, `auth`, `digest`, `ip`, `super`) and an id within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Id {
    /// The scheme.
    pub scheme: String,
    /// The id within the scheme.
    pub id: String,
}

impl Id {
    /// An identity from its two parts.
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Self { scheme: scheme.into(), id: id.into() }
    }

    /// `world:anyone`.
    pub fn anyone() -> Self {
        Self::new("world", "anyone")
    }
}

/// One ACL entry: permissions granted to an identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Acl {
    /// Permission bits from [`perms`].
    pub perms: i32,
    /// Who gets them.
    pub id: Id,
}

impl Acl {
    /// `world:anyone` with every permission (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl { perms: perms::ALL, id: Id::anyone() }]
    }
}

impl Record for Id {
    const MIN_LEN: usize = 8;

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Id { scheme: r.read_string()?, id: r.read_string()? })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.write_string(&self.scheme);
        out.write_string(&self.id);
    }
}

impl Record for Acl {
    const MIN_LEN: usize = 4 + Id::MIN_LEN;

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Acl { perms: r.read_i32()?, id: r.read()? })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.write_i32(self.perms);
        out.write_record(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_layout_is_perms_scheme_id() {
        let mut out = Vec::new();
        out.write_vec(&Acl::open_unsafe());
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 31, 0, 0, 0, 5];
        expected.extend_from_slice(b"world");
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"anyone");
        assert_eq!(out, expected);
        assert_eq!(Reader::new(&out).read_vec::<Acl>(), Ok(Acl::open_unsafe()));
    }

    #[test]
    fn truncated_acl_is_an_error() {
        let mut out = Vec::new();
        out.write_vec(&Acl::open_unsafe());
        for len in 0..out.len() {
            assert!(Reader::new(&out[..len]).read_vec::<Acl>().is_err(), "len {len}");
        }
    }
}
