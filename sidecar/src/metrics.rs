//! Prometheus metrics of the sidecar, registered once in their own registry and rendered as text
//! on `/metrics`.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric the sidecar exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `paddock_sidecar_http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `paddock_sidecar_session_state`: 0 connecting, 1 connected, 2 suspended, 3 lost, 4 closed.
    pub session_state: IntGauge,
    /// `paddock_sidecar_sessions_lost_total`: sessions that expired under the sidecar.
    pub sessions_lost: IntCounter,
    /// `paddock_sidecar_holds{kind}`: locks held, locks awaited, campaigns, memberships.
    pub holds: IntGaugeVec,
    /// `paddock_sidecar_lock_acquisitions_total`.
    pub lock_acquisitions: IntCounter,
    /// `paddock_sidecar_leaderships_total`: times a campaign of this pod became leader.
    pub leaderships: IntCounter,
    /// `paddock_sidecar_app_healthy`: 1 while the app's health probe passes (or there is none).
    pub app_healthy: IntGauge,
    /// `paddock_sidecar_queue_enqueued_total`: items enqueued through this sidecar.
    pub enqueued: IntCounter,
    /// `paddock_sidecar_queue_claims_total`: items claimed through this sidecar.
    pub claims: IntCounter,
    /// `paddock_sidecar_queue_acks_total`: items acknowledged (and deleted) through this sidecar.
    pub acks: IntCounter,
    /// `paddock_sidecar_tls_reloads_total{outcome}`: TLS files that changed, loaded or not.
    pub tls_reloads: IntCounterVec,
    /// `paddock_sidecar_token_reloads_total{outcome}`: ServiceAccount tokens that changed, read or not.
    pub token_reloads: IntCounterVec,
    /// `paddock_sidecar_token_auths_total{outcome}`: tokens sent on a live connection (ok, expired,
    /// disconnected, unchecked).
    pub token_auths: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("paddock_sidecar_http_requests_total", "HTTP requests answered, by route and status"),
            &["method", "route", "status"],
        )?;
        let session_state = IntGauge::new(
            "paddock_sidecar_session_state",
            "ZooKeeper session state: 0 connecting, 1 connected, 2 suspended, 3 lost, 4 closed",
        )?;
        let sessions_lost = IntCounter::new("paddock_sidecar_sessions_lost_total", "ZooKeeper sessions that expired")?;
        let holds = IntGaugeVec::new(
            Opts::new(
                "paddock_sidecar_holds",
                "Live holds by kind (lock_held, lock_waiting, campaign, member, claim, claim_waiting)",
            ),
            &["kind"],
        )?;
        let lock_acquisitions = IntCounter::new("paddock_sidecar_lock_acquisitions_total", "Locks acquired")?;
        let leaderships = IntCounter::new("paddock_sidecar_leaderships_total", "Campaigns that became leader")?;
        let app_healthy = IntGauge::new("paddock_sidecar_app_healthy", "1 while the app health probe passes")?;
        let enqueued = IntCounter::new("paddock_sidecar_queue_enqueued_total", "Queue items enqueued")?;
        let claims = IntCounter::new("paddock_sidecar_queue_claims_total", "Queue items claimed")?;
        let acks = IntCounter::new("paddock_sidecar_queue_acks_total", "Queue items acknowledged")?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(session_state.clone()))?;
        registry.register(Box::new(sessions_lost.clone()))?;
        registry.register(Box::new(holds.clone()))?;
        registry.register(Box::new(lock_acquisitions.clone()))?;
        registry.register(Box::new(leaderships.clone()))?;
        registry.register(Box::new(app_healthy.clone()))?;
        registry.register(Box::new(enqueued.clone()))?;
        registry.register(Box::new(claims.clone()))?;
        let tls_reloads = IntCounterVec::new(
            Opts::new("paddock_sidecar_tls_reloads_total", "TLS files that changed, by outcome (loaded, failed)"),
            &["outcome"],
        )?;
        registry.register(Box::new(acks.clone()))?;
        registry.register(Box::new(tls_reloads.clone()))?;
        let token_reloads = IntCounterVec::new(
            Opts::new(
                "paddock_sidecar_token_reloads_total",
                "ServiceAccount token files that changed, by outcome (loaded, failed)",
            ),
            &["outcome"],
        )?;
        let token_auths = IntCounterVec::new(
            Opts::new(
                "paddock_sidecar_token_auths_total",
                "ServiceAccount tokens sent on a live connection, by outcome (ok, expired, disconnected, unchecked)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(token_reloads.clone()))?;
        registry.register(Box::new(token_auths.clone()))?;
        app_healthy.set(1);
        Ok(Metrics {
            registry,
            http_requests,
            session_state,
            sessions_lost,
            holds,
            lock_acquisitions,
            leaderships,
            app_healthy,
            enqueued,
            claims,
            acks,
            tls_reloads,
            token_reloads,
            token_auths,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "failed to encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Increments a gauge for as long as the guard lives.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    /// Increments `gauge` now; decrements it on drop.
    pub fn new(gauge: IntGauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
