//! The table of open client connections and server-wide request counters, for the `cons`,
//! `stat`, `srvr` and `mntr` four-letter words.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::watch::ConnId;

/// Live figures of one connection, updated without locks.
pub struct ConnStats {
    /// The client's address.
    pub peer: SocketAddr,
    /// The session bound to the connection (0 before the handshake).
    pub session_id: AtomicI64,
    /// The negotiated session timeout in ms.
    pub timeout_ms: AtomicI64,
    /// Packets received.
    pub received: AtomicU64,
    /// Packets sent.
    pub sent: AtomicU64,
    /// Last zxid sent in a reply header.
    pub last_zxid: AtomicI64,
    /// When the connection was accepted.
    pub since: Instant,
    /// Cancelled to make the connection end (its session closed, or it was replaced).
    pub kill: CancellationToken,
}

/// See the module docs.
#[derive(Default)]
pub struct Connections {
    next_id: AtomicU64,
    table: Mutex<HashMap<ConnId, Arc<ConnStats>>>,
    received: AtomicU64,
    sent: AtomicU64,
    latency_count: AtomicU64,
    latency_total_us: AtomicU64,
    latency_max_us: AtomicU64,
    latency_min_us: AtomicU64,
}

impl Connections {
    /// Registers a new connection.
    pub fn open(&self, peer: SocketAddr) -> (ConnId, Arc<ConnStats>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let stats = Arc::new(ConnStats {
            peer,
            session_id: AtomicI64::new(0),
            timeout_ms: AtomicI64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            last_zxid: AtomicI64::new(0),
            since: Instant::now(),
            kill: CancellationToken::new(),
        });
        self.lock().insert(id, stats.clone());
        (id, stats)
    }

    /// Unregisters a closed connection.
    pub fn close(&self, id: ConnId) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Arc<ConnStats>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `conn` to `session_id`, ending any other connection of that session (the client
    /// moved to a new connection; the old one is stale).
    pub fn bind_session(&self, conn: ConnId, session_id: i64) {
        for (id, stats) in self.lock().iter() {
            if *id != conn && stats.session_id.load(Ordering::Relaxed) == session_id {
                stats.kill.cancel();
            }
        }
    }

    /// Ends every connection bound to a session for which `ended` says true (connections still
    /// in their handshake have no session yet and are left alone).
    pub fn end_sessions_where(&self, mut ended: impl FnMut(i64) -> bool) {
        let bound: Vec<(i64, Arc<ConnStats>)> = self
            .lock()
            .values()
            .map(|stats| (stats.session_id.load(Ordering::Relaxed), stats.clone()))
            .filter(|(session_id, stats)| *session_id != 0 && !stats.kill.is_cancelled())
            .collect();
        for (session_id, stats) in bound {
            if ended(session_id) {
                stats.kill.cancel();
            }
        }
    }

    /// Ends every connection.
    pub fn kill_all(&self) {
        for stats in self.lock().values() {
            stats.kill.cancel();
        }
    }

    /// Ends one connection.
    pub fn kill(&self, conn: ConnId) {
        if let Some(stats) = self.lock().get(&conn) {
            stats.kill.cancel();
        }
    }

    /// The token that ends `conn` when cancelled.
    pub fn kill_signal(&self, conn: ConnId) -> CancellationToken {
        self.lock().get(&conn).map(|s| s.kill.clone()).unwrap_or_default()
    }

    /// Number of open connections.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<(ConnId, Arc<ConnStats>)> {
        let mut all: Vec<_> = self.lock().iter().map(|(id, s)| (*id, s.clone())).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Counts a received packet.
    pub fn count_received(&self, conn: &ConnStats) {
        conn.received.fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a sent packet.
    pub fn count_sent(&self, conn: &ConnStats) {
        conn.sent.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one request's latency.
    pub fn record_latency(&self, latency: Duration) {
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_total_us.fetch_add(us, Ordering::Relaxed);
        self.latency_max_us.fetch_max(us, Ordering::Relaxed);
        let _ = self
            .latency_min_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |min| (min == 0 || us < min).then_some(us.max(1)));
    }

    /// Packets received and sent since start.
    pub fn packets(&self) -> (u64, u64) {
        (self.received.load(Ordering::Relaxed), self.sent.load(Ordering::Relaxed))
    }

    /// Latency min / avg / max in milliseconds, as ZooKeeper prints it.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let count = self.latency_count.load(Ordering::Relaxed);
        let avg =
            if count == 0 { 0.0 } else { self.latency_total_us.load(Ordering::Relaxed) as f64 / count as f64 / 1000.0 };
        (
            self.latency_min_us.load(Ordering::Relaxed) as f64 / 1000.0,
            avg,
            self.latency_max_us.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}
