//! The state every handler shares: the pod's session and identity, and the sidecar's registries
//! (holds, memberships, leases, queue claims) and metrics. Each registry keeps its own rules; this
//! only puts them in one place for the router.

use std::sync::Arc;

use crate::holds::Holds;
use crate::identity::PodIdentity;
use crate::lease::Leases;
use crate::metrics::Metrics;
use crate::recipes::group::Memberships;
use crate::recipes::queue::Claims;
use crate::session::SessionHandle;

/// What the handlers share.
#[derive(Debug)]
pub struct Shared {
    /// The pod's session.
    pub session: SessionHandle,
    /// Who the pod is.
    pub identity: PodIdentity,
    /// Holds and streams, for the drain.
    pub holds: Holds,
    /// Group memberships.
    pub members: Memberships,
    /// Leases and the znodes bound to them.
    pub leases: Leases,
    /// The queue claims this sidecar holds.
    pub claims: Claims,
    /// Metrics.
    pub metrics: Metrics,
}

/// Router state.
pub type AppState = Arc<Shared>;
