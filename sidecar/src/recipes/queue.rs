//! Work queues. An item is a persistent sequential znode `/_paddock/queues/{name}/items/item-N`
//! (the sequence gives FIFO order and an id that is never reused, because the items directory
//! is persistent). Claiming an item creates the ephemeral znode `claims/item-N` of the pod's
//! session: creation is exclusive, so two claimers never hold the same item; the claim lives
//! while the claiming app's connection (or lease) does, and goes with the pod's session; once
//! it is gone the item is claimable again. The claim is made in one transaction with a rewrite
//! of the item, so each claim leaves the item at a version of its own (and its zxid is the
//! claim's token); acknowledging deletes the item at exactly that version, and the claim, in
//! one transaction, so an ex-claimer can never delete an item someone else has claimed since.
//!
//! Claimers stand in a line (`claimers/c-<tag>-N`, as lock waiters do) and only the front one
//! claims: it takes the lowest unclaimed item, leaves the line, and the next claimer's turn
//! comes. So an enqueue or a released claim wakes one claimer, never the herd: the front
//! claimer watches the items and the claims, every other claimer only its predecessor.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zookeeper_client::{Client, EventType, MultiWriteError, MultiWriteResult, OneshotWatcher, Stat};

use crate::error::{Error, Result};
use crate::holds::{Hold, Interrupt};
use crate::metrics::{GaugeGuard, Metrics};
use crate::recipes::line;
use crate::session;
use crate::stream::SessionChange;
use crate::znode;

/// The name prefix of items (`item-0000000007`).
pub const ITEM_PREFIX: &str = "item-";

/// The directory of queue `name`.
pub fn queue_dir(name: &str) -> String {
    format!("{}/queues/{name}", znode::RECIPE_ROOT)
}

fn items_dir(name: &str) -> String {
    format!("{}/items", queue_dir(name))
}

fn claims_dir(name: &str) -> String {
    format!("{}/claims", queue_dir(name))
}

fn claimers_dir(name: &str) -> String {
    format!("{}/claimers", queue_dir(name))
}

/// Appends an item holding `data` to queue `name`; its id and stat.
pub async fn enqueue(client: &Client, name: &str, data: &[u8]) -> Result<(String, Stat)> {
    let dir = items_dir(name);
    let shown = format!("queue {name}");
    let sequential = znode::join(&dir, ITEM_PREFIX);
    for _ in 0..4 {
        match client.create(&sequential, data, &session::persistent_sequential()).await {
            Ok((stat, sequence)) => return Ok((format!("{ITEM_PREFIX}{sequence}"), stat)),
            Err(zookeeper_client::Error::NoNode) => {
                session::ensure_path(client, &dir, &session::persistent())
                    .await
                    .map_err(|e| Error::from_zk(e, &shown))?;
            }
            Err(e) => return Err(Error::from_zk(e, &shown)),
        }
    }
    Err(Error::NoSession(format!("{shown} kept disappearing; retry")))
}

/// The number of items in queue `name` and how many of them are claimed.
pub async fn length(client: &Client, name: &str) -> Result<(usize, usize), zookeeper_client::Error> {
    let items = list_or_empty(client, &items_dir(name)).await?;
    let claims: HashSet<String> = list_or_empty(client, &claims_dir(name)).await?.into_iter().collect();
    let claimed = items.iter().filter(|item| claims.contains(*item)).count();
    Ok((items.len(), claimed))
}

/// Whether item `id` of queue `name` exists.
pub async fn item_exists(client: &Client, name: &str, id: &str) -> Result<bool, zookeeper_client::Error> {
    Ok(client.check_stat(&znode::join(&items_dir(name), id)).await?.is_some())
}

