//! What locks and elections share: a *line* of ephemeral-sequential znodes in a recipe directory,
//! where the lowest sequence is at the front, and the task that stands in it for one app
//! connection ([`Hold`]). Every wait of a hold is guarded: it ends early when the app closes
//! its connection, the sidecar releases the hold, or the session is lost, and it reports
//! `suspended` / `reconnected` on the stream meanwhile.
//!
//! A hold may be bound to a lease instead of a connection ([`Hold::with_lease`]): its znodes are
//! bound to the lease, it is released when the lease ends, and when the sidecar takes it away
//! (app unhealthy, shutdown, znode deleted, an error) it ends the lease too, because a lease's
//! keepalive answering 404 is the only way such an app learns that it lost something.

use std::future::Future;

use serde_json::{json, Value};
use tokio::sync::watch;
use zookeeper_client::{Client, Stat};

use crate::holds::{Release, ReleaseReason};
use crate::recipes::lease::Leases;
use crate::session::{self, CONTAINER, EPHEMERAL_SEQUENTIAL};
use crate::stream::{EventSink, SessionChange, SessionFollower};
use crate::znode;
use zookeeper_client::EventType;

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

/// The lease a hold is bound to.
#[derive(Debug, Clone)]
pub struct LeaseBinding {
    /// The sidecar's leases.
    pub leases: Leases,
    /// The lease.
    pub id: String,
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
    announced: std::sync::atomic::AtomicBool,
}

