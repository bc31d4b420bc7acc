//! Robustness suite: a recorded workload of many sessions on every server, real faults (SIGKILL,
//! SIGSTOP, CPU quotas, blackholed, lossy and slow links between network namespaces), and the
//! histories judged by independent checkers (e2e/src/check: linearizability by porcupine,
//! per-session FIFO, multi atomicity, sequential numbers, ephemeral lifetimes, one-shot watch
//! delivery, session liveness). Traffic (`traffic`, with its raw-wire sessions in `watchers`),
//! faults (`faults`) and checking (`verdict`) are separate parts; `scenarios` runs one fault each, `soak` all of them in turn for as long as
//! asked (`make soak`). Each test owns its lab and processes and removes them also on failure.
//! Needs root (namespaces, iptables, cgroups); run with `--test-threads=1`.

mod faults;
mod harness;
mod traffic;
mod verdict;
mod watchers;

mod scenarios;
mod soak;
