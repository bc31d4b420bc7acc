//! The pod's one ZooKeeper session: connects (with backoff) to the cluster, makes sure the
//! namespace's chroot znode exists, and publishes the session's state to everyone else through a
//! watch channel. When the session expires it starts a new one (a new *generation*); holds of the
//! old generation are gone and their owners must notice. Recipes and handlers never connect
//! themselves; they take the current client from [`SessionHandle`].
//!
//! The session also measures how long the pod's holds are certainly valid ([`crate::deadline`]):
//! it probes the cluster with a `sync` (answered through the leader) every tenth of the session
//! timeout and remembers when the last answered probe was sent. Silence for a third of the timeout (a blackholed link shows
//! no error) suspends the session as a lost connection does; silence up to the hold deadline
//! ends it: its holds are reported lost and a new session is made, even while the cluster is
//! still unreachable.
//!
//! Also here: the calls that outlive one connection of the session (waiting for it to be back,
//! deleting a znode of ours across connection losses, re-adding a persistent watch) and making
//! paths. What a recipe does with them is the recipe's business.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{
    Acl, Acls, AddWatchMode, AuthId, Client, CreateMode, CreateOptions, Permission, PersistentWatcher,
    SessionState as ZkState,
};

use crate::deadline::Heard;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::tls::ClusterTls;
use crate::token::Token;

/// The ACL of every znode the sidecar creates: world-open, or with Kubernetes identities
/// (`--k8s-token-file`) only the namespace's (`k8s:ns:<namespace>`, every permission). Set once
/// per process, before the session starts ([`protect_with_namespace_acl`]): a sidecar process
/// holds one session of one namespace.
static ACL: OnceLock<Vec<Acl>> = OnceLock::new();

/// Makes every znode created from now on carry `k8s:ns:<namespace>` alone; an error if the
/// process chose another ACL before.
pub fn protect_with_namespace_acl(namespace: &str) -> Result<(), String> {
    let acl = vec![Acl::new(Permission::ALL, AuthId::new(crate::token::SCHEME, &format!("ns:{namespace}")))];
    let set = ACL.get_or_init(|| acl.clone());
    if *set != acl {
        return Err(format!("this process already creates znodes with the ACL {set:?}"));
    }
    Ok(())
}

/// The ACL of the znodes the sidecar creates (see [`ACL`]).
pub fn acls() -> Acls<'static> {
    match ACL.get() {
        Some(acl) => Acls::new(acl),
        None => Acls::anyone_all(),
    }
}

/// Persistent: how the sidecar creates directories.
pub fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(acls())
}

/// Container: recipe directories, reaped by the server once emptied.
pub fn container() -> CreateOptions<'static> {
    CreateMode::Container.with_acls(acls())
}

/// Ephemeral: members and app-created ephemerals.
pub fn ephemeral() -> CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(acls())
}

/// Ephemeral sequential: lock and candidate nodes.
pub fn ephemeral_sequential() -> CreateOptions<'static> {
    CreateMode::EphemeralSequential.with_acls(acls())
}

/// Persistent sequential: `POST /v1/nodes/{parent}?sequential`.
pub fn persistent_sequential() -> CreateOptions<'static> {
    CreateMode::PersistentSequential.with_acls(acls())
}

/// The session's state as the app sees it (in `/readyz` and on every stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// No session yet (first connect in progress).
    Connecting,
    /// Session established and connected.
    Connected,
    /// The connection to the cluster is lost; the session (and every hold) may still be alive.
    Suspended,
    /// The session expired: every ephemeral of the pod is gone. A new session is being made.
    Lost,
    /// The sidecar closed the session on shutdown.
    Closed,
}

impl SessionState {
    /// The numeric value of the `paddock_sidecar_session_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            SessionState::Connecting => 0,
            SessionState::Connected => 1,
            SessionState::Suspended => 2,
            SessionState::Lost => 3,
            SessionState::Closed => 4,
        }
    }
}

/// A snapshot of the session, published on every change.
#[derive(Debug, Clone)]
pub struct SessionStatus {
    /// Where the session stands.
    pub state: SessionState,
    /// Counts sessions: it changes exactly when a new session replaces an expired one.
    pub generation: u64,
    /// The chrooted client while the session lives (connected or suspended).
    pub client: Option<Client>,
    /// While suspended: until when the session's holds are valid (see [`crate::deadline`]).
    pub valid_until: Option<Instant>,
}

/// Cheap, cloneable read side of the session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    status: watch::Receiver<SessionStatus>,
    heard: watch::Receiver<Option<Heard>>,
}

