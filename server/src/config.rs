//! Command-line flags and their environment variables (`PADDOCK_*`). The operator and the e2e
//! harness rely on these names (see DESIGN.md, "Flags").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use paddock_tls::{ClientAuth, TlsFiles};

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

    /// Address of the peer port (Raft and server-to-server traffic).
    #[arg(long, env = "PADDOCK_PEER_ADDR", default_value = "0.0.0.0:2888")]
    pub peer_addr: SocketAddr,

    /// The peer address as other servers dial it (recorded in the Raft membership). Defaults to
    /// this server's entry in --initial-members, else 127.0.0.1 and the peer port.
    #[arg(long, env = "PADDOCK_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,

    /// The voters of a new cluster, `1=h1:2888,2=h2:2888,3=h3:2888`; used only on first boot
    /// (every member must be given the same list).
    #[arg(long, env = "PADDOCK_INITIAL_MEMBERS", value_parser = parse_members)]
    pub initial_members: Option<Members>,

    /// Start empty and wait to be added to an existing cluster as a learner.
    #[arg(long, env = "PADDOCK_JOIN", conflicts_with = "initial_members")]
    pub join: bool,

    /// A client write not committed within this many milliseconds fails with ConnectionLoss
    /// (the client retries elsewhere); also how long a server may go without hearing from the
    /// leader (or, as leader, from a quorum) before it stops serving clients.
    #[arg(long, env = "PADDOCK_WRITE_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
    pub write_timeout_ms: u64,

    /// Serve `POST /v1/debug/isolate` on the admin port (tests cut peer traffic with it).
    #[arg(long, env = "PADDOCK_ENABLE_FAULT_INJECTION", hide = true)]
    pub enable_fault_injection: bool,

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

    /// Log entries kept behind a snapshot, so a follower a little behind catches up from the
    /// log rather than by a snapshot install (etcd's snapshot-catchup-entries).
    #[arg(long, env = "PADDOCK_SNAPSHOT_KEEP", default_value_t = 1000)]
    pub snapshot_keep: u64,

    /// Largest accepted request frame in bytes (ZooKeeper's jute.maxbuffer), at most 16 MiB.
    #[arg(long, env = "PADDOCK_MAX_BUFFER", default_value_t = 1024 * 1024, value_parser = parse_max_buffer)]
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

    /// Address of the TLS client port (ZooKeeper's secureClientPort); needs --tls-cert and
    /// --tls-key.
    #[arg(long, env = "PADDOCK_SECURE_CLIENT_ADDR", requires = "tls_cert")]
    pub secure_client_addr: Option<SocketAddr>,

    /// Serve clients on the TLS port alone: no plain-text client port.
    #[arg(long, env = "PADDOCK_NO_PLAIN_CLIENT", requires = "secure_client_addr")]
    pub no_plain_client: bool,

    /// Certificate chain (PEM) of the TLS client port.
    #[arg(long, env = "PADDOCK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the TLS client port.
    #[arg(long, env = "PADDOCK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) client certificates must chain to.
    #[arg(long, env = "PADDOCK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Whether TLS clients must show a certificate of --tls-ca (ZooKeeper's ssl.clientAuth):
    /// `need` (the default with a CA), `want`, or `none` (the default without one).
    #[arg(long, env = "PADDOCK_TLS_CLIENT_AUTH", value_enum)]
    pub tls_client_auth: Option<ClientAuthFlag>,

    /// The client certificate subject (RFC 2253, as the x509 scheme names it) that is the super
    /// user (ZooKeeper's zookeeper.X509AuthenticationProvider.superUser).
    #[arg(long, env = "PADDOCK_X509_SUPER_USER")]
    pub x509_super_user: Option<String>,

    /// Certificate chain (PEM) of this member on the peer port, naming it as
    /// urn:paddock:member:<id>; with --peer-tls-key and --peer-tls-ca, peers speak mutual TLS.
    /// `{id}` in the path (and in --peer-tls-key's) is replaced by this member's id, so that
    /// members started alike (a StatefulSet's pods) each pick their own certificate.
    #[arg(long, env = "PADDOCK_PEER_TLS_CERT", requires_all = ["peer_tls_key", "peer_tls_ca"])]
    pub peer_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the peer certificate.
    #[arg(long, env = "PADDOCK_PEER_TLS_KEY", requires = "peer_tls_cert")]
    pub peer_tls_key: Option<PathBuf>,

    /// CA certificates (PEM) every member's peer certificate chains to.
    #[arg(long, env = "PADDOCK_PEER_TLS_CA", requires = "peer_tls_cert")]
    pub peer_tls_ca: Option<PathBuf>,

    /// Certificate chain (PEM) of the admin port; with --admin-tls-key and --admin-tls-ca the
    /// admin port speaks TLS and its cluster routes need a client certificate of that CA.
    #[arg(long, env = "PADDOCK_ADMIN_TLS_CERT", requires_all = ["admin_tls_key", "admin_tls_ca"])]
    pub admin_tls_cert: Option<PathBuf>,

    /// Private key (PEM) of the admin port.
    #[arg(long, env = "PADDOCK_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,

    /// CA certificates (PEM) admin clients' certificates must chain to.
    #[arg(long, env = "PADDOCK_ADMIN_TLS_CA", requires = "admin_tls_cert")]
    pub admin_tls_ca: Option<PathBuf>,

    /// SASL DIGEST-MD5 users, a file of `name:password` lines (read again when it changes, every
    /// --tls-reload-ms); without it clients' SASL requests fail.
    #[arg(long, env = "PADDOCK_SASL_USERS")]
    pub sasl_users: Option<PathBuf>,

    /// The SASL user that is the super user (ZooKeeper's zookeeper.superUser).
    #[arg(long, env = "PADDOCK_SASL_SUPER_USER")]
    pub sasl_super_user: Option<String>,

    /// Accept Kubernetes ServiceAccount tokens (`addauth k8s <token>`), checked with the API
    /// server's TokenReview: the ids `k8s:ns:<namespace>` and `k8s:sa:<namespace>:<name>`.
    #[arg(long, env = "PADDOCK_K8S_TOKEN_REVIEW")]
    pub k8s_token_review: bool,

    /// The API server, `https://host:port` (default: the in-cluster
    /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`).
    #[arg(long, env = "PADDOCK_K8S_API_URL", requires = "k8s_token_review")]
    pub k8s_api_url: Option<String>,

    /// The API server's CA (PEM).
    #[arg(long, env = "PADDOCK_K8S_API_CA", default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")]
    pub k8s_api_ca: PathBuf,

    /// The server's own ServiceAccount token, which authorizes its reviews (read for each).
    #[arg(
        long,
        env = "PADDOCK_K8S_API_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub k8s_api_token_file: PathBuf,

    /// The audience clients' tokens must be issued for.
    #[arg(long, env = "PADDOCK_K8S_AUDIENCE", default_value = "paddock")]
    pub k8s_audience: String,

    /// How often certificate files (and the SASL users) are read again, in milliseconds (renewed
    /// certificates are used for new connections; open ones keep theirs).
    #[arg(long, env = "PADDOCK_TLS_RELOAD_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub tls_reload_ms: u64,
}

/// What `--peer-tls-cert` and `--peer-tls-key` paths may hold in place of the member's id.
pub const ID_PLACEHOLDER: &str = "{id}";

/// `--tls-client-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuthFlag {
    /// Clients show no certificate.
    None,
    /// Clients may show one; if they do it must be of the CA.
    Want,
    /// Clients must show one of the CA.
    Need,
}

