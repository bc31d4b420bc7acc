//! The client port: ZooKeeper clients' connections, one way through:
//! [`listener`] accepts → [`connection`] reads and decodes a request → [`dispatch`] decides
//! what it asks (pure); a write goes down [`crate::write`] at once → [`writer`] takes the
//! request's slot in turn: a read runs in [`handlers`] against the applied state, a write's
//! result arrives from its apply and [`handlers`] shapes the reply → the writer writes it. [`session`] holds the handshake policy,
//! [`port`] what the port owns, [`connections`] the table of open connections,
//! [`four_letter`] the plain-text admin words, and [`sasl`] the DIGEST-MD5 exchange.

pub mod connection;
pub mod connections;
pub mod dispatch;
pub mod four_letter;
pub mod handlers;
pub mod listener;
pub mod port;
pub mod sasl;
pub mod session;
pub mod writer;
