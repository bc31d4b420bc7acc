//! Whether this server is in touch with the cluster, and so may serve clients: a follower that
//! hears from the leader, a leader that hears from a quorum, and a member of the cluster either
//! way (DESIGN.md, "Serving needs a quorum-fresh leader"). The duties decide it; the client port
//! and `/readyz` follow it.
//!
//! Stricter than serving: whether this leader may promise that a session lives — answer its
//! ping, take a follower's touches (which lets the follower answer pings) — which it may only
//! within its leader lease ([`Contact::leader_may_promise`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;

use crate::raft::TypeConfig;

/// openraft's leader lease, which is its `election_timeout_max` (the raft config takes it from
/// here): a server that received a leader's heartbeat neither grants another candidate its
/// vote nor stands itself for this long after. So once a quorum has acknowledged a heartbeat
/// sent at `t`, no other server can be elected before `t + LEADER_LEASE` (a leadership transfer
/// aside, which the old leader starts itself).
pub const LEADER_LEASE: Duration = Duration::from_millis(800);

/// The part of [`LEADER_LEASE`] a leader relies on, in tenths; the rest covers clock-rate drift
/// between machines and a vote decided a moment late.
const LEASE_TENTHS_USED: u32 = 9;

/// See the module docs.
pub struct Contact {
    serving: watch::Sender<bool>,
    /// How often contact was lost: a follower of this count misses no loss, however quickly
    /// contact comes back.
    losses: watch::Sender<u64>,
    /// When this server last started a leadership transfer: the target is elected without
    /// waiting out the lease.
    transfer: Mutex<Option<Instant>>,
}

impl Default for Contact {
    /// A server starts out not serving: it serves once it has heard from a quorum-fresh leader
    /// (or leads one). A server restarted while it can reach nobody must not serve its restored
    /// sessions, or answer `/readyz` 200, before it knows it is in touch (issue 12 j).
    fn default() -> Self {
        Self { serving: watch::channel(false).0, losses: watch::channel(0).0, transfer: Mutex::new(None) }
    }
}

/// Whether, by `m`, this server leads with its lease intact: it is the leader, and a quorum
/// acknowledged a heartbeat it sent less than nine tenths of the lease ago (or it is the only
/// voter). Stale metrics only make it more careful: the acknowledgement they show is older.
fn within_lease(m: &RaftMetrics<TypeConfig>) -> bool {
    if m.state != ServerState::Leader {
        return false;
    }
    let voters = m.membership_config.membership().voter_ids().count();
    voters <= 1
        || m.last_quorum_acked
            .as_ref()
            .is_some_and(|at| openraft::Instant::elapsed(&**at) < LEADER_LEASE * LEASE_TENTHS_USED / 10)
}

impl Contact {
    /// Whether clients may be served.
    pub fn is_serving(&self) -> bool {
        *self.serving.borrow()
    }

    /// Waits (at most `limit`) until clients may be served; false if not in time.
    pub async fn wait_serving(&self, limit: Duration) -> bool {
        let mut serving = self.serving.subscribe();
        tokio::time::timeout(limit, serving.wait_for(|s| *s)).await.is_ok_and(|r| r.is_ok())
    }

    /// Changes each time contact is lost (the count of losses).
    pub fn losses(&self) -> watch::Receiver<u64> {
        self.losses.subscribe()
    }

    /// Whether this leader may tell a client (or a follower, for its clients) that a session is
    /// alive. Whoever expires the session next — this leader, or one elected after it — does so
    /// a whole timeout after it last heard of it, and a newly elected leader times every session
    /// from its election; so a promise made while no other leader can have been elected holds
    /// (issue 12 hole o: a leader cut off from its quorum answered pings until its contact limit
    /// of up to seconds ran out, while the others had elected a leader that expired the session
    /// sooner than its timeout after the last ping answered). After this server starts a
    /// leadership transfer it promises nothing for two leases: the target does not wait for
    /// the lease to run out.
    pub fn leader_may_promise(&self, m: &RaftMetrics<TypeConfig>) -> bool {
        let transferring =
            self.transfer.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|at| at.elapsed() < 2 * LEADER_LEASE);
        !transferring && self.is_serving() && within_lease(m)
    }

    /// This server is about to hand its leadership over.
    pub fn transferring(&self) {
        *self.transfer.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Records whether clients may be served (logged when it changes).
    pub fn set_serving(&self, serving: bool) {
        let was = self.serving.send_replace(serving);
        if was && !serving {
            tracing::warn!("lost contact with the cluster: closing client connections");
            self.losses.send_modify(|n| *n += 1);
        } else if serving && !was {
            tracing::info!("back in contact with the cluster: serving clients");
        }
    }
}
