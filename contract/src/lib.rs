//! The contracts between Paddock's parts, in one small crate that each side depends on, so no
//! side can drift from the others:
//!
//! - [`admin`]: the JSON types of the server's admin API (DESIGN.md, "Admin API"), which the
//!   server answers with and the operator and the test kit read.
//! - [`peer`]: the greeting frame that opens every peer link, which the server writes and reads
//!   and the test kit's partitionable peer network reads to learn who is dialing.
#![deny(missing_docs)]

pub mod admin;
pub mod peer;
