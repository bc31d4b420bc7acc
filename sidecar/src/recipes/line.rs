//! The line that locks, elections and queue claimers stand in: ephemeral-sequential znodes in a
//! recipe directory, the lowest sequence at the front. Entering it survives lost connections
//! without leaving an orphan behind to hold a place; reading it gives the line in order and a
//! hold's place in it. What the front of the line means (the lock, the leadership, the turn to
//! claim) is each recipe's business, and the hold that stands in it is [`crate::holds`]'.

use zookeeper_client::Stat;

use crate::error::Error;
use crate::holds::{own_prefix, tag_prefix, Hold, Interrupt};
use crate::session;
use crate::znode;

/// Joins the line in `dir` with a znode named `{kind}-{tag}-{sequence}` holding `data`.
/// The random tag finds our znode again when the create's answer was lost with the
/// connection (ZooKeeper may have created it), so no orphan is left holding a place.
pub async fn enter(hold: &mut Hold, dir: &str, kind: &str, data: &[u8]) -> Result<(String, Stat), Interrupt> {
    let prefix = own_prefix(kind);
    let sequential_path = znode::join(dir, &prefix);
    // While a new leader is elected the servers turn connections away for a moment, and
    // the session may reconnect and drop again many times: back off between attempts
    // (about 30 s in all) rather than giving up after a burst of instant failures.
    for attempt in 0u64..80 {
        if attempt > 0 {
            hold.guard(tokio::time::sleep(session::retry_pause(attempt))).await?;
        }
        let client = hold.client();
        match hold.guard(client.create(&sequential_path, data, &session::ephemeral_sequential())).await? {
            Ok((stat, sequence)) => {
                let name = format!("{prefix}{sequence}");
                hold.bind(&znode::join(dir, &name)).await?;
                return Ok((name, stat));
            }
            Err(zookeeper_client::Error::NoNode) => {
                let client = hold.client();
                match hold.guard(session::ensure_path(&client, dir, &session::container())).await? {
                    Ok(()) => {}
                    Err(e) if Error::is_connection_loss(&e) => hold.reconnected().await?,
                    Err(e) => return Err(Interrupt::from_zk(e)),
                }
            }
            Err(e) if Error::is_connection_loss(&e) => {
                hold.reconnected().await?;
                let owned_dir = dir.to_owned();
                let children = hold
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
                    let stat = hold.call(|c| {
                        let path = path.clone();
                        async move { c.check_stat(&path).await }
                    });
                    match stat.await? {
                        Some(stat) => {
                            hold.bind(&path).await?;
                            return Ok((name, stat));
                        }
                        None => return Err(Interrupt::NodeGone),
                    }
                }
            }
            Err(e) => return Err(Interrupt::from_zk(e)),
        }
    }
    Err(Interrupt::Failed(zookeeper_client::Error::UnexpectedError(format!("could not join the line in {dir}"))))
}

/// The line in `dir`, front first, and our place in it (`Interrupt::NodeGone`: our znode is gone).
pub async fn place(hold: &mut Hold, dir: &str, name: &str) -> Result<(Vec<String>, usize), Interrupt> {
    let dir = dir.to_owned();
    let children = hold
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
        let orphans: Vec<String> = children.iter().filter(|c| c.starts_with(prefix) && *c != name).cloned().collect();
        for orphan in &orphans {
            tracing::info!(dir, orphan, "deleting an orphan of a create retried after a connection loss");
            hold.delete(&znode::join(&dir, orphan)).await;
        }
        children.retain(|c| !orphans.contains(c));
    }
    let order = znode::queue_order(children);
    match order.iter().position(|n| n == name) {
        Some(place) => Ok((order, place)),
        None => Err(Interrupt::NodeGone),
    }
}
