//! Holds: what the sidecar holds for apps (a lock, a leadership, a queue claim) and how each
//! hold's task lives. A hold's task runs on a [`Hold`]: the session's client, the app's stream (or
//! a lease's latest-state sink) and its ways of being interrupted ([`Interrupt`]). Every wait of a
//! hold is guarded: it ends early when the app closes its connection, the sidecar releases the
//! hold, or the session is lost, and it reports `suspended` / `reconnected` on the stream
//! meanwhile.
//!
//! The registry ([`Holds`]) is how the drain (SIGTERM), a failing app health probe, `DELETE` on
//! an election and a lease's end reach the tasks: each task gets a [`Release`] to `select!` on,
//! and the registry can release all of them, or one election's campaigns, and wait for their
//! tasks to finish. It also runs the watch streams, so that the drain can end them.
//!
//! A hold may be bound to a lease instead of a connection ([`Hold::with_lease`]): its znodes are
//! bound to the lease, it is released when the lease ends, and when the sidecar takes it away
//! (app unhealthy, shutdown, znode deleted, an error) it ends the lease too, because a lease's
//! keepalive answering 404 is the only way such an app learns that it lost something.
//!
//! What a hold does in ZooKeeper is its recipe's business (the line, locks, elections, queues),
//! and a lease's own life (TTL, keepalives, its znodes) is [`crate::lease`]'s.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use zookeeper_client::{Client, EventType, OneshotWatcher, Stat};

use crate::error::{Error, Result};
use crate::lease::Leases;
use crate::session::{self, delete_own};
use crate::stream::{EventSink, SessionChange, SessionFollower};
use crate::znode;

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
    /// Cancelled when the app left (its connection closed) and the task is cleaning up.
    abandoned: CancellationToken,
    /// Cancels `Campaign::done` once the task has dropped its last clone (after its cleanup).
    _done: Arc<DropGuard>,
}

/// A live campaign, as the registry knows it.
#[derive(Debug)]
struct Campaign {
    resign: CancellationToken,
    /// The app left: the campaign is over for it, only its cleanup is running.
    abandoned: CancellationToken,
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

