//! ZooKeeper compatibility suite: starts the real `paddock-server` binary and drives it with the
//! `zookeeper-client` crate (what applications use) and testkit's raw wire client (for what a
//! well-behaved client never sends). Each test owns its own server and data dir.

mod harness;

mod acl;
mod admin;
mod bad_input;
mod basic;
mod durability;
mod four_letter;
mod k8s;
mod multi;
mod nodes;
mod sessions;
mod tls;
mod watches;
