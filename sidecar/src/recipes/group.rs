//! Group membership: a member is an ephemeral znode `/_paddock/groups/{group}/{id}` of the pod's
//! session holding the pod's identity and the app's `value`. The sidecar keeps the memberships
//! it was asked for (by `--join` and by `PUT`) as desired state and re-creates them on a new
//! session and when the app becomes healthy again; it deletes them when the app turns unhealthy
//! and on shutdown. Watching a group streams a snapshot in join order, then `joined` / `left` /
//! `updated` events in the order the cluster applied them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use zookeeper_client::{AddWatchMode, Client, EventType, Stat, WatchedEvent};

use crate::error::{Error, Result};
use crate::identity::PodIdentity;
use crate::metrics::Metrics;
use crate::session::{self, SessionHandle, SessionState, SessionStatus};
use crate::watch_stream::Watched;
use crate::znode;

/// The directory of group `group`.
pub fn group_dir(group: &str) -> String {
    format!("{}/groups/{group}", znode::RECIPE_ROOT)
}

/// A member as the API shows it: its data plus `id` and `czxid` (join order).
pub fn member_json(id: &str, data: &[u8], stat: &Stat) -> Value {
    let mut map = znode::holder_json(data);
    map.insert("id".to_owned(), json!(id));
    map.insert("czxid".to_owned(), json!(stat.czxid));
    Value::Object(map)
}

