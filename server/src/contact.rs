//! Whether this server is in touch with the cluster, and so may serve clients: a follower that
//! hears from the leader, a leader that hears from a quorum, and a member of the cluster either
//! way (DESIGN.md, "Serving needs a quorum-fresh leader"). The duties decide it; the client port
//! and `/readyz` follow it.

use std::time::Duration;

use tokio::sync::watch;

/// See the module docs.
pub struct Contact {
    serving: watch::Sender<bool>,
    /// How often contact was lost: a follower of this count misses no loss, however quickly
    /// contact comes back.
    losses: watch::Sender<u64>,
}

impl Default for Contact {
    /// A server starts out not serving: it serves once it has heard from a quorum-fresh leader
    /// (or leads one). A server restarted while it can reach nobody must not serve its restored
    /// sessions, or answer `/readyz` 200, before it knows it is in touch (issue 12 j).
    fn default() -> Self {
        Self { serving: watch::channel(false).0, losses: watch::channel(0).0 }
    }
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
