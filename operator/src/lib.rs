//! paddock-operator: runs Paddock clusters on Kubernetes. A `CoordinationCluster` becomes a
//! StatefulSet and its Services; Raft membership follows the spec one safe step at a time through
//! the servers' admin API; a mutating webhook injects the sidecar into application pods.
//!
//! The reconcile pipeline keeps I/O at its edges: read → validate (pure) → build (pure) →
//! apply (server-side apply) → one membership step (admin API) → status.
//!
//! - [`crd`]: the custom resource and its schema; [`validate`]: the spec checks it cannot express.
//! - [`resources`]: the pure builders of every Kubernetes object a cluster owns.
//! - [`membership`]: the pure planner of the one next step; [`status`]: the status it leads to.
//! - [`reconcile`]: the pipeline with its I/O; [`admin`]: the client of the servers' admin API.
//! - [`certs`]: the certificates the operator issues (pure); [`tls`]: the Secrets holding them,
//!   kept issued and renewed; [`cert_manager`]: the Certificates cert-manager issues instead,
//!   where it runs.
//! - [`injection`]: what an annotated pod gets (pure); [`admission`]: the HTTPS webhook serving it.
//! - [`tenancy`]: the namespaces' subtrees, ACLs and quotas, laid out as the client port's super
//!   user.
//! - [`lease`]: leader election among operator replicas; [`endpoints`], [`metrics`]: health and
//!   Prometheus.

pub mod admin;
pub mod admission;
pub mod cert_manager;
pub mod certs;
pub mod crd;
pub mod endpoints;
pub mod injection;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod reconcile;
pub mod resources;
pub mod status;
pub mod tenancy;
pub mod tls;
pub mod validate;
