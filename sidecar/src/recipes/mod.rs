//! Coordination recipes on the pod's ZooKeeper session: locks, leader election, group
//! membership, leases and work queues. They speak ZooKeeper and NDJSON events; HTTP is the
//! `api` module's business.

pub mod election;
pub mod group;
pub mod lease;
pub mod line;
pub mod lock;
pub mod queue;
