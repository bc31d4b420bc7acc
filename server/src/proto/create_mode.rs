//! Create modes (`CreateMode`) as sent in create flags.

use serde::{Deserialize, Serialize};

use super::DecodeError;

/// How a znode is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CreateMode {
    /// Persistent.
    Persistent,
    /// Persistent with a sequence suffix.
    PersistentSequential,
    /// Deleted when the owning session ends.
    Ephemeral,
    /// Ephemeral with a sequence suffix.
    EphemeralSequential,
    /// Deleted by the server once it had children and has none.
    Container,
    /// Persistent, deleted once childless and unmodified for its TTL.
    PersistentWithTtl,
    /// Persistent sequential with a TTL.
    PersistentSequentialWithTtl,
}

impl CreateMode {
    /// The wire flag value.
    pub fn flag(self) -> i32 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::Ephemeral => 1,
            CreateMode::PersistentSequential => 2,
            CreateMode::EphemeralSequential => 3,
            CreateMode::Container => 4,
            CreateMode::PersistentWithTtl => 5,
            CreateMode::PersistentSequentialWithTtl => 6,
        }
    }

    /// The mode for a wire flag value.
    pub fn from_flag(flag: i32) -> Result<Self, DecodeError> {
        Ok(match flag {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            other => return Err(DecodeError::BadCreateMode(other)),
        })
    }

    /// Whether the node gets a sequence suffix.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }

    /// Whether the node is owned by a session.
    pub fn is_ephemeral(self) -> bool {
        matches!(self, CreateMode::Ephemeral | CreateMode::EphemeralSequential)
    }

    /// Whether the node carries a TTL.
    pub fn is_ttl(self) -> bool {
        matches!(self, CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl)
    }
}
