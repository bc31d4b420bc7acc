//! The client port's listener: accepts connections up to the configured cap and serves each in
//! a task, while the port follows the server's contact and closed sessions.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::connection;
use super::port::ClientPort;

/// Accepts clients on `listener` until the server shuts down.
pub async fn run(port: Arc<ClientPort>, listener: TcpListener) {
    tokio::spawn(port.clone().follow_server());
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
                tokio::spawn(connection::serve(port.clone(), stream, peer));
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
