//! Command-line flags of `paddock-sidecar`; every flag also reads a `PADDOCK_` env var. The names
//! are a contract with the operator's injector and the e2e harness (see DESIGN.md, "Sidecar").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// `paddock-sidecar`: holds the pod's ZooKeeper session and serves the HTTP API on a Unix socket.
#[derive(Debug, Clone, Parser)]
#[command(name = "paddock-sidecar", version, about)]
pub struct Config {
    /// Unix socket the app talks to (created mode 0660; a stale file is replaced).
    #[arg(long, env = "PADDOCK_SOCKET", default_value = "/var/run/paddock/paddock.sock")]
    pub socket: PathBuf,

    /// ZooKeeper connect string of the cluster: `h1:2181,h2:2181`.
    #[arg(long, env = "PADDOCK_CLUSTER")]
    pub cluster: String,

    /// Namespace (chroot `/<namespace>`); default the pod's namespace (`POD_NAMESPACE`), else `default`.
    #[arg(long, env = "PADDOCK_NAMESPACE")]
    pub namespace: Option<String>,

    /// TCP address for `/healthz`, `/readyz` and `/metrics` (kubelet and Prometheus).
    #[arg(long, env = "PADDOCK_LISTEN_ADDR", default_value = "0.0.0.0:9464")]
    pub listen_addr: SocketAddr,

    /// Group the pod joins while it lives (repeatable; the env var takes a comma-separated list).
    #[arg(long = "join", env = "PADDOCK_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// The app's health URL (`http://127.0.0.1:8080/healthz`); when it fails
    /// `--app-health-failures` times in a row the sidecar resigns, releases and leaves.
    #[arg(long, env = "PADDOCK_APP_HEALTH_URL")]
    pub app_health_url: Option<String>,

    /// How often the app health URL is probed, in milliseconds.
    #[arg(long, env = "PADDOCK_APP_HEALTH_INTERVAL_MS", default_value_t = 5000)]
    pub app_health_interval_ms: u64,

    /// Consecutive failed probes after which the app counts as unhealthy.
    #[arg(long, env = "PADDOCK_APP_HEALTH_FAILURES", default_value_t = 3)]
    pub app_health_failures: u32,

    /// ZooKeeper session timeout to ask the cluster for, in milliseconds.
    #[arg(long, env = "PADDOCK_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,

    /// CA certificates (PEM) the servers' certificates must chain to; given, the sidecar speaks
    /// TLS to every server in --cluster (their certificates must name the host dialed).
    #[arg(long, env = "PADDOCK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// The CA certificates as PEM text, in place of a --tls-ca file (the operator's webhook
    /// injects its cluster's CA so).
    #[arg(long, env = "PADDOCK_TLS_CA_PEM", conflicts_with = "tls_ca")]
    pub tls_ca_pem: Option<String>,

    /// The sidecar's client certificate (PEM), shown to servers that ask for one (needs
    /// --tls-ca or --tls-ca-pem).
    #[arg(long, env = "PADDOCK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "PADDOCK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The pod's projected ServiceAccount token (audience `paddock`): sent to the cluster as
    /// `addauth k8s`, read again with the TLS files, and every znode the sidecar creates gets the
    /// ACL `k8s:ns:<namespace>` (servers with --k8s-token-review).
    #[arg(long, env = "PADDOCK_K8S_TOKEN_FILE")]
    pub k8s_token_file: Option<PathBuf>,

    /// How often the TLS files (and the token) are read again, in milliseconds (renewed ones are used from the
    /// next connection on; the open one is kept).
    #[arg(long, env = "PADDOCK_TLS_RELOAD_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub tls_reload_ms: u64,
}

impl Config {
    /// The namespace to chroot to: the flag, else `POD_NAMESPACE`, else `default`.
    pub fn namespace(&self, pod_namespace: Option<&str>) -> String {
        self.namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .or_else(|| pod_namespace.filter(|ns| !ns.is_empty()).map(str::to_owned))
            .unwrap_or_else(|| "default".to_owned())
    }

    /// The requested session timeout.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["paddock-sidecar", "--cluster", "127.0.0.1:2181"];
        all.extend_from_slice(args);
        match Config::try_parse_from(all) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn namespace_falls_back_to_the_pod_then_default() {
        assert_eq!(parse(&["--namespace", "team-a"]).namespace(Some("pod-ns")), "team-a");
        assert_eq!(parse(&[]).namespace(Some("pod-ns")), "pod-ns");
        assert_eq!(parse(&[]).namespace(None), "default");
    }

    #[test]
    fn join_is_repeatable() {
        assert_eq!(parse(&["--join", "a", "--join", "b"]).join, vec!["a", "b"]);
    }
}
