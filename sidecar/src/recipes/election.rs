//! Leader election: candidates stand in the line of `/_paddock/elections/{name}`; the front is the
//! leader. A candidate watches its predecessor (to learn when it leads) and the current leader
//! (to tell the app who leads). The term is the leader znode's creation zxid: a later leader was
//! necessarily created later, so terms strictly increase. Observers read the line without
//! joining it, once or as a watch stream of leader changes ([`LeaderWatch`]).

use serde_json::{json, Value};
use tokio::sync::oneshot;
use zookeeper_client::{AddWatchMode, Client, EventType, WatchedEvent};

use crate::error::{Error, Result};
use crate::holds::{Hold, Interrupt};
use crate::metrics::{GaugeGuard, Metrics};
use crate::recipes::line;
use crate::stream::SessionChange;
use crate::watch_stream::Watched;
use crate::znode;

/// The directory of election `name`.
pub fn election_dir(name: &str) -> String {
    format!("{}/elections/{name}", znode::RECIPE_ROOT)
}

/// The leader as the API shows it: the candidate's data plus `term` and `node`.
fn leader_json(node: &str, data: &[u8], czxid: i64) -> Value {
    let mut map = znode::holder_json(data);
    map.insert("term".to_owned(), json!(czxid));
    map.insert("node".to_owned(), json!(node));
    Value::Object(map)
}

/// The current leader of the election in `dir` (if any) and the number of candidates.
pub async fn observe(client: &Client, dir: &str) -> Result<(Option<Value>, usize), zookeeper_client::Error> {
    // The leader can go between listing and reading; a few rounds settle it.
    for _ in 0..8 {
        let children = match client.list_children(dir).await {
            Ok(children) => children,
            Err(zookeeper_client::Error::NoNode) => return Ok((None, 0)),
            Err(e) => return Err(e),
        };
        let order = znode::queue_order(children);
        let Some(front) = order.first() else {
            return Ok((None, 0));
        };
        match client.get_data(&znode::join(dir, front)).await {
            Ok((data, stat)) => return Ok((Some(leader_json(front, &data, stat.czxid)), order.len())),
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(zookeeper_client::Error::UnexpectedError("election kept changing while it was read".to_owned()))
}

/// An election's leader as its watch stream shows it: a snapshot, then `leader` whenever the
/// leader changes.
pub struct LeaderWatch {
    name: String,
    dir: String,
    /// The leader the stream told last.
    leader: Option<Value>,
}

impl LeaderWatch {
    /// Watches election `name`.
    pub fn new(name: String) -> LeaderWatch {
        LeaderWatch { dir: election_dir(&name), name, leader: None }
    }

    /// A `leader` line if the leader is another than the one told last.
    async fn look(&mut self, client: &Client, zxid: i64) -> Vec<Value> {
        match observe(client, &self.dir).await {
            Ok((now, candidates)) if now != self.leader => {
                let line = leader_event(&now, candidates, zxid);
                self.leader = now;
                vec![line]
            }
            Ok(_) => Vec::new(),
            Err(e) => vec![json!({"type": "error", "message": e.to_string()})],
        }
    }
}

impl Watched for LeaderWatch {
    fn path(&self) -> &str {
        &self.dir
    }

    fn mode(&self) -> AddWatchMode {
        AddWatchMode::Persistent
    }

    fn shown(&self) -> &str {
        &self.name
    }

    async fn snapshot(&mut self, client: &Client) -> Result<Value> {
        let (leader, candidates) = observe(client, &self.dir).await.map_err(|e| Error::from_zk(e, &self.name))?;
        self.leader = leader.clone();
        Ok(json!({"type": "snapshot", "name": self.name, "leader": leader, "candidates": candidates}))
    }

    async fn changed(&mut self, client: &Client, event: &WatchedEvent) -> Vec<Value> {
        self.look(client, event.zxid).await
    }

    async fn resync(&mut self, client: &Client, event: &WatchedEvent, _rewatched: bool) -> Vec<Value> {
        // Who leads now is worth telling even when the watch could not be added again.
        self.look(client, event.zxid).await
    }
}

fn leader_event(leader: &Option<Value>, candidates: usize, zxid: i64) -> Value {
    let mut event = json!({"type": "leader", "leader": leader, "candidates": candidates});
    if zxid >= 0 {
        event["zxid"] = json!(zxid);
    }
    event
}

/// Runs one campaign to its end; `ready` is answered once the candidate is in line.
pub async fn campaign(
    mut hold: Hold,
    name: String,
    data: Vec<u8>,
    metrics: Metrics,
    ready: oneshot::Sender<Result<()>>,
) {
    let dir = election_dir(&name);
    let (node, created) = match line::enter(&mut hold, &dir, "n", &data).await {
        Ok(entered) => entered,
        Err(interrupt) => {
            let _ = ready.send(Err(interrupt.refusal("election", "joining the election")));
            hold.finish(None, interrupt).await;
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let _candidate = GaugeGuard::new(metrics.holds.with_label_values(&["campaign"]));
    let path = znode::join(&dir, &node);
    if let Err(interrupt) = run(&mut hold, &dir, &node, created.czxid, &metrics).await {
        hold.finish(Some(&path), interrupt).await;
    }
}

async fn run(hold: &mut Hold, dir: &str, node: &str, term: i64, metrics: &Metrics) -> Result<(), Interrupt> {
    let mut announced: Option<Value> = None;
    loop {
        let (order, place) = line::place(hold, dir, node).await?;
        if place == 0 {
            break;
        }
        let leader_path = znode::join(dir, &order[0]);
        let read = hold
            .call(|c| {
                let leader_path = leader_path.clone();
                async move {
                    match c.get_and_watch_data(&leader_path).await {
                        Ok(found) => Ok(Some(found)),
                        Err(zookeeper_client::Error::NoNode) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        let Some((data, stat, leader_watch)) = read else { continue };
        let leader = leader_json(&order[0], &data, stat.czxid);
        if announced.as_ref() != Some(&leader) {
            hold.emit(json!({"type": "follower", "leader": leader.clone()})).await?;
            announced = Some(leader);
        }
        let event = if place == 1 {
            hold.guard_watch(leader_watch.changed()).await?
        } else {
            let predecessor = znode::join(dir, &order[place - 1]);
            let (exists, predecessor_watch) = hold.watch_stat(&predecessor).await?;
            if exists.is_none() {
                continue;
            }
            hold.guard_watch(async {
                tokio::select! {
                    event = leader_watch.changed() => event,
                    event = predecessor_watch.changed() => event,
                }
            })
            .await?
        };
        let Some(event) = event else { continue };
        if event.event_type == EventType::Session {
            return Err(Interrupt::Lost(SessionChange::Lost));
        }
    }
    metrics.leaderships.inc();
    hold.emit(json!({"type": "leader", "term": term, "node": node})).await?;
    let path = znode::join(dir, node);
    hold.until_gone(&path).await.map(|never| match never {})
}
