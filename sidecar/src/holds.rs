//! The registry of everything the sidecar holds or streams for apps: lock, campaign and queue
//! claim tasks (bound to a connection or to a lease), watch streams. It is how the drain
//! (SIGTERM), a failing app health probe, `DELETE` on an election and a lease's end reach the
//! tasks: each task gets a [`Release`] to `select!` on, and the registry can release all of
//! them, or one election's campaigns, and wait for their tasks to finish.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};

/// Why a hold was released by the sidecar (not by the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The sidecar is shutting down.
    Shutdown,
    /// The app's health probe failed.
    Unhealthy,
    /// `DELETE /v1/elections/{name}`, `DELETE /v1/locks/{name}?lease=ID`, or a lease claim
    /// whose request gave up.
    Resigned,
    /// The lease the hold was bound to expired or was deleted.
    LeaseEnded,
}

impl ReleaseReason {
    /// The `reason` on the stream's `released` event.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Shutdown => "shutdown",
            ReleaseReason::Unhealthy => "app unhealthy",
            ReleaseReason::Resigned => "resigned",
            ReleaseReason::LeaseEnded => "lease ended",
        }
    }
}

/// One task's way to learn that the sidecar released it.
#[derive(Debug, Clone)]
pub struct Release {
    all: CancellationToken,
    all_reason: Arc<Mutex<ReleaseReason>>,
    own: CancellationToken,
    /// Cancelled when the lease a hold is bound to ends (`?lease=ID`).
    lease: Option<CancellationToken>,
    /// Cancels `Campaign::done` once the task has dropped its last clone (after its cleanup).
    _done: Arc<DropGuard>,
}

/// A live campaign, as the registry knows it.
#[derive(Debug)]
struct Campaign {
    resign: CancellationToken,
    done: CancellationToken,
}

impl Release {
    /// Resolves with the reason once the hold is released.
    pub async fn released(&self) -> ReleaseReason {
        let lease_ended = async {
            match &self.lease {
                Some(ended) => ended.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.all.cancelled() => *lock(&self.all_reason),
            _ = self.own.cancelled() => ReleaseReason::Resigned,
            _ = lease_ended => ReleaseReason::LeaseEnded,
        }
    }

    /// The same release, also released when `ended` (the lease's end) is cancelled.
    pub fn with_lease(mut self, ended: CancellationToken) -> Release {
        self.lease = Some(ended);
        self
    }

    /// A token that resigns this one hold when cancelled.
    pub fn resigner(&self) -> CancellationToken {
        self.own.clone()
    }
}

#[derive(Debug)]
struct Inner {
    draining: bool,
    unhealthy: bool,
    /// Cancelled (and replaced) to release every hold.
    holds: CancellationToken,
    holds_reason: Arc<Mutex<ReleaseReason>>,
    /// Campaign tokens by election name, for resigning.
    campaigns: HashMap<String, Vec<Campaign>>,
}

/// The registry, shared by the handlers and the drain.
#[derive(Debug, Clone)]
pub struct Holds {
    inner: Arc<Mutex<Inner>>,
    hold_tasks: TaskTracker,
    stream_tasks: TaskTracker,
    streams: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these plain maps and flags inconsistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for Holds {
    fn default() -> Self {
        Holds::new()
    }
}

impl Holds {
    /// An empty registry.
    pub fn new() -> Holds {
        Holds {
            inner: Arc::new(Mutex::new(Inner {
                draining: false,
                unhealthy: false,
                holds: CancellationToken::new(),
                holds_reason: Arc::new(Mutex::new(ReleaseReason::Shutdown)),
                campaigns: HashMap::new(),
            })),
            hold_tasks: TaskTracker::new(),
            stream_tasks: TaskTracker::new(),
            streams: CancellationToken::new(),
        }
    }

    /// Registers a new hold (lock, queue claim or, with `campaign`, an election campaign); refused while
    /// draining or while the app is unhealthy.
    pub fn begin(&self, campaign: Option<&str>) -> Result<Release> {
        let mut inner = lock(&self.inner);
        if inner.draining {
            return Err(Error::Draining);
        }
        if inner.unhealthy {
            return Err(Error::NoSession("the app is unhealthy; holds are refused until it recovers".to_owned()));
        }
        let own = CancellationToken::new();
        let done = CancellationToken::new();
        if let Some(name) = campaign {
            let campaigns = inner.campaigns.entry(name.to_owned()).or_default();
            campaigns.retain(|c| !c.done.is_cancelled());
            campaigns.push(Campaign { resign: own.clone(), done: done.clone() });
        }
        Ok(Release {
            all: inner.holds.clone(),
            all_reason: inner.holds_reason.clone(),
            own,
            lease: None,
            _done: Arc::new(done.drop_guard()),
        })
    }

    /// Whether new holds and joins are refused because the sidecar is draining.
    pub fn is_draining(&self) -> bool {
        lock(&self.inner).draining
    }

