//! The pod's ServiceAccount token (`--k8s-token-file`, a projected token with the cluster's
//! audience), shown to the cluster as `addauth k8s <token>` so that the session has the ids
//! `k8s:ns:<namespace>` and `k8s:sa:<namespace>:<name>` (docs/security.md, "Kubernetes
//! identities"). Kubelet renews the file before the token expires; the sidecar reads it again on
//! a timer and sends each new token on the live connection, so the ids outlive any one token.
//!
//! The connection's ids can also go missing without a new token: the server answers a token it
//! could not check with the API server (an outage) with `OperationTimeout` and serves on without
//! ids. After every (re)connection the sidecar asks the server who it is (`whoami`) and sends the
//! current token again when the namespace's id is not there.
//!
//! Every znode the sidecar creates then carries the one ACL `k8s:ns:<namespace>` with all
//! permissions ([`crate::session::acls`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Client, SessionState};

use crate::metrics::Metrics;

/// The ACL scheme of Kubernetes identities.
pub const SCHEME: &str = "k8s";

/// The token file and its current content.
pub struct Token {
    path: PathBuf,
    current: watch::Sender<String>,
}

impl Token {
    /// Reads the file now; an unreadable or empty one is an error.
    pub fn load(path: PathBuf) -> Result<Arc<Token>, String> {
        let token = read(&path)?;
        Ok(Arc::new(Token { path, current: watch::channel(token).0 }))
    }

    /// The token to send now.
    pub fn current(&self) -> String {
        self.current.borrow().clone()
    }

    /// Follows the token's changes.
    pub fn subscribe(&self) -> watch::Receiver<String> {
        self.current.subscribe()
    }

    /// Reads the file again: whether the token changed.
    pub fn reload(&self) -> Result<bool, String> {
        let token = read(&self.path)?;
        Ok(self.current.send_if_modified(|was| {
            let changed = *was != token;
            *was = token;
            changed
        }))
    }

    /// Reloads every `every` until `stop`, counting outcomes in `metrics`.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration, metrics: Metrics, stop: CancellationToken) {
        let this = self.clone();
        let observe = move |outcome: &Result<bool, String>| {
            let outcome = if outcome.is_ok() { "loaded" } else { "failed" };
            metrics.token_reloads.with_label_values(&[outcome]).inc();
        };
        paddock_tls::reload_every("ServiceAccount token".to_owned(), every, stop, move || this.reload(), observe);
    }
}

fn read(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_owned())
}

/// Keeps the connection of `client` (a session of `namespace`) authenticated: sends the token
/// again whenever it changes, and after each reconnection when the namespace's id is missing.
/// `sent` is the token the session was made with. Never ends on its own.
pub async fn keep(client: Client, namespace: String, token: Arc<Token>, sent: String, metrics: Metrics) {
    let mut changes = token.subscribe();
    let mut states = client.state_watcher();
    let mut shown = sent;
    // The first token may have been unchecked too.
    let mut check_ids = true;
    loop {
        let current = changes.borrow_and_update().clone();
        if current != shown || check_ids {
            let missing = current != shown || !has_namespace_id(&client, &namespace).await;
            if !missing || authenticate(&client, &current, &metrics).await {
                shown = current.clone();
                check_ids = false;
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            state = states.changed() => {
                if state == SessionState::SyncConnected {
                    check_ids = true;
                }
                if state.is_terminated() {
                    return;
                }
            }
            // Retries a token that could not be sent (or checked) a moment ago.
            _ = tokio::time::sleep(Duration::from_secs(1)), if check_ids || current != shown => {}
        }
    }
}

/// Whether the connection has `k8s:ns:<namespace>` (a failed question counts as yes: the next
/// reconnection asks again).
async fn has_namespace_id(client: &Client, namespace: &str) -> bool {
    let id = format!("ns:{namespace}");
    match client.list_auth_users().await {
        Ok(users) => users.iter().any(|user| user.scheme() == SCHEME && user.user() == id),
        Err(_) => true,
    }
}

/// Sends `token`: whether the server took it.
async fn authenticate(client: &Client, token: &str, metrics: &Metrics) -> bool {
    let outcome = client.auth(SCHEME, token.as_bytes()).await;
    let label = match &outcome {
        Ok(()) => "ok",
        Err(zookeeper_client::Error::NoAuth) => "expired",
        Err(e) if crate::error::Error::is_connection_loss(e) => "disconnected",
        Err(_) => "unchecked",
    };
    metrics.token_auths.with_label_values(&[label]).inc();
    match outcome {
        Ok(()) => {
            tracing::info!("ServiceAccount token sent to the cluster");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "the cluster did not take the ServiceAccount token; retrying");
            false
        }
    }
}
