//! Coordination recipes on the pod's ZooKeeper session: locks, leader election, group
//! membership, leases and work queues, and the line that locks, elections and queue claimers
//! stand in. They speak ZooKeeper and NDJSON events; HTTP is the `api` module's business, and
//! the hold a lock, campaign or claim runs on is `holds`'.

pub mod election;
pub mod group;
pub mod lease;
pub mod line;
pub mod lock;
pub mod queue;
