//! The operator's own Prometheus metrics: reconciles, errors by kind, membership steps and their
//! durations, leadership of the operator replicas, webhook admissions. Served on `/metrics` by
//! `endpoints`.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Metrics of one operator process.
#[derive(Clone)]
pub struct Metrics {
    /// Reconcile passes.
    pub reconciles: IntCounter,
    /// Failed reconcile passes by error kind.
    pub reconcile_errors: IntCounterVec,
    /// Duration of a reconcile pass.
    pub reconcile_duration: Histogram,
    /// Membership steps carried out, by step and result (ok, error).
    pub steps: IntCounterVec,
    /// Duration of membership steps, by step.
    pub step_duration: HistogramVec,
    /// 1 while this replica holds the operator lease.
    pub leader: IntGauge,
    /// Webhook admissions by result (injected, skipped, denied, error).
    pub webhook_admissions: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            reconciles: IntCounter::new("paddock_operator_reconciles_total", "Reconcile passes")?,
            reconcile_errors: IntCounterVec::new(
                Opts::new("paddock_operator_reconcile_errors_total", "Failed reconcile passes by error kind"),
                &["kind"],
            )?,
            reconcile_duration: Histogram::with_opts(
                HistogramOpts::new("paddock_operator_reconcile_duration_seconds", "Duration of a reconcile pass")
                    .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )?,
            steps: IntCounterVec::new(
                Opts::new("paddock_operator_membership_steps_total", "Membership steps carried out"),
                &["step", "result"],
            )?,
            step_duration: HistogramVec::new(
                HistogramOpts::new("paddock_operator_membership_step_duration_seconds", "Duration of membership steps")
                    .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
                &["step"],
            )?,
            leader: IntGauge::new("paddock_operator_leader", "1 while this replica holds the operator lease")?,
            webhook_admissions: IntCounterVec::new(
                Opts::new("paddock_operator_webhook_admissions_total", "Sidecar injection admissions by result"),
                &["result"],
            )?,
        };
        registry.register(Box::new(metrics.reconciles.clone()))?;
        registry.register(Box::new(metrics.reconcile_errors.clone()))?;
        registry.register(Box::new(metrics.reconcile_duration.clone()))?;
        registry.register(Box::new(metrics.steps.clone()))?;
        registry.register(Box::new(metrics.step_duration.clone()))?;
        registry.register(Box::new(metrics.leader.clone()))?;
        registry.register(Box::new(metrics.webhook_admissions.clone()))?;
        Ok(metrics)
    }
}

/// Prometheus text exposition of a registry.
pub fn render(registry: &Registry) -> String {
    prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap_or_default()
}
