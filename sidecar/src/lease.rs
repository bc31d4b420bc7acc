//! Leases, for apps that cannot keep a connection open: a lease lives while the app keeps it
//! alive within its TTL, and ephemeral znodes created with `?lease=ID` live as long as it does.
//! The znodes are ephemerals of the pod's session; the sidecar deletes them when the lease
//! expires or is deleted. A session expiry takes the znodes, so it ends every lease too.
//!
//! Locks, campaigns and queue claims can be bound to a lease too (`?lease=ID`): their tasks
//! select on the lease's end ([`Leases::ended`]), their znodes are bound like any other, and the
//! lease remembers its lock and campaign holds by name so that a repeated request finds the hold
//! it already has. How a hold binds itself to a lease, and ends the lease when the sidecar takes
//! the hold away, is [`crate::holds`]'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::session::{self, SessionHandle, SessionState};

/// Shortest and longest TTL a lease may have.
pub const TTL_RANGE: (u64, u64) = (500, 300_000);

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    generation: u64,
    deadline: watch::Sender<Instant>,
    nodes: Vec<String>,
    /// Cancelled when the lease ends, however it ends.
    ended: CancellationToken,
    /// Lock and campaign holds bound to the lease, by [`hold_key`].
    holds: HashMap<String, LeaseHold>,
}

/// A lock or campaign hold bound to a lease, as later requests for it find it.
#[derive(Debug, Clone)]
pub struct LeaseHold {
    /// The hold's latest event (`waiting`, `acquired`, `follower`, `leader`, `released`, ...);
    /// closed once its task has ended.
    pub status: watch::Receiver<Value>,
    /// Releases this one hold (`DELETE /v1/locks/{name}?lease=ID`).
    pub resign: CancellationToken,
}

/// The key of a lease-bound hold: its recipe and name (`lock/NAME`, `election/NAME`).
pub fn hold_key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// The sidecar's leases.
#[derive(Debug, Clone)]
pub struct Leases {
    inner: Arc<Mutex<HashMap<String, Lease>>>,
    session: SessionHandle,
}

fn lock(inner: &Mutex<HashMap<String, Lease>>) -> MutexGuard<'_, HashMap<String, Lease>> {
    inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unknown(id: &str) -> Error {
    Error::NotFound(format!("no lease {id} (expired, deleted, or its session was lost)"))
}

impl Leases {
    /// No leases yet.
    pub fn new(session: SessionHandle) -> Leases {
        Leases { inner: Arc::new(Mutex::new(HashMap::new())), session }
    }

