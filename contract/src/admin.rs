//! The admin API's request and answer bodies. Routes and status codes are in docs/server.md;
//! errors are `{ "error": { "code", "message" } }`, and a follower answers a membership change
//! with 421 and the leader's admin address.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// `GET /v1/cluster`.
pub const CLUSTER: &str = "/v1/cluster";
/// `POST /v1/cluster/learners` with [`AddLearner`].
pub const LEARNERS: &str = "/v1/cluster/learners";
/// `POST /v1/cluster/voters` with [`ChangeVoters`].
pub const VOTERS: &str = "/v1/cluster/voters";
/// `DELETE /v1/cluster/members/{id}`.
pub const MEMBERS: &str = "/v1/cluster/members";
/// `POST /v1/cluster/leader` with [`TransferLeader`].
pub const LEADER: &str = "/v1/cluster/leader";
/// `POST /v1/debug/isolate` with [`Isolate`] (only with `--enable-fault-injection`).
pub const ISOLATE: &str = "/v1/debug/isolate";

/// A member's part in the cluster, as one server sees it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The voter that leads (in the answering server's view).
    Leader,
    /// Any other voter.
    Follower,
    /// A non-voting member that receives the log (a learner in Raft's words).
    Learner,
}

impl Role {
    /// Whether the member votes (leader or follower).
    pub fn is_voter(self) -> bool {
        self != Role::Learner
    }

    /// The word the API uses: `leader`, `follower` or `learner`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
        }
    }
}

/// A role compares with the word for it, so a test can say `role == "leader"`.
impl PartialEq<str> for Role {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Role {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One member as `GET /v1/cluster` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Raft id.
    pub id: u64,
    /// Peer address (`host:port`).
    pub addr: String,
    /// Its role in the answering server's view.
    pub role: Role,
    /// Highest log index known replicated to it (only the leader knows; others report null).
    #[serde(default)]
    pub matched: Option<u64>,
}

/// `GET /v1/cluster`: one server's view of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// The answering server's id.
    pub id: u64,
    /// The leader's id, if one is known.
    #[serde(default)]
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Committed log index.
    pub committed: u64,
    /// Applied log index.
    pub applied: u64,
    /// The membership (empty on a server that was never initialized or added).
    #[serde(default)]
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// Whether the answering server leads (the view then carries replication progress).
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.id)
    }

    /// The ids of the members with `role`.
    pub fn ids_with(&self, role: Role) -> BTreeSet<u64> {
        self.members.iter().filter(|m| m.role == role).map(|m| m.id).collect()
    }
}

/// `POST /v1/cluster/learners`: add a learner (answers once it caught up, or 202).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AddLearner {
    /// The new member's id (>= 1).
    pub id: u64,
    /// Its peer address (`host:port`).
    pub addr: String,
}

/// `POST /v1/cluster/voters`: exactly these voters (joint consensus).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChangeVoters {
    /// The voters.
    pub ids: BTreeSet<u64>,
}

/// `POST /v1/cluster/leader`: move leadership to a voter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TransferLeader {
    /// The new leader.
    pub id: u64,
}

/// `POST /v1/debug/isolate`: cut or restore this server's peer traffic (fault injection).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Isolate {
    /// Cut (true) or restore (false).
    pub isolated: bool,
}

/// The body of every admin error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
    /// With 421 (`not_leader`): the leader's id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    /// With 421 (`not_leader`): the leader's admin address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_admin: Option<String>,
}

/// The `error` object of an [`ErrorBody`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorDetail {
    /// A stable machine-readable code (`not_leader`, `bad_request`, `unknown_member`, ...).
    pub code: String,
    /// A message for people.
    pub message: String,
}

impl ErrorBody {
    /// An error with `code` and `message` and no leader hint.
    pub fn new(code: &str, message: &str) -> Self {
        Self {
            error: ErrorDetail { code: code.to_owned(), message: message.to_owned() },
            leader: None,
            leader_admin: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_view_reads_the_servers_json() {
        let view: ClusterView = serde_json::from_str(
            r#"{"id":1,"leader":1,"term":3,"committed":42,"applied":42,
                "members":[{"id":1,"addr":"a:2888","role":"leader","matched":42},
                           {"id":2,"addr":"b:2888","role":"learner","matched":null},
                           {"id":3,"addr":"c:2888","role":"follower"}]}"#,
        )
        .expect("view");
        assert!(view.is_leader());
        assert_eq!(view.members[1].role, Role::Learner);
        assert_eq!(view.members[2].matched, None);
        assert_eq!(view.ids_with(Role::Follower), BTreeSet::from([3]));
        assert!(Role::Leader.is_voter() && Role::Follower.is_voter() && !Role::Learner.is_voter());
    }

    #[test]
    fn roles_are_lowercase_words_and_unknown_ones_are_refused() {
        assert_eq!(serde_json::to_string(&Role::Learner).expect("encode"), r#""learner""#);
        assert_eq!(Role::Follower.as_str(), "follower");
        assert!(Role::Leader == "leader" && Role::Learner != "follower");
        assert!(serde_json::from_str::<Role>(r#""observer""#).is_err());
    }

    #[test]
    fn error_body_leaves_out_absent_leader_hints() {
        let body = serde_json::to_value(ErrorBody::new("bad_request", "no")).expect("encode");
        assert_eq!(body, serde_json::json!({ "error": { "code": "bad_request", "message": "no" } }));
    }
}