/// The members of `group` in join order.
pub async fn members(client: &Client, group: &str) -> Result<Vec<(String, i64, Value)>, zookeeper_client::Error> {
    let dir = group_dir(group);
    let children = match client.list_children(&dir).await {
        Ok(children) => children,
        Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let reads: Vec<_> = children.iter().map(|id| client.get_data(&znode::join(&dir, id))).collect();
    let mut members = Vec::with_capacity(children.len());
    for (id, read) in children.into_iter().zip(futures::future::join_all(reads).await) {
        match read {
            Ok((data, stat)) => {
                let member = member_json(&id, &data, &stat);
                members.push((id, stat.czxid, member));
            }
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    members.sort_by_key(|(_, czxid, _)| *czxid);
    Ok(members)
}

/// Whether a membership was created or updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// A new member znode.
    Created,
    /// The pod's existing member znode got the new value.
    Updated,
}

/// Creates (or updates, if it is ours) the member znode.
async fn create_member(client: &Client, group: &str, id: &str, data: &[u8]) -> Result<(Joined, Value)> {
    let dir = group_dir(group);
    let path = znode::join(&dir, id);
    let shown = format!("member {id} of group {group}");
    for _ in 0..8 {
        match client.create(&path, data, &session::ephemeral()).await {
            Ok((stat, _)) => return Ok((Joined::Created, member_json(id, data, &stat))),
            Err(zookeeper_client::Error::NoNode) => {
                session::ensure_path(client, &dir, &session::container())
                    .await
                    .map_err(|e| Error::from_zk(e, &shown))?;
            }
            Err(zookeeper_client::Error::NodeExists) => match client.check_stat(&path).await {
                Ok(Some(stat)) if stat.ephemeral_owner == client.session_id().0 => {
                    let stat = client.set_data(&path, data, None).await.map_err(|e| Error::from_zk(e, &shown))?;
                    return Ok((Joined::Updated, member_json(id, data, &stat)));
                }
                Ok(Some(_)) => return Err(Error::Held(format!("{shown} belongs to another session"))),
                Ok(None) => continue,
                Err(e) => return Err(Error::from_zk(e, &shown)),
            },
            Err(e) => return Err(Error::from_zk(e, &shown)),
        }
    }
    Err(Error::NoSession(format!("{shown} kept changing; retry")))
}

/// Deletes the member znode if it is ours. Ok(false): there was none.
async fn delete_member(client: &Client, group: &str, id: &str) -> Result<bool> {
    let path = znode::join(&group_dir(group), id);
    let shown = format!("member {id} of group {group}");
    match client.check_stat(&path).await {
        Ok(Some(stat)) if stat.ephemeral_owner == client.session_id().0 => {
            match client.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(true),
                Err(e) => Err(Error::from_zk(e, &shown)),
            }
        }
        Ok(Some(_)) => Err(Error::Held(format!("{shown} belongs to another session"))),
        Ok(None) => Ok(false),
        Err(e) => Err(Error::from_zk(e, &shown)),
    }
}

#[derive(Debug, Default)]
struct Desired {
    /// (group, id) → the app's value.
    members: BTreeMap<(String, String), Option<String>>,
    healthy: bool,
    draining: bool,
}

/// The memberships the pod should have, and the task that keeps them.
#[derive(Debug, Clone)]
pub struct Memberships {
    desired: Arc<Mutex<Desired>>,
    identity: PodIdentity,
    session: SessionHandle,
    metrics: Metrics,
    wake: Arc<tokio::sync::Notify>,
    /// The session generation on which every desired membership is in place (0: none).
    in_place: Arc<AtomicU64>,
}

fn lock(desired: &Mutex<Desired>) -> MutexGuard<'_, Desired> {
    desired.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Memberships {
    /// Memberships for the pod, starting with the `--join` groups (member id = pod name).
    pub fn new(
        identity: PodIdentity,
        session: SessionHandle,
        metrics: Metrics,
        join: &[String],
    ) -> Result<Memberships> {
        let mut desired = Desired { healthy: true, ..Desired::default() };
        for group in join {
            znode::validate_name("group", group)?;
            znode::validate_name("member id", &identity.pod)?;
            desired.members.insert((group.clone(), identity.pod.clone()), None);
        }
        metrics.holds.with_label_values(&["member"]).set(desired.members.len() as i64);
        Ok(Memberships {
            desired: Arc::new(Mutex::new(desired)),
            identity,
            session,
            metrics,
            wake: Arc::new(tokio::sync::Notify::new()),
            in_place: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether every desired membership is in place on session `generation` (the pod is
    /// unready until then, and while the app is unhealthy).
    pub fn in_place(&self, generation: u64) -> bool {
        generation != 0 && self.in_place.load(Ordering::SeqCst) == generation
    }

    fn data(&self, value: Option<&str>) -> Vec<u8> {
        znode::holder_data(&self.identity, value)
    }

    /// `PUT /v1/groups/{group}/members/{id}`: joins now and keeps the membership.
    pub async fn join(&self, group: &str, id: &str, value: Option<String>) -> Result<(Joined, Value)> {
        {
            let desired = lock(&self.desired);
            if desired.draining {
                return Err(Error::Draining);
            }
            if !desired.healthy {
                return Err(Error::NoSession("the app is unhealthy; joins are refused until it recovers".to_owned()));
            }
        }
        let (client, _) = self.session.client()?;
        let joined = create_member(&client, group, id, &self.data(value.as_deref())).await?;
        let mut desired = lock(&self.desired);
        desired.members.insert((group.to_owned(), id.to_owned()), value);
        self.metrics.holds.with_label_values(&["member"]).set(desired.members.len() as i64);
        Ok(joined)
    }

    /// `DELETE /v1/groups/{group}/members/{id}`: leaves and forgets the membership.
    pub async fn leave(&self, group: &str, id: &str) -> Result<()> {
        let (client, _) = self.session.client()?;
        let known = lock(&self.desired).members.contains_key(&(group.to_owned(), id.to_owned()));
        let deleted = delete_member(&client, group, id).await?;
        let mut desired = lock(&self.desired);
        desired.members.remove(&(group.to_owned(), id.to_owned()));
        self.metrics.holds.with_label_values(&["member"]).set(desired.members.len() as i64);
        if deleted || known {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no member {id} in group {group}")))
        }
    }

    /// Marks the app healthy (rejoin) or not (leave every group, keeping them desired).
    pub fn set_healthy(&self, healthy: bool) {
        lock(&self.desired).healthy = healthy;
        self.wake.notify_one();
    }

    /// Leaves every group for good (drain); returns once the member znodes are deleted.
    pub async fn leave_all(&self) {
        let members: Vec<_> = {
            let mut desired = lock(&self.desired);
            desired.draining = true;
            desired.members.keys().cloned().collect()
        };
        self.wake.notify_one();
        if let Ok((client, _)) = self.session.client() {
            for (group, id) in members {
                if let Err(e) = delete_member(&client, &group, &id).await {
                    tracing::warn!(group, id, error = %e, "could not leave group");
                }
            }
        }
    }

    /// Keeps the desired memberships: joins them on every new session and when the app is
    /// healthy again, leaves them when it turns unhealthy. Ends when draining.
    pub async fn keep(self) {
        let mut status = self.session.subscribe();
        let mut joined_generation = 0;
        let mut joined_healthy = true;
        loop {
            let now: SessionStatus = status.borrow_and_update().clone();
            let (healthy, draining) = {
                let desired = lock(&self.desired);
                (desired.healthy, desired.draining)
            };
            if draining {
                return;
            }
            if let (SessionState::Connected, Some(client)) = (now.state, now.client.as_ref()) {
                if healthy && (now.generation != joined_generation || !joined_healthy) {
                    if self.join_all(client).await {
                        joined_generation = now.generation;
                        joined_healthy = true;
                        self.in_place.store(now.generation, Ordering::SeqCst);
                    }
                } else if !healthy && joined_healthy {
                    self.in_place.store(0, Ordering::SeqCst);
                    self.leave_all_now(client).await;
                    joined_healthy = false;
                }
            }
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                _ = self.wake.notified() => {},
                // A failed join is retried.
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if now.generation != joined_generation => {},
            }
        }
    }

    async fn join_all(&self, client: &Client) -> bool {
        let members: Vec<_> = lock(&self.desired).members.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut all = true;
        for ((group, id), value) in members {
            match create_member(client, &group, &id, &self.data(value.as_deref())).await {
                Ok((joined, _)) => tracing::info!(group, id, ?joined, "member of group"),
                Err(e) => {
                    tracing::warn!(group, id, error = %e, "could not join group");
                    all = false;
                }
            }
        }
        all
    }

    async fn leave_all_now(&self, client: &Client) {
        let members: Vec<_> = lock(&self.desired).members.keys().cloned().collect();
        for (group, id) in members {
            match delete_member(client, &group, &id).await {
                Ok(_) => tracing::info!(group, id, "left group (app unhealthy)"),
                Err(e) => tracing::warn!(group, id, error = %e, "could not leave group"),
            }
        }
    }
}

/// A group's membership as its watch stream shows it: a snapshot in join order, then `joined` /
/// `updated` / `left`. After a reconnect (events may have been missed) it re-reads the group and
/// reports the difference.
pub struct MembersWatch {
    group: String,
    dir: String,
    shown: String,
    /// The members told so far, by id, with their czxid (a rejoin is a new czxid).
    known: HashMap<String, i64>,
}

impl MembersWatch {
    /// Watches group `group`.
    pub fn new(group: String) -> MembersWatch {
        MembersWatch { dir: group_dir(&group), shown: format!("group {group}"), group, known: HashMap::new() }
    }
}

impl Watched for MembersWatch {
    fn path(&self) -> &str {
        &self.dir
    }

    fn mode(&self) -> AddWatchMode {
        AddWatchMode::PersistentRecursive
    }

    fn shown(&self) -> &str {
        &self.shown
    }

    async fn snapshot(&mut self, client: &Client) -> Result<Value> {
        let snapshot = members(client, &self.group).await.map_err(|e| Error::from_zk(e, &self.shown))?;
        self.known = snapshot.iter().map(|(id, czxid, _)| (id.clone(), *czxid)).collect();
        let list: Vec<Value> = snapshot.into_iter().map(|(_, _, m)| m).collect();
        Ok(json!({"type": "snapshot", "group": self.group, "members": list}))
    }

    async fn changed(&mut self, client: &Client, event: &WatchedEvent) -> Vec<Value> {
        let Some(id) = event.path.strip_prefix(&self.dir).and_then(|rest| rest.strip_prefix('/')) else {
            return Vec::new();
        };
        if id.contains('/') {
            return Vec::new();
        }
        member_event(client, &self.dir, id, event.event_type, event.zxid, &mut self.known).await
    }

    async fn resync(&mut self, client: &Client, _event: &WatchedEvent, rewatched: bool) -> Vec<Value> {
        if !rewatched {
            return Vec::new();
        }
        match members(client, &self.group).await {
            Ok(now) => diff(&mut self.known, now),
            Err(e) => vec![json!({"type": "error", "message": e.to_string()})],
        }
    }
}

async fn member_event(
    client: &Client,
    dir: &str,
    id: &str,
    kind: EventType,
    zxid: i64,
    known: &mut HashMap<String, i64>,
) -> Vec<Value> {
    match kind {
        EventType::NodeDeleted => match known.remove(id) {
            Some(_) => vec![json!({"type": "left", "id": id, "zxid": zxid})],
            None => Vec::new(),
        },
        EventType::NodeCreated | EventType::NodeDataChanged => {
            match client.get_data(&znode::join(dir, id)).await {
                Ok((data, stat)) => {
                    let member = member_json(id, &data, &stat);
                    match known.insert(id.to_owned(), stat.czxid) {
                        // Already in the snapshot (the event raced the first read).
                        Some(czxid) if czxid == stat.czxid && kind == EventType::NodeCreated => Vec::new(),
                        Some(czxid) if czxid == stat.czxid => {
                            vec![json!({"type": "updated", "member": member, "zxid": zxid})]
                        }
                        Some(_) => vec![
                            json!({"type": "left", "id": id, "zxid": stat.czxid}),
                            json!({"type": "joined", "member": member, "zxid": zxid}),
                        ],
                        None => vec![json!({"type": "joined", "member": member, "zxid": zxid})],
                    }
                }
                // Gone again already; its NodeDeleted event follows.
                Err(_) => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// The events that turn `known` into `now`: `left` for vanished members, `joined` for new ones.
fn diff(known: &mut HashMap<String, i64>, now: Vec<(String, i64, Value)>) -> Vec<Value> {
    let present: HashMap<&str, i64> = now.iter().map(|(id, czxid, _)| (id.as_str(), *czxid)).collect();
    let mut lines = Vec::new();
    let mut gone: Vec<(String, i64)> = known
        .iter()
        .filter(|(id, czxid)| present.get(id.as_str()) != Some(czxid))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    gone.sort_by_key(|(_, czxid)| *czxid);
    for (id, _) in gone {
        known.remove(&id);
        lines.push(json!({"type": "left", "id": id}));
    }
    for (id, czxid, member) in now {
        if known.get(&id) != Some(&czxid) {
            known.insert(id, czxid);
            lines.push(json!({"type": "joined", "member": member}));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_reports_leaves_then_joins_in_join_order() {
        let mut known: HashMap<String, i64> = [("a".to_owned(), 5), ("b".to_owned(), 7)].into_iter().collect();
        let now = vec![
            ("b".to_owned(), 7, json!({"id": "b"})),
            ("c".to_owned(), 9, json!({"id": "c"})),
            ("d".to_owned(), 11, json!({"id": "d"})),
        ];
        let lines = diff(&mut known, now);
        assert_eq!(
            lines,
            vec![
                json!({"type": "left", "id": "a"}),
                json!({"type": "joined", "member": {"id": "c"}}),
                json!({"type": "joined", "member": {"id": "d"}}),
            ]
        );
        assert_eq!(known.len(), 3);
        assert!(diff(
            &mut known,
            vec![("b".to_owned(), 7, json!({})), ("c".to_owned(), 9, json!({})), ("d".to_owned(), 11, json!({}))]
        )
        .is_empty());
    }

    #[test]
    fn a_rejoined_member_is_a_leave_and_a_join() {
        let mut known: HashMap<String, i64> = [("a".to_owned(), 5)].into_iter().collect();
        let lines = diff(&mut known, vec![("a".to_owned(), 8, json!({"id": "a"}))]);
        assert_eq!(lines, vec![json!({"type": "left", "id": "a"}), json!({"type": "joined", "member": {"id": "a"}})]);
    }
}
