//! End-to-end suite: servers configured exactly as the operator configures pods, sidecars
//! injected as the operator's webhook injects them, app processes beside them, and the faults
//! Kubernetes produces (pod deletion, SIGKILL, paused processes, rolling restarts, network
//! partitions). Every scenario checks its invariant with a history checker or by comparing what
//! was acknowledged with what every node holds. Each test owns its processes; run with
//! `--test-threads=1` (several servers per test, 2 cores).

mod harness;

mod config_watch;
mod election;
mod five_nodes;
mod lock;
mod membership;
mod partition;
mod rolling_restart;