impl SessionHandle {
    /// The current status.
    pub fn status(&self) -> SessionStatus {
        self.status.borrow().clone()
    }

    /// Until when the current session's holds are valid, by the last answer heard from the
    /// cluster (`None` without a session).
    pub fn valid_until(&self) -> Option<Instant> {
        self.heard.borrow().map(Heard::valid_until)
    }

    /// A receiver to follow status changes.
    pub fn subscribe(&self) -> watch::Receiver<SessionStatus> {
        self.status.clone()
    }

    /// The client and its generation, if the session is connected; else 503.
    pub fn client(&self) -> Result<(Client, u64)> {
        let status = self.status.borrow();
        match (&status.client, status.state) {
            (Some(client), SessionState::Connected) => Ok((client.clone(), status.generation)),
            (_, state) => Err(Error::NoSession(format!("zookeeper session is {}", state_word(state)))),
        }
    }
}

fn state_word(state: SessionState) -> &'static str {
    match state {
        SessionState::Connecting => "connecting",
        SessionState::Connected => "connected",
        SessionState::Suspended => "suspended",
        SessionState::Lost => "lost",
        SessionState::Closed => "closed",
    }
}

/// Waits until `generation`'s session is connected again. Fails with the state that ended it when
/// the session is lost (a new generation, or closed) first.
pub async fn reconnected(status: &mut watch::Receiver<SessionStatus>, generation: u64) -> Result<Client, SessionState> {
    loop {
        {
            let now = status.borrow_and_update();
            if now.generation != generation {
                return Err(SessionState::Lost);
            }
            match (&now.client, now.state) {
                (Some(client), SessionState::Connected) => return Ok(client.clone()),
                (_, SessionState::Closed) => return Err(SessionState::Closed),
                (_, SessionState::Lost) => return Err(SessionState::Lost),
                _ => {}
            }
        }
        if status.changed().await.is_err() {
            return Err(SessionState::Closed);
        }
    }
}

/// The pause before retrying after the `attempt`-th connection loss in a row: while a new
/// leader is elected, servers turn connections away for a moment and a session can reconnect and
/// drop again many times a second.
pub fn retry_pause(attempt: u64) -> Duration {
    Duration::from_millis((attempt.saturating_add(1) * 25).min(500))
}

/// Deletes a znode of ours, retrying across connection losses while the session lives.
pub async fn delete_own(client: &Client, status: &mut watch::Receiver<SessionStatus>, generation: u64, path: &str) {
    let mut client = client.clone();
    // Until it is gone or the session is: a znode left behind would hold its place in the line
    // for as long as the pod lives.
    for attempt in 0u64.. {
        match client.delete(path, None).await {
            Ok(()) | Err(zookeeper_client::Error::NoNode) => return,
            Err(e) if Error::is_connection_loss(&e) => {
                tokio::time::sleep(retry_pause(attempt)).await;
                match reconnected(status, generation).await {
                    Ok(again) => client = again,
                    Err(_) => return,
                }
            }
            Err(e) => {
                tracing::warn!(path, error = %e, "could not delete a hold's znode");
                return;
            }
        }
    }
}

/// The write side: owns the connection loop.
pub struct Session {
    cluster: String,
    tls: Option<Arc<ClusterTls>>,
    token: Option<Arc<Token>>,
    namespace: String,
    timeout: Duration,
    status: watch::Sender<SessionStatus>,
    heard: watch::Sender<Option<Heard>>,
    metrics: Metrics,
}

/// Why a session's run ended.
enum Ended {
    /// It expired (or zookeeper-client gave up on it).
    Lost,
    /// The sidecar is closing it.
    Closing,
}

impl Session {
    /// A session for `cluster` (over TLS when `tls` is given, authenticated with `token` when
    /// given), chrooted to `/<namespace>`; nothing connects until [`Session::run`].
    pub fn new(
        cluster: String,
        tls: Option<Arc<ClusterTls>>,
        token: Option<Arc<Token>>,
        namespace: String,
        timeout: Duration,
        metrics: Metrics,
    ) -> (Session, SessionHandle) {
        let (status, rx) = watch::channel(SessionStatus {
            state: SessionState::Connecting,
            generation: 0,
            client: None,
            valid_until: None,
        });
        let (heard, heard_rx) = watch::channel(None);
        let session = Session { cluster, tls, token, namespace, timeout, status, heard, metrics };
        (session, SessionHandle { status: rx, heard: heard_rx })
    }

    fn publish(&self, state: SessionState, generation: u64, client: Option<Client>) {
        self.publish_until(state, generation, client, None);
    }