/// The largest `--max-buffer`: a client request becomes one log entry, and one log entry must
/// fit in a peer frame with room to spare (see [`crate::peer::wire::MAX_FRAME`]).
pub const MAX_BUFFER_LIMIT: usize = 16 << 20;

fn parse_max_buffer(text: &str) -> Result<usize, String> {
    let bytes: usize = text.trim().parse().map_err(|e| format!("{text:?} is not a byte count: {e}"))?;
    if bytes > MAX_BUFFER_LIMIT {
        return Err(format!("{bytes} is over the limit of {MAX_BUFFER_LIMIT} bytes (16 MiB)"));
    }
    Ok(bytes)
}

/// Raft ids and peer addresses of a cluster's voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members(pub std::collections::BTreeMap<u64, String>);

/// Parses `1=h1:2888,2=h2:2888`.
pub fn parse_members(text: &str) -> Result<Members, String> {
    let mut members = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| format!("{part:?} is not id=host:port"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("{id:?} is not a server id"))?;
        if id == 0 {
            return Err("server ids start at 1".into());
        }
        let addr = addr.trim();
        if addr.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
            return Err(format!("{addr:?} is not host:port"));
        }
        if members.insert(id, addr.to_owned()).is_some() {
            return Err(format!("server id {id} listed twice"));
        }
    }
    if members.is_empty() {
        return Err("no members listed".into());
    }
    Ok(Members(members))
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
    /// This server is not among --initial-members.
    #[error("server id {0} is not in --initial-members")]
    NotAMember(u64),
    /// The super digest is not `super:<hash>`.
    #[error("super digest must look like user:base64hash")]
    SuperDigest,
    /// Client certificates are asked for but there is no CA to check them against.
    #[error("--tls-client-auth {0} needs --tls-ca")]
    ClientAuthWithoutCa(&'static str),
    /// TLS files given but no TLS port to use them on.
    #[error("--tls-cert is given but not --secure-client-addr")]
    TlsWithoutPort,
    /// Token reviews asked for, but no API server named and none in the environment.
    #[error("--k8s-token-review needs --k8s-api-url outside a pod (no KUBERNETES_SERVICE_HOST)")]
    NoApiServer,
}

