//! ZooKeeper request opcodes (`ZooDefs.OpCode`), with a fallible conversion from the wire value.

use super::DecodeError;

/// An opcode as sent in a request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum OpCode {
    /// Server-to-client watch notification (xid -1).
    Notification = 0,
    /// create (returns the created path).
    Create = 1,
    /// delete.
    Delete = 2,
    /// exists.
    Exists = 3,
    /// getData.
    GetData = 4,
    /// setData.
    SetData = 5,
    /// getACL.
    GetAcl = 6,
    /// setACL.
    SetAcl = 7,
    /// getChildren.
    GetChildren = 8,
    /// sync.
    Sync = 9,
    /// ping.
    Ping = 11,
    /// getChildren2 (children and the parent's Stat).
    GetChildren2 = 12,
    /// check (version check, only inside multi).
    Check = 13,
    /// multi (atomic writes).
    Multi = 14,
    /// create2 (returns the path and Stat).
    Create2 = 15,
    /// reconfig.
    Reconfig = 16,
    /// checkWatches.
    CheckWatches = 17,
    /// removeWatches.
    RemoveWatches = 18,
    /// createContainer.
    CreateContainer = 19,
    /// deleteContainer (server-internal in ZooKeeper).
    DeleteContainer = 20,
    /// createTTL.
    CreateTtl = 21,
    /// multiRead.
    MultiRead = 22,
    /// auth (xid -4).
    Auth = 100,
    /// setWatches (xid -8).
    SetWatches = 101,
    /// sasl.
    Sasl = 102,
    /// getEphemerals.
    GetEphemerals = 103,
    /// getAllChildrenNumber.
    GetAllChildrenNumber = 104,
    /// setWatches2 (with persistent watches, xid -8).
    SetWatches2 = 105,
    /// addWatch.
    AddWatch = 106,
    /// whoAmI.
    WhoAmI = 107,
    /// createSession (not sent by clients as a request header).
    CreateSession = -10,
    /// closeSession.
    CloseSession = -11,
    /// error (result slot inside multi).
    Error = -1,
}

impl TryFrom<i32> for OpCode {
    type Error = DecodeError;

    fn try_from(value: i32) -> Result<Self, DecodeError> {
        use OpCode::*;
        Ok(match value {
            0 => Notification,
            1 => Create,
            2 => Delete,
            3 => Exists,
            4 => GetData,
            5 => SetData,
            6 => GetAcl,
            7 => SetAcl,
            8 => GetChildren,
            9 => Sync,
            11 => Ping,
            12 => GetChildren2,
            13 => Check,
            14 => Multi,
            15 => Create2,
            16 => Reconfig,
            17 => CheckWatches,
            18 => RemoveWatches,
            19 => CreateContainer,
            20 => DeleteContainer,
            21 => CreateTtl,
            22 => MultiRead,
            100 => Auth,
            101 => SetWatches,
            102 => Sasl,
            103 => GetEphemerals,
            104 => GetAllChildrenNumber,
            105 => SetWatches2,
            106 => AddWatch,
            107 => WhoAmI,
            -10 => CreateSession,
            -11 => CloseSession,
            -1 => OpCode::Error,
            other => return Err(DecodeError::UnknownOpCode(other)),
        })
    }
}

impl OpCode {
    /// Whether a request with this opcode changes the tree, and so goes through the log.
    pub fn is_write(self) -> bool {
        use OpCode::*;
        matches!(self, Create | Create2 | CreateContainer | CreateTtl | Delete | SetData | SetAcl | Check | Multi)
    }

    /// Whether the operation may stand inside a multi (an atomic write transaction): every
    /// write but setACL and multi itself, as in ZooKeeper.
    pub fn in_multi(self) -> bool {
        self.is_write() && !matches!(self, OpCode::SetAcl | OpCode::Multi)
    }

    /// Whether the operation may stand inside a multiRead.
    pub fn in_multi_read(self) -> bool {
        matches!(self, OpCode::GetChildren | OpCode::GetData)
    }

    /// A short lowercase name, used as a metrics label.
    pub fn name(self) -> &'static str {
        use OpCode::*;
        match self {
            Notification => "notification",
            Create => "create",
            Delete => "delete",
            Exists => "exists",
            GetData => "get_data",
            SetData => "set_data",
            GetAcl => "get_acl",
            SetAcl => "set_acl",
            GetChildren => "get_children",
            Sync => "sync",
            Ping => "ping",
            GetChildren2 => "get_children2",
            Check => "check",
            Multi => "multi",
            Create2 => "create2",
            Reconfig => "reconfig",
            CheckWatches => "check_watches",
            RemoveWatches => "remove_watches",
            CreateContainer => "create_container",
            DeleteContainer => "delete_container",
            CreateTtl => "create_ttl",
            MultiRead => "multi_read",
            Auth => "auth",
            SetWatches => "set_watches",
            Sasl => "sasl",
            GetEphemerals => "get_ephemerals",
            GetAllChildrenNumber => "get_all_children_number",
            SetWatches2 => "set_watches2",
            AddWatch => "add_watch",
            WhoAmI => "who_am_i",
            CreateSession => "create_session",
            CloseSession => "close_session",
            OpCode::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_what_a_multi_may_hold() {
        let all: Vec<OpCode> = (-20..=200).filter_map(|code| OpCode::try_from(code).ok()).collect();
        let writes: Vec<OpCode> = all.iter().copied().filter(|op| op.is_write()).collect();
        use OpCode::*;
        assert_eq!(writes, [Create, Delete, SetData, SetAcl, Check, Multi, Create2, CreateContainer, CreateTtl]);
        let in_multi: Vec<OpCode> = all.iter().copied().filter(|op| op.in_multi()).collect();
        assert_eq!(in_multi, [Create, Delete, SetData, Check, Create2, CreateContainer, CreateTtl]);
        let in_multi_read: Vec<OpCode> = all.iter().copied().filter(|op| op.in_multi_read()).collect();
        assert_eq!(in_multi_read, [GetData, GetChildren]);
    }
}
