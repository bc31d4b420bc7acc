//! `paddock-sidecar`: runs next to an app in its pod, holds the pod's ZooKeeper session and
//! serves locks, leader election, group membership, work queues and znodes over HTTP on a Unix
//! socket, so an app in any language coordinates with nothing but an HTTP client. The `paddock`
//! CLI is a client of that socket.

pub mod api;
pub mod config;
pub mod deadline;
pub mod error;
pub mod holds;
pub mod identity;
pub mod lease;
pub mod metrics;
pub mod probe;
pub mod recipes;
pub mod session;
pub mod sidecar;
pub mod stream;
pub mod tls;
pub mod token;
pub mod watch_stream;
pub mod znode;

pub use error::{Error, Result};
/// The socket API's client, from its own crate (so the test kit needs no sidecar).
pub use paddock_sidecar_client as client;