impl Config {
    /// Checks the flags and fills in derived values (id from hostname).
    pub fn resolve(mut self) -> Result<Self, ConfigError> {
        if self.id_from_hostname {
            // `HOSTNAME` first: container runtimes set it to the pod's name, and it lets a pod be
            // played by a plain process (the e2e suite); the kernel's name otherwise.
            let host = match std::env::var("HOSTNAME") {
                Ok(host) if !host.trim().is_empty() => host.trim().to_owned(),
                _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map_err(ConfigError::Hostname)?
                    .trim()
                    .to_owned(),
            };
            self.id = id_from_hostname(&host)?;
        }
        let id = self.id.to_string();
        for path in [&mut self.peer_tls_cert, &mut self.peer_tls_key].into_iter().flatten() {
            if let Some(text) = path.to_str().filter(|p| p.contains(ID_PLACEHOLDER)) {
                *path = PathBuf::from(text.replace(ID_PLACEHOLDER, &id));
            }
        }
        let (min, max) = (self.min_session_timeout().as_millis() as u64, self.max_session_timeout().as_millis() as u64);
        if min > max {
            return Err(ConfigError::SessionBounds { min, max });
        }
        if let Some(members) = &self.initial_members {
            let own = members.0.get(&self.id).ok_or(ConfigError::NotAMember(self.id))?;
            if self.advertise_peer.is_none() {
                self.advertise_peer = Some(own.clone());
            }
        }
        if let Some(digest) = &self.super_digest {
            if !digest.contains(':') {
                return Err(ConfigError::SuperDigest);
            }
        }
        if self.tls_ca.is_none() {
            match self.tls_client_auth {
                Some(ClientAuthFlag::Want) => return Err(ConfigError::ClientAuthWithoutCa("want")),
                Some(ClientAuthFlag::Need) => return Err(ConfigError::ClientAuthWithoutCa("need")),
                _ => {}
            }
        }
        if self.tls_cert.is_some() && self.secure_client_addr.is_none() {
            return Err(ConfigError::TlsWithoutPort);
        }
        Ok(self)
    }

    /// The TLS client port's files and client authentication, when it is on.
    pub fn client_tls(&self) -> Option<(TlsFiles, ClientAuth)> {
        let files = TlsFiles { cert: self.tls_cert.clone()?, key: self.tls_key.clone()?, ca: self.tls_ca.clone() };
        let auth = match (self.tls_client_auth, &self.tls_ca) {
            (Some(ClientAuthFlag::None), _) | (None, None) => ClientAuth::None,
            (Some(ClientAuthFlag::Want), _) => ClientAuth::Want,
            (Some(ClientAuthFlag::Need), _) | (None, Some(_)) => ClientAuth::Need,
        };
        Some((files, auth))
    }

