//! The membership planner: a pure function from the desired size and what the operator observed
//! (the leader's view of the Raft membership, each pod's state) to the one next safe step. It
//! never reads the clock or the network; `reconcile` gathers the observation and carries the
//! step out, then plans again on the next pass.
//!
//! Rules, in priority order:
//! 1. Nothing changes without a leader, or before the initial members have formed a cluster,
//!    except that a server that does not answer and runs an outdated configuration is restarted.
//! 2. A pod holding Raft state while not a member (a removed member's data) is wiped before it
//!    can ever rejoin; a voter whose pod lost its data is removed so it can rejoin as a learner.
//! 3. Scaling down removes members before the StatefulSet shrinks: learners first, then voters
//!    from the highest id, leadership moved away first, and only while the remaining voters keep
//!    a healthy quorum.
//! 4. Scaling up grows the StatefulSet first, adds each new pod as a learner (only a fresh pod,
//!    never one holding old state), and promotes learners to voters once caught up.
//! 5. Pods on an outdated configuration restart one at a time, only while every other member is
//!    healthy (or the pod itself is not), the leader last after transferring leadership.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A learner or voter is caught up when the leader has replicated to within this many entries of
/// its commit index.
pub const CATCH_UP_LAG: u64 = 1000;

/// Raft role of a member, as the leader reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Votes and counts for quorum (the leader is a voter).
    Voter,
    /// Receives the log, does not vote.
    Learner,
}

/// One member in the leader's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Voter or learner.
    pub role: Role,
    /// Replication has reached it (within [`CATCH_UP_LAG`] of the commit index).
    pub caught_up: bool,
}

/// What the operator saw of one server pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodObservation {
    /// Kubernetes reports the pod Ready (its /readyz passes).
    pub ready: bool,
    /// The server answered on its admin port.
    pub reachable: bool,
    /// The server answered and holds no Raft state (a `--join` pod waiting to be added).
    pub fresh: bool,
    /// The pod runs the current image and configuration (its config hash matches).
    pub current: bool,
    /// The pod is being deleted.
    pub terminating: bool,
}

/// Everything the planner decides from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The StatefulSet's current replicas.
    pub statefulset_replicas: u64,
    /// The initial members have formed a cluster (new pods now join through the operator).
    pub bootstrapped: bool,
    /// The leader's id, when a leader answered.
    pub leader: Option<u64>,
    /// The membership as the leader reports it (empty without a leader).
    pub members: BTreeMap<u64, Member>,
    /// Server pods by Raft id; a missing id has no pod.
    pub pods: BTreeMap<u64, PodObservation>,
}

/// The size the spec asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Voters wanted: ids 1..=replicas.
    pub replicas: u64,
}

/// Why no change can be made now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The initial members are still forming the cluster.
    Bootstrapping,
    /// No leader answered: membership cannot change.
    NoLeader,
    /// A pod to be added has not started (or does not answer) yet.
    PodStarting {
        /// Its member id.
        id: u64,
    },
    /// A learner is still catching up with the log.
    LearnerCatchingUp {
        /// Its member id.
        id: u64,
    },
    /// A pod is being deleted; the next restart waits for it.
    PodTerminating {
        /// Its member id.
        id: u64,
    },
    /// The next step would leave fewer healthy voters than a quorum.
    QuorumAtRisk {
        /// The step that waits.
        step: Box<Step>,
    },
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bootstrapping => write!(f, "waiting for the initial members to elect a leader"),
            Self::NoLeader => write!(f, "no leader answered; membership changes wait for one"),
            Self::PodStarting { id } => write!(f, "waiting for the pod of member {id} to start"),
            Self::LearnerCatchingUp { id } => write!(f, "waiting for learner {id} to catch up"),
            Self::PodTerminating { id } => write!(f, "waiting for the pod of member {id} to terminate"),
            Self::QuorumAtRisk { step } => {
                write!(f, "{step} would leave fewer healthy voters than a quorum; waiting for members to recover")
            }
        }
    }
}

