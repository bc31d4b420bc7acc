//! The background duties of a server, by role. The leader expires sessions and deletes emptied
//! containers and expired TTL nodes, each as an ordinary txn through the log; a follower or
//! learner sends the leader the sessions its clients were heard from, in batches (never through
//! the log). Both keep [`Contact`] up to date: whether this server may serve clients.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::contact::Contact;
use crate::liveness::{SessionTracker, Touches};
use crate::metrics;
use crate::peer::client::PeerClient;
use crate::peer::wire::{PeerRequest, PeerResponse};
use crate::raft::Raft;
use crate::store::Store;
use crate::tree::{ReapCandidate, TxnKind, TxnResult};
use crate::write::WritePath;

/// The most bytes of paths one reap txn names (beyond its first candidate): a Reap is a log
/// entry, and a log entry must fit in a peer frame with room to spare (see
/// [`crate::peer::wire::MAX_FRAME`]), however many containers and TTL nodes come due at once.
pub const REAP_BUDGET: usize = 1 << 20;

/// Keeps the first of `candidates` whose paths fit in [`REAP_BUDGET`] (at least one); whether
/// any were left for a later batch.
fn first_batch(candidates: &mut Vec<ReapCandidate>) -> bool {
    let mut bytes = 0usize;
    let fit = candidates
        .iter()
        .position(|c| {
            bytes = bytes.saturating_add(c.path.len());
            bytes > REAP_BUDGET
        })
        .map_or(candidates.len(), |at| at.max(1));
    let more = fit < candidates.len();
    candidates.truncate(fit);
    more
}

/// What the duties work with, and their timing.
pub struct Duties {
    /// This server's id.
    pub id: u64,
    /// The Raft handle.
    pub raft: Raft,
    /// The applied state.
    pub store: Arc<Store>,
    /// Leader-side session liveness.
    pub sessions: Arc<SessionTracker>,
    /// Sessions heard from on a follower, for the next batch.
    pub touches: Arc<Touches>,
    /// Where the leader's txns go.
    pub writes: Arc<WritePath>,
    /// Whether clients may be served.
    pub contact: Arc<Contact>,
    /// ZooKeeper's tick: the leader checks four times a tick, a follower touches twice.
    pub tick: Duration,
    /// How often the leader looks for containers and TTL nodes to delete.
    pub reap_interval: Duration,
    /// How long a server may go without hearing from the leader (or, as leader, from a
    /// quorum) before it stops serving.
    pub contact_limit: Duration,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
}

impl Duties {
    /// Starts the leader's and the follower's loops; each idles while the other role holds.
    pub fn spawn(self: Arc<Self>) {
        tokio::spawn(self.clone().lead());
        tokio::spawn(self.follow());
    }

    async fn lead(self: Arc<Self>) {
        let mut was_leader = false;
        let mut seen_session_changes = u64::MAX;
        let mut last_reap = Instant::now();
        let reaping = Arc::new(AtomicBool::new(false));
        let mut last_leader = None;
        let tick = (self.tick / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let m = self.raft.metrics().borrow_watched().clone();
            if m.current_leader != last_leader {
                if m.current_leader.is_some() {
                    metrics::RAFT_LEADER_CHANGES.inc();
                }
                last_leader = m.current_leader;
            }
            if m.state != ServerState::Leader {
                was_leader = false;
                continue;
            }
            let voters = m.membership_config.membership().voter_ids().count();
            let quorum_fresh = voters <= 1
                || m.last_quorum_acked
                    .as_ref()
                    .is_some_and(|at| openraft::Instant::elapsed(&**at) < self.contact_limit);
            let member = m.membership_config.membership().get_node(&self.id).is_some();
            self.contact.set_serving(quorum_fresh && member);
            let now = Instant::now();
            let changes = self.store.session_changes();
            if !was_leader || changes != seen_session_changes {
                seen_session_changes = changes;
                let tree = self.store.tree();
                let live = tree.sessions().map(|(id, s)| (id, Duration::from_millis(s.timeout_ms.max(0) as u64)));
                // A new leader gives every session a fresh full timeout.
                self.sessions.sync_with(live, now, !was_leader);
            }
            was_leader = true;
            // Each expiry names the term it was decided in: one this leader proposes after it
            // lost its leadership (or that reaches another leader) then does nothing.
            // The writes go on in tasks of their own: this loop must keep its pace, or a leader
            // cut off from its quorum, waiting out the write timeout of expiries that cannot
            // commit, would not see that it lost its quorum and would go on serving (test
            // `cluster isolation::an_isolated_leader_with_expiries_to_propose_stops_serving_in_its_contact_limit`).
            let term = m.current_term;
            let expired = self.sessions.take_expired(now);
            if !expired.is_empty() {
                let duties = self.clone();
                tokio::spawn(async move {
                    for session_id in expired {
                        tracing::info!(session = format_args!("0x{session_id:x}"), term, "session expired");
                        match duties.writes.write(TxnKind::ExpireSession { session_id, term }).await {
                            Ok(outcome) if outcome.result == TxnResult::SessionClosed => {
                                metrics::SESSIONS_EXPIRED.inc()
                            }
                            Ok(_) => {}
                            Err(_) => duties.sessions.retry_expiry(session_id),
                        }
                    }
                });
            }
            if last_reap.elapsed() >= self.reap_interval && !reaping.load(Ordering::Acquire) {
                let mut candidates = self.store.tree().reap_candidates(now_ms());
                // A long list goes one batch a tick, so no log entry outgrows a peer frame.
                if !first_batch(&mut candidates) {
                    last_reap = Instant::now();
                }
                if !candidates.is_empty() {
                    // One reap at a time: the next one would name the same nodes again.
                    reaping.store(true, Ordering::Release);
                    let (duties, reaping) = (self.clone(), reaping.clone());
                    tokio::spawn(async move {
                        if let Err(e) = duties.writes.write(TxnKind::Reap { nodes: candidates }).await {
                            tracing::debug!("reap proposal failed: {e}");
                        }
                        reaping.store(false, Ordering::Release);
                    });
                }
            }
        }
    }

