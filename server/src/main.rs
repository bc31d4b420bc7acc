//! `paddock-server`: parse flags, start the server, serve the client and admin ports until
//! SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;
use paddock_server::config::Config;
use paddock_server::server::Server;
use paddock_server::{admin, shutdown, zk};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paddock_tls::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PADDOCK_LOG").unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::parse().resolve()?;
    // Bind first: a port clash is reported before any storage is touched.
    let client = match config.no_plain_client {
        true => None,
        false => Some(bind(config.client_addr, "client port").await?),
    };
    let secure = match config.secure_client_addr {
        None => None,
        Some(addr) => Some(bind(addr, "TLS client port").await?),
    };
    let admin_listener = bind(config.admin_addr, "admin port").await?;
    let peer_listener = bind(config.peer_addr, "peer port").await?;
    let secure_addr = secure.as_ref().map(|l| l.local_addr()).transpose()?;
    let peer_addr = peer_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    // With port 0 the flag is not the port clients use; `conf` reports the bound ones. With TLS
    // alone, the client port is the TLS one.
    let client_addr = match &client {
        Some(listener) => listener.local_addr()?,
        None => secure_addr.unwrap_or(config.client_addr),
    };
    config.client_addr = client_addr;
    config.secure_client_addr = secure_addr;
    if config.advertise_peer.is_none() {
        // Nothing to advertise was given: the bound peer port, on loopback if bound to any.
        let ip = if peer_addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { peer_addr.ip().to_string() };
        config.advertise_peer = Some(format!("{ip}:{}", peer_addr.port()));
    }
    let server = Server::start(config).await?;
    tracing::info!(%client_addr, %admin_addr, %peer_addr, id = server.config.id, "paddock-server serving");
    // One machine-readable line, so tests and scripts that ask for port 0 learn the real ports.
    let secure_field = secure_addr.map(|addr| format!(" secure={addr}")).unwrap_or_default();
    println!("paddock-server listening client={client_addr} admin={admin_addr} peer={peer_addr}{secure_field}");

    let secure = secure.zip(server.tls.client.clone());
    let port = zk::port::ClientPort::new(server.clone()).context("failed to load the SASL users")?;
    let listener = tokio::spawn(zk::listener::run(port, client, secure));
    let peer_service = tokio::spawn(paddock_server::peer::service::run(
        std::sync::Arc::new(server.peer_service()),
        peer_listener,
        server.shutdown.clone(),
    ));
    let admin_server = tokio::spawn(admin::serve(server.clone(), admin_listener));
    shutdown::signal().await;
    tracing::info!("shutting down");
    server.stop().await;
    let _ = listener.await;
    let _ = peer_service.await;
    let _ = admin_server.await;
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("failed to bind the {what} {addr}"))
}