/// The one change to make in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Membership and pods match the spec.
    Idle,
    /// No safe change is possible now.
    Wait(Wait),
    /// Set the StatefulSet's replicas.
    ScaleStatefulSet {
        /// New replicas.
        replicas: u64,
    },
    /// Add a fresh pod as a learner (`POST /v1/cluster/learners`).
    AddLearner {
        /// Its id.
        id: u64,
    },
    /// Make exactly these members voters (`POST /v1/cluster/voters`).
    PromoteVoters {
        /// The whole new voter set.
        voters: BTreeSet<u64>,
    },
    /// Remove a member (`DELETE /v1/cluster/members/{id}`).
    RemoveMember {
        /// Its id.
        id: u64,
    },
    /// Move leadership (`POST /v1/cluster/leader`).
    TransferLeader {
        /// The new leader.
        to: u64,
    },
    /// Delete a member's pod so the StatefulSet recreates it on the current configuration.
    RestartPod {
        /// Its id.
        id: u64,
    },
    /// Delete a non-member pod's volume and the pod: it holds Raft state of a former member,
    /// which must never rejoin under that id.
    WipeMember {
        /// Its id.
        id: u64,
    },
}

impl Step {
    /// Short CamelCase name (event reasons, metric labels).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Wait(_) => "Wait",
            Self::ScaleStatefulSet { .. } => "ScaleStatefulSet",
            Self::AddLearner { .. } => "AddLearner",
            Self::PromoteVoters { .. } => "PromoteVoters",
            Self::RemoveMember { .. } => "RemoveMember",
            Self::TransferLeader { .. } => "TransferLeader",
            Self::RestartPod { .. } => "RestartPod",
            Self::WipeMember { .. } => "WipeMember",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle => write!(f, "nothing to do"),
            Self::Wait(wait) => write!(f, "{wait}"),
            Self::ScaleStatefulSet { replicas } => write!(f, "scale the StatefulSet to {replicas}"),
            Self::AddLearner { id } => write!(f, "add member {id} as a learner"),
            Self::PromoteVoters { voters } => {
                let ids: Vec<String> = voters.iter().map(u64::to_string).collect();
                write!(f, "make the voters {{{}}}", ids.join(","))
            }
            Self::RemoveMember { id } => write!(f, "remove member {id}"),
            Self::TransferLeader { to } => write!(f, "transfer leadership to member {to}"),
            Self::RestartPod { id } => write!(f, "restart the pod of member {id}"),
            Self::WipeMember { id } => write!(f, "wipe the stale data of former member {id}"),
        }
    }
}

/// Votes needed to commit among `voters` voters.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// The planner's view of one observation.
struct View<'a> {
    obs: &'a Observed,
    leader: u64,
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
}

impl View<'_> {
    fn pod(&self, id: u64) -> Option<&PodObservation> {
        self.obs.pods.get(&id)
    }

    /// Pod ready, not going away, and replication caught up.
    fn healthy(&self, id: u64) -> bool {
        let pod_ok = self.pod(id).is_some_and(|p| p.ready && !p.terminating);
        let caught_up = id == self.leader || self.obs.members.get(&id).is_some_and(|m| m.caught_up);
        pod_ok && caught_up
    }

    fn healthy_among(&self, ids: &BTreeSet<u64>) -> usize {
        ids.iter().filter(|&&id| self.healthy(id)).count()
    }

    /// A voter change commits (joint consensus) and leaves a healthy quorum only when both the
    /// old and the new voter sets have a healthy majority.
    fn voter_change_safe(&self, new: &BTreeSet<u64>) -> bool {
        !new.is_empty()
            && self.healthy_among(&self.voters) >= quorum(self.voters.len())
            && self.healthy_among(new) >= quorum(new.len())
    }

    fn remove_voter(&self, id: u64) -> Step {
        let mut rest = self.voters.clone();
        rest.remove(&id);
        let step = Step::RemoveMember { id };
        if self.voter_change_safe(&rest) {
            step
        } else {
            Step::Wait(Wait::QuorumAtRisk { step: Box::new(step) })
        }
    }

    /// The best voter to hand leadership to: healthy, wanted, on the current configuration.
    fn transfer_target(&self, wanted: u64, need_current: bool) -> Option<u64> {
        self.voters.iter().copied().find(|&id| {
            id != self.leader
                && id <= wanted
                && self.healthy(id)
                && (!need_current || self.pod(id).is_some_and(|p| p.current))
        })
    }
}

