//! The sidecar's life: start the session, the membership keeper and both HTTP servers, then on
//! the shutdown signal drain in order: refuse new holds and release the held ones, leave the
//! groups, end the watch streams, stop serving, close the session explicitly (so every ephemeral
//! goes at once rather than after the session timeout), remove the socket.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Shared};
use crate::config::Config;
use crate::holds::Holds;
use crate::identity::PodIdentity;
use crate::lease::Leases;
use crate::metrics::Metrics;
use crate::probe::Probe;
use crate::recipes::group::Memberships;
use crate::recipes::queue::Claims;
use crate::session::Session;
use crate::tls::{Ca, ClusterTls};
use crate::token::Token;

/// How long each drain step may take before the next one goes ahead anyway.
const DRAIN_STEP: Duration = Duration::from_secs(5);

/// Where a started sidecar listens.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The Unix socket.
    pub socket: PathBuf,
    /// The TCP health/metrics address.
    pub http: SocketAddr,
}

fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create socket directory {}", dir.display()))?;
    }
    // A socket left by a previous run (a killed sidecar) would make bind fail.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to remove stale socket {}", path.display())),
    }
    let listener = UnixListener::bind(path).with_context(|| format!("failed to bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("failed to set mode 0660 on {}", path.display()))?;
    Ok(listener)
}

/// Runs the sidecar until `shutdown` resolves, then drains. `on_listening` is called once both
/// listeners are bound.
pub async fn run(
    config: Config,
    identity: PodIdentity,
    shutdown: impl Future<Output = ()>,
    on_listening: impl FnOnce(&Listening),
) -> anyhow::Result<()> {
    let metrics = Metrics::new().context("failed to register metrics")?;
    let namespace = config.namespace(identity.namespace.as_deref());
    crate::znode::validate_name("namespace", &namespace).map_err(|e| anyhow::anyhow!("bad --namespace: {e}"))?;
    if let Some(url) = &config.app_health_url {
        let parsed: Result<axum::http::Uri, _> = url.parse();
        if !matches!(&parsed, Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some()) {
            anyhow::bail!("--app-health-url must be an http:// URL, not {url:?}");
        }
    }
    if namespace == "zookeeper" {
        anyhow::bail!("--namespace zookeeper is reserved by ZooKeeper");
    }
    let ca = match (&config.tls_ca, &config.tls_ca_pem) {
        (Some(file), _) => Some(Ca::File(file.clone())),
        (None, Some(pem)) => Some(Ca::Pem(pem.clone())),
        (None, None) if config.tls_cert.is_some() => anyhow::bail!("--tls-cert needs --tls-ca or --tls-ca-pem"),
        (None, None) => None,
    };
    let tls = match ca {
        None => None,
        Some(ca) => {
            let identity = config.tls_cert.clone().zip(config.tls_key.clone());
            Some(ClusterTls::load(ca, identity).map_err(|e| anyhow::anyhow!("TLS: {e}"))?)
        }
    };
    let stop_tls = CancellationToken::new();
    let _stop_tls = stop_tls.clone().drop_guard();
    if let Some(tls) = &tls {
        tls.spawn_reloader(Duration::from_millis(config.tls_reload_ms), metrics.clone(), stop_tls.clone());
    }
    let token = match &config.k8s_token_file {
        None => None,
        Some(path) => {
            let token = Token::load(path.clone()).map_err(|e| anyhow::anyhow!("--k8s-token-file: {e}"))?;
            crate::session::protect_with_namespace_acl(&namespace).map_err(|e| anyhow::anyhow!(e))?;
            token.spawn_reloader(Duration::from_millis(config.tls_reload_ms), metrics.clone(), stop_tls.clone());
            Some(token)
        }
    };
    let (session, handle) =
        Session::new(config.cluster.clone(), tls, token, namespace.clone(), config.session_timeout(), metrics.clone());
    let members = Memberships::new(identity.clone(), handle.clone(), metrics.clone(), &config.join)
        .map_err(|e| anyhow::anyhow!("bad --join: {e}"))?;
    let holds = Holds::new();
    let leases = Leases::new(handle.clone());
    let state = Arc::new(Shared {
        session: handle,
        identity,
        holds: holds.clone(),
        members: members.clone(),
        leases,
        claims: Claims::new(),
        metrics,
    });

    let unix = bind_socket(&config.socket)?;
    let tcp = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("failed to bind {}", config.listen_addr))?;
    let listening = Listening { socket: config.socket.clone(), http: tcp.local_addr()? };

    let close_session = CancellationToken::new();
    let session_task = tokio::spawn(session.run(close_session.clone()));
    let keeper = tokio::spawn(members.clone().keep());
    let stop_probe = CancellationToken::new();
    if let Some(url) = &config.app_health_url {
        let probe = Probe {
            url: url.clone(),
            interval: Duration::from_millis(config.app_health_interval_ms.max(10)),
            failures: config.app_health_failures,
        };
        tokio::spawn(probe.run(holds.clone(), members.clone(), state.metrics.clone(), stop_probe.clone()));
    }
    let stop_serving = CancellationToken::new();
    let app_server = tokio::spawn(
        axum::serve(unix, api::app_router(state.clone()))
            .with_graceful_shutdown(stop_serving.clone().cancelled_owned())
            .into_future(),
    );
    let health_server = tokio::spawn(
        axum::serve(tcp, api::health_router(state.clone()))
            .with_graceful_shutdown(stop_serving.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(socket = %listening.socket.display(), http = %listening.http, namespace, cluster = %config.cluster, "sidecar serving");
    on_listening(&listening);

    shutdown.await;
    stop_probe.cancel();
    tracing::info!("draining: releasing holds, leaving groups, closing the session");
    holds.drain_holds(DRAIN_STEP).await;
    if tokio::time::timeout(DRAIN_STEP, members.leave_all()).await.is_err() {
        tracing::warn!("leaving the groups took longer than {DRAIN_STEP:?}");
    }
    keeper.abort();
    holds.close_streams(DRAIN_STEP).await;
    stop_serving.cancel();
    for server in [app_server, health_server] {
        match tokio::time::timeout(DRAIN_STEP, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("server did not stop within {DRAIN_STEP:?}"),
        }
    }
    // The handlers' clones of the client are gone with the servers; the session can close.
    drop(state);
    close_session.cancel();
    if tokio::time::timeout(DRAIN_STEP, session_task).await.is_err() {
        tracing::warn!("session task did not end within {DRAIN_STEP:?}");
    }
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("sidecar stopped");
    Ok(())
}