    fn publish_until(
        &self,
        state: SessionState,
        generation: u64,
        client: Option<Client>,
        valid_until: Option<Instant>,
    ) {
        self.metrics.session_state.set(state.gauge());
        self.status.send_replace(SessionStatus { state, generation, client, valid_until });
    }

    /// Keeps a session until `close` is cancelled, then closes it explicitly so the pod's
    /// ephemerals go at once. Other clones of the client must be dropped by then (the drain
    /// ends every hold first), or the close waits for them up to a bound.
    pub async fn run(self, close: CancellationToken) {
        let mut generation = 0;
        loop {
            let (client, heard, sent) = tokio::select! {
                connected = self.connect() => connected,
                _ = close.cancelled() => {
                    self.publish(SessionState::Closed, generation, None);
                    return;
                }
            };
            generation += 1;
            tracing::info!(session = %client.session_id(), generation, timeout = ?heard.timeout, "zookeeper session established");
            let ended = self.follow(&client, generation, heard, sent, &close).await;
            self.heard.send_replace(None);
            match ended {
                Ended::Lost => {
                    self.metrics.sessions_lost.inc();
                    self.publish(SessionState::Lost, generation, None);
                }
                Ended::Closing => {
                    self.publish(SessionState::Closed, generation, None);
                    let mut watcher = client.state_watcher();
                    drop(client);
                    // Dropping the last client sends closeSession; wait (bounded) until the
                    // server has answered it.
                    let closed = async { while !watcher.changed().await.is_terminated() {} };
                    if tokio::time::timeout(Duration::from_secs(3), closed).await.is_err() {
                        tracing::warn!("session did not close within 3s; it will expire instead");
                    } else {
                        tracing::info!("zookeeper session closed");
                    }
                    return;
                }
            }
        }
    }

