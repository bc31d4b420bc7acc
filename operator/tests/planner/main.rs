//! Property tests of the membership planner against a model of a Raft cluster run by a
//! StatefulSet: random scale sequences (1→3→5→3→1 and others) with pods crashing, learners
//! lagging and configuration changes. Every step the planner takes is checked for safety
//! before the model carries it out; once faults heal the cluster must converge to the spec.

use std::collections::{BTreeMap, BTreeSet};

use paddock_operator::membership::{plan, quorum, Desired, Member, Observed, PodObservation, Role, Step, Wait};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct SimPod {
    /// Holds Raft state (was added as a learner at some point and not wiped since).
    has_state: bool,
    /// Ticks until a (re)started pod's server answers.
    starting: u32,
    /// Crashed by the test until healed.
    crashed: bool,
    /// Configuration version it runs.
    version: u32,
}

impl SimPod {
    fn new(version: u32) -> Self {
        Self { has_state: false, starting: 1, crashed: false, version }
    }

    fn up(&self) -> bool {
        self.starting == 0 && !self.crashed
    }
}

#[derive(Clone, Debug)]
struct Sim {
    desired: u64,
    statefulset: u64,
    leader: Option<u64>,
    members: BTreeMap<u64, Role>,
    caught_up: BTreeSet<u64>,
    lagging: BTreeSet<u64>,
    pods: BTreeMap<u64, SimPod>,
    version: u32,
    steps: Vec<Step>,
}

impl Sim {
    /// A cluster right after bootstrap: `n` voters on the current version.
    fn bootstrapped(n: u64) -> Self {
        let mut sim = Self {
            desired: n,
            statefulset: n,
            leader: Some(1),
            members: (1..=n).map(|id| (id, Role::Voter)).collect(),
            caught_up: (1..=n).collect(),
            lagging: BTreeSet::new(),
            pods: BTreeMap::new(),
            version: 0,
            steps: Vec::new(),
        };
        for id in 1..=n {
            let mut pod = SimPod::new(0);
            pod.has_state = true;
            pod.starting = 0;
            sim.pods.insert(id, pod);
        }
        sim
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.members.iter().filter(|(_, r)| **r == Role::Voter).map(|(&id, _)| id).collect()
    }

    fn up(&self, id: u64) -> bool {
        self.pods.get(&id).is_some_and(|p| p.up())
    }

    /// What the planner calls healthy: ready (up, a member, a leader exists) and caught up.
    fn healthy(&self, id: u64) -> bool {
        self.leader.is_some()
            && self.members.contains_key(&id)
            && self.up(id)
            && (Some(id) == self.leader || self.caught_up.contains(&id))
    }

    fn healthy_voters(&self) -> usize {
        self.voters().iter().filter(|&&id| self.healthy(id)).count()
    }

    fn has_quorum(&self) -> bool {
        let voters = self.voters();
        !voters.is_empty() && self.healthy_voters() >= quorum(voters.len())
    }

    /// Raft: the leader stays while it is up with a majority; otherwise an up voter wins an
    /// election if a majority of voters is up.
    fn elect(&mut self) {
        let voters = self.voters();
        let up = voters.iter().filter(|&&id| self.up(id)).count();
        if voters.is_empty() || up < quorum(voters.len()) {
            self.leader = None;
            return;
        }
        if self.leader.is_some_and(|l| voters.contains(&l) && self.up(l)) {
            return;
        }
        self.leader = voters.iter().copied().find(|&id| self.up(id));
    }

    fn observe(&self) -> Observed {
        let leader = self.leader;
        let members = if leader.is_some() {
            self.members
                .iter()
                .map(|(&id, &role)| (id, Member { role, caught_up: self.up(id) && self.caught_up.contains(&id) }))
                .collect()
        } else {
            BTreeMap::new()
        };
        let pods = self
            .pods
            .iter()
            .map(|(&id, p)| {
                let ready = self.healthy(id);
                (
                    id,
                    PodObservation {
                        ready,
                        reachable: p.up(),
                        fresh: p.up() && !p.has_state,
                        current: p.version == self.version,
                        terminating: false,
                    },
                )
            })
            .collect();
        Observed { statefulset_replicas: self.statefulset, bootstrapped: true, leader, members, pods }
    }