    /// The peer port's files, when peers speak TLS.
    pub fn peer_tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.peer_tls_cert.clone()?,
            key: self.peer_tls_key.clone()?,
            ca: Some(self.peer_tls_ca.clone()?),
        })
    }

    /// Where and how to review Kubernetes tokens, when `--k8s-token-review` is on.
    pub fn token_review(&self) -> Option<Result<crate::k8s::ReviewConfig, ConfigError>> {
        if !self.k8s_token_review {
            return None;
        }
        let api_url = match &self.k8s_api_url {
            Some(url) => url.clone(),
            None => match (std::env::var("KUBERNETES_SERVICE_HOST"), std::env::var("KUBERNETES_SERVICE_PORT")) {
                (Ok(host), Ok(port)) if host.contains(':') => format!("https://[{host}]:{port}"),
                (Ok(host), Ok(port)) => format!("https://{host}:{port}"),
                _ => return Some(Err(ConfigError::NoApiServer)),
            },
        };
        Some(Ok(crate::k8s::ReviewConfig {
            api_url,
            ca: self.k8s_api_ca.clone(),
            token_file: self.k8s_api_token_file.clone(),
            audience: self.k8s_audience.clone(),
        }))
    }

    /// The admin port's files, when it speaks TLS.
    pub fn admin_tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.admin_tls_cert.clone()?,
            key: self.admin_tls_key.clone()?,
            ca: Some(self.admin_tls_ca.clone()?),
        })
    }

    /// The peer address others dial.
    pub fn advertised_peer(&self) -> String {
        self.advertise_peer.clone().unwrap_or_else(|| format!("127.0.0.1:{}", self.peer_addr.port()))
    }

    /// Whether this server runs alone: no cluster flags given.
    pub fn standalone(&self) -> bool {
        self.initial_members.is_none() && !self.join
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
    fn members_parse_and_reject_garbage() {
        let m = parse_members("1=a:2888, 2=b:2888,3=10.0.0.3:1").expect("valid");
        assert_eq!(m.0.len(), 3);
        assert_eq!(m.0[&2], "b:2888");
        for bad in ["", "1", "x=a:1", "0=a:1", "1=a", "1=a:1,1=b:2", "1=a:99999"] {
            assert!(parse_members(bad).is_err(), "{bad:?} accepted");
        }
        let c = Config::try_parse_from(["p", "--id", "2", "--initial-members", "1=a:1,2=b:2"]).expect("flags");
        assert_eq!(c.resolve().expect("resolves").advertised_peer(), "b:2");
        let c = Config::try_parse_from(["p", "--id", "4", "--initial-members", "1=a:1,2=b:2"]).expect("flags");
        assert!(c.resolve().is_err());
        assert!(Config::try_parse_from(["p", "--join", "--initial-members", "1=a:1"]).is_err());
    }

    #[test]
    fn tls_flags_hang_together() {
        let parse = |args: &[&str]| Config::try_parse_from([&["p"], args].concat()).map_err(|e| e.to_string());
        let tls = ["--secure-client-addr", "127.0.0.1:2281", "--tls-cert", "c", "--tls-key", "k"];
        let c = parse(&tls).expect("flags").resolve().expect("resolves");
        assert_eq!(c.client_tls().map(|(_, auth)| auth), Some(ClientAuth::None));
        let c = parse(&[&tls[..], &["--tls-ca", "ca"]].concat()).expect("flags").resolve().expect("resolves");
        assert_eq!(c.client_tls().map(|(_, auth)| auth), Some(ClientAuth::Need), "a CA means certificates are needed");
        let want = parse(&[&tls[..], &["--tls-client-auth", "want"]].concat()).expect("flags");
        assert!(want.resolve().is_err(), "want without a CA");
        assert!(parse(&["--secure-client-addr", "127.0.0.1:2281"]).is_err(), "a TLS port without a certificate");
        assert!(parse(&["--tls-cert", "c", "--tls-key", "k"]).expect("flags").resolve().is_err(), "files, no port");
        assert!(parse(&["--no-plain-client"]).is_err(), "TLS-only without a TLS port");
        assert!(parse(&["--peer-tls-cert", "c", "--peer-tls-key", "k"]).is_err(), "peer TLS without a CA");
        assert!(parse(&["--admin-tls-cert", "c", "--admin-tls-ca", "ca"]).is_err(), "admin TLS without a key");
        let peer = parse(&["--peer-tls-cert", "c", "--peer-tls-key", "k", "--peer-tls-ca", "ca"]).expect("flags");
        assert!(peer.peer_tls().is_some() && peer.admin_tls().is_none() && peer.client_tls().is_none());
    }

    #[test]
    fn peer_certificate_paths_name_the_members_id() {
        let c = Config::try_parse_from([
            "p",
            "--id",
            "3",
            "--peer-tls-cert",
            "/tls/member-{id}.crt",
            "--peer-tls-key",
            "/tls/member-{id}.key",
            "--peer-tls-ca",
            "/tls/{id}/ca.crt",
        ])
        .expect("flags");
        let files = c.resolve().expect("resolves").peer_tls().expect("peer TLS");
        assert_eq!(files.cert, PathBuf::from("/tls/member-3.crt"));
        assert_eq!(files.key, PathBuf::from("/tls/member-3.key"));
        assert_eq!(files.ca, Some(PathBuf::from("/tls/{id}/ca.crt")), "the CA is every member's");
    }

    #[test]
    fn max_buffer_is_at_most_16_mib() {
        let c = Config::try_parse_from(["p", "--max-buffer", "16777216"]).expect("16 MiB");
        assert_eq!(c.max_buffer, MAX_BUFFER_LIMIT);
        assert!(Config::try_parse_from(["p", "--max-buffer", "16777217"]).is_err());
        assert!(Config::try_parse_from(["p", "--max-buffer", "lots"]).is_err());
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
