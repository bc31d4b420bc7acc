//! Command-line flags and their environment variables (`PADDOCK_*`). The operator and the e2e
//! harness rely on these names (see DESIGN.md, "Flags").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// `paddock-server` flags.
#[derive(Parser, Debug, Clone)]
#[command(name = "paddock-server", version, about = "ZooKeeper-compatible coordination server")]
pub struct Config {
    /// This server's id (a positive integer, unique in the cluster).
    #[arg(long, env = "PADDOCK_ID", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,

    /// Derive the id from a StatefulSet hostname (`name-3` is id 4); overrides --id.
    #[arg(long, env = "PADDOCK_ID_FROM_HOSTNAME")]
    pub id_from_hostname: bool,

    /// Directory of the RocksDB database (Raft log, vote, snapshots).
    #[arg(long, env = "PADDOCK_DATA_DIR", default_value = "paddock-data")]
    pub data_dir: PathBuf,

    /// Address of the ZooKeeper client port.
    #[arg(long, env = "PADDOCK_CLIENT_ADDR", default_value = "0.0.0.0:2181")]
    pub client_addr: SocketAddr,

    /// Address of the admin HTTP port (/metrics, /healthz, /readyz, /v1/cluster).
    #[arg(long, env = "PADDOCK_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,

    /// Address of the peer port, as other servers dial it (recorded in the Raft membership).
    #[arg(long, env = "PADDOCK_ADVERTISE_PEER", default_value = "127.0.0.1:2888")]
    pub advertise_peer: String,

    /// ZooKeeper's tickTime: the unit of session timeouts, in milliseconds.
    #[arg(long, env = "PADDOCK_TICK_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tick_ms: u64,

    /// Smallest session timeout granted (default 2 ticks).
    #[arg(long, env = "PADDOCK_MIN_SESSION_TIMEOUT_MS")]
    pub min_session_timeout_ms: Option<u64>,

    /// Largest session timeout granted (default 20 ticks).
    #[arg(long, env = "PADDOCK_MAX_SESSION_TIMEOUT_MS")]
    pub max_session_timeout_ms: Option<u64>,

    /// Take a snapshot (and compact the log behind it) every this many log entries.
    #[arg(long, env = "PADDOCK_SNAPSHOT_EVERY", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,

    /// Largest accepted request frame in bytes (ZooKeeper's jute.maxbuffer).
    #[arg(long, env = "PADDOCK_MAX_BUFFER", default_value_t = 1024 * 1024)]
    pub max_buffer: usize,

    /// Largest number of concurrent client connections.
    #[arg(long, env = "PADDOCK_MAX_CONNECTIONS", default_value_t = 60_000)]
    pub max_connections: usize,

    /// Super user digest, `super:<base64 sha1>` as zookeeper.DigestAuthenticationProvider.superDigest.
    #[arg(long, env = "PADDOCK_SUPER_DIGEST")]
    pub super_digest: Option<String>,

    /// How often the leader checks for containers and TTL nodes to delete, in milliseconds.
    #[arg(long, env = "PADDOCK_REAP_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub reap_interval_ms: u64,
}

/// Why the flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The hostname has no `-N` ordinal suffix.
    #[error("hostname {0:?} does not end in -<ordinal>")]
    NoOrdinal(String),
    /// The hostname could not be read.
    #[error("failed to read the hostname: {0}")]
    Hostname(std::io::Error),
    /// Session timeout bounds are inverted.
    #[error("min session timeout {min} ms is above max {max} ms")]
    SessionBounds {
        /// The minimum.
        min: u64,
        /// The maximum.
        max: u64,
    },
    /// The super digest is not `super:<hash>`.
    #[error("super digest must look like user:base64hash")]
    SuperDigest,
}

impl Config {
    /// Checks the flags and fills in derived values (id from hostname).
    pub fn resolve(mut self) -> Result<Self, ConfigError> {
        if self.id_from_hostname {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .or_else(|_| std::env::var("HOSTNAME"))
                .map_err(|_| ConfigError::Hostname(std::io::Error::other("no hostname")))?;
            self.id = id_from_hostname(&host)?;
        }
        let (min, max) = (self.min_session_timeout().as_millis() as u64, self.max_session_timeout().as_millis() as u64);
        if min > max {
            return Err(ConfigError::SessionBounds { min, max });
        }
        if let Some(digest) = &self.super_digest {
            if !digest.contains(':') {
                return Err(ConfigError::SuperDigest);
            }
        }
        Ok(self)
    }

    /// Smallest session timeout granted.
    pub fn min_session_timeout(&self) -> Duration {
        Duration::from_millis(self.min_session_timeout_ms.unwrap_or(self.tick_ms.saturating_mul(2)))
    }

    /// Largest session timeout granted.
    pub fn max_session_timeout(&self) -> Duration {
        Duration::from_millis(self.max_session_timeout_ms.unwrap_or(self.tick_ms.saturating_mul(20)))
    }
}

/// `name-3` → 4: StatefulSet ordinals start at 0, Raft ids at 1.
pub fn id_from_hostname(host: &str) -> Result<u64, ConfigError> {
    let short = host.split('.').next().unwrap_or(host);
    short
        .rsplit_once('-')
        .and_then(|(_, ordinal)| ordinal.parse::<u64>().ok())
        .and_then(|o| o.checked_add(1))
        .ok_or_else(|| ConfigError::NoOrdinal(host.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinal_to_id() {
        assert_eq!(id_from_hostname("paddock-0").ok(), Some(1));
        assert_eq!(id_from_hostname("my-cluster-3.my-cluster-peers.ns.svc").ok(), Some(4));
        assert!(id_from_hostname("paddock").is_err());
        assert!(id_from_hostname("paddock-x").is_err());
    }

    #[test]
    fn session_bounds_default_from_tick() {
        let c = Config::try_parse_from(["paddock-server", "--tick-ms", "100"]).expect("flags parse");
        assert_eq!(c.min_session_timeout(), Duration::from_millis(200));
        assert_eq!(c.max_session_timeout(), Duration::from_millis(2000));
        let bad = Config::try_parse_from(["p", "--min-session-timeout-ms", "5000", "--max-session-timeout-ms", "10"])
            .expect("flags parse");
        assert!(bad.resolve().is_err());
        assert!(Config::try_parse_from(["p", "--id", "0"]).is_err());
    }
}