    /// Grants a lease of `ttl_ms`; it expires unless kept alive within every TTL.
    pub fn grant(&self, ttl_ms: u64) -> Result<String> {
        if !(TTL_RANGE.0..=TTL_RANGE.1).contains(&ttl_ms) {
            return Err(Error::BadInput(format!("ttl_ms must be within {}..={}", TTL_RANGE.0, TTL_RANGE.1)));
        }
        let (_, generation) = self.session.client()?;
        let id = format!("{:016x}", rand::random::<u64>());
        let ttl = Duration::from_millis(ttl_ms);
        let (deadline, mut expires) = watch::channel(Instant::now() + ttl);
        let lease = Lease {
            ttl,
            generation,
            deadline,
            nodes: Vec::new(),
            ended: CancellationToken::new(),
            holds: HashMap::new(),
        };
        lock(&self.inner).insert(id.clone(), lease);
        let leases = self.clone();
        let lease_id = id.clone();
        tokio::spawn(async move {
            let mut status = leases.session.subscribe();
            loop {
                let at = *expires.borrow_and_update();
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {
                        if *expires.borrow() <= Instant::now() {
                            tracing::info!(lease = %lease_id, "lease expired");
                            leases.end(&lease_id).await;
                            return;
                        }
                    }
                    changed = expires.changed() => if changed.is_err() { return },
                    changed = status.changed() => {
                        if changed.is_err() || status.borrow().generation != generation {
                            // The session took the znodes; the holds see the loss themselves.
                            if let Some(lease) = lock(&leases.inner).remove(&lease_id) {
                                lease.ended.cancel();
                            }
                            return;
                        }
                    }
                }
            }
        });
        Ok(id)
    }

    /// Renews lease `id` for another TTL; its TTL in milliseconds. While the session is
    /// suspended the lease is renewed all the same (the app is alive) but the answer is 503
    /// `suspended` with the hold deadline: the lease's holds may be gone by then. Once the
    /// session is lost (its deadline passed, or it expired) the lease is unknown: 404.
    pub fn keep_alive(&self, id: &str) -> Result<u64> {
        let status = self.session.status();
        let leases = lock(&self.inner);
        let lease = leases.get(id).ok_or_else(|| unknown(id))?;
        if status.generation != lease.generation {
            return Err(unknown(id));
        }
        match status.state {
            SessionState::Connected => {}
            SessionState::Suspended => {
                lease.deadline.send_replace(Instant::now() + lease.ttl);
                let valid_until = status.valid_until.unwrap_or_else(std::time::Instant::now);
                return Err(Error::Suspended {
                    message: format!("lease {id} was renewed, but the session is suspended: its holds are valid only until the deadline"),
                    valid_until,
                });
            }
            // The session is being replaced; the lease ends with it.
            SessionState::Connecting | SessionState::Lost | SessionState::Closed => return Err(unknown(id)),
        }
        lease.deadline.send_replace(Instant::now() + lease.ttl);
        Ok(lease.ttl.as_millis() as u64)
    }

    /// Lease `id`'s TTL, the time left and its znodes.
    pub fn describe(&self, id: &str) -> Result<(u64, u64, Vec<String>)> {
        let leases = lock(&self.inner);
        let lease = leases.get(id).ok_or_else(|| unknown(id))?;
        let left = lease.deadline.borrow().saturating_duration_since(Instant::now());
        Ok((lease.ttl.as_millis() as u64, left.as_millis() as u64, lease.nodes.clone()))
    }

    /// Checks that lease `id` is live on session `generation` before a znode is created for it.
    pub fn check(&self, id: &str, generation: u64) -> Result<()> {
        match lock(&self.inner).get(id) {
            Some(lease) if lease.generation == generation => Ok(()),
            _ => Err(unknown(id)),
        }
    }

    /// The token cancelled when lease `id` (live on session `generation`) ends.
    pub fn ended(&self, id: &str, generation: u64) -> Result<CancellationToken> {
        match lock(&self.inner).get(id) {
            Some(lease) if lease.generation == generation => Ok(lease.ended.clone()),
            _ => Err(unknown(id)),
        }
    }

    /// The live hold `key` of lease `id`, or a new one made by `start` (given the lease's end
    /// token) and remembered. Atomic, so two requests for the
    /// same hold never start two.
    pub fn hold_or_start(
        &self,
        id: &str,
        generation: u64,
        key: &str,
        start: impl FnOnce(CancellationToken) -> Result<LeaseHold>,
    ) -> Result<LeaseHold> {
        let mut leases = lock(&self.inner);
        let lease = match leases.get_mut(id) {
            Some(lease) if lease.generation == generation => lease,
            _ => return Err(unknown(id)),
        };
        if let Some(hold) = lease.holds.get(key) {
            // A hold whose task has ended (its status closed) is replaced by a new one.
            if !hold.status.is_closed() {
                return Ok(hold.clone());
            }
        }
        let hold = start(lease.ended.clone())?;
        lease.holds.insert(key.to_owned(), hold.clone());
        Ok(hold)
    }

    /// The live hold `key` of lease `id`, if it has one.
    pub fn hold(&self, id: &str, key: &str) -> Result<Option<LeaseHold>> {
        let leases = lock(&self.inner);
        let lease = leases.get(id).ok_or_else(|| unknown(id))?;
        Ok(lease.holds.get(key).filter(|hold| !hold.status.is_closed()).cloned())
    }

    /// Forgets hold `key` of lease `id` once its task ends (if it is still the one remembered:
    /// `status` tells them apart).
    pub fn forget_hold(&self, id: &str, key: &str, status: &watch::Receiver<Value>) {
        let mut leases = lock(&self.inner);
        if let Some(lease) = leases.get_mut(id) {
            if lease.holds.get(key).is_some_and(|hold| status.same_channel(&hold.status)) {
                lease.holds.remove(key);
            }
        }
    }

    /// Binds the created znode `path` to lease `id`; if the lease ended meanwhile, the znode is
    /// deleted and the call fails.
    pub async fn bind(&self, id: &str, path: &str) -> Result<()> {
        {
            let mut leases = lock(&self.inner);
            if let Some(lease) = leases.get_mut(id) {
                lease.nodes.push(path.to_owned());
                return Ok(());
            }
        }
        self.delete_nodes(&[path.to_owned()]).await;
        Err(unknown(id))
    }

    /// Unbinds `path` from lease `id` (a hold deleted its own znode: the name may be taken by
    /// someone else later, and the lease must not delete it then).
    pub fn unbind(&self, id: &str, path: &str) {
        if let Some(lease) = lock(&self.inner).get_mut(id) {
            lease.nodes.retain(|node| node != path);
        }
    }

    /// Ends lease `id` now, deleting its znodes.
    pub async fn revoke(&self, id: &str) -> Result<()> {
        if lock(&self.inner).contains_key(id) {
            self.end(id).await;
            Ok(())
        } else {
            Err(unknown(id))
        }
    }

    async fn end(&self, id: &str) {
        // Removing the lease drops its deadline sender, which ends its expiry task.
        let removed = lock(&self.inner).remove(id);
        if let Some(lease) = removed {
            // The holds are told first so that they stop acting as holders before their znodes
            // go; they delete their own znodes too, which is harmless.
            lease.ended.cancel();
            self.delete_nodes(&lease.nodes).await;
        }
    }

    async fn delete_nodes(&self, paths: &[String]) {
        let status = self.session.status();
        let (Some(client), generation) = (status.client, status.generation) else { return };
        let mut receiver = self.session.subscribe();
        for path in paths {
            // A znode that is no longer the session's (deleted and made again by another pod)
            // is not the lease's to delete.
            match client.check_stat(path).await {
                Ok(None) => continue,
                Ok(Some(stat)) if stat.ephemeral_owner != client.session_id().0 => continue,
                _ => {}
            }
            session::delete_own(&client, &mut receiver, generation, path).await;
        }
    }
}
