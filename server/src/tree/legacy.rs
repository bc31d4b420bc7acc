//! Shapes of the serialized tree that earlier versions wrote, so that their snapshots still
//! restore. The current shape is [`DataTree`] itself; which shape a snapshot holds is the
//! snapshot format's business (`raft::state_machine`).

use std::collections::BTreeSet;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use super::{DataTree, SessionInfo, Znode};

/// Snapshot format 1: sessions kept no owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTreeV1 {
    nodes: OrdMap<String, Znode>,
    sessions: OrdMap<i64, SessionInfoV1>,
    containers: OrdSet<String>,
    ttls: OrdSet<String>,
    last_zxid: i64,
    data_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SessionInfoV1 {
    password: Vec<u8>,
    timeout_ms: i32,
    ephemerals: BTreeSet<String>,
}

impl From<DataTreeV1> for DataTree {
    /// Owners are not known (0): any server's writes of such a session are applied until it
    /// re-attaches somewhere, which records its owner.
    fn from(v1: DataTreeV1) -> Self {
        let DataTreeV1 { nodes, sessions, containers, ttls, last_zxid, data_size } = v1;
        let sessions = sessions
            .into_iter()
            .map(|(id, SessionInfoV1 { password, timeout_ms, ephemerals })| {
                (id, SessionInfo { password, timeout_ms, ephemerals, owner: 0 })
            })
            .collect();
        DataTree { nodes, sessions, containers, ttls, last_zxid, data_size }
    }
}

impl From<&DataTree> for DataTreeV1 {
    /// What format 1 kept of a tree (for tests of reading old snapshots).
    fn from(tree: &DataTree) -> Self {
        let sessions = tree
            .sessions
            .iter()
            .map(|(id, s)| {
                let v1 = SessionInfoV1 {
                    password: s.password.clone(),
                    timeout_ms: s.timeout_ms,
                    ephemerals: s.ephemerals.clone(),
                };
                (*id, v1)
            })
            .collect();
        DataTreeV1 {
            nodes: tree.nodes.clone(),
            sessions,
            containers: tree.containers.clone(),
            ttls: tree.ttls.clone(),
            last_zxid: tree.last_zxid,
            data_size: tree.data_size,
        }
    }
}