    async fn follow(self: Arc<Self>) {
        let tick = (self.tick / 2).clamp(Duration::from_millis(10), Duration::from_millis(500));
        // Nothing heard at boot: a server serves only once a quorum-fresh leader took its
        // touches (or it leads with a quorum itself).
        let mut last_contact: Option<Instant> = None;
        let mut leader_changes = self.raft.metrics();
        let mut leader = None;
        loop {
            // Every half tick, and at once when a new leader appears (so a follower serves
            // again right after an election).
            // And at once when a ping waits for its touch to reach the leader.
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
                _ = leader_changes.wait_until(|m| m.current_leader != leader) => {}
                _ = self.touches.woken() => {}
            }
            // Two fields, not a copy of all the metrics: a ping wakes this loop.
            let member = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow_watched();
                leader = m.current_leader;
                m.membership_config.membership().get_node(&self.id).is_some()
            };
            if self.raft.is_leader() {
                // The leader's own loop decides whether it serves; a leader that steps down
                // keeps the contact it had as a leader a quorum followed, no more.
                if self.contact.is_serving() {
                    last_contact = Some(Instant::now());
                }
                continue;
            }
            let limit = tick.max(Duration::from_millis(200));
            // A follower that serves goes on while in touch; one that does not starts only once
            // it has applied what the leader had committed when it answered: a follower back
            // from far behind (a restart, a partition, a snapshot on its way) would otherwise
            // serve a past the cluster left long ago (issue 12 e).
            let mut caught_up = self.contact.is_serving();
            if let Some(committed) = send_touches(&self.touches, self.writes.leader_link(), limit).await {
                last_contact = Some(Instant::now());
                if !caught_up {
                    let applied = self.store.wait_applied(i64::try_from(committed).unwrap_or(i64::MAX));
                    caught_up = tokio::time::timeout(limit, applied).await.is_ok();
                }
            }
            let fresh = last_contact.is_some_and(|at| at.elapsed() < self.contact_limit);
            self.contact.set_serving(fresh && member && caught_up);
        }
    }
}

/// Sends the leader (over `link`, when one is known) the sessions heard from since the last
/// batch; the leader's committed index when it took them within `limit`. A batch the leader
/// did not take goes back for the next try: a session that pinged during a link blip keeps its
/// touch. So does one the leader took outside its lease: the pings it stands for wait for a
/// batch the leader takes within it.
async fn send_touches(touches: &Touches, link: Option<Arc<PeerClient>>, limit: Duration) -> Option<u64> {
    let (batch, number) = touches.take();
    let answered = match link {
        Some(link) => match link.call(PeerRequest::Touch(batch.clone()), limit).await {
            Ok(PeerResponse::Touched { committed, promised }) => Some((committed, promised)),
            _ => None,
        },
        None => None,
    };
    match answered {
        Some((_, true)) => touches.taken(number),
        _ => touches.restore(batch),
    }
    answered.map(|(committed, _)| committed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::client::Greeting;
    use crate::peer::Faults;

    #[test]
    fn a_reap_names_at_most_its_budget_of_paths_but_always_one_node() {
        let node = |len: usize| ReapCandidate { path: "/".repeat(len), kind: crate::tree::ReapKind::Container };
        let mut none = Vec::new();
        assert!(!first_batch(&mut none));
        let mut few = vec![node(100); 10];
        assert!(!first_batch(&mut few), "a short list goes whole");
        assert_eq!(few.len(), 10);
        let mut huge = vec![node(REAP_BUDGET + 1), node(1)];
        assert!(first_batch(&mut huge), "the second waits");
        assert_eq!(huge.len(), 1, "a path over the budget still goes alone");
        let mut many = vec![node(100); 3 * REAP_BUDGET / 100];
        assert!(first_batch(&mut many));
        assert_eq!(many.len(), REAP_BUDGET / 100, "as many as fit");
    }

    /// A batch the leader did not take stays for the next one: a blip of the leader link must
    /// not cost the sessions that pinged meanwhile their touches (issue 12 f), or they expire.
    #[tokio::test]
    async fn touches_the_leader_did_not_take_are_sent_again() {
        let touches = Touches::default();
        touches.add(7);
        // Nothing listens there: the call fails.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr").to_string();
        drop(closed);
        let link = PeerClient::spawn(
            2,
            addr,
            Greeting { me: 1, my_admin: "127.0.0.1:0".into(), tls: None },
            Arc::new(Faults::default()),
        );
        assert!(send_touches(&touches, Some(link), Duration::from_secs(2)).await.is_none());
        assert_eq!(touches.take().0, vec![7], "the failed batch was dropped");
        touches.add(8);
        assert!(send_touches(&touches, None, Duration::from_secs(2)).await.is_none());
        assert_eq!(touches.take().0, vec![8], "with no leader known the batch waits too");
    }
}
