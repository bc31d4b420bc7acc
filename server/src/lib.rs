//! Paddock server: a ZooKeeper-wire-compatible coordination server, replicated with openraft and
//! durable in RocksDB.
//!
//! - [`proto`]: the jute codec (pure).
//! - [`tree`]: the data tree, the deterministic state machine core (pure).
//! - [`raft`]: openraft types, the RocksDB log store, the state machine adapter, the network.
//! - [`peer`]: server-to-server links: Raft RPCs, forwarded writes, session touches.
//! - [`store`]: the applied state the handlers read, and where write results meet their clients.
//! - [`zk`]: the client port: connections, handlers, watches, sessions, four-letter words.
//! - [`admin`]: the admin HTTP API; [`metrics`]: Prometheus metrics.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod peer;
pub mod proto;
pub mod raft;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tree;
pub mod zk;
