//! Leader election among the operator's own replicas with a `coordination.k8s.io/v1` Lease: only
//! the holder runs the controller (webhook and health endpoints run on every replica). Taking
//! over uses the Lease's resourceVersion, so two replicas cannot both win; a holder that fails
//! to renew within the lease duration gives up (the process exits and restarts as a candidate).
//! The decision of what to do with a Lease is the pure [`decide`].

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Its namespace (the operator's).
    pub namespace: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews (well below `duration`).
    pub renew_every: Duration,
}

/// What to do with the Lease as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It is free or expired: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides from the current Lease (if any) at time `now`.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else { return Decision::Acquire };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    match renewed {
        Some(at) if at + duration > now => Decision::Wait { holder },
        _ => Decision::Acquire,
    }
}

/// The Lease after `decision` by `identity` at `now` (taking over bumps the transitions count).
pub fn claimed(lease: Option<&Lease>, config: &LeaseConfig, decision: &Decision, now: Timestamp) -> Lease {
    let mut lease = lease.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let previous = lease.spec.take().unwrap_or_default();
    let taking_over = *decision == Decision::Acquire;
    let transitions = previous.lease_transitions.unwrap_or(0);
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(15)),
        acquire_time: if taking_over { Some(MicroTime(now)) } else { previous.acquire_time },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if taking_over && previous.holder_identity.is_some() {
            transitions + 1
        } else {
            transitions
        }),
        ..previous
    });
    lease
}

/// Tries once to take or renew the Lease; true when we hold it afterwards.
pub async fn try_hold(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let now = Timestamp::now();
    let decision = decide(current.as_ref(), &config.identity, now);
    if let Decision::Wait { .. } = decision {
        return Ok(false);
    }
    let lease = claimed(current.as_ref(), config, &decision, now);
    let result = match current {
        // resourceVersion is carried over: a concurrent writer makes this fail with 409.
        Some(_) => api.replace(&config.name, &PostParams::default(), &lease).await,
        None => api.create(&PostParams::default(), &lease).await,
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the Lease, then keeps renewing it in the background. The
/// returned receiver turns `false` when the Lease is lost.
pub async fn acquire(client: Client, config: LeaseConfig, metrics: Metrics) -> watch::Receiver<bool> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    loop {
        match try_hold(&api, &config).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "failed to read or claim the operator lease"),
        }
        tokio::time::sleep(config.renew_every).await;
    }
    tracing::info!(identity = %config.identity, lease = %config.name, "became the operator leader");
    metrics.leader.set(1);
    let (tx, rx) = watch::channel(true);
    tokio::spawn(async move {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(config.renew_every).await;
            match try_hold(&api, &config).await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("the operator lease was taken by another replica");
                    break;
                }
                Err(error) => tracing::warn!(%error, "failed to renew the operator lease"),
            }
            if last_renewal.elapsed() >= config.duration {
                tracing::error!("could not renew the operator lease in time");
                break;
            }
        }
        metrics.leader.set(0);
        let _ = tx.send(false);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig {
            name: "paddock-operator".to_owned(),
            namespace: "paddock-system".to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid time")
    }

    #[test]
    fn free_expired_own_and_foreign_leases() {
        assert_eq!(decide(None, "a", at(100)), Decision::Acquire);
        let held_by_b = claimed(None, &config("b"), &Decision::Acquire, at(100));
        assert_eq!(decide(Some(&held_by_b), "a", at(110)), Decision::Wait { holder: "b".to_owned() });
        assert_eq!(decide(Some(&held_by_b), "b", at(110)), Decision::Renew);
        // Not renewed for longer than its duration: up for grabs.
        assert_eq!(decide(Some(&held_by_b), "a", at(116)), Decision::Acquire);
        let taken = claimed(Some(&held_by_b), &config("a"), &Decision::Acquire, at(116));
        let spec = taken.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(116))));
        // Renewal keeps the acquire time.
        let renewed = claimed(Some(&held_by_b), &config("b"), &Decision::Renew, at(112)).spec.expect("spec");
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(112))));
        assert_eq!(renewed.lease_transitions, Some(0));
    }
}