async fn list_or_empty(client: &Client, dir: &str) -> Result<Vec<String>, zookeeper_client::Error> {
    match client.list_children(dir).await {
        Ok(children) => Ok(children),
        Err(zookeeper_client::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// An app's request to acknowledge an item, sent to the task that holds its claim.
#[derive(Debug)]
struct Ack {
    reply: oneshot::Sender<Result<()>>,
}

#[derive(Debug)]
struct ClaimEntry {
    token: i64,
    acks: mpsc::Sender<Ack>,
}

/// The claims this sidecar holds, by queue and item, so that an ack (on any connection of the
/// pod) reaches the task holding the claim.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    inner: Arc<Mutex<HashMap<(String, String), ClaimEntry>>>,
}

fn lock(inner: &Mutex<HashMap<(String, String), ClaimEntry>>) -> MutexGuard<'_, HashMap<(String, String), ClaimEntry>> {
    inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a claim from the registry when its task ends.
struct Registered {
    claims: Claims,
    key: (String, String),
    token: i64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut claims = lock(&self.claims.inner);
        // A later claim of the same item (after this one ended) has its own token.
        if claims.get(&self.key).is_some_and(|entry| entry.token == self.token) {
            claims.remove(&self.key);
        }
    }
}

impl Claims {
    /// No claims.
    pub fn new() -> Claims {
        Claims::default()
    }

    fn register(&self, queue: &str, item: &str, token: i64, acks: mpsc::Sender<Ack>) -> Registered {
        let key = (queue.to_owned(), item.to_owned());
        lock(&self.inner).insert(key.clone(), ClaimEntry { token, acks });
        Registered { claims: self.clone(), key, token }
    }

    /// Acknowledges item `item` of `queue` through the claim this sidecar holds on it (with
    /// `token`, only if it is that claim). `None`: no live claim here.
    pub async fn ack(&self, queue: &str, item: &str, token: Option<i64>) -> Option<Result<()>> {
        let acks = {
            let claims = lock(&self.inner);
            let entry = claims.get(&(queue.to_owned(), item.to_owned()))?;
            if let Some(token) = token.filter(|token| *token != entry.token) {
                return Some(Err(Error::NotClaimed(format!(
                    "claim token {token} of item {item} is stale: the item's claim here has token {}",
                    entry.token
                ))));
            }
            entry.acks.clone()
        };
        let (reply, answer) = oneshot::channel();
        acks.send(Ack { reply }).await.ok()?;
        // The claim's task answers, or ends (claim lost) without answering.
        answer.await.ok()
    }
}

/// What a claim request asks for.
#[derive(Debug)]
pub struct ClaimRequest {
    /// The queue.
    pub queue: String,
    /// The claim znode's data (the pod's identity and the app's value).
    pub data: Vec<u8>,
    /// Give up waiting in line at this instant (lease claims); `None`: wait as long as the app.
    pub give_up: Option<Instant>,
    /// The sidecar's claims.
    pub claims: Claims,
    /// Metrics.
    pub metrics: Metrics,
}

/// An item this task claimed.
struct Claimed {
    id: String,
    data: Vec<u8>,
    /// The zxid of the claim's transaction: the claim znode's czxid, the item's mzxid.
    token: i64,
    /// The item's version the claim left it at.
    item_version: i32,
}

/// How waiting for a turn or an item ended.
enum Turn {
    Claimed(Claimed),
    GaveUp,
}

/// Runs one claim to its end: in line, then holding the claimed item until it is acknowledged
/// or the claim ends. `ready` is answered once the claimer is in line.
pub async fn claim(mut hold: Hold, request: ClaimRequest, ready: oneshot::Sender<Result<()>>) {
    let ClaimRequest { queue, data, give_up, claims, metrics } = request;
    let in_line = async {
        let items = items_dir(&queue);
        let ensured = hold
            .call(|c| {
                let items = items.clone();
                async move { session::ensure_path(&c, &items, &session::persistent()).await }
            })
            .await;
        ensured?;
        line::enter(&mut hold, &claimers_dir(&queue), "c", &data).await
    };
    let node = match in_line.await {
        Ok((node, _)) => node,
        Err(interrupt) => {
            let _ = ready.send(Err(interrupt.refusal("queue", "joining the claimers")));
            hold.finish(None, interrupt).await;
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let line_path = znode::join(&claimers_dir(&queue), &node);
    let waiting = GaugeGuard::new(metrics.holds.with_label_values(&["claim_waiting"]));
    let claimed = match take_turn(&mut hold, &queue, &node, &data, give_up).await {
        Ok(Turn::Claimed(claimed)) => claimed,
        Ok(Turn::GaveUp) => {
            hold.delete(&line_path).await;
            let _ = hold.emit(json!({"type": "timeout"})).await;
            hold.complete().await;
            return;
        }
        Err(interrupt) => {
            hold.finish(Some(&line_path), interrupt).await;
            return;
        }
    };
    drop(waiting);
    // The next claimer's turn.
    hold.delete(&line_path).await;
    let claim_path = znode::join(&claims_dir(&queue), &claimed.id);
    if !hold.is_heard() {
        // The app went before it could learn of the claim: the item goes back at once.
        hold.delete(&claim_path).await;
        hold.complete().await;
        return;
    }
    // Delivered: from now on a lease claim lives with its lease only.
    hold.detach();
    metrics.claims.inc();
    let _held = GaugeGuard::new(metrics.holds.with_label_values(&["claim"]));
    let (acks, acks_rx) = mpsc::channel(4);
    let _registered = claims.register(&queue, &claimed.id, claimed.token, acks);
    let mut event = serde_json::Map::new();
    event.insert("type".to_owned(), json!("claimed"));
    event.insert("queue".to_owned(), json!(queue));
    event.insert("id".to_owned(), json!(claimed.id));
    znode::data_fields(&claimed.data, &mut event);
    event.insert("token".to_owned(), json!(claimed.token));
    if let Err(interrupt) = hold.emit(Value::Object(event)).await {
        hold.finish(Some(&claim_path), interrupt).await;
        return;
    }
    let item_path = znode::join(&items_dir(&queue), &claimed.id);
    match hold_claim(&mut hold, &claim_path, &item_path, claimed.item_version, acks_rx).await {
        Ok(Ended::Acked) => {
            metrics.acks.inc();
            hold.unbind(&claim_path);
            let _ = hold.emit(json!({"type": "acked", "id": claimed.id})).await;
            hold.complete().await;
        }
        Ok(Ended::ItemGone) => {
            hold.delete(&claim_path).await;
            let _ = hold.emit(json!({"type": "lost", "reason": "item deleted"})).await;
            hold.complete().await;
        }
        Err(interrupt) => hold.finish(Some(&claim_path), interrupt).await,
    }
}

/// Waits for this claimer's turn at the front of the line, then for a claimable item.
async fn take_turn(
    hold: &mut Hold,
    queue: &str,
    node: &str,
    data: &[u8],
    give_up: Option<Instant>,
) -> Result<Turn, Interrupt> {
    let dir = claimers_dir(queue);
    let mut announced = false;
    loop {
        let (order, place) = line::place(hold, &dir, node).await?;
        if !announced {
            hold.emit(json!({"type": "waiting", "ahead": place})).await?;
            announced = true;
        }
        let watcher = if place > 0 {
            let predecessor = znode::join(&dir, &order[place - 1]);
            let (stat, watcher) = hold.watch_stat(&predecessor).await?;
            if stat.is_none() {
                continue;
            }
            vec![watcher]
        } else {
            match try_claim(hold, queue, data).await? {
                Ok(claimed) => return Ok(Turn::Claimed(claimed)),
                Err(watchers) => watchers,
            }
        };
        let woken = hold
            .guard(async {
                let changed = futures::future::select_all(watcher.into_iter().map(|w| Box::pin(w.changed())));
                match give_up {
                    Some(at) => tokio::time::timeout_at(at, changed).await.ok(),
                    None => Some(changed.await),
                }
            })
            .await?;
        match woken {
            None => return Ok(Turn::GaveUp),
            Some((event, _, _)) if event.event_type == EventType::Session => {
                return Err(Interrupt::Lost(SessionChange::Lost));
            }
            Some(_) => {}
        }
    }
}

/// At the front of the line: claims the lowest unclaimed item, or, when there is none, returns
/// the watches that fire when one may have become claimable (an item added, a claim gone).
async fn try_claim(
    hold: &mut Hold,
    queue: &str,
    data: &[u8],
) -> Result<Result<Claimed, Vec<OneshotWatcher>>, Interrupt> {
    let (items, claims) = (items_dir(queue), claims_dir(queue));
    let (listed, items_watch) = hold
        .call(|c| {
            let items = items.clone();
            async move { c.list_and_watch_children(&items).await }
        })
        .await?;
    let (claimed, claims_watch) = hold
        .call(|c| {
            let claims = claims.clone();
            async move {
                match c.list_and_watch_children(&claims).await {
                    Ok((children, watcher)) => Ok((children, Some(watcher))),
                    // No claims directory, no claims: nothing to be released.
                    Err(zookeeper_client::Error::NoNode) => Ok((Vec::new(), None)),
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
    let claimed: HashSet<String> = claimed.into_iter().collect();
    let candidates = znode::queue_order(listed).into_iter().filter(|item| !claimed.contains(item));
    for item in candidates {
        if let Some(claimed) = claim_item(hold, queue, &item, data).await? {
            return Ok(Ok(claimed));
        }
    }
    Ok(Err(std::iter::once(items_watch).chain(claims_watch).collect()))
}

/// Tries to claim `item`: `None` if someone else has it, or it is gone.
///
/// The claim znode is created in one transaction with a rewrite of the item at the version just
/// read, so the claim exists only if the item does, and every claim leaves the item at a
/// version of its own: an acknowledgement deletes the item at that version only, so a claimer
/// whose claim ended can never acknowledge (delete) an item someone else has claimed since.
async fn claim_item(hold: &mut Hold, queue: &str, item: &str, data: &[u8]) -> Result<Option<Claimed>, Interrupt> {
    let claims = claims_dir(queue);
    let claim_path = znode::join(&claims, item);
    let item_path = znode::join(&items_dir(queue), item);
    for _ in 0..16 {
        let read = hold
            .call(|c| {
                let item_path = item_path.clone();
                async move {
                    match c.get_data(&item_path).await {
                        Ok(found) => Ok(Some(found)),
                        Err(zookeeper_client::Error::NoNode) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        // Deleted (by hand) between listing and claiming.
        let Some((item_data, item_stat)) = read else { return Ok(None) };
        let client = hold.client();
        let mut multi = client.new_multi_writer();
        let built = multi
            .add_create(&claim_path, data, &session::ephemeral())
            .and_then(|()| multi.add_set_data(&item_path, &item_data, Some(item_stat.version)));
        built.map_err(Interrupt::Failed)?;
        let failure = match hold.guard(multi.commit()).await? {
            Ok(results) => match results.last() {
                Some(MultiWriteResult::SetData { stat }) => {
                    let claimed =
                        Claimed { id: item.to_owned(), data: item_data, token: stat.mzxid, item_version: stat.version };
                    hold.bind(&claim_path).await?;
                    return Ok(Some(claimed));
                }
                _ => {
                    let unexpected = format!("unexpected answer to the claim of {item}: {results:?}");
                    return Err(Interrupt::Failed(zookeeper_client::Error::UnexpectedError(unexpected)));
                }
            },
            Err(failure) => failure,
        };
        match failure {
            // Someone else's claim.
            MultiWriteError::OperationFailed { index: 0, source: zookeeper_client::Error::NodeExists } => {
                return Ok(None)
            }
            // No claims directory yet (or it was reaped): make it and try again.
            MultiWriteError::OperationFailed { index: 0, source: zookeeper_client::Error::NoNode } => {
                let client = hold.client();
                match hold.guard(session::ensure_path(&client, &claims, &session::container())).await? {
                    Ok(()) => {}
                    Err(e) if Error::is_connection_loss(&e) => hold.reconnected().await?,
                    Err(e) => return Err(Interrupt::Failed(e)),
                }
            }
            // The item changed or went since it was read: read it again.
            MultiWriteError::OperationFailed {
                index: 1,
                source: zookeeper_client::Error::BadVersion | zookeeper_client::Error::NoNode,
            } => {}
            MultiWriteError::OperationFailed { source, .. } | MultiWriteError::RequestFailed { source } => {
                if !Error::is_connection_loss(&source) {
                    return Err(Interrupt::Failed(source));
                }
                // The transaction may have happened. Only the first claimer in line claims, so
                // a claim of our session on this item is the one this transaction made.
                hold.reconnected().await?;
                let (claim, written) = hold
                    .call(|c| {
                        let (claim_path, item_path) = (claim_path.clone(), item_path.clone());
                        async move { Ok((c.check_stat(&claim_path).await?, c.check_stat(&item_path).await?)) }
                    })
                    .await?;
                let session = hold.client().session_id().0;
                match (claim, written) {
                    (Some(claim), Some(written)) if claim.ephemeral_owner == session => {
                        hold.bind(&claim_path).await?;
                        return Ok(Some(Claimed {
                            id: item.to_owned(),
                            data: item_data,
                            token: claim.czxid,
                            item_version: written.version,
                        }));
                    }
                    (Some(claim), None) if claim.ephemeral_owner == session => {
                        hold.delete(&claim_path).await;
                        return Ok(None);
                    }
                    (Some(_), _) => return Ok(None),
                    (None, _) => {}
                }
            }
        }
    }
    Err(Interrupt::Failed(zookeeper_client::Error::UnexpectedError(format!("could not claim {item}"))))
}

/// How holding a claim ended without an interrupt.
enum Ended {
    Acked,
    ItemGone,
}

/// Holds the claim until it is acknowledged, or the claim ends.
async fn hold_claim(
    hold: &mut Hold,
    claim_path: &str,
    item_path: &str,
    item_version: i32,
    mut acks: mpsc::Receiver<Ack>,
) -> Result<Ended, Interrupt> {
    // The registry keeps a sender while the claim is held.
    let next_ack = async {
        match acks.recv().await {
            Some(ack) => ack,
            None => std::future::pending().await,
        }
    };
    let ack = hold.until_gone_or(claim_path, next_ack).await?;
    match acknowledge(hold, claim_path, item_path, item_version).await {
        Ok(()) => {
            let _ = ack.reply.send(Ok(()));
            Ok(Ended::Acked)
        }
        Err(AckFailure::ClaimGone) => {
            let _ = ack.reply.send(Err(Error::NotClaimed(format!(
                "the claim on {} was deleted; the item may be claimed again",
                znode::basename(item_path)
            ))));
            Err(Interrupt::NodeGone)
        }
        Err(AckFailure::ItemGone) => {
            let _ = ack
                .reply
                .send(Err(Error::NotFound(format!("item {} was deleted by someone else", znode::basename(item_path)))));
            Ok(Ended::ItemGone)
        }
        Err(AckFailure::Interrupted(interrupt)) => {
            let error = match &interrupt {
                Interrupt::Failed(e) => Error::from_zk(e.clone(), item_path),
                _ => Error::NoSession("the session was lost; the claim went with it".to_owned()),
            };
            let _ = ack.reply.send(Err(error));
            Err(interrupt)
        }
    }
}

enum AckFailure {
    ClaimGone,
    ItemGone,
    Interrupted(Interrupt),
}

/// Deletes the item (at the version our claim left it at) and the claim in one transaction.
/// Not interrupted by the claimer's connection closing: the ack came on another connection and
/// must complete or fail as a whole.
async fn acknowledge(hold: &mut Hold, claim_path: &str, item_path: &str, item_version: i32) -> Result<(), AckFailure> {
    for _ in 0..16 {
        let client = hold.client();
        let mut multi = client.new_multi_writer();
        let built = multi.add_delete(item_path, Some(item_version)).and_then(|()| multi.add_delete(claim_path, None));
        if let Err(e) = built {
            return Err(AckFailure::Interrupted(Interrupt::Failed(e)));
        }
        let e = match multi.commit().await {
            Ok(_) => return Ok(()),
            // Gone: deleted by hand.
            Err(MultiWriteError::OperationFailed { index: 0, source: zookeeper_client::Error::NoNode }) => {
                return Err(AckFailure::ItemGone)
            }
            // Claimed again since our claim ended, or our claim znode is gone.
            Err(MultiWriteError::OperationFailed { index: 0, source: zookeeper_client::Error::BadVersion })
            | Err(MultiWriteError::OperationFailed { index: 1, source: zookeeper_client::Error::NoNode }) => {
                return Err(AckFailure::ClaimGone)
            }
            Err(MultiWriteError::OperationFailed { source, .. }) | Err(MultiWriteError::RequestFailed { source }) => {
                source
            }
        };
        if !Error::is_connection_loss(&e) {
            return Err(AckFailure::Interrupted(match e {
                zookeeper_client::Error::SessionExpired | zookeeper_client::Error::SessionMoved => {
                    Interrupt::Lost(SessionChange::Lost)
                }
                other => Interrupt::Failed(other),
            }));
        }
        // The transaction's outcome is unknown: look once the session is back.
        hold.reconnected_regardless().await.map_err(AckFailure::Interrupted)?;
        let client = hold.client();
        match (client.check_stat(item_path).await, client.check_stat(claim_path).await) {
            (Ok(None), Ok(None)) => return Ok(()),
            (Ok(Some(item)), Ok(Some(_))) if item.version == item_version => continue,
            (Ok(Some(_)), Ok(_)) => return Err(AckFailure::ClaimGone),
            _ => continue,
        }
    }
    Err(AckFailure::Interrupted(Interrupt::Failed(zookeeper_client::Error::ConnectionLoss)))
}
