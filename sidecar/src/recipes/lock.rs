//! Distributed lock: the app's connection stands in the line of `/_paddock/locks/{name}`; the
//! front of the line holds the lock. Each waiter watches only its predecessor (no herd). The
//! fencing token is the lock znode's creation zxid, so tokens of successive holders strictly
//! increase. Closing the connection releases: the task deletes its znode.

use serde_json::json;
use tokio::sync::oneshot;
use zookeeper_client::EventType;

use crate::error::{Error, Result};
use crate::holds::{Hold, Interrupt};
use crate::metrics::{GaugeGuard, Metrics};
use crate::recipes::line;
use crate::znode;

/// The directory of lock `name`.
pub fn lock_dir(name: &str) -> String {
    format!("{}/locks/{name}", znode::RECIPE_ROOT)
}

/// Runs one lock request to its end. `ready` answers the HTTP request: `Ok` once the app is in
/// line (or, with `try_only`, holds the lock), else the error to answer with.
pub async fn run(
    mut hold: Hold,
    name: String,
    data: Vec<u8>,
    try_only: bool,
    metrics: Metrics,
    ready: oneshot::Sender<Result<()>>,
) {
    let dir = lock_dir(&name);
    let mut ready = Some(ready);
    let (node, created) = match line::enter(&mut hold, &dir, "lock", &data).await {
        Ok(entered) => entered,
        Err(interrupt) => {
            answer_failure(&mut ready, &interrupt);
            hold.finish(None, interrupt).await;
            return;
        }
    };
    let path = znode::join(&dir, &node);
    let outcome = hold_lock(&mut hold, &dir, &node, created.czxid, try_only, &metrics, &mut ready).await;
    if let Err(interrupt) = outcome {
        answer_failure(&mut ready, &interrupt);
        hold.finish(Some(&path), interrupt).await;
    }
}

fn answer_failure(ready: &mut Option<oneshot::Sender<Result<()>>>, interrupt: &Interrupt) {
    if let Some(ready) = ready.take() {
        let _ = ready.send(Err(interrupt.refusal("lock", "taking the lock")));
    }
}

async fn hold_lock(
    hold: &mut Hold,
    dir: &str,
    node: &str,
    token: i64,
    try_only: bool,
    metrics: &Metrics,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
) -> Result<(), Interrupt> {
    let path = znode::join(dir, node);
    let waiting = GaugeGuard::new(metrics.holds.with_label_values(&["lock_waiting"]));
    let mut announced = false;
    loop {
        let (order, place) = line::place(hold, dir, node).await?;
        if try_only && place > 0 {
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(Error::Held(format!("lock is held ({place} ahead)"))));
            }
            // Nobody listens for a released event; the app already got 409.
            return Err(Interrupt::AppGone);
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        if !announced {
            hold.emit(json!({"type": "waiting", "node": node, "ahead": place})).await?;
            announced = true;
        }
        if place == 0 {
            break;
        }
        let predecessor = znode::join(dir, &order[place - 1]);
        let (stat, watcher) = hold.watch_stat(&predecessor).await?;
        if stat.is_none() {
            continue;
        }
        let Some(event) = hold.guard_watch(watcher.changed()).await? else { continue };
        if event.event_type == EventType::Session {
            return Err(Interrupt::Lost(crate::stream::SessionChange::Lost));
        }
    }
    drop(waiting);
    let _held = GaugeGuard::new(metrics.holds.with_label_values(&["lock_held"]));
    metrics.lock_acquisitions.inc();
    hold.emit(json!({"type": "acquired", "token": token, "node": node})).await?;
    hold.until_gone(&path).await.map(|never| match never {})
}
