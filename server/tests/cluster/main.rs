//! Cluster suite: three to five real `paddock-server` processes on 127.0.0.1 replicating with
//! Raft, driven by the `zookeeper-client` crate and the admin API, with faults injected by
//! SIGKILL, restarts and the `/v1/debug/isolate` switch. Each test owns its cluster; clusters are
//! heavy, so run this suite with `--test-threads=1`.

mod harness;

mod boot;
mod catch_up;
mod clock;
mod failover;
mod isolation;
mod membership;
mod moved;
mod replication;
mod sync_order;
mod tls;
