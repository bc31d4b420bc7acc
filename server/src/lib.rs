//! Paddock server: a ZooKeeper-wire-compatible coordination server, replicated with openraft and
//! durable in RocksDB.

pub mod proto;
