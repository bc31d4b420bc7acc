//! The ZooKeeper client side of the server: listener, connections (framing, handshake,
//! per-session FIFO), request handlers, watches, sessions' liveness and four-letter words.

pub mod connection;
pub mod connections;
pub mod four_letter;
pub mod handlers;
pub mod listener;
pub mod session;
pub mod watch;
