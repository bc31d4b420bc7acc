//! The client port's listeners, plain and TLS: each accepts connections up to the configured
//! cap (counted over both) and serves each in a task, while the port follows the server's
//! contact and closed sessions. A TLS connection's handshake runs in its task, bounded in
//! time; the client certificate it verified gives the connection its `x509` identities.

use std::net::SocketAddr;
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
    let plain = plain.map(|listener| tokio::spawn(accept(port.clone(), listener, None)));
    let secure = secure.map(|(listener, tls)| tokio::spawn(accept(port.clone(), listener, Some(tls))));
    for task in [plain, secure].into_iter().flatten() {
        let _ = task.await;
    }
}

async fn accept(port: Arc<ClientPort>, listener: TcpListener, tls: Option<Arc<Reloading>>) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = port.server.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                if port.connections.count() >= port.server.config.max_connections {
                    tracing::warn!(%peer, "connection limit reached, refusing client");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => {
                        tokio::spawn(connection::serve(port.clone(), split_tcp(stream), peer, Vec::new()));
                    }
                    Some(tls) => {
                        tokio::spawn(serve_tls(port.clone(), tls.clone(), stream, peer));
                    }
                }
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
