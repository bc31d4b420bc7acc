//! Server-to-server traffic: Raft RPCs, client writes forwarded to the leader, session touches
//! and read-index requests, over one outbound TCP link per peer (so each pair of servers has a
//! link in each direction), length-delimited postcard frames, pipelined by request id.
//!
//! - [`wire`]: the messages and their framing; [`client`]: the outbound link to one peer;
//! - [`network`]: openraft's network over those links; [`service`]: the peer port, answering
//!   the links other servers open;
//! - [`snapshot`]: snapshots in chunks, the sender's cut and the receiver's assembly.

pub mod client;
pub mod network;
pub mod service;
pub mod snapshot;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use client::{Greeting, PeerClient};
use paddock_tls::Reloading;

/// Fault injection for tests: an isolated server neither sends nor answers peer traffic.
#[derive(Default)]
pub struct Faults {
    isolated: AtomicBool,
}

impl Faults {
    /// Whether peer traffic is cut.
    pub fn isolated(&self) -> bool {
        self.isolated.load(Ordering::Relaxed)
    }

    /// Cuts or restores peer traffic.
    pub fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::Relaxed);
    }
}

/// The links to every peer, made on first use.
pub struct Peers {
    me: u64,
    my_admin: String,
    /// Fault injection switch shared by every link and the peer listener.
    pub faults: Arc<Faults>,
    links: Mutex<HashMap<u64, Arc<PeerClient>>>,
    admin_addrs: Mutex<HashMap<u64, String>>,
    /// Mutual TLS of the links, when peers speak it.
    pub tls: Option<Arc<Reloading>>,
}

impl Peers {
    /// Links for server `me`, whose admin API is at `my_admin`, over TLS when `tls` is given.
    pub fn new(me: u64, my_admin: String, tls: Option<Arc<Reloading>>) -> Self {
        Self { me, my_admin, faults: Arc::default(), links: Mutex::default(), admin_addrs: Mutex::default(), tls }
    }

    /// The link to `target` at `addr` (replaced when the address changed).
    pub fn link(&self, target: u64, addr: &str) -> Arc<PeerClient> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        match links.get(&target) {
            Some(link) if link.addr == addr => link.clone(),
            _ => {
                let link = PeerClient::spawn(
                    target,
                    addr.to_owned(),
                    Greeting { me: self.me, my_admin: self.my_admin.clone(), tls: self.tls.clone() },
                    self.faults.clone(),
                );
                links.insert(target, link.clone());
                link
            }
        }
    }

    /// Records a peer's admin address (learned from its hello).
    pub fn learn_admin(&self, id: u64, admin_addr: String) {
        self.admin_addrs.lock().unwrap_or_else(|e| e.into_inner()).insert(id, admin_addr);
    }

    /// A peer's admin address, when it has dialed us.
    pub fn admin_addr(&self, id: u64) -> Option<String> {
        if id == self.me {
            return Some(self.my_admin.clone());
        }
        self.admin_addrs.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }
}
