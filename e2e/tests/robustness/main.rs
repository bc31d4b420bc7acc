//! Robustness suite: a recorded workload of many sessions on every server, real faults (SIGKILL,
//! SIGSTOP, CPU quotas, blackholed and lossy links between network namespaces), and the
//! histories judged by independent checkers (e2e/src/check: linearizability by porcupine,
//! per-session FIFO). Each scenario owns its lab and processes and removes them also on failure.
//! Needs root (namespaces, iptables, cgroups); run with `--test-threads=1`.

mod harness;
mod traffic;

mod scenarios;