    /// Marks the hold as left by its app: what remains is its cleanup, which a resign waits for
    /// but does not count as something it resigned.
    pub fn abandon(&self) {
        self.abandoned.cancel();
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
        let abandoned = CancellationToken::new();
        let done = CancellationToken::new();
        if let Some(name) = campaign {
            let campaigns = inner.campaigns.entry(name.to_owned()).or_default();
            campaigns.retain(|c| !c.done.is_cancelled());
            campaigns.push(Campaign { resign: own.clone(), abandoned: abandoned.clone(), done: done.clone() });
        }
        Ok(Release {
            all: inner.holds.clone(),
            all_reason: inner.holds_reason.clone(),
            own,
            lease: None,
            abandoned,
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
    /// candidate znodes are deleted, also those of campaigns whose app has left and which are
    /// still cleaning up; false if no campaign was resigned.
    pub async fn resign(&self, election: &str, bound: Duration) -> bool {
        let campaigns = lock(&self.inner).campaigns.remove(election).unwrap_or_default();
        let live: Vec<_> = campaigns.into_iter().filter(|c| !c.done.is_cancelled()).collect();
        let resigned = live.iter().filter(|c| !c.abandoned.is_cancelled()).inspect(|c| c.resign.cancel()).count();
        let all_done = futures::future::join_all(live.iter().map(|c| c.done.cancelled()));
        if tokio::time::timeout(bound, all_done).await.is_err() {
            tracing::warn!(election, "resigning took longer than {bound:?}");
        }
        resigned > 0
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

/// Why a hold stops before its work is done.
#[derive(Debug)]
pub enum Interrupt {
    /// The app closed its connection.
    AppGone,
    /// The sidecar released the hold (shutdown, unhealthy app, resign).
    Released(ReleaseReason),
    /// The session ended; the hold's znode went with it.
    Lost(SessionChange),
    /// The hold's own znode was deleted by someone else.
    NodeGone,
    /// The cluster answered something the recipe cannot go on from.
    Failed(zookeeper_client::Error),
}

impl Interrupt {
    /// What a failed ZooKeeper call means for the hold: the session is gone, or the recipe
    /// cannot go on.
    pub fn from_zk(e: zookeeper_client::Error) -> Interrupt {
        use zookeeper_client::Error as Zk;
        match e {
            Zk::SessionExpired | Zk::SessionMoved => Interrupt::Lost(SessionChange::Lost),
            Zk::ClientClosed => Interrupt::Lost(SessionChange::Closed),
            other => Interrupt::Failed(other),
        }
    }

    /// The error a request answers with when its hold was interrupted before the request was
    /// answered: `what` names the recipe in a ZooKeeper error, `doing` what a lost session
    /// interrupted (`taking the lock`).
    pub fn refusal(&self, what: &str, doing: &str) -> Error {
        match self {
            Interrupt::Failed(e) => Error::from_zk(e.clone(), what),
            Interrupt::Released(_) => Error::Draining,
            _ => Error::NoSession(format!("the session was lost while {doing}")),
        }
    }
}

/// The lease a hold is bound to.
#[derive(Debug, Clone)]
pub struct LeaseBinding {
    /// The sidecar's leases.
    pub leases: Leases,
    /// The lease.
    pub id: String,
    /// Cancelled when the lease ends ([`Leases::ended`]); it releases the hold.
    pub ended: CancellationToken,
    /// For holds the lease remembers by name (locks, campaigns): the key and the receiver of
    /// the hold's status, which tells this hold from a later one under the same key.
    pub remembered: Option<(String, watch::Receiver<Value>)>,
}

/// One hold's task context: its client, its stream and its ways of being interrupted.
pub struct Hold {
    client: Client,
    follower: SessionFollower,
    events: EventSink,
    release: Release,
    lease: Option<LeaseBinding>,
    /// Znodes bound to the lease, unbound when the hold ends.
    bound: Vec<String>,
    /// Whether the recipe sent its first event: session changes are reported only after it,
    /// so that the stream starts with the recipe's own first line and nothing queues up (and
    /// blocks the hold) before the app reads the answer.
    announced: AtomicBool,
}

impl Hold {
    /// A hold on `generation`'s session.
    pub fn new(client: Client, follower: SessionFollower, events: EventSink, release: Release) -> Hold {
        Hold { client, follower, events, release, lease: None, bound: Vec::new(), announced: AtomicBool::new(false) }
    }

    /// The same hold bound to a lease: released when the lease ends, its znodes bound to it.
    pub fn with_lease(self, binding: LeaseBinding) -> Hold {
        Hold { release: self.release.with_lease(binding.ended.clone()), lease: Some(binding), ..self }
    }

    /// Binds `path` (a znode of this hold) to the hold's lease, if it has one. If the lease has
    /// ended meanwhile the znode is deleted and the hold is released.
    pub async fn bind(&mut self, path: &str) -> Result<(), Interrupt> {
        let Some(binding) = &self.lease else { return Ok(()) };
        match binding.leases.bind(&binding.id, path).await {
            Ok(()) => {
                self.bound.push(path.to_owned());
                Ok(())
            }
            Err(_) => Err(Interrupt::Released(ReleaseReason::LeaseEnded)),
        }
    }

    /// Unbinds `path` from the lease after the hold deleted it itself.
    pub fn unbind(&mut self, path: &str) {
        if let Some(binding) = &self.lease {
            binding.leases.unbind(&binding.id, path);
        }
        self.bound.retain(|bound| bound != path);
    }

    /// From now on the hold does not depend on any request (see [`EventSink::detach`]).
    pub fn detach(&mut self) {
        self.events.detach();
    }

    /// Whether someone still waits for this hold's events.
    pub fn is_heard(&self) -> bool {
        !self.events.is_closed()
    }

    /// The session's client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Sends an event to the app; the app having gone is an interrupt.
    pub async fn emit(&self, event: Value) -> Result<(), Interrupt> {
        self.announced.store(true, Ordering::Relaxed);
        if self.events.send(event).await {
            Ok(())
        } else {
            Err(Interrupt::AppGone)
        }
    }

    /// Awaits `fut` unless interrupted first; reports session changes on the stream meanwhile.
    pub async fn guard<T>(&mut self, fut: impl Future<Output = T>) -> Result<T, Interrupt> {
        tokio::pin!(fut);
        loop {
            // Without stop_on_reconnect this only comes back with the output.
            if let Some(out) = self.guard_until(fut.as_mut(), false).await? {
                return Ok(out);
            }
        }
    }

    /// Awaits a watch's event like [`Hold::guard`], but stops waiting (`Ok(None)`) once the
    /// session reconnects: a change made while the connection was down may never fire a watch
    /// set before it, so the caller must look again.
    pub async fn guard_watch<T>(&mut self, fut: impl Future<Output = T>) -> Result<Option<T>, Interrupt> {
        self.guard_until(fut, true).await
    }

    async fn guard_until<T>(
        &mut self,
        fut: impl Future<Output = T>,
        stop_on_reconnect: bool,
    ) -> Result<Option<T>, Interrupt> {
        tokio::pin!(fut);
        loop {
            let change = tokio::select! {
                biased;
                _ = self.events.closed() => return Err(Interrupt::AppGone),
                reason = self.release.released() => return Err(Interrupt::Released(reason)),
                change = self.follower.next() => change,
                out = &mut fut => return Ok(Some(out)),
            };
            let heard = self.announced.load(Ordering::Relaxed);
            match change {
                SessionChange::Suspended(_) if heard => self.emit(change.event()).await?,
                SessionChange::Suspended(_) => {}
                SessionChange::Reconnected => {
                    if heard {
                        self.emit(change.event()).await?;
                    }
                    if stop_on_reconnect {
                        return Ok(None);
                    }
                }
                SessionChange::Lost | SessionChange::Closed => return Err(Interrupt::Lost(change)),
            }
        }
    }

    /// Runs a ZooKeeper call, retrying it after a connection loss once the same session is back.
    /// Only for calls that are safe to repeat (reads, deletes of our own znodes).
    pub async fn call<T, F, Fut>(&mut self, op: F) -> Result<T, Interrupt>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, zookeeper_client::Error>>,
    {
        // Bounds the retries of an error that looks like a lost connection but is not one
        // (about 30 s with the retry pauses).
        for attempt in 0u64..80 {
            match self.guard(op(self.client.clone())).await? {
                Ok(value) => return Ok(value),
                Err(e) if Error::is_connection_loss(&e) => {
                    self.guard(tokio::time::sleep(session::retry_pause(attempt))).await?;
                    self.reconnected().await?
                }
                Err(e) => return Err(Interrupt::from_zk(e)),
            }
        }
        Err(Interrupt::Failed(zookeeper_client::Error::ConnectionLoss))
    }

    /// The stat of `path` (`None`: it does not exist) and a watch on it, retried across
    /// connection losses.
    pub async fn watch_stat(&mut self, path: &str) -> Result<(Option<Stat>, OneshotWatcher), Interrupt> {
        self.call(|c| {
            let path = path.to_owned();
            async move { c.check_and_watch_stat(&path).await }
        })
        .await
    }

    /// Waits for the session to be connected again after a connection loss.
    pub async fn reconnected(&mut self) -> Result<(), Interrupt> {
        let generation = self.follower.generation();
        let mut status = self.follower.status_mut().clone();
        match self.guard(async move { session::reconnected(&mut status, generation).await }).await? {
            Ok(client) => {
                self.client = client;
                Ok(())
            }
            Err(_) => Err(Interrupt::Lost(SessionChange::Lost)),
        }
    }

    /// Waits for the session to be connected again after a connection loss, whatever else
    /// happens meanwhile (for a write the app asked for on another connection, which must not
    /// be abandoned half-way).
    pub async fn reconnected_regardless(&mut self) -> Result<(), Interrupt> {
        let generation = self.follower.generation();
        match session::reconnected(self.follower.status_mut(), generation).await {
            Ok(client) => {
                self.client = client;
                Ok(())
            }
            Err(_) => Err(Interrupt::Lost(SessionChange::Lost)),
        }
    }

    /// Deletes `path`, a znode of this hold, retrying across connection losses, and unbinds it
    /// from the lease.
    pub async fn delete(&mut self, path: &str) {
        let generation = self.follower.generation();
        delete_own(&self.client, self.follower.status_mut(), generation, path).await;
        self.unbind(path);
    }

    /// Holds on while the hold's znode at `path` lives: the rest of a lock's or a leader's
    /// life. Ends only with why it ended (the znode deleted, the session lost, an interrupt).
    pub async fn until_gone(&mut self, path: &str) -> Result<Infallible, Interrupt> {
        self.until_gone_or(path, std::future::pending()).await
    }

    /// Holds on like [`Hold::until_gone`], or until `wake` comes first (an ack for a queue
    /// claim): its output.
    pub async fn until_gone_or<T>(&mut self, path: &str, wake: impl Future<Output = T>) -> Result<T, Interrupt> {
        tokio::pin!(wake);
        loop {
            let (stat, watcher) = self.watch_stat(path).await?;
            if stat.is_none() {
                return Err(Interrupt::NodeGone);
            }
            let woken = self
                .guard_watch(async {
                    tokio::select! {
                        event = watcher.changed() => Err(event),
                        out = &mut wake => Ok(out),
                    }
                })
                .await?;
            match woken {
                Some(Ok(out)) => return Ok(out),
                Some(Err(event)) => match event.event_type {
                    EventType::NodeDeleted => return Err(Interrupt::NodeGone),
                    EventType::Session => return Err(Interrupt::Lost(SessionChange::Lost)),
                    _ => {}
                },
                // Reconnected: look again.
                None => {}
            }
        }
    }

    /// Ends the hold: deletes its znode unless the session took it, and tells the app why (if
    /// it is still there to hear it).
    pub async fn finish(mut self, node: Option<&str>, interrupt: Interrupt) {
        let delete = match &interrupt {
            Interrupt::AppGone => {
                self.release.abandon();
                true
            }
            Interrupt::Released(reason) => {
                let _ = self.events.send(json!({"type": "released", "reason": reason.as_str()})).await;
                true
            }
            Interrupt::Lost(change) => {
                let _ = self.events.send(change.event()).await;
                false
            }
            Interrupt::NodeGone => {
                let _ = self.events.send(json!({"type": "lost", "reason": "znode deleted"})).await;
                false
            }
            Interrupt::Failed(e) => {
                tracing::warn!(error = %e, "hold failed");
                let _ = self.events.send(json!({"type": "error", "message": e.to_string()})).await;
                true
            }
        };
        if let Some(path) = node {
            let generation = self.follower.generation();
            if delete {
                delete_own(&self.client, self.follower.status_mut(), generation, path).await;
            }
            // Orphans of our retried creates that landed late go with the hold (with a lost
            // session they are gone already, and its client may never answer again).
            let lost = matches!(interrupt, Interrupt::Lost(_));
            if let Some((dir, prefix)) =
                path.rsplit_once('/').filter(|_| !lost).and_then(|(dir, name)| Some((dir, tag_prefix(name)?)))
            {
                let orphans = self.client.list_children(dir).await.unwrap_or_default();
                for orphan in orphans.iter().filter(|c| c.starts_with(prefix) && znode::join(dir, c) != path) {
                    delete_own(&self.client, self.follower.status_mut(), generation, &znode::join(dir, orphan)).await;
                }
            }
        }
        // What the sidecar took away must reach an app without a stream: its lease ends.
        let end_lease = match interrupt {
            Interrupt::AppGone | Interrupt::Released(ReleaseReason::Resigned | ReleaseReason::LeaseEnded) => false,
            Interrupt::Released(ReleaseReason::Shutdown | ReleaseReason::Unhealthy)
            | Interrupt::Lost(_)
            | Interrupt::NodeGone
            | Interrupt::Failed(_) => true,
        };
        self.settle(end_lease).await;
    }

    /// Ends a hold whose work is done and whose znodes are gone (an acknowledged queue item).
    pub async fn complete(mut self) {
        self.settle(false).await;
    }

    /// The lease's bookkeeping at the end of the hold: its znodes (deleted or gone by now) are
    /// unbound, it is forgotten, and with `end_lease` the lease ends.
    async fn settle(&mut self, end_lease: bool) {
        let Some(binding) = self.lease.take() else { return };
        for path in self.bound.drain(..) {
            binding.leases.unbind(&binding.id, &path);
        }
        if let Some((key, status)) = &binding.remembered {
            binding.leases.forget_hold(&binding.id, key, status);
        }
        if end_lease && binding.leases.revoke(&binding.id).await.is_ok() {
            tracing::info!(lease = %binding.id, "a hold bound to the lease was taken away; the lease ended");
        }
    }
}

/// A fresh `{kind}-{tag}-` name prefix for a sequential znode of a hold. The random tag is the
/// hold's own: it finds the znode again when the create's answer was lost with the connection
/// (ZooKeeper may have created it), and tells orphans of such creates from everyone else's.
pub fn own_prefix(kind: &str) -> String {
    format!("{kind}-{:016x}-", rand::random::<u64>())
}

/// The `{kind}-{tag}-` start of a line znode's name (`lock-5f0c9a3e21b4d687-0000000003`): only
/// this hold's creates use that tag.
pub fn tag_prefix(name: &str) -> Option<&str> {
    let (head, sequence) = name.rsplit_once('-')?;
    let (_, tag) = head.rsplit_once('-')?;
    let ours = !sequence.is_empty()
        && sequence.bytes().all(|b| b.is_ascii_digit())
        && tag.len() == 16
        && tag.bytes().all(|b| b.is_ascii_hexdigit());
    ours.then(|| &name[..=head.len()])
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
    async fn a_campaign_whose_app_left_is_not_resigned_but_awaited() {
        let holds = Holds::new();
        let abandoned = holds.begin(Some("a")).expect("begin");
        // The app closed its stream: the task is deleting its candidate znode.
        abandoned.abandon();
        let (cleaned_tx, cleaned_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            cleaned_rx.await.ok();
            drop(abandoned);
        });
        let resign = holds.resign("a", Duration::from_secs(5));
        tokio::pin!(resign);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut resign).await.is_err(), "waits for the cleanup");
        cleaned_tx.send(()).ok();
        assert!(!resign.await, "the app had left: nothing of its was resigned");
        task.await.ok();
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

    #[test]
    fn only_tagged_line_names_have_a_tag_prefix() {
        assert_eq!(tag_prefix("lock-5f0c9a3e21b4d687-0000000003"), Some("lock-5f0c9a3e21b4d687-"));
        assert_eq!(tag_prefix("c-00000000000000ff-0000000010"), Some("c-00000000000000ff-"));
        // Queue items and claims are not tagged: their prefix is shared by everyone.
        assert_eq!(tag_prefix("item-0000000005"), None);
        assert_eq!(tag_prefix("lock-5f0c9a3e21b4d68-0000000003"), None);
        assert_eq!(tag_prefix("lock-5f0c9a3e21b4d687-"), None);
        assert_eq!(tag_prefix("lock-zzzzzzzzzzzzzzzz-1"), None);
    }
}
