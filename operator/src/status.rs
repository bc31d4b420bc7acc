//! The CoordinationCluster status, computed purely from what a reconcile pass observed and the
//! step it chose: phase, the Available / Progressing / Degraded conditions with reasons, members,
//! leader, ready replicas and the client endpoint. `reconcile` patches it with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{CoordinationClusterStatus, MemberStatus, Phase};
use crate::membership::{quorum, Observed, Role, Step, Wait};
use crate::resources::Names;
use crate::validate::InvalidSpec;

/// Condition types.
pub const AVAILABLE: &str = "Available";
/// A change is under way.
pub const PROGRESSING: &str = "Progressing";
/// Something needs attention.
pub const DEGRADED: &str = "Degraded";

/// What a pass knows when it writes status.
pub struct StatusInput<'a> {
    /// Object names.
    pub names: &'a Names,
    /// Where ZooKeeper clients connect (`Names::client_endpoint`).
    pub client_endpoint: &'a str,
    /// `metadata.generation` of the CR.
    pub generation: Option<i64>,
    /// The observation the plan was made from.
    pub observed: &'a Observed,
    /// The step chosen.
    pub step: &'a Step,
    /// Why pods are unhealthy, by member id (container waiting reasons, unreachable admin API).
    pub pod_problems: &'a BTreeMap<u64, String>,
    /// The step's error, when carrying it out failed.
    pub step_error: Option<&'a str>,
    /// The status before this pass.
    pub previous: Option<&'a CoordinationClusterStatus>,
    /// Now.
    pub now: Time,
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&CoordinationClusterStatus>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    // The transition time moves only when the status flips.
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_ && c.status == status))
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

fn wait_reason(wait: &Wait) -> &'static str {
    match wait {
        Wait::Bootstrapping => "Bootstrapping",
        Wait::NoLeader => "NoLeader",
        Wait::PodStarting { .. } => "WaitingForPod",
        Wait::LearnerCatchingUp { .. } => "LearnerCatchingUp",
        Wait::PodTerminating { .. } => "WaitingForPodTermination",
        Wait::QuorumAtRisk { .. } => "QuorumAtRisk",
    }
}

/// Status of a cluster whose spec is invalid: conditions say why, everything else as before.
pub fn invalid_status(
    previous: Option<&CoordinationClusterStatus>,
    generation: Option<i64>,
    client_endpoint: &str,
    invalid: &InvalidSpec,
    now: Time,
) -> CoordinationClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let mut conditions: Vec<Condition> = status.conditions.iter().filter(|c| c.type_ == AVAILABLE).cloned().collect();
    conditions.push(condition(
        PROGRESSING,
        false,
        invalid.reason,
        "the spec is invalid; nothing is changed until it is fixed".to_owned(),
        generation,
        previous,
        &now,
    ));
    conditions.push(condition(DEGRADED, true, invalid.reason, invalid.message.clone(), generation, previous, &now));
    status.conditions = conditions;
    status.phase = Phase::Degraded;
    status.observed_generation = generation;
    status.client_endpoint = Some(client_endpoint.to_owned());
    status
}