impl Hold {
    /// A hold on `generation`'s session.
    pub fn new(client: Client, follower: SessionFollower, events: EventSink, release: Release) -> Hold {
        Hold {
            client,
            follower,
            events,
            release,
            lease: None,
            bound: Vec::new(),
            announced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The same hold bound to a lease: its znodes are bound to it (the [`Release`] must already
    /// be released by the lease's end, see [`Release::with_lease`]).
    pub fn with_lease(mut self, binding: LeaseBinding) -> Hold {
        self.lease = Some(binding);
        self
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
        self.announced.store(true, std::sync::atomic::Ordering::Relaxed);
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
            let heard = self.announced.load(std::sync::atomic::Ordering::Relaxed);
            match change {
                SessionChange::Suspended if heard => self.emit(change.event()).await?,
                SessionChange::Suspended => {}
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
                Err(e) if crate::error::Error::is_connection_loss(&e) => {
                    self.guard(tokio::time::sleep(session::retry_pause(attempt))).await?;
                    self.reconnected().await?
                }
                Err(e) => return Err(zk_interrupt(e)),
            }
        }
        Err(Interrupt::Failed(zookeeper_client::Error::ConnectionLoss))
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
        session::delete_own(&self.client, self.follower.status_mut(), generation, path).await;
        self.unbind(path);
    }

    /// Joins the line in `dir` with a znode named `{kind}-{tag}-{sequence}` holding `data`.
    /// The random tag finds our znode again when the create's answer was lost with the
    /// connection (ZooKeeper may have created it), so no orphan is left holding a place.
    pub async fn enter_line(&mut self, dir: &str, kind: &str, data: &[u8]) -> Result<(String, Stat), Interrupt> {
        let tag = format!("{:016x}", rand::random::<u64>());
        let prefix = format!("{kind}-{tag}-");
        let sequential_path = znode::join(dir, &prefix);
        // While a new leader is elected the servers turn connections away for a moment, and
        // the session may reconnect and drop again many times: back off between attempts
        // (about 30 s in all) rather than giving up after a burst of instant failures.
        for attempt in 0u64..80 {
            if attempt > 0 {
                self.guard(tokio::time::sleep(session::retry_pause(attempt))).await?;
            }
            let client = self.client.clone();
            match self.guard(client.create(&sequential_path, data, &EPHEMERAL_SEQUENTIAL)).await? {
                Ok((stat, sequence)) => {
                    let name = format!("{prefix}{sequence}");
                    self.bind(&znode::join(dir, &name)).await?;
                    return Ok((name, stat));
                }
                Err(zookeeper_client::Error::NoNode) => {
                    let client = self.client.clone();
                    match self.guard(session::ensure_path(&client, dir, &CONTAINER)).await? {
                        Ok(()) => {}
                        Err(e) if crate::error::Error::is_connection_loss(&e) => self.reconnected().await?,
                        Err(e) => return Err(zk_interrupt(e)),
                    }
                }
                Err(e) if crate::error::Error::is_connection_loss(&e) => {
                    self.reconnected().await?;
                    let owned_dir = dir.to_owned();
                    let children = self
                        .call(|c| {
                            let dir = owned_dir.clone();
                            async move {
                                match c.list_children(&dir).await {
                                    Err(zookeeper_client::Error::NoNode) => Ok(Vec::new()),
                                    other => other,
                                }
                            }
                        })
                        .await?;
                    if let Some(name) = children.into_iter().find(|name| name.starts_with(&prefix)) {
                        let path = znode::join(dir, &name);
                        let stat = self.call(|c| {
                            let path = path.clone();
                            async move { c.check_stat(&path).await }
                        });
                        match stat.await? {
                            Some(stat) => {
                                self.bind(&path).await?;
                                return Ok((name, stat));
                            }
                            None => return Err(Interrupt::NodeGone),
                        }
                    }
                }
                Err(e) => return Err(zk_interrupt(e)),
            }
        }
        Err(Interrupt::Failed(zookeeper_client::Error::UnexpectedError(format!("could not join the line in {dir}"))))
    }

    /// The line in `dir`, front first, and our place in it (`None`: our znode is gone).
    pub async fn line(&mut self, dir: &str, name: &str) -> Result<(Vec<String>, usize), Interrupt> {
        let dir = dir.to_owned();
        let children = self
            .call(|c| {
                let dir = dir.clone();
                async move { c.list_children(&dir).await }
            })
            .await
            .map_err(|e| match e {
                Interrupt::Failed(zookeeper_client::Error::NoNode) => Interrupt::NodeGone,
                other => other,
            })?;
        let mut children = children;
        // A create whose answer was lost with the connection may still land after the retry
        // made our znode: such an orphan of ours would hold a place in the line forever.
        if let Some(prefix) = tag_prefix(name) {
            let orphans: Vec<String> =
                children.iter().filter(|c| c.starts_with(prefix) && *c != name).cloned().collect();
            for orphan in &orphans {
                tracing::info!(dir, orphan, "deleting an orphan of a create retried after a connection loss");
                self.delete(&znode::join(&dir, orphan)).await;
            }
            children.retain(|c| !orphans.contains(c));
        }
        let order = znode::queue_order(children);
        match order.iter().position(|n| n == name) {
            Some(place) => Ok((order, place)),
            None => Err(Interrupt::NodeGone),
        }
    }

    /// Holds on while the hold's znode at `path` lives: the rest of a lock's or a leader's
    /// life. Ends only with why it ended (the znode deleted, the session lost, an interrupt).
    pub async fn until_gone(&mut self, path: &str) -> Result<std::convert::Infallible, Interrupt> {
        loop {
            let (stat, watcher) = self
                .call(|c| {
                    let path = path.to_owned();
                    async move { c.check_and_watch_stat(&path).await }
                })
                .await?;
            if stat.is_none() {
                return Err(Interrupt::NodeGone);
            }
            let Some(event) = self.guard_watch(watcher.changed()).await? else { continue };
            match event.event_type {
                EventType::NodeDeleted => return Err(Interrupt::NodeGone),
                EventType::Session => return Err(Interrupt::Lost(SessionChange::Lost)),
                _ => {}
            }
        }
    }

    /// Ends the hold: deletes its znode unless the session took it, and tells the app why (if
    /// it is still there to hear it).
    pub async fn finish(mut self, node: Option<&str>, interrupt: Interrupt) {
        let delete = match &interrupt {
            Interrupt::AppGone => true,
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
                session::delete_own(&self.client, self.follower.status_mut(), generation, path).await;
            }
            // Orphans of our retried creates that landed late go with the hold.
            if let Some((dir, prefix)) = path.rsplit_once('/').and_then(|(dir, name)| Some((dir, tag_prefix(name)?))) {
                let orphans = self.client.list_children(dir).await.unwrap_or_default();
                for orphan in orphans.iter().filter(|c| c.starts_with(prefix) && znode::join(dir, c) != path) {
                    session::delete_own(
                        &self.client,
                        self.follower.status_mut(),
                        generation,
                        &znode::join(dir, orphan),
                    )
                    .await;
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

/// The `{kind}-{tag}-` start of a line znode's name (`lock-5f0c9a3e21b4d687-0000000003`): only
/// this hold's creates use that tag.
fn tag_prefix(name: &str) -> Option<&str> {
    let (head, sequence) = name.rsplit_once('-')?;
    let (_, tag) = head.rsplit_once('-')?;
    let ours = !sequence.is_empty()
        && sequence.bytes().all(|b| b.is_ascii_digit())
        && tag.len() == 16
        && tag.bytes().all(|b| b.is_ascii_hexdigit());
    ours.then(|| &name[..=head.len()])
}

fn zk_interrupt(e: zookeeper_client::Error) -> Interrupt {
    use zookeeper_client::Error as Zk;
    match e {
        Zk::SessionExpired | Zk::SessionMoved => Interrupt::Lost(SessionChange::Lost),
        Zk::ClientClosed => Interrupt::Lost(SessionChange::Closed),
        other => Interrupt::Failed(other),
    }
}

#[cfg(test)]
mod tests {
    use super::tag_prefix;

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