    /// Follows one session (`generation`, last heard as `heard`) until it is lost or closing:
    /// publishes connected and suspended, probes it, and gives it up at its hold deadline.
    /// `sent` is the ServiceAccount token the session was made with, if any.
    async fn follow(
        &self,
        client: &Client,
        generation: u64,
        mut heard: Heard,
        sent: Option<String>,
        close: &CancellationToken,
    ) -> Ended {
        let mut watcher = client.state_watcher();
        self.heard.send_replace(Some(heard));
        let (probed_tx, mut probed) = watch::channel(heard);
        let probe = AbortOnDrop(tokio::spawn(probe(client.clone(), probed_tx)));
        let keep_token = self.token.clone().zip(sent).map(|(token, sent)| {
            let keep = crate::token::keep(client.clone(), self.namespace.clone(), token, sent, self.metrics.clone());
            AbortOnDrop(tokio::spawn(keep))
        });
        // Whether zookeeper-client has a connection (it may not know yet that it is silent).
        let mut linked = true;
        let mut shown = None;
        let ended = loop {
            heard = heard.latest(*probed.borrow_and_update());
            self.heard.send_if_modified(|was| {
                let changed = *was != Some(heard);
                *was = Some(heard);
                changed
            });
            let now = Instant::now();
            let fresh = linked && now < heard.suspect_at();
            if !fresh && now >= heard.valid_until() {
                tracing::warn!(
                    "no answer from the cluster until the hold deadline; the session's holds are lost and a new \
                     session is made"
                );
                break Ended::Lost;
            }
            let state = if fresh { SessionState::Connected } else { SessionState::Suspended };
            if shown != Some(state) {
                match state {
                    SessionState::Connected if shown.is_some() => tracing::info!("reconnected to the cluster"),
                    SessionState::Suspended if linked => {
                        tracing::warn!(
                            "no answer from the cluster for a third of the session timeout; session suspended"
                        )
                    }
                    SessionState::Suspended => tracing::warn!("connection to the cluster lost; session suspended"),
                    _ => {}
                }
                let valid_until = (state == SessionState::Suspended).then(|| heard.valid_until());
                self.publish_until(state, generation, Some(client.clone()), valid_until);
                shown = Some(state);
            }
            let wake = if fresh { heard.suspect_at() } else { heard.valid_until() };
            tokio::select! {
                state = watcher.changed() => match state {
                    ZkState::Disconnected => linked = false,
                    ZkState::SyncConnected => linked = true,
                    // A read-only server answers without the leader hearing of it: no proof.
                    ZkState::ConnectedReadOnly => linked = false,
                    ZkState::Expired | ZkState::AuthFailed | ZkState::Closed => {
                        tracing::warn!(?state, "zookeeper session lost");
                        break Ended::Lost;
                    }
                },
                changed = probed.changed() => if changed.is_err() {
                    // The probe never ends on its own; without it nothing proves the session
                    // alive any more, and the deadline ends it.
                    linked = false;
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = close.cancelled() => break Ended::Closing,
            }
        };
        drop((probe, keep_token));
        ended
    }

    async fn connect(&self) -> (Client, Heard, Option<String>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_connect().await {
                Ok(connected) => return connected,
                Err(e) => {
                    tracing::warn!(cluster = %self.cluster, error = %e, "cannot establish a zookeeper session; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// A new session, when it was first heard from — the send time of the create of the
    /// namespace znode, whose answer proves the session alive (the handshake's own send time is
    /// zookeeper-client's, and earlier still) — and the token it was made with.
    async fn try_connect(&self) -> Result<(Client, Heard, Option<String>), zookeeper_client::Error> {
        let mut connector = Client::connector().with_session_timeout(self.timeout).with_fail_eagerly();
        let token = self.token.as_ref().map(|token| token.current());
        if let Some(token) = &token {
            connector = connector.with_auth(crate::token::SCHEME, token.as_bytes());
        }
        let root = match &self.tls {
            None => connector.connect(&self.cluster).await?,
            // Every server in the list is dialed with TLS.
            Some(tls) => connector.with_tls(tls.options()).secure_connect(&self.cluster).await?,
        };
        let chroot = format!("/{}", self.namespace);
        let sent = Instant::now();
        match root.create(&chroot, &[], &persistent()).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
        let heard = Heard { at: sent, timeout: root.session_timeout() };
        let client = root.chroot(chroot).map_err(|_| zookeeper_client::Error::BadArguments(&"bad namespace"))?;
        Ok((client, heard, token))
    }
}

/// Aborts the task when dropped: the probe must not outlive its session (its clone of the
/// client would keep the session from closing).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Probes the session: a `sync` of the namespace root every
/// [`crate::deadline::probe_interval`], one at a time; each answer reports its request's send
/// time into `heard`. Never ends on its own.
///
/// A sync, not a read: a read is answered by the server the sidecar is connected to, and a
/// follower cut off from its leader answers reads until its own contact limit runs out while the
/// leader hears nothing of the session (issue 12 hole o). A sync goes through the leader, which
/// touches the session and has a quorum confirm it still leads before it answers; so an answer
/// proves the leader heard of the session after the probe was sent.
async fn probe(client: Client, heard: watch::Sender<Heard>) {
    let timeout = client.session_timeout();
    let interval = crate::deadline::probe_interval(timeout);
    loop {
        let sent = Instant::now();
        // Bounded, so that a request lost with its connection does not stop the probing.
        if let Ok(Ok(())) = tokio::time::timeout(timeout, client.sync("/")).await {
            heard.send_modify(|last| *last = last.latest(Heard { at: sent, timeout }));
        }
        tokio::time::sleep_until((sent + interval).into()).await;
    }
}

/// Creates `path` and its missing ancestors: ancestors persistent, `path` itself with `leaf`.
/// An existing node is fine. Tries the leaf first, so the common case is one write.
pub async fn ensure_path(client: &Client, path: &str, leaf: &CreateOptions<'_>) -> Result<(), zookeeper_client::Error> {
    let mut pending = vec![path];
    // Bounds the retries when a container ancestor is reaped under us again and again.
    let mut attempts = 0;
    while let Some(&current) = pending.last() {
        attempts += 1;
        let ancestor = persistent();
        let options = if current == path { leaf } else { &ancestor };
        match client.create(current, &[], options).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {
                pending.pop();
            }
            Err(zookeeper_client::Error::NoNode) if attempts < 64 && current != "/" => {
                pending.push(crate::znode::parent(current));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Adds the persistent watch on `path` again after a reconnect and puts the new watcher in
/// `watcher`'s place. zookeeper-client 0.11.2 re-sends only one-shot watches when it reconnects
/// (its `resend_watches` never leaves `SetWatches` for `SetWatches2`), so a persistent watch is
/// silently gone once the session moves to another server. Adding it again is harmless where
/// the server kept it; the old watcher is dropped only after the new one is registered, so no
/// `removeWatches` goes out for the path.
pub async fn rewatch(
    client: &Client,
    path: &str,
    mode: AddWatchMode,
    watcher: &mut PersistentWatcher,
) -> Result<(), zookeeper_client::Error> {
    let again = client.watch(path, mode).await?;
    *watcher = again;
    Ok(())
}
