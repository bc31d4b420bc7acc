//! The znode `Stat` record.

use serde::{Deserialize, Serialize};

use super::jute::{Reader, Record, Writer};
use super::DecodeError;

/// Metadata of a znode, exactly as ZooKeeper sends it (field order is the wire order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// zxid of the txn that created the node.
    pub czxid: i64,
    /// zxid of the txn that last modified the node's data.
    pub mzxid: i64,
    /// Creation time, milliseconds since the epoch.
    pub ctime: i64,
    /// Last data modification time, milliseconds since the epoch.
    pub mtime: i64,
    /// Number of data changes.
    pub version: i32,
    /// Number of child changes (creates and deletes).
    pub cversion: i32,
    /// Number of ACL changes.
    pub aversion: i32,
    /// Owning session of an ephemeral node, else 0.
    pub ephemeral_owner: i64,
    /// Length of the data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// zxid of the last child create or delete.
    pub pzxid: i64,
}

impl Record for Stat {
    const MIN_LEN: usize = 68;

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Stat {
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            data_length: r.read_i32()?,
            num_children: r.read_i32()?,
            pzxid: r.read_i64()?,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        let Stat {
            czxid,
            mzxid,
            ctime,
            mtime,
            version,
            cversion,
            aversion,
            ephemeral_owner,
            data_length,
            num_children,
            pzxid,
        } = *self;
        out.write_i64(czxid);
        out.write_i64(mzxid);
        out.write_i64(ctime);
        out.write_i64(mtime);
        out.write_i32(version);
        out.write_i32(cversion);
        out.write_i32(aversion);
        out.write_i64(ephemeral_owner);
        out.write_i32(data_length);
        out.write_i32(num_children);
        out.write_i64(pzxid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_68_bytes_in_field_order() {
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let mut out = Vec::new();
        out.write_record(&stat);
        assert_eq!(out.len(), Stat::MIN_LEN);
        assert_eq!(&out[32..36], &5i32.to_be_bytes());
        assert_eq!(&out[44..52], &8i64.to_be_bytes());
        assert_eq!(&out[60..68], &11i64.to_be_bytes());
        assert_eq!(Reader::new(&out).read::<Stat>(), Ok(stat));
        assert_eq!(Reader::new(&out[..67]).read::<Stat>(), Err(DecodeError::Truncated));
    }
}
