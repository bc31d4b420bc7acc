//! The client port's listeners, plain and TLS: each accepts connections up to the configured
//! cap (counted over both, from the accept on: a client silent before its first bytes or in
//! the middle of its TLS handshake holds a socket too) and serves each in a task, while the
//! port follows the server's contact and closed sessions. A TLS connection's handshake runs in its task, bounded in
//! time; the client certificate it verified gives the connection its `x509` identities.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paddock_tls::{leaf, split, split_tcp, Reloading};
use tokio::net::{TcpListener, TcpStream};

use super::connection;
use super::port::ClientPort;
use crate::tls::x509_ids;

/// Serves the client port: `plain` and `secure` (with its TLS), whichever are given, until
/// the server shuts down.
pub async fn run(port: Arc<ClientPort>, plain: Option<TcpListener>, secure: Option<(TcpListener, Arc<Reloading>)>) {
    tokio::spawn(port.clone().follow_server());
    let live = Arc::new(AtomicUsize::new(0));
    let plain = plain.map(|listener| tokio::spawn(accept(port.clone(), listener, None, live.clone())));
    let secure = secure.map(|(listener, tls)| tokio::spawn(accept(port.clone(), listener, Some(tls), live.clone())));
    for task in [plain, secure].into_iter().flatten() {
        let _ = task.await;
    }
}

/// One accepted connection, counted until its task ends.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::Relaxed);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept(port: Arc<ClientPort>, listener: TcpListener, tls: Option<Arc<Reloading>>, live: Arc<AtomicUsize>) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = port.server.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                if live.load(Ordering::Relaxed) >= port.server.config.max_connections {
                    tracing::warn!(%peer, "connection limit reached, refusing client");
                    drop(stream);
                    continue;
                }
                let counted = Live::new(&live);
                let _ = stream.set_nodelay(true);
                let (port, tls) = (port.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => connection::serve(port, split_tcp(stream), peer, Vec::new()).await,
                        Some(tls) => serve_tls(port, tls, stream, peer).await,
                    }
                    drop(counted);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn serve_tls(port: Arc<ClientPort>, tls: Arc<Reloading>, stream: TcpStream, peer: SocketAddr) {
    let Some(acceptor) = tls.current().acceptor.clone() else {
        return;
    };
    // As long as a plain client may take over its ConnectRequest.
    let limit = port.server.config.max_session_timeout();
    let stream = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            crate::metrics::TLS_HANDSHAKE_FAILURES.inc();
            tracing::debug!(%peer, "client TLS handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let cert = leaf(stream.get_ref().1.peer_certificates());
    let identities = x509_ids(cert, port.server.config.x509_super_user.as_deref());
    connection::serve(port, split(stream), peer, identities).await
}
