//! The client port: accepts connections up to the configured cap and serves each in a task.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::server::Server;

use super::connection;

/// Accepts clients on `listener` until the server shuts down.
pub async fn run(server: Arc<Server>, listener: TcpListener) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = server.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                if server.connections.count() >= server.config.max_connections {
                    tracing::warn!(%peer, "connection limit reached, refusing client");
                    drop(stream);
                    continue;
                }
                tokio::spawn(connection::serve(server.clone(), stream, peer));
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
