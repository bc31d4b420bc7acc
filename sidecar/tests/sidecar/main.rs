//! Process-level tests of `paddock-sidecar`: a real `paddock-server`, real sidecars, apps driving
//! them over the Unix socket.

mod bad_input;
mod cli;
mod deadlines;
mod elections;
mod failover;
mod groups;
mod harness;
mod health;
mod k8s;
mod lease_holds;
mod leases;
mod locks;
mod nodes;
mod queues;
mod session;
mod tls;
