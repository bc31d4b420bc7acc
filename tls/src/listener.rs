//! TLS connections for `axum::serve`: handshakes run concurrently (a slow client does not hold
//! up others) and are bounded in time, each with the configuration current when it starts (so
//! a reload applies to the next connection), and each connection carries who is on the other
//! end, for handlers that check the client's certificate ([`Peer`], as axum's `ConnectInfo`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::Reloading;

/// How long a client may take over its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The other end of an accepted connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// The certificate it showed, verified against the port's CA (none when it showed none).
    pub certificate: Option<CertificateDer<'static>>,
}

/// See the module docs.
pub struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Listens on `listener`, terminating TLS as `tls` says.
    pub fn new(listener: TcpListener, tls: Arc<Reloading>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, connections) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(port = tls.port(), %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(acceptor) = tls.current().acceptor.clone() else {
                    tracing::error!(port = tls.port(), "TLS listener without a server configuration");
                    return;
                };
                let (sender, port) = (tx.clone(), tls.port());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let certificate = crate::leaf(stream.get_ref().1.peer_certificates()).cloned();
                            let _ = sender.send((stream, Peer { addr, certificate })).await;
                        }
                        Ok(Err(error)) => tracing::debug!(port, %error, %addr, "TLS handshake failed"),
                        Err(_) => tracing::debug!(port, %addr, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self { connections, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop ended: wait forever, as a listener that never gets a connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.local, certificate: None })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
