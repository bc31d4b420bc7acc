//! Coordination recipes on the pod's ZooKeeper session: locks, leader election, group
//! membership and work queues, and the line that locks, elections and queue claimers
//! stand in. They speak ZooKeeper and NDJSON events; HTTP is the `api` module's business, and
//! the hold a lock, campaign or claim runs on is `holds`', the leases holds may be bound to
//! `lease`'s.

pub mod election;
pub mod group;
pub mod line;
pub mod lock;
pub mod queue;