/// Status after a pass.
pub fn status(input: StatusInput<'_>) -> CoordinationClusterStatus {
    let StatusInput { names, client_endpoint, generation, observed, step, pod_problems, step_error, previous, now } =
        input;
    let leader = observed.leader;
    let healthy = |id: u64| {
        observed.pods.get(&id).is_some_and(|p| p.ready && !p.terminating)
            && (Some(id) == leader || observed.members.get(&id).is_some_and(|m| m.caught_up))
    };
    let members: Vec<MemberStatus> = observed
        .members
        .iter()
        .map(|(&id, m)| MemberStatus {
            id,
            pod: names.pod(id),
            role: match m.role {
                _ if Some(id) == leader => "leader",
                Role::Voter => "follower",
                Role::Learner => "learner",
            }
            .to_owned(),
            healthy: healthy(id),
        })
        .collect();
    let voters: Vec<u64> = observed.members.iter().filter(|(_, m)| m.role == Role::Voter).map(|(&id, _)| id).collect();
    let healthy_voters = voters.iter().filter(|&&id| healthy(id)).count();
    let quorate = leader.is_some() && !voters.is_empty() && healthy_voters >= quorum(voters.len());
    let ready_replicas = observed.pods.values().filter(|p| p.ready).count() as i32;

    let available = if quorate {
        condition(
            AVAILABLE,
            true,
            "QuorumAvailable",
            format!("{healthy_voters} of {} voters healthy", voters.len()),
            generation,
            previous,
            &now,
        )
    } else if !observed.bootstrapped {
        condition(
            AVAILABLE,
            false,
            "Bootstrapping",
            "the initial members are forming the cluster".to_owned(),
            generation,
            previous,
            &now,
        )
    } else if leader.is_none() {
        condition(AVAILABLE, false, "NoLeader", "no server reports a leader".to_owned(), generation, previous, &now)
    } else {
        condition(
            AVAILABLE,
            false,
            "QuorumLost",
            format!("only {healthy_voters} of {} voters healthy", voters.len()),
            generation,
            previous,
            &now,
        )
    };

    let progressing = match (step, step_error) {
        (_, Some(error)) => condition(
            PROGRESSING,
            true,
            &format!("{}Failed", step.kind()),
            format!("{step}: {error}"),
            generation,
            previous,
            &now,
        ),
        (Step::Idle, None) => condition(
            PROGRESSING,
            false,
            "Reconciled",
            "membership and pods match the spec".to_owned(),
            generation,
            previous,
            &now,
        ),
        (Step::Wait(wait), None) => {
            condition(PROGRESSING, true, wait_reason(wait), wait.to_string(), generation, previous, &now)
        }
        (step, None) => condition(PROGRESSING, true, step.kind(), step.to_string(), generation, previous, &now),
    };

    let unhealthy: Vec<String> = observed
        .members
        .keys()
        .filter(|&&id| !healthy(id))
        .map(|&id| match pod_problems.get(&id) {
            Some(problem) => format!("{}: {problem}", names.pod(id)),
            None => format!("{}: not ready", names.pod(id)),
        })
        .collect();
    let degraded = if observed.bootstrapped && leader.is_none() {
        condition(
            DEGRADED,
            true,
            "NoLeader",
            "no leader: membership changes and writes are blocked".to_owned(),
            generation,
            previous,
            &now,
        )
    } else if let Step::Wait(wait @ Wait::QuorumAtRisk { .. }) = step {
        condition(DEGRADED, true, "QuorumAtRisk", wait.to_string(), generation, previous, &now)
    } else if observed.bootstrapped && !unhealthy.is_empty() {
        condition(DEGRADED, true, "MembersUnhealthy", unhealthy.join("; "), generation, previous, &now)
    } else if let Some(problem) = pod_problems.values().next() {
        // e.g. a new pod that cannot pull its image never becomes a member.
        condition(DEGRADED, true, "PodsUnhealthy", problem.clone(), generation, previous, &now)
    } else {
        condition(DEGRADED, false, "Healthy", "all members healthy".to_owned(), generation, previous, &now)
    };

    let rolling = observed.pods.values().any(|p| !p.current);
    let phase = match step {
        _ if degraded.status == "True" => Phase::Degraded,
        Step::Wait(Wait::Bootstrapping) => Phase::Bootstrapping,
        Step::Idle => Phase::Running,
        Step::RestartPod { .. } | Step::Wait(Wait::PodTerminating { .. }) => Phase::Upgrading,
        Step::TransferLeader { .. } if rolling => Phase::Upgrading,
        _ => Phase::Scaling,
    };

    CoordinationClusterStatus {
        observed_generation: generation,
        phase,
        conditions: vec![available, progressing, degraded],
        ready_replicas,
        members,
        leader: leader.map(|id| names.pod(id)),
        client_endpoint: Some(client_endpoint.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::membership::{Member, PodObservation};

    fn observed(ready: &[bool]) -> Observed {
        Observed {
            statefulset_replicas: ready.len() as u64,
            bootstrapped: true,
            leader: Some(1),
            members: (1..=ready.len() as u64).map(|id| (id, Member { role: Role::Voter, caught_up: true })).collect(),
            pods: ready
                .iter()
                .enumerate()
                .map(|(i, &ready)| {
                    (
                        i as u64 + 1,
                        PodObservation { ready, reachable: true, fresh: false, current: true, terminating: false },
                    )
                })
                .collect(),
        }
    }

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid time"))
    }

    #[test]
    fn healthy_cluster_is_running_and_available() {
        let names = Names::new("zk", "apps");
        let obs = observed(&[true, true, true]);
        let problems = BTreeMap::new();
        let s = status(StatusInput {
            names: &names,
            client_endpoint: &names.client_endpoint(false),
            generation: Some(4),
            observed: &obs,
            step: &Step::Idle,
            pod_problems: &problems,
            step_error: None,
            previous: None,
            now: at(100),
        });
        assert_eq!(s.phase, Phase::Running);
        assert_eq!(s.leader.as_deref(), Some("zk-0"));
        assert_eq!(s.ready_replicas, 3);
        assert_eq!(s.client_endpoint.as_deref(), Some("zk-client.apps.svc:2181"));
        let reasons: Vec<(&str, &str, &str)> =
            s.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                ("Available", "True", "QuorumAvailable"),
                ("Progressing", "False", "Reconciled"),
                ("Degraded", "False", "Healthy")
            ]
        );
        assert_eq!(s.members[0].role, "leader");
        assert_eq!(s.members[1].role, "follower");

        // A later pass keeps transition times of unchanged conditions and moves the flipped one.
        let obs = observed(&[true, true, false]);
        let problems = BTreeMap::from([(3, "CrashLoopBackOff: back-off restarting failed container".to_owned())]);
        let later = status(StatusInput {
            names: &names,
            client_endpoint: &names.client_endpoint(false),
            generation: Some(4),
            observed: &obs,
            step: &Step::Idle,
            pod_problems: &problems,
            step_error: None,
            previous: Some(&s),
            now: at(200),
        });
        assert_eq!(later.phase, Phase::Degraded);
        assert_eq!(later.conditions[0].last_transition_time, at(100));
        assert_eq!(later.conditions[2].last_transition_time, at(200));
        assert_eq!(later.conditions[2].reason, "MembersUnhealthy");
        assert_eq!(later.conditions[2].message, "zk-2: CrashLoopBackOff: back-off restarting failed container");
    }

    #[test]
    fn invalid_spec_is_degraded_with_its_reason() {
        let names = Names::new("zk", "apps");
        let invalid = InvalidSpec { reason: "InvalidReplicas", message: "replicas is 4; it must be odd".to_owned() };
        let s = invalid_status(None, Some(2), &names.client_endpoint(true), &invalid, at(5));
        assert_eq!(s.client_endpoint.as_deref(), Some("zk-client.apps.svc:2281"));
        assert_eq!(s.phase, Phase::Degraded);
        let degraded = s.conditions.iter().find(|c| c.type_ == DEGRADED).expect("degraded condition");
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "InvalidReplicas"));
        assert_eq!(s.observed_generation, Some(2));
    }
}
