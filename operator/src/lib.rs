//! paddock-operator: runs Paddock clusters on Kubernetes. A `CoordinationCluster` becomes a
//! StatefulSet and its Services; Raft membership follows the spec one safe step at a time through
//! the servers' admin API; a mutating webhook injects the sidecar into application pods.
//!
//! The reconcile pipeline keeps I/O at its edges: read → validate (pure) → build (pure, `resources`) →
//! apply (server-side apply) → one membership step (admin API) → status.

pub mod admin;
pub mod admission;
pub mod crd;
pub mod endpoints;
pub mod injection;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod reconcile;
pub mod resources;
pub mod status;
pub mod validate;

/// The old name of [`resources`], kept while `e2e/` still imports `paddock_operator::build`;
/// remove it once the e2e harness uses `resources`.
pub use resources as build;

/// The old home of [`injection`] (the webhook's pure part), kept while `e2e/` still imports
/// `paddock_operator::webhook`; remove it once the e2e harness uses `injection`.
pub use injection as webhook;
