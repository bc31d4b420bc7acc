//! Paddock server: a ZooKeeper-wire-compatible coordination server, replicated with openraft and
//! durable in RocksDB. Imports run one way, from the ports down to the pure cores:
//!
//! ```text
//! main.rs ─ zk (client port) ─┐   peer::service (peer port)   admin (admin port)
//!                             ▼           │                        │
//!                    server (the parts) ◀─┴────────────────────────┘
//!             ┌──────────┬────┴──────┬────────────┐
//!             ▼          ▼           ▼            ▼
//!          duties ─▶ write ─▶ peer ─▶ raft ─▶ store ─▶ tree, proto
//! ```
//!
//! - [`proto`]: the jute codec (pure). [`tree`]: the data tree, the deterministic state machine
//!   core (pure).
//! - [`store`]: the applied state (tree, watches, writes waiting for their result).
//! - [`raft`]: openraft types, the RocksDB log store, the state machine adapter.
//! - [`peer`]: server-to-server links: Raft RPCs, forwarded writes, session touches; the peer port.
//! - [`write`]: the write path (propose, forward, wait for apply, the sync barrier).
//! - [`duties`]: the leader's and followers' background work; [`contact`]: whether clients may
//!   be served; [`liveness`]: sessions' liveness.
//! - [`clock`]: the wall clock the leader stamps into txns (never read by the tree).
//! - [`server`]: the parts of one running server and their start-up.
//! - [`zk`]: the client port; [`admin`]: the admin HTTP API; [`frame`]: the length-prefixed
//!   frame reader both TCP ports use; [`metrics`]: Prometheus metrics; [`tls`]: the ports'
//!   certificates and the identities they give; [`k8s`]: Kubernetes ServiceAccount tokens as
//!   identities (TokenReview).

pub mod admin;
pub mod clock;
pub mod config;
pub mod contact;
pub mod duties;
pub mod frame;
pub mod k8s;
pub mod liveness;
pub mod metrics;
pub mod peer;
pub mod proto;
pub mod raft;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod tree;
pub mod write;
pub mod zk;
