//! Prometheus metrics of the server, in one registry served at `/metrics` on the admin port.
//! Gauges that mirror state (znodes, sessions, Raft indexes) are refreshed when scraped.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The registry every server metric is in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    // Registration fails only for a duplicate name, a bug caught by the tests below.
    if let Err(e) = REGISTRY.register(Box::new(metric.clone())) {
        tracing::error!("metric registration failed: {e}");
    }
    metric
}

fn counter(name: &str, help: &str) -> IntCounter {
    register(IntCounter::new(name, help).unwrap_or_else(|e| panic!("bad metric {name}: {e}")))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).unwrap_or_else(|e| panic!("bad metric {name}: {e}")))
}

fn seconds(name: &str, help: &str) -> Histogram {
    register(Histogram::with_opts(HistogramOpts::new(name, help)).unwrap_or_else(|e| panic!("bad metric {name}: {e}")))
}

macro_rules! metric {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $init:expr) => {
        $(#[$doc])*
        pub static $name: LazyLock<$ty> = LazyLock::new(|| $init);
    };
}

metric!(/// Requests by opcode.
    REQUESTS: IntCounterVec = register(
        IntCounterVec::new(Opts::new("paddock_requests_total", "ZooKeeper requests by opcode"), &["op"])
            .unwrap_or_else(|e| panic!("{e}"))));
metric!(/// Requests answered with an error code, by opcode and code.
    REQUEST_ERRORS: IntCounterVec = register(
        IntCounterVec::new(
            Opts::new("paddock_request_errors_total", "ZooKeeper requests answered with an error, by opcode and code"),
            &["op", "code"],
        )
        .unwrap_or_else(|e| panic!("{e}"))));
metric!(/// Request latency by opcode, from decode to response queued.
    REQUEST_SECONDS: HistogramVec = register(
        HistogramVec::new(
            HistogramOpts::new("paddock_request_duration_seconds", "ZooKeeper request latency by opcode")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["op"],
        )
        .unwrap_or_else(|e| panic!("{e}"))));
metric!(/// Open client connections.
    CONNECTIONS: IntGauge = gauge("paddock_connections", "open client connections"));
metric!(/// Connections accepted since start.
    CONNECTIONS_ACCEPTED: IntCounter = counter("paddock_connections_accepted_total", "client connections accepted"));
metric!(/// Connections closed for a protocol error.
    PROTOCOL_ERRORS: IntCounter = counter("paddock_protocol_errors_total", "connections closed for malformed or oversized input"));
metric!(/// Bytes received from clients.
    BYTES_IN: IntCounter = counter("paddock_client_bytes_received_total", "bytes received from clients"));
metric!(/// Bytes sent to clients.
    BYTES_OUT: IntCounter = counter("paddock_client_bytes_sent_total", "bytes sent to clients"));
metric!(/// Watch notifications sent.
    NOTIFICATIONS: IntCounter = counter("paddock_watch_notifications_total", "watch notifications sent"));
metric!(/// Znodes in the tree.
    ZNODES: IntGauge = gauge("paddock_znodes", "znodes in the data tree"));
metric!(/// Ephemeral znodes in the tree.
    EPHEMERALS: IntGauge = gauge("paddock_ephemerals", "ephemeral znodes in the data tree"));
metric!(/// Approximate bytes of znode data and paths.
    DATA_BYTES: IntGauge = gauge("paddock_data_bytes", "approximate bytes of znode data and paths"));
metric!(/// Registered watches.
    WATCHES: IntGauge = gauge("paddock_watches", "registered watches on this server"));
metric!(/// Live sessions in the cluster.
    SESSIONS: IntGauge = gauge("paddock_sessions", "live sessions"));
metric!(/// Sessions expired by this server as leader.
    SESSIONS_EXPIRED: IntCounter = counter("paddock_sessions_expired_total", "sessions expired by this server as leader"));
metric!(/// Current Raft term.
    RAFT_TERM: IntGauge = gauge("paddock_raft_term", "current Raft term"));
metric!(/// Leader changes observed.
    RAFT_LEADER_CHANGES: IntCounter = counter("paddock_raft_leader_changes_total", "leader changes observed by this server"));
metric!(/// Whether this server is the leader.
    RAFT_IS_LEADER: IntGauge = gauge("paddock_raft_is_leader", "1 when this server is the Raft leader"));
metric!(/// Last log index.
    RAFT_LAST_LOG_INDEX: IntGauge = gauge("paddock_raft_last_log_index", "index of the last Raft log entry"));
metric!(/// Committed index.
    RAFT_COMMIT_INDEX: IntGauge = gauge("paddock_raft_commit_index", "committed Raft log index"));
metric!(/// Applied index.
    RAFT_APPLIED_INDEX: IntGauge = gauge("paddock_raft_applied_index", "Raft log index applied to the data tree"));
metric!(/// Applied lag.
    RAFT_APPLY_LAG: IntGauge = gauge("paddock_raft_apply_lag", "committed minus applied Raft log index"));
metric!(/// Appends the log writer made durable.
    RAFT_LOG_APPENDS: IntCounter = counter("paddock_raft_log_appends_total", "Raft log appends made durable (each one or more entries)"));