    /// Runs a hold's task; the drain waits for it.
    pub fn spawn_hold<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.hold_tasks.spawn(task);
    }

    /// Runs a watch stream's task; it must end when [`Holds::streams_closed`] resolves.
    pub fn spawn_stream<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.stream_tasks.spawn(task);
    }

    /// Resolves when watch streams must end (the drain).
    pub fn streams_closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.streams.clone().cancelled_owned()
    }

    /// Resigns every live campaign of `election` and waits (up to `bound`) until their
    /// candidate znodes are deleted; false if there was none.
    pub async fn resign(&self, election: &str, bound: Duration) -> bool {
        let campaigns = lock(&self.inner).campaigns.remove(election).unwrap_or_default();
        let live: Vec<_> = campaigns.into_iter().filter(|c| !c.done.is_cancelled()).collect();
        live.iter().for_each(|c| c.resign.cancel());
        let all_done = futures::future::join_all(live.iter().map(|c| c.done.cancelled()));
        if tokio::time::timeout(bound, all_done).await.is_err() {
            tracing::warn!(election, "resigning took longer than {bound:?}");
        }
        !live.is_empty()
    }

    /// Releases every hold with `reason`; later holds get a fresh token.
    fn release_all(inner: &mut Inner, reason: ReleaseReason) {
        *lock(&inner.holds_reason) = reason;
        inner.holds.cancel();
        inner.holds = CancellationToken::new();
        inner.holds_reason = Arc::new(Mutex::new(ReleaseReason::Shutdown));
        inner.campaigns.clear();
    }

    /// Marks the app unhealthy (releasing every hold) or healthy again.
    pub fn set_unhealthy(&self, unhealthy: bool) {
        let mut inner = lock(&self.inner);
        if unhealthy && !inner.unhealthy {
            Self::release_all(&mut inner, ReleaseReason::Unhealthy);
        }
        inner.unhealthy = unhealthy;
    }

    /// First drain step: refuse new holds and release every hold; waits (up to `bound`) for the
    /// hold tasks to have deleted their znodes.
    pub async fn drain_holds(&self, bound: Duration) {
        {
            let mut inner = lock(&self.inner);
            inner.draining = true;
            Self::release_all(&mut inner, ReleaseReason::Shutdown);
        }
        self.hold_tasks.close();
        if tokio::time::timeout(bound, self.hold_tasks.wait()).await.is_err() {
            tracing::warn!("some holds were not released within {bound:?}");
        }
    }

    /// Second drain step: ends every watch stream; waits up to `bound`.
    pub async fn close_streams(&self, bound: Duration) {
        self.streams.cancel();
        self.stream_tasks.close();
        if tokio::time::timeout(bound, self.stream_tasks.wait()).await.is_err() {
            tracing::warn!("some streams did not end within {bound:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resign_releases_only_that_election() {
        let holds = Holds::new();
        let a = holds.begin(Some("a")).expect("begin");
        let b = holds.begin(Some("b")).expect("begin");
        let task = tokio::spawn(async move {
            let reason = a.released().await;
            drop(a);
            reason
        });
        assert!(holds.resign("a", Duration::from_secs(5)).await);
        assert_eq!(task.await.ok(), Some(ReleaseReason::Resigned));
        assert!(!b.own.is_cancelled() && !b.all.is_cancelled());
        assert!(!holds.resign("a", Duration::from_secs(5)).await, "nothing left to resign");
    }

    #[tokio::test]
    async fn unhealthy_releases_everything_and_refuses_new_holds() {
        let holds = Holds::new();
        let lock_hold = holds.begin(None).expect("begin");
        holds.set_unhealthy(true);
        assert_eq!(lock_hold.released().await, ReleaseReason::Unhealthy);
        assert!(holds.begin(None).is_err());
        holds.set_unhealthy(false);
        let again = holds.begin(None).expect("begin after recovery");
        assert!(!again.all.is_cancelled(), "a new hold must not start released");
    }

    #[tokio::test]
    async fn the_end_of_its_lease_releases_a_bound_hold() {
        let holds = Holds::new();
        let lease = CancellationToken::new();
        let bound = holds.begin(None).expect("begin").with_lease(lease.clone());
        let other = holds.begin(None).expect("begin");
        lease.cancel();
        assert_eq!(bound.released().await, ReleaseReason::LeaseEnded);
        assert!(!other.all.is_cancelled() && !other.own.is_cancelled());
        let resigned = holds.begin(None).expect("begin").with_lease(CancellationToken::new());
        resigned.resigner().cancel();
        assert_eq!(resigned.released().await, ReleaseReason::Resigned);
    }

    #[tokio::test]
    async fn draining_refuses_new_holds() {
        let holds = Holds::new();
        let hold = holds.begin(None).expect("begin");
        holds.drain_holds(Duration::from_secs(1)).await;
        assert_eq!(hold.released().await, ReleaseReason::Shutdown);
        assert!(matches!(holds.begin(None), Err(Error::Draining)));
    }
}