/// The next safe membership step towards `desired`.
pub fn plan(desired: Desired, obs: &Observed) -> Step {
    if !obs.bootstrapped || obs.leader.is_none() {
        // Without a working cluster no vote can be lost by restarting a server that does not
        // even answer (say, its image failed to pull): one on an outdated configuration is
        // restarted onto the current one, as that may be what brings the cluster up. A server
        // that answers is left alone: it may just be waiting out an election.
        let terminating = obs.pods.values().any(|p| p.terminating);
        let stuck = obs.pods.iter().rev().find(|(_, p)| !p.current && !p.ready && !p.reachable && !p.terminating);
        if let (false, Some((&id, _))) = (terminating, stuck) {
            return Step::RestartPod { id };
        }
        return Step::Wait(if obs.bootstrapped { Wait::NoLeader } else { Wait::Bootstrapping });
    }
    let Some(leader) = obs.leader else {
        return Step::Wait(Wait::NoLeader);
    };
    let wanted = desired.replicas.max(1);
    let by_role = |role: Role| -> BTreeSet<u64> {
        obs.members.iter().filter(|(_, m)| m.role == role).map(|(&id, _)| id).collect()
    };
    let view = View { obs, leader, voters: by_role(Role::Voter), learners: by_role(Role::Learner) };
    let highest_member = obs.members.keys().next_back().copied().unwrap_or(0);

    // A member's pod is missing because the StatefulSet was shrunk behind our back: restore it.
    if obs.statefulset_replicas < highest_member {
        return Step::ScaleStatefulSet { replicas: highest_member.max(wanted) };
    }

    // 2. Stale identities (pods above the size still needed go with the StatefulSet scale-down,
    // which deletes their volumes too).
    let needed = wanted.max(highest_member);
    for (&id, pod) in obs.pods.range(..=needed) {
        if !obs.members.contains_key(&id) && pod.reachable && !pod.fresh && !pod.terminating {
            return Step::WipeMember { id };
        }
    }
    for &id in &view.voters {
        let lost_data = view.pod(id).is_some_and(|p| p.reachable && p.fresh && !p.terminating);
        if lost_data && id != leader {
            return view.remove_voter(id);
        }
    }

    // 3. Scale down: members above the wanted size go before their pods do.
    if let Some(&id) = view.learners.iter().rev().find(|&&id| id > wanted) {
        return Step::RemoveMember { id };
    }
    if let Some(&id) = view.voters.iter().rev().find(|&&id| id > wanted) {
        if leader > wanted {
            return match view.transfer_target(wanted, false) {
                Some(to) => Step::TransferLeader { to },
                None => Step::Wait(Wait::QuorumAtRisk { step: Box::new(Step::RemoveMember { id: leader }) }),
            };
        }
        return view.remove_voter(id);
    }
    if obs.statefulset_replicas > needed {
        return Step::ScaleStatefulSet { replicas: needed };
    }

    // 4. Scale up: pods first, then learners, then promotion.
    let missing: Vec<u64> = (1..=wanted).filter(|id| !obs.members.contains_key(id)).collect();
    if !missing.is_empty() && obs.statefulset_replicas < wanted {
        return Step::ScaleStatefulSet { replicas: wanted };
    }
    for &id in &missing {
        if view.pod(id).is_some_and(|p| p.reachable && p.fresh && !p.terminating) {
            return Step::AddLearner { id };
        }
    }
    let caught_up: BTreeSet<u64> = view
        .learners
        .iter()
        .copied()
        .filter(|&id| id <= wanted && obs.members[&id].caught_up && view.pod(id).is_some_and(|p| p.reachable))
        .collect();
    if !caught_up.is_empty() {
        let voters: BTreeSet<u64> = view.voters.union(&caught_up).copied().collect();
        let step = Step::PromoteVoters { voters: voters.clone() };
        return if view.voter_change_safe(&voters) {
            step
        } else {
            Step::Wait(Wait::QuorumAtRisk { step: Box::new(step) })
        };
    }
    if let Some(&id) = missing.first() {
        return Step::Wait(Wait::PodStarting { id });
    }
    if let Some(&id) = view.learners.iter().next() {
        return Step::Wait(Wait::LearnerCatchingUp { id });
    }

    // 5. Rolling restarts onto the current configuration, one pod at a time, the leader last.
    roll(&view)
}

