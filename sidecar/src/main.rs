//! `paddock-sidecar` binary: flags, logging, signals; the work is in [`paddock_sidecar::sidecar`].

use clap::Parser;
use paddock_sidecar::config::Config;
use paddock_sidecar::identity::PodIdentity;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    paddock_tls::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PADDOCK_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();
    let identity = PodIdentity::from_env(|name| std::env::var(name).ok());
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        }
    };
    paddock_sidecar::sidecar::run(config, identity, shutdown, |listening| {
        println!("paddock-sidecar listening socket={} http={}", listening.socket.display(), listening.http);
    })
    .await
}