    /// Checks that `step` is safe in the current state, then carries it out.
    fn apply(&mut self, step: &Step) {
        let quorum_before = self.has_quorum();
        let voters = self.voters();
        match step {
            Step::Idle | Step::Wait(_) => {}
            Step::ScaleStatefulSet { replicas } => {
                let highest = self.members.keys().next_back().copied().unwrap_or(0);
                assert!(*replicas >= highest, "{step}: would delete the pod of member {highest}");
                self.statefulset = *replicas;
                self.pods.retain(|&id, _| id <= *replicas);
                for id in 1..=*replicas {
                    self.pods.entry(id).or_insert_with(|| SimPod::new(self.version));
                }
            }
            Step::AddLearner { id } => {
                assert!(!self.members.contains_key(id), "{step}: already a member");
                let pod = self.pods.get_mut(id).expect("learner has a pod");
                assert!(pod.up() && !pod.has_state, "{step}: only a fresh, running pod may join");
                pod.has_state = true;
                self.members.insert(*id, Role::Learner);
                self.caught_up.remove(id);
            }
            Step::PromoteVoters { voters: new } => {
                assert!(new.is_superset(&voters), "{step}: promotion must not demote");
                for id in new.difference(&voters) {
                    assert_eq!(self.members.get(id), Some(&Role::Learner), "{step}: {id} is not a learner");
                    assert!(self.caught_up.contains(id) && self.up(*id), "{step}: {id} not caught up");
                }
                let healthy_new = new.iter().filter(|&&id| self.healthy(id)).count();
                assert!(self.healthy_voters() >= quorum(voters.len()), "{step}: old config lacks a healthy quorum");
                assert!(healthy_new >= quorum(new.len()), "{step}: new config lacks a healthy quorum");
                for id in new {
                    self.members.insert(*id, Role::Voter);
                }
            }
            Step::RemoveMember { id } => {
                assert_ne!(Some(*id), self.leader, "{step}: never remove the leader");
                let role = self.members.remove(id).expect("removed member exists");
                if role == Role::Voter && quorum_before {
                    assert!(self.has_quorum(), "{step}: remaining voters lack a healthy quorum");
                }
            }
            Step::TransferLeader { to } => {
                assert!(voters.contains(to) && self.healthy(*to), "{step}: target must be a healthy voter");
                // The old leader holds the whole log: it follows caught up.
                if let Some(old) = self.leader.replace(*to) {
                    self.lagging.remove(&old);
                    self.caught_up.insert(old);
                }
            }
            Step::RestartPod { id } => {
                // Without a leader, a pod that is not ready may be restarted whatever it is.
                let leaderless = self.leader.is_none();
                assert!(leaderless || self.members.contains_key(id), "{step}: not a member");
                assert!(!leaderless || !self.up(*id), "{step}: restarts an answering server without a leader");
                if Some(*id) == self.leader {
                    assert_eq!(voters.len(), 1, "{step}: the leader restarts only when it is the only voter");
                }
                let was_healthy = self.healthy(*id);
                let version = self.version;
                let pod = self.pods.get_mut(id).expect("restarted pod exists");
                pod.version = version;
                pod.starting = 1;
                pod.crashed = false;
                if quorum_before && was_healthy && voters.len() > 1 {
                    assert!(self.has_quorum(), "{step}: restart would lose quorum");
                }
            }
            Step::WipeMember { id } => {
                assert!(!self.members.contains_key(id), "{step}: never wipe a member");
                let version = self.version;
                let pod = self.pods.get_mut(id).expect("wiped pod exists");
                *pod = SimPod::new(version);
            }
        }
        let sole_voter_restart = voters.len() == 1 && matches!(step, Step::RestartPod { .. });
        if quorum_before && !sole_voter_restart {
            assert!(self.has_quorum(), "{step}: quorum lost");
        }
        self.steps.push(step.clone());
    }

    /// Time passes: started pods come up, learners that are not held back catch up.
    fn tick(&mut self) {
        for pod in self.pods.values_mut() {
            pod.starting = pod.starting.saturating_sub(1);
        }
        let catching: Vec<u64> = self.members.keys().copied().filter(|id| !self.lagging.contains(id)).collect();
        for id in catching {
            if self.up(id) {
                self.caught_up.insert(id);
            }
        }
        for (id, pod) in &self.pods {
            if !pod.up() {
                self.caught_up.remove(id);
            }
        }
        self.elect();
    }

    fn step(&mut self) -> Step {
        let step = plan(Desired { replicas: self.desired }, &self.observe());
        self.apply(&step);
        self.tick();
        step
    }

    /// Runs until the planner is idle; panics if it does not get there.
    fn converge(&mut self) {
        for _ in 0..200 {
            if self.step() == Step::Idle {
                let want: BTreeMap<u64, Role> = (1..=self.desired).map(|id| (id, Role::Voter)).collect();
                assert_eq!(self.members, want, "idle with the wrong membership");
                assert_eq!(self.statefulset, self.desired, "idle with the wrong StatefulSet size");
                assert!(self.pods.values().all(|p| p.version == self.version), "idle with outdated pods");
                return;
            }
        }
        panic!(
            "no convergence to {} after 200 steps: {:?}",
            self.desired,
            self.steps.iter().rev().take(10).collect::<Vec<_>>()
        );
    }
}