fn roll(view: &View<'_>) -> Step {
    let obs = view.obs;
    if let Some((&id, _)) = obs.pods.iter().find(|(id, p)| p.terminating && obs.members.contains_key(id)) {
        return Step::Wait(Wait::PodTerminating { id });
    }
    let outdated: Vec<u64> = obs
        .members
        .keys()
        .copied()
        .filter(|&id| id != view.leader && view.pod(id).is_some_and(|p| !p.current))
        .collect();
    // An unhealthy pod's restart cannot cost a healthy vote (and may be what fixes it).
    if let Some(&id) = outdated.iter().rev().find(|&&id| !view.healthy(id)) {
        return Step::RestartPod { id };
    }
    if let Some(&id) = outdated.iter().next_back() {
        let others_healthy = obs.members.keys().all(|&other| other == id || view.healthy(other));
        let mut rest = view.voters.clone();
        rest.remove(&id);
        let quorum_kept = view.healthy_among(&rest) >= quorum(view.voters.len());
        let step = Step::RestartPod { id };
        return if others_healthy && quorum_kept {
            step
        } else {
            Step::Wait(Wait::QuorumAtRisk { step: Box::new(step) })
        };
    }
    let leader_outdated = view.pod(view.leader).is_some_and(|p| !p.current);
    if leader_outdated {
        if view.voters.len() == 1 {
            // A single server cannot stay available across its own restart.
            return Step::RestartPod { id: view.leader };
        }
        return match view.transfer_target(u64::MAX, true) {
            Some(to) => Step::TransferLeader { to },
            None => Step::Wait(Wait::QuorumAtRisk { step: Box::new(Step::RestartPod { id: view.leader }) }),
        };
    }
    if let Some(&id) = obs.members.keys().find(|id| !obs.pods.contains_key(id)) {
        return Step::Wait(Wait::PodStarting { id });
    }
    Step::Idle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool) -> PodObservation {
        PodObservation { ready, reachable: ready, fresh: false, current: true, terminating: false }
    }

    fn cluster(voters: &[u64], leader: u64) -> Observed {
        Observed {
            statefulset_replicas: voters.len() as u64,
            bootstrapped: true,
            leader: Some(leader),
            members: voters.iter().map(|&id| (id, Member { role: Role::Voter, caught_up: true })).collect(),
            pods: voters.iter().map(|&id| (id, pod(true))).collect(),
        }
    }

    #[test]
    fn steady_cluster_is_idle() {
        assert_eq!(plan(Desired { replicas: 3 }, &cluster(&[1, 2, 3], 1)), Step::Idle);
    }

    #[test]
    fn waits_while_bootstrapping_and_without_leader() {
        let mut obs = cluster(&[1, 2, 3], 1);
        obs.bootstrapped = false;
        assert_eq!(plan(Desired { replicas: 5 }, &obs), Step::Wait(Wait::Bootstrapping));
        let mut obs = cluster(&[1, 2, 3], 1);
        obs.leader = None;
        assert_eq!(plan(Desired { replicas: 1 }, &obs), Step::Wait(Wait::NoLeader));
    }

    #[test]
    fn a_forming_cluster_stuck_on_a_bad_image_gets_the_fixed_one() {
        let mut obs = cluster(&[1, 2, 3], 1);
        obs.bootstrapped = false;
        obs.leader = None;
        obs.members.clear();
        for p in obs.pods.values_mut() {
            *p = PodObservation { ready: false, reachable: false, fresh: false, current: false, terminating: false };
        }
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::RestartPod { id: 3 });
        if let Some(p) = obs.pods.get_mut(&3) {
            p.terminating = true;
        }
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::Wait(Wait::Bootstrapping));
    }

    #[test]
    fn scale_up_grows_statefulset_then_adds_fresh_learner_then_promotes() {
        let mut obs = cluster(&[1, 2, 3], 1);
        assert_eq!(plan(Desired { replicas: 5 }, &obs), Step::ScaleStatefulSet { replicas: 5 });
        obs.statefulset_replicas = 5;
        assert_eq!(plan(Desired { replicas: 5 }, &obs), Step::Wait(Wait::PodStarting { id: 4 }));
        obs.pods.insert(4, PodObservation { fresh: true, reachable: true, current: true, ..Default::default() });
        assert_eq!(plan(Desired { replicas: 5 }, &obs), Step::AddLearner { id: 4 });
        obs.members.insert(4, Member { role: Role::Learner, caught_up: false });
        obs.pods.insert(4, pod(true));
        assert_eq!(plan(Desired { replicas: 5 }, &obs), Step::Wait(Wait::PodStarting { id: 5 }));
        obs.members.insert(4, Member { role: Role::Learner, caught_up: true });
        assert_eq!(plan(Desired { replicas: 5 }, &obs), Step::PromoteVoters { voters: BTreeSet::from([1, 2, 3, 4]) });
    }

    #[test]
    fn scale_down_moves_leadership_then_removes_highest_voter_before_shrinking() {
        let obs = cluster(&[1, 2, 3, 4, 5], 5);
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::TransferLeader { to: 1 });
        let mut obs = cluster(&[1, 2, 3, 4, 5], 2);
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::RemoveMember { id: 5 });
        obs.members.remove(&5);
        obs.members.remove(&4);
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::ScaleStatefulSet { replicas: 3 });
    }

    #[test]
    fn removal_waits_when_quorum_would_be_lost() {
        let mut obs = cluster(&[1, 2, 3], 1);
        obs.pods.insert(2, pod(false));
        // {1,2,3} -> {1,2}: only 1 of 2 healthy.
        assert!(matches!(plan(Desired { replicas: 1 }, &obs), Step::Wait(Wait::QuorumAtRisk { .. })));
    }

    #[test]
    fn rolls_followers_first_and_the_leader_last_after_transfer() {
        let mut obs = cluster(&[1, 2, 3], 2);
        for p in obs.pods.values_mut() {
            p.current = false;
        }
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::RestartPod { id: 3 });
        if let Some(p) = obs.pods.get_mut(&3) {
            p.current = true;
        }
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::RestartPod { id: 1 });
        if let Some(p) = obs.pods.get_mut(&1) {
            p.current = true;
        }
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::TransferLeader { to: 1 });
        obs.leader = Some(1);
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::RestartPod { id: 2 });
    }

    #[test]
    fn stale_data_is_wiped_and_lost_data_voter_removed() {
        let mut obs = cluster(&[1, 2, 3], 1);
        obs.statefulset_replicas = 4;
        obs.pods.insert(4, pod(true));
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::ScaleStatefulSet { replicas: 3 });
        obs.statefulset_replicas = 5;
        assert_eq!(plan(Desired { replicas: 5 }, &obs), Step::WipeMember { id: 4 });
        let mut obs = cluster(&[1, 2, 3], 1);
        obs.pods.insert(3, PodObservation { reachable: true, fresh: true, current: true, ..Default::default() });
        assert_eq!(plan(Desired { replicas: 3 }, &obs), Step::RemoveMember { id: 3 });
    }
}