metric!(/// Synced writes of the log writer.
    RAFT_LOG_SYNCS: IntCounter = counter("paddock_raft_log_syncs_total", "synced writes of the Raft log writer: each makes every append queued meanwhile durable (group commit)"));
metric!(/// Purged index.
    RAFT_PURGED_INDEX: IntGauge = gauge("paddock_raft_purged_index", "last Raft log index purged behind a snapshot"));
metric!(/// Index of the newest snapshot.
    SNAPSHOT_INDEX: IntGauge = gauge("paddock_snapshot_last_index", "log index of the newest snapshot"));
metric!(/// Size of the newest snapshot.
    SNAPSHOT_BYTES: IntGauge = gauge("paddock_snapshot_bytes", "compressed size of the newest snapshot built"));
metric!(/// Snapshot build time.
    SNAPSHOT_BUILD_SECONDS: Histogram = seconds("paddock_snapshot_build_seconds", "time to serialize, compress and store a snapshot"));
metric!(/// Snapshot restore time.
    SNAPSHOT_RESTORE_SECONDS: Histogram = seconds("paddock_snapshot_restore_seconds", "time to restore the tree from a snapshot"));
metric!(/// TLS certificate loads by port and outcome.
    TLS_RELOADS: IntCounterVec = register(
        IntCounterVec::new(
            Opts::new("paddock_tls_reloads_total", "TLS certificate files loaded (at start and when they change), by port and outcome"),
            &["port", "outcome"],
        )
        .unwrap_or_else(|e| panic!("{e}"))));
metric!(/// Failed TLS handshakes on the client port.
    TLS_HANDSHAKE_FAILURES: IntCounter = counter("paddock_client_tls_handshake_failures_total", "client connections whose TLS handshake failed (no or a wrong certificate, plain text on the TLS port)"));
metric!(/// Failed SASL authentications on the client port.
    SASL_FAILURES: IntCounter = counter("paddock_sasl_failures_total", "client SASL exchanges that failed (unknown user, wrong password, bad token)"));
metric!(/// Kubernetes token reviews by outcome.
    K8S_REVIEWS: IntCounterVec = register(
        IntCounterVec::new(
            Opts::new("paddock_k8s_token_reviews_total", "addauth k8s: tokens the API server's TokenReview accepted (ok), refused, could not ask about (unchecked), or did not ask about for its expiry had passed (expired)"),
            &["outcome"],
        )
        .unwrap_or_else(|e| panic!("{e}"))));
metric!(/// Peer links refused for their certificate, by reason.
    PEER_LINKS_REFUSED: IntCounterVec = register(
        IntCounterVec::new(
            Opts::new("paddock_peer_links_refused_total", "peer links refused: failed TLS handshake, no member name, or a greeting claiming another member"),
            &["reason"],
        )
        .unwrap_or_else(|e| panic!("{e}"))));
metric!(/// When each TLS port's certificate expires.
    TLS_CERT_EXPIRY: IntGaugeVec = register(
        IntGaugeVec::new(
            Opts::new("paddock_tls_certificate_expiry_seconds", "expiry of the certificate in use, in seconds since the Unix epoch, by port"),
            &["port"],
        )
        .unwrap_or_else(|e| panic!("{e}"))));

/// Makes sure every metric exists (and is registered) before the first scrape.
pub fn init() {
    let _ = (&*REQUESTS, &*REQUEST_ERRORS, &*REQUEST_SECONDS, &*CONNECTIONS, &*CONNECTIONS_ACCEPTED);
    let _ = (&*PROTOCOL_ERRORS, &*BYTES_IN, &*BYTES_OUT, &*NOTIFICATIONS, &*ZNODES, &*EPHEMERALS);
    let _ = (&*DATA_BYTES, &*WATCHES, &*SESSIONS, &*SESSIONS_EXPIRED, &*RAFT_TERM, &*RAFT_LEADER_CHANGES);
    let _ = (&*RAFT_IS_LEADER, &*RAFT_LAST_LOG_INDEX, &*RAFT_COMMIT_INDEX, &*RAFT_APPLIED_INDEX);
    let _ = (&*RAFT_APPLY_LAG, &*RAFT_PURGED_INDEX, &*RAFT_LOG_APPENDS, &*RAFT_LOG_SYNCS, &*SNAPSHOT_INDEX);
    let _ = (&*SNAPSHOT_BYTES, &*SNAPSHOT_BUILD_SECONDS, &*SNAPSHOT_RESTORE_SECONDS, &*TLS_RELOADS, &*TLS_CERT_EXPIRY);
    let _ = (&*PEER_LINKS_REFUSED, &*TLS_HANDSHAKE_FAILURES, &*SASL_FAILURES, &*K8S_REVIEWS);
}

/// The registry in Prometheus text format.
pub fn render() -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&REGISTRY.gather(), &mut out) {
        tracing::error!("failed to encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_registers_and_renders() {
        super::init();
        super::REQUESTS.with_label_values(&["create"]).inc();
        let text = super::render();
        for name in ["paddock_requests_total", "paddock_znodes", "paddock_raft_term", "paddock_snapshot_bytes"] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