#[test]
fn scale_1_3_5_3_1_without_faults() {
    let mut sim = Sim::bootstrapped(1);
    for desired in [3, 5, 3, 1] {
        sim.desired = desired;
        sim.converge();
    }
    let kinds: Vec<&str> = sim.steps.iter().map(Step::kind).filter(|k| *k != "Wait" && *k != "Idle").collect();
    // Grow the StatefulSet, add learners, promote; shrink by removing voters, then the StatefulSet.
    assert_eq!(
        kinds,
        [
            "ScaleStatefulSet",
            "AddLearner",
            "AddLearner",
            "PromoteVoters",
            "ScaleStatefulSet",
            "AddLearner",
            "AddLearner",
            "PromoteVoters",
            "RemoveMember",
            "RemoveMember",
            "ScaleStatefulSet",
            "RemoveMember",
            "RemoveMember",
            "ScaleStatefulSet",
        ]
    );
}

#[test]
fn leader_among_removed_hands_over_first() {
    let mut sim = Sim::bootstrapped(5);
    sim.leader = Some(5);
    sim.desired = 3;
    sim.converge();
    assert_eq!(sim.steps[0], Step::TransferLeader { to: 1 });
    assert!(sim.leader.is_some_and(|l| l <= 3));
}

#[test]
fn config_change_rolls_every_pod_and_the_leader_last() {
    let mut sim = Sim::bootstrapped(5);
    sim.leader = Some(3);
    sim.version = 1;
    sim.converge();
    let restarts: Vec<&Step> = sim.steps.iter().filter(|s| matches!(s, Step::RestartPod { .. })).collect();
    assert_eq!(restarts.len(), 5);
    let transfer = sim.steps.iter().position(|s| matches!(s, Step::TransferLeader { .. })).expect("transfer");
    let last_restart = sim.steps.iter().rposition(|s| matches!(s, Step::RestartPod { .. })).expect("restart");
    assert_eq!(sim.steps[last_restart], Step::RestartPod { id: 3 });
    assert!(transfer < last_restart);
}

#[test]
fn a_removed_members_data_never_rejoins() {
    let mut sim = Sim::bootstrapped(3);
    // Member 3 was removed, but its pod (with its old Raft state) is still there.
    sim.members.remove(&3);
    sim.desired = 3;
    sim.converge();
    assert!(sim.steps.contains(&Step::WipeMember { id: 3 }));
    let wipe = sim.steps.iter().position(|s| *s == Step::WipeMember { id: 3 });
    let add = sim.steps.iter().position(|s| *s == Step::AddLearner { id: 3 });
    assert!(wipe < add);
}

#[test]
fn crashed_majority_blocks_every_change() {
    let mut sim = Sim::bootstrapped(3);
    for id in [2, 3] {
        if let Some(p) = sim.pods.get_mut(&id) {
            p.crashed = true;
        }
    }
    sim.tick();
    sim.desired = 1;
    for _ in 0..10 {
        assert_eq!(sim.step(), Step::Wait(Wait::NoLeader));
    }
}

/// Something that happens to the cluster between planner steps.
#[derive(Clone, Debug)]
enum Fault {
    Resize(u64),
    Crash(u64),
    Heal(u64),
    Lag(u64),
    CatchUp(u64),
    NewConfig,
    Steps(u8),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        2 => (0u64..5).prop_map(|k| Fault::Resize(2 * k + 1)),
        1 => (1u64..=9).prop_map(Fault::Crash),
        1 => (1u64..=9).prop_map(Fault::Heal),
        1 => (1u64..=9).prop_map(Fault::Lag),
        1 => (1u64..=9).prop_map(Fault::CatchUp),
        1 => Just(Fault::NewConfig),
        3 => (1u8..6).prop_map(Fault::Steps),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random resizes, crashes, lagging learners and config changes: every step is safe (checked
    /// in `Sim::apply`), and once the faults heal the cluster reaches the last size asked for.
    #[test]
    fn every_step_is_safe_and_the_cluster_converges(start in (0u64..5).prop_map(|k| 2 * k + 1), faults in prop::collection::vec(fault(), 1..40)) {
        let mut sim = Sim::bootstrapped(start);
        for fault in faults {
            match fault {
                Fault::Resize(n) => sim.desired = n,
                Fault::Crash(id) => { if let Some(p) = sim.pods.get_mut(&id) { p.crashed = true; } sim.tick(); }
                Fault::Heal(id) => { if let Some(p) = sim.pods.get_mut(&id) { p.crashed = false; } sim.tick(); }
                Fault::Lag(id) => { sim.lagging.insert(id); sim.caught_up.remove(&id); }
                Fault::CatchUp(id) => { sim.lagging.remove(&id); }
                Fault::NewConfig => sim.version += 1,
                Fault::Steps(n) => for _ in 0..n { sim.step(); },
            }
        }
        for pod in sim.pods.values_mut() {
            pod.crashed = false;
        }
        sim.lagging.clear();
        sim.tick();
        sim.converge();
    }
}
