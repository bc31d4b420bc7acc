//! The raw-wire part of the workload: a few sessions through testkit's raw client (every frame
//! of a connection in arrival order, with its header zxid), each over every server in a
//! different order, and an observer.
//!
//! Each raw session creates an ephemeral node of its own under `live/` (its liveness node) and
//! then, as fast as it can, reads the registers with a data or exists watch, lists `kids/`
//! (sync, then getChildren with a child watch), and creates and deletes ephemeral nodes of its
//! own under `kids/`; it pings every [`PING_EVERY`]. It records what it received (replies,
//! events, reconnections: a [`SessionStream`]), its answered pings, its ephemeral nodes and the
//! listings. A lost connection (an I/O error, or no reply within two thirds of the session
//! timeout, as ZooKeeper's client) is followed by a reconnection to the next server with the
//! same session id and password, and setWatches for the watches still pending; a server that
//! answers session 0 ends the session (expired), and a new one begins.
//!
//! One more raw client sets persistent watches instead of one-shot ones (addWatch): a
//! persistent watch on each register and a recursive one on `kids/`, set again with setWatches2
//! after every reconnection; it reads registers without watches and creates and deletes its
//! own nodes under `kids/`. Its stream goes to the persistent watch checker. It tells a server
//! it reconnects to the highest zxid of any reply or event it received (see
//! `paddock_e2e::check::persistent`).
//!
//! Beside them, doomed sessions one after another (1 s timeout; their expiry is expected, so
//! not counted as one that should not have happened): each creates its liveness node, answers a
//! few pings and falls silent (its connection left open), so that it expires while the faults
//! run. The observer (a `zookeeper-client` session) watches every liveness node, and records
//! when it saw one deleted: that is when the session's expiry was observed. It stops before the
//! raw sessions close theirs at the end.
//!
//! The end runs in phases so that the streams end on a known state: writers stop
//! ([`Phase::Quiesce`]: the register clients, and the raw sessions' creates and deletes), then
//! each raw session syncs and reads once more ([`Phase::Final`]: its stream ends there, and its
//! reply's zxid says whether it caught up with every known change), then the raw sessions close
//! ([`Phase::Close`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_e2e::check::ephemerals::{Attempt, Done, Ephemeral, Listing};
use paddock_e2e::check::sessions::{Ping, SessionLife};
use paddock_e2e::check::watches::{Change, EventKind, Received, SessionStream, WatchKind};
use paddock_testkit::raw::{self, code, event, flags, op, watch_mode, Connect, Frame, RawConn, Reply};
use paddock_testkit::zk::{connect, lost_connection};
use tokio::sync::{mpsc, watch};
use zookeeper_client::{Client, Error as ZkError, EventType};

use crate::harness::{SESSION, WAIT};
use crate::traffic::{Clock, Dice};

/// How often a raw session pings.
pub const PING_EVERY: Duration = Duration::from_millis(1000);
/// Ephemeral nodes a raw session keeps under `kids/` at most.
const KIDS: usize = 3;
/// The session timeout of doomed sessions: short, so that several expire in every scenario.
const DOOMED_SESSION: Duration = Duration::from_secs(1);
/// Pings a doomed session answers before it falls silent, and the pause after each.
const DOOMED_PINGS: usize = 2;
const DOOMED_PACE: Duration = Duration::from_millis(250);

/// Where the end of the workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Everything runs.
    Run,
    /// Writers stop; raw sessions only ping.
    Quiesce,
    /// Raw sessions read once more and end their streams.
    Final,
    /// Raw sessions close.
    Close,
}

/// The paths the raw sessions work on.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Registers they watch (full paths).
    pub registers: Vec<String>,
    /// The parent of their ephemeral nodes, which they list and watch.
    pub kids: String,
    /// The parent of their liveness nodes.
    pub live: String,
}

/// What one raw session saw and did.
#[derive(Debug)]
pub struct RawSession {
    /// Its stream; `alive_at_end` is settled later, against the known changes.
    pub stream: SessionStream,
    /// The zxid of its final read's reply, if it was alive to make it.
    pub final_zxid: Option<i64>,
    /// Its negotiated timeout and answered pings (the expiry is the observer's).
    pub life: SessionLife,
    /// When its closeSession was acknowledged.
    pub closed: Option<u64>,
    /// When its acknowledged writes were sent.
    pub acked_writes: Vec<u64>,
    /// The server told it its session had expired.
    pub expired: bool,
    /// It was one of the doomed sessions, meant to expire.
    pub doomed: bool,
    /// It set persistent watches (its stream is the persistent watch checker's).
    pub persistent: bool,
    /// The opcode of each xid it sent (for a look at a stream that fails).
    pub requests: Vec<(i32, i32)>,
}

/// What the raw part of the workload recorded.
#[derive(Debug, Default)]
pub struct RawRecord {
    /// Every session of every raw client.
    pub sessions: Vec<RawSession>,
    /// Their ephemeral nodes (liveness and kids).
    pub ephemerals: Vec<Ephemeral>,
    /// Their listings of `kids/`.
    pub listings: Vec<Listing>,
    /// Changes of watched paths they made and know the zxid of.
    pub changes: Vec<(String, Change)>,
    /// Watched paths they changed without learning the zxid (or that an expiry changed).
    pub unknown: BTreeSet<String>,
    /// When the observer saw each session's liveness node deleted.
    pub observed: BTreeMap<i64, u64>,
}

/// The running raw part.
pub struct Watchers {
    phase: watch::Sender<Phase>,
    /// How many raw clients are past each phase's work.
    reached: Arc<[AtomicUsize; 4]>,
    tasks: Vec<tokio::task::JoinHandle<RawRecord>>,
    stop_observer: watch::Sender<bool>,
    observer: tokio::task::JoinHandle<BTreeMap<i64, u64>>,
}

impl Watchers {
    /// Starts `clients` raw clients, client `w` trying the servers of `addrs` from its `w`-th
    /// on, and the observer over `connect_all`.
    pub fn start(clients: usize, addrs: &[SocketAddr], connect_all: String, paths: Paths, clock: Clock) -> Watchers {
        let (phase, _) = watch::channel(Phase::Run);
        let reached: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
        let (live_tx, live_rx) = mpsc::unbounded_channel();
        let (stop_observer, stop_rx) = watch::channel(false);
        let observer = tokio::spawn(observe(connect_all, live_rx, stop_rx, clock));
        let raw = |w: usize| {
            let mut order = addrs.to_vec();
            order.rotate_left(w % addrs.len());
            RawClient {
                w,
                timeout: SESSION,
                doomed: false,
                persistent: false,
                addrs: order,
                next_addr: 0,
                paths: paths.clone(),
                clock,
                phase: phase.subscribe(),
                live: live_tx.clone(),
                dice: Dice(0x51_7cc1_b727_220a ^ (w as u64 + 1).wrapping_mul(0x2000_0003)),
                conn: None,
                session: None,
                names: 0,
                record: RawRecord::default(),
            }
        };
        let mut tasks: Vec<_> = (0..clients).map(|w| tokio::spawn(raw(w).run(reached.clone()))).collect();
        let doomed = RawClient { timeout: DOOMED_SESSION, doomed: true, ..raw(clients) };
        tasks.push(tokio::spawn(doomed.run_doomed(reached.clone())));
        let persistent = RawClient { persistent: true, ..raw(clients + 1) };
        tasks.push(tokio::spawn(persistent.run(reached.clone())));
        Watchers { phase, reached, tasks, stop_observer, observer }
    }

    /// Moves every raw client to `phase` (not [`Phase::Close`]) and waits until each has done
    /// its work.
    pub async fn advance(&self, phase: Phase) {
        self.phase.send_replace(phase);
        let n = self.tasks.len();
        let counter = &self.reached[phase as usize];
        crate::harness::wait_for(&format!("every raw session to be done with {phase:?}"), WAIT, || async {
            (counter.load(Ordering::Relaxed) >= n).then_some(())
        })
        .await;
    }

    /// Stops the observer, closes every raw session and returns what they recorded.
    pub async fn close(self) -> RawRecord {
        let _ = self.stop_observer.send(true);
        let observed = tokio::time::timeout(WAIT, self.observer).await.expect("the observer stops").expect("observer");
        self.phase.send_replace(Phase::Close);
        let mut all = RawRecord { observed, ..RawRecord::default() };
        for task in self.tasks {
            let record = tokio::time::timeout(WAIT, task).await.expect("a raw client stops").expect("raw client");
            all.sessions.extend(record.sessions);
            all.ephemerals.extend(record.ephemerals);
            all.listings.extend(record.listings);
            all.changes.extend(record.changes);
            all.unknown.extend(record.unknown);
        }
        all
    }
}

/// The session a raw client is in.
struct Session {
    id: i64,
    password: Vec<u8>,
    timeout: Duration,
    /// The highest zxid of a reply (pings' aside), sent on reconnection.
    last_zxid: i64,
    stream: Vec<Received>,
    pings: Vec<Ping>,
    /// When the last ping was sent.
    last_ping: u64,
    /// Pending watches, to set again after a reconnection: data watches (getData, and exists
    /// of a node that was there), exists watches of missing nodes, child watches.
    data: BTreeSet<String>,
    exist: BTreeSet<String>,
    child: BTreeSet<String>,
    /// Persistent watches and persistent recursive ones (never consumed).
    persistent: BTreeSet<String>,
    recursive: BTreeSet<String>,
    /// Events' zxids count in `last_zxid` too (a persistent watcher's).
    counts_events: bool,
    /// Its ephemeral nodes under `kids/` that are there (indices into the record's).
    kids: VecDeque<usize>,
    acked_writes: Vec<u64>,
    final_zxid: Option<i64>,
    closed: Option<u64>,
    /// The next xid: unique in the session, across its connections.
    next_xid: i32,
    requests: Vec<(i32, i32)>,
}

/// One raw client: sessions one after another (a new one when the last expired).
struct RawClient {
    w: usize,
    /// The session timeout it asks for.
    timeout: Duration,
    /// Its sessions are meant to expire ([`RawClient::run_doomed`]).
    doomed: bool,
    /// It sets persistent watches, not one-shot ones.
    persistent: bool,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    paths: Paths,
    clock: Clock,
    phase: watch::Receiver<Phase>,
    live: mpsc::UnboundedSender<(i64, String)>,
    dice: Dice,
    conn: Option<RawConn>,
    session: Option<Session>,
    /// Names handed out under `kids/` and `live/`.
    names: u64,
    record: RawRecord,
}

/// The watch a read asks the server for.
#[derive(Clone, Copy)]
enum Asks {
    Data,
    Exists,
    Child,
    /// addWatch, PERSISTENT.
    Persistent,
    /// addWatch, PERSISTENT_RECURSIVE.
    Recursive,
}

impl RawClient {
    async fn run(mut self, reached: Arc<[AtomicUsize; 4]>) -> RawRecord {
        while self.phase() == Phase::Run {
            if !self.connected(true).await {
                continue;
            }
            if self.ping_due() {
                self.ping().await;
                continue;
            }
            if self.persistent {
                if self.watches_missing() {
                    self.add_watches().await;
                    continue;
                }
                match self.dice.below(10) {
                    0..=6 => self.read_register_unwatched().await,
                    _ => self.create_or_delete().await,
                }
                continue;
            }
            match self.dice.below(10) {
                0..=2 => self.read_register(Asks::Data).await,
                3..=4 => self.read_register(Asks::Exists).await,
                5..=6 => self.list_kids().await,
                _ => self.create_or_delete().await,
            }
        }
        reached[Phase::Quiesce as usize].fetch_add(1, Ordering::Relaxed);
        self.idle_until(Phase::Final).await;
        self.final_read().await;
        reached[Phase::Final as usize].fetch_add(1, Ordering::Relaxed);
        self.idle_until(Phase::Close).await;
        self.close().await;
        self.end_session(false);
        self.record
    }

    /// Doomed sessions, one after another while the workload runs: each creates its liveness
    /// node, pings a few times and falls silent with its connection open, so that the leader
    /// expires it (and the observer sees it go) while the faults run: the session checker's
    /// "not early" has something to judge in every scenario.
    async fn run_doomed(mut self, reached: Arc<[AtomicUsize; 4]>) -> RawRecord {
        let mut silent = Vec::new();
        while self.phase() == Phase::Run {
            if !self.connected(true).await {
                continue;
            }
            for _ in 0..DOOMED_PINGS {
                self.ping().await;
                let _ = tokio::time::timeout(DOOMED_PACE, self.phase.wait_for(|p| *p > Phase::Run)).await;
            }
            if let Some(conn) = self.conn.take() {
                silent.push(conn);
            }
            self.end_session(false);
            let _ = tokio::time::timeout(DOOMED_PACE, self.phase.wait_for(|p| *p > Phase::Run)).await;
        }
        reached[Phase::Quiesce as usize].fetch_add(1, Ordering::Relaxed);
        reached[Phase::Final as usize].fetch_add(1, Ordering::Relaxed);
        let _ = self.phase.wait_for(|p| *p >= Phase::Close).await;
        // Their sessions expire on their own, after the record is taken.
        drop(silent);
        self.record
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn ping_due(&self) -> bool {
        self.session.as_ref().is_some_and(|s| self.clock.now() >= s.last_ping + PING_EVERY.as_nanos() as u64)
    }

    /// Pings as due, reconnecting as needed, until the workload reaches `phase`.
    async fn idle_until(&mut self, phase: Phase) {
        while self.phase() < phase {
            if self.session.is_none() || !self.connected(false).await {
                if self.session.is_none() {
                    let _ = self.phase.wait_for(|p| *p >= phase).await;
                }
                continue;
            }
            if self.ping_due() {
                self.ping().await;
                continue;
            }
            let wait = self.session.as_ref().map_or(PING_EVERY, |s| {
                Duration::from_nanos((s.last_ping + PING_EVERY.as_nanos() as u64).saturating_sub(self.clock.now()))
            });
            let _ = tokio::time::timeout(wait, self.phase.wait_for(|p| *p >= phase)).await;
        }
    }

    /// The next server to try.
    fn next_addr(&mut self) -> SocketAddr {
        let addr = self.addrs[self.next_addr % self.addrs.len()];
        self.next_addr += 1;
        addr
    }

    /// Makes sure there is a connection: reconnects the session (a new one if `new` and there
    /// is none); false when there is none yet (the caller tries again).
    async fn connected(&mut self, new: bool) -> bool {
        if self.conn.is_some() {
            return true;
        }
        let addr = self.next_addr();
        let Some(session) = &self.session else {
            if !new {
                return false;
            }
            return self.new_session(addr).await;
        };
        let c = Connect {
            last_zxid_seen: session.last_zxid,
            timeout_ms: self.timeout.as_millis() as i32,
            session_id: session.id,
            password: session.password.clone(),
            read_only: Some(false),
        };
        let conn = match tokio::time::timeout(self.timeout, RawConn::try_connect(addr, &c)).await {
            Ok(Ok(conn)) => conn,
            _ => {
                self.pause_after_a_round().await;
                return false;
            }
        };
        if conn.handshake.session_id == 0 {
            // Expired (or unknown to that server): the session is over.
            self.end_session(true);
            return false;
        }
        let at = self.clock.now();
        self.conn = Some(conn);
        let session = self.session.as_mut().expect("a session");
        session.stream.push(Received::Reconnected { at });
        if !(session.persistent.is_empty() && session.recursive.is_empty()) {
            let body = raw::set_watches2_body(
                session.last_zxid,
                [
                    &refs(&session.data),
                    &refs(&session.exist),
                    &refs(&session.child),
                    &refs(&session.persistent),
                    &refs(&session.recursive),
                ],
            );
            self.request(op::SET_WATCHES2, &body, None).await;
        } else if !(session.data.is_empty() && session.exist.is_empty() && session.child.is_empty()) {
            let body = raw::set_watches_body(
                session.last_zxid,
                &refs(&session.data),
                &refs(&session.exist),
                &refs(&session.child),
            );
            self.request(op::SET_WATCHES, &body, None).await;
        }
        self.conn.is_some()
    }

    /// Whether the session is connected, after trying each server twice if it is not.
    async fn reconnected(&mut self) -> bool {
        for _ in 0..2 * self.addrs.len() {
            if self.session.is_none() {
                return false;
            }
            if self.connected(false).await {
                return true;
            }
        }
        false
    }

    /// After a whole round of servers refused or failed, a short pause before the next.
    async fn pause_after_a_round(&self) {
        if self.next_addr % self.addrs.len() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn new_session(&mut self, addr: SocketAddr) -> bool {
        let c = Connect { timeout_ms: self.timeout.as_millis() as i32, ..Connect::default() };
        let conn = match tokio::time::timeout(self.timeout, RawConn::try_connect(addr, &c)).await {
            Ok(Ok(conn)) if conn.handshake.session_id != 0 => conn,
            _ => {
                self.pause_after_a_round().await;
                return false;
            }
        };
        let now = self.clock.now();
        self.session = Some(Session {
            id: conn.handshake.session_id,
            password: conn.handshake.password.clone(),
            timeout: Duration::from_millis(conn.handshake.timeout_ms.max(0) as u64),
            last_zxid: 0,
            stream: Vec::new(),
            pings: Vec::new(),
            last_ping: now,
            data: BTreeSet::new(),
            exist: BTreeSet::new(),
            child: BTreeSet::new(),
            persistent: BTreeSet::new(),
            recursive: BTreeSet::new(),
            counts_events: self.persistent,
            kids: VecDeque::new(),
            acked_writes: Vec::new(),
            final_zxid: None,
            closed: None,
            next_xid: 1,
            requests: Vec::new(),
        });
        self.conn = Some(conn);
        // Its liveness node, which the observer watches.
        let session = self.session.as_ref().map_or(0, |s| s.id);
        let name = format!("{session:x}");
        if let Some(i) = self.create_ephemeral(&self.paths.live.clone(), &name).await {
            if self.record.ephemerals[i].create.outcome == Done::Ok {
                let _ = self.live.send((session, format!("{}/{name}", self.paths.live)));
            }
        }
        true
    }

    /// Whether the session lacks some of a persistent watcher's watches (a new session, or one
    /// whose connection was lost while it set them).
    fn watches_missing(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.persistent.len() + s.recursive.len() < self.paths.registers.len() + 1)
    }

    /// Sets a persistent watcher's missing watches: one on each register, a recursive one on
    /// `kids/`.
    async fn add_watches(&mut self) {
        let Some(session) = &self.session else { return };
        let registers = self.paths.registers.iter().filter(|r| !session.persistent.contains(*r));
        let mut watches: Vec<_> = registers.map(|r| (r.clone(), Asks::Persistent)).collect();
        if !session.recursive.contains(&self.paths.kids) {
            watches.push((self.paths.kids.clone(), Asks::Recursive));
        }
        for (path, asks) in watches {
            let mode =
                if matches!(asks, Asks::Recursive) { watch_mode::PERSISTENT_RECURSIVE } else { watch_mode::PERSISTENT };
            if self.request(op::ADD_WATCH, &raw::add_watch_body(&path, mode), Some((&path, asks))).await.is_none() {
                // The connection is gone; the watches set so far are set again on the next.
                return;
            }
        }
    }

    /// Ends the current session: told expired by a server, or closed at the end.
    fn end_session(&mut self, expired: bool) {
        self.conn = None;
        let Some(s) = self.session.take() else { return };
        if expired || !s.kids.is_empty() {
            // Its nodes went with it, at a zxid nobody learnt.
            self.record.unknown.insert(self.paths.kids.clone());
        }
        let alive = !expired && s.final_zxid.is_some();
        self.record.sessions.push(RawSession {
            stream: SessionStream { session: s.id, received: s.stream, alive_at_end: alive },
            final_zxid: s.final_zxid,
            life: SessionLife {
                session: s.id,
                timeout_ms: s.timeout.as_millis() as u64,
                pings: s.pings,
                expiry_observed: None,
            },
            closed: s.closed,
            acked_writes: s.acked_writes,
            expired,
            doomed: self.doomed,
            persistent: self.persistent,
            requests: s.requests,
        });
    }

    /// Sends one request and reads frames until its reply, recording each in the stream; the
    /// reply and its arrival time, or `None` when the connection was lost (it is dropped).
    async fn request(&mut self, opcode: i32, body: &[u8], read: Option<(&str, Asks)>) -> Option<(Reply, u64)> {
        let conn = self.conn.as_mut()?;
        let session = self.session.as_mut()?;
        let read_timeout = session.timeout * 2 / 3;
        let xid = if opcode == op::PING {
            raw::PING_XID
        } else {
            session.next_xid += 1;
            session.next_xid - 1
        };
        session.requests.push((xid, opcode));
        let Ok(()) = conn.send_with_xid(xid, opcode, body).await else {
            self.conn = None;
            return None;
        };
        loop {
            let frame = match tokio::time::timeout(read_timeout, conn.recv()).await {
                Ok(Ok(frame)) => frame,
                _ => {
                    self.conn = None;
                    return None;
                }
            };
            let at = self.clock.now();
            match frame {
                Frame::Event(e) => {
                    let kind = match e.event_type {
                        event::NODE_CREATED => EventKind::Created,
                        event::NODE_DELETED => EventKind::Deleted,
                        event::NODE_DATA_CHANGED => EventKind::DataChanged,
                        event::NODE_CHILDREN_CHANGED => EventKind::ChildrenChanged,
                        _ => continue,
                    };
                    if kind != EventKind::ChildrenChanged {
                        session.data.remove(&e.path);
                        session.exist.remove(&e.path);
                    }
                    if matches!(kind, EventKind::ChildrenChanged | EventKind::Deleted) {
                        session.child.remove(&e.path);
                    }
                    let zxid = (e.zxid != -1).then_some(e.zxid);
                    if session.counts_events && e.zxid > session.last_zxid {
                        session.last_zxid = e.zxid;
                    }
                    session.stream.push(Received::Event { path: e.path, kind, zxid, at });
                }
                Frame::Reply(reply) => {
                    if reply.xid != raw::PING_XID && reply.zxid > session.last_zxid {
                        session.last_zxid = reply.zxid;
                    }
                    let watch = read.and_then(|(path, asks)| {
                        let set = match (asks, reply.err) {
                            (Asks::Data, code::OK) => Some((WatchKind::Data, &mut session.data)),
                            (Asks::Exists, code::OK) => Some((WatchKind::Exists, &mut session.data)),
                            (Asks::Exists, code::NO_NODE) => Some((WatchKind::Exists, &mut session.exist)),
                            (Asks::Child, code::OK) => Some((WatchKind::Child, &mut session.child)),
                            (Asks::Persistent, code::OK) => Some((WatchKind::Persistent, &mut session.persistent)),
                            (Asks::Recursive, code::OK) => {
                                Some((WatchKind::PersistentRecursive, &mut session.recursive))
                            }
                            _ => None,
                        };
                        set.map(|(kind, pending)| {
                            pending.insert(path.to_owned());
                            kind
                        })
                    });
                    session.stream.push(Received::Reply {
                        xid: reply.xid,
                        zxid: reply.zxid,
                        path: read.map(|(p, _)| p.to_owned()),
                        watch,
                        at,
                    });
                    if reply.xid == xid {
                        return Some((reply, at));
                    }
                }
            }
        }
    }

    async fn ping(&mut self) {
        let sent = self.clock.now();
        if let Some(s) = self.session.as_mut() {
            s.last_ping = sent;
        }
        if let Some((reply, answered)) = self.request(op::PING, &[], None).await {
            if reply.err == code::OK {
                if let Some(s) = self.session.as_mut() {
                    s.pings.push(Ping { sent, answered });
                }
            }
        }
    }

    async fn read_register(&mut self, asks: Asks) {
        let path = self.paths.registers[self.dice.below(self.paths.registers.len())].clone();
        let opcode = if matches!(asks, Asks::Data) { op::GET_DATA } else { op::EXISTS };
        self.request(opcode, &raw::path_watch_body(&path, true), Some((&path, asks))).await;
    }

    /// getData of a register, without a watch (a persistent watcher's read).
    async fn read_register_unwatched(&mut self) {
        let path = self.paths.registers[self.dice.below(self.paths.registers.len())].clone();
        self.request(op::GET_DATA, &raw::path_watch_body(&path, false), None).await;
    }

    /// sync, then getChildren of `kids/` with a child watch: a linearizable listing.
    async fn list_kids(&mut self) {
        let kids = self.paths.kids.clone();
        let invoked = self.clock.now();
        match self.request(op::SYNC, &raw::Jute::new().str(&kids).bytes(), None).await {
            Some((reply, _)) if reply.err == code::OK => {}
            _ => return,
        }
        let Some((reply, completed)) =
            self.request(op::GET_CHILDREN, &raw::path_watch_body(&kids, true), Some((&kids, Asks::Child))).await
        else {
            return;
        };
        if reply.err == code::OK {
            let children = raw::children_reply(&reply.body);
            self.record.listings.push(Listing { parent: kids, invoked, completed, children });
        }
    }

    async fn create_or_delete(&mut self) {
        let Some(own) = self.session.as_ref().map(|s| s.kids.len()) else { return };
        if own < KIDS && (own == 0 || self.dice.below(2) == 0) {
            self.names += 1;
            let name = format!("w{}-{}", self.w, self.names);
            self.create_ephemeral(&self.paths.kids.clone(), &name).await;
            return;
        }
        let Some(i) = self.session.as_mut().and_then(|s| s.kids.pop_front()) else { return };
        let path = format!("{}/{}", self.paths.kids, self.record.ephemerals[i].name);
        let invoked = self.clock.now();
        let answer = self.request(op::DELETE, &raw::delete_body(&path, -1), None).await;
        let (attempt, zxid) = self.attempt(invoked, answer);
        self.learn(&self.paths.kids.clone(), &path, EventKind::Deleted, &attempt, zxid);
        if matches!(attempt.outcome, Done::Failed(_)) {
            // Still there: it goes with the session, at a zxid nobody learns.
            if let Some(s) = self.session.as_mut() {
                s.kids.push_back(i);
            }
        }
        // An unknown delete is not sent again: the node may be there or not, until the session
        // ends.
        self.record.ephemerals[i].delete = Some(attempt);
    }

    /// Creates the ephemeral node `parent/name`; its index in the record.
    async fn create_ephemeral(&mut self, parent: &str, name: &str) -> Option<usize> {
        let session = self.session.as_ref()?.id;
        let path = format!("{parent}/{name}");
        let invoked = self.clock.now();
        let answer = self.request(op::CREATE, &raw::create_body(&path, b"", flags::EPHEMERAL), None).await;
        let (attempt, zxid) = self.attempt(invoked, answer);
        if parent == self.paths.kids {
            self.learn(parent, &path, EventKind::Created, &attempt, zxid);
        }
        let acked = attempt.outcome == Done::Ok;
        let i = self.record.ephemerals.len();
        self.record.ephemerals.push(Ephemeral {
            session,
            parent: parent.to_owned(),
            name: name.to_owned(),
            create: attempt,
            delete: None,
        });
        if acked && parent == self.paths.kids {
            if let Some(s) = self.session.as_mut() {
                s.kids.push_back(i);
            }
        }
        Some(i)
    }

    /// A write's attempt from its answer, and its zxid when acknowledged.
    fn attempt(&mut self, invoked: u64, answer: Option<(Reply, u64)>) -> (Attempt, Option<i64>) {
        match answer {
            Some((reply, at)) if reply.err == code::OK => {
                if let Some(s) = self.session.as_mut() {
                    s.acked_writes.push(invoked);
                }
                (Attempt { invoked, completed: Some(at), outcome: Done::Ok }, Some(reply.zxid))
            }
            // The server could not commit it in time, or the session is going: unknown.
            Some((reply, _)) if matches!(reply.err, code::CONNECTION_LOSS | code::SESSION_EXPIRED) => {
                (Attempt { invoked, completed: None, outcome: Done::Unknown }, None)
            }
            Some((reply, at)) => {
                (Attempt { invoked, completed: Some(at), outcome: Done::Failed(format!("error {}", reply.err)) }, None)
            }
            None => (Attempt { invoked, completed: None, outcome: Done::Unknown }, None),
        }
    }

    /// Records a change of `parent`'s children — `child` created or deleted (`kind`) — by an
    /// acknowledged write, or that one may have happened unseen. A child's own changes are never
    /// all known (its deletion may come with its session's end).
    fn learn(&mut self, parent: &str, child: &str, kind: EventKind, attempt: &Attempt, zxid: Option<i64>) {
        match (&attempt.outcome, zxid) {
            (Done::Ok, Some(zxid)) => {
                self.record.changes.push((parent.to_owned(), Change { zxid, kind: EventKind::ChildrenChanged }));
                self.record.changes.push((child.to_owned(), Change { zxid, kind }));
            }
            (Done::Unknown, _) => {
                self.record.unknown.insert(parent.to_owned());
            }
            _ => {}
        }
    }

    /// A sync and a read after every writer stopped: the reply's zxid is past every change.
    async fn final_read(&mut self) {
        if !self.reconnected().await {
            return;
        }
        let kids = self.paths.kids.clone();
        match self.request(op::SYNC, &raw::Jute::new().str(&kids).bytes(), None).await {
            Some((reply, _)) if reply.err == code::OK => {}
            _ => return,
        }
        if let Some((reply, _)) = self.request(op::EXISTS, &raw::path_watch_body(&kids, false), None).await {
            if reply.err == code::OK {
                if let Some(s) = self.session.as_mut() {
                    s.final_zxid = Some(reply.zxid);
                }
            }
        }
    }

    /// closeSession; its acknowledgement ends the session for the ephemeral checker.
    async fn close(&mut self) {
        if !self.reconnected().await {
            return;
        }
        // The stream ended with the final read: what comes now is not recorded.
        let stream = self.session.as_mut().map(|s| std::mem::take(&mut s.stream)).unwrap_or_default();
        let closed = self.request(op::CLOSE_SESSION, &[], None).await;
        if let Some(s) = self.session.as_mut() {
            s.stream = stream;
            s.closed = closed.filter(|(r, _)| r.err == code::OK).map(|(_, at)| at);
            // Its nodes go with the close, at a zxid after every stream's end.
            s.kids.clear();
        }
    }
}

fn refs(set: &BTreeSet<String>) -> Vec<&str> {
    set.iter().map(String::as_str).collect()
}

/// Watches each liveness node it is told of (after a sync, so that a node found missing was
/// deleted, not yet unknown to a lagging server) and records when it saw it deleted, until
/// stopped. Its own session expiring is followed by a new one, which checks every node again.
async fn observe(
    connect_all: String,
    mut live: mpsc::UnboundedReceiver<(i64, String)>,
    mut stop: watch::Receiver<bool>,
    clock: Clock,
) -> BTreeMap<i64, u64> {
    let observed = Arc::new(Mutex::new(BTreeMap::new()));
    let mut known: Vec<(i64, String)> = Vec::new();
    let take = |observed: &Arc<Mutex<BTreeMap<i64, u64>>>| observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    loop {
        let client = loop {
            if *stop.borrow() {
                return take(&observed);
            }
            match connect(&connect_all, SESSION).await {
                Ok(client) => break Arc::new(client),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let (gone_tx, mut gone) = mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        let seen = take(&observed);
        for (session, path) in known.iter().filter(|(s, _)| !seen.contains_key(s)) {
            tasks.spawn(watch_one(client.clone(), *session, path.clone(), observed.clone(), clock, gone_tx.clone()));
        }
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => {
                    tasks.abort_all();
                    return take(&observed);
                }
                Some((session, path)) = live.recv() => {
                    known.push((session, path.clone()));
                    tasks.spawn(watch_one(client.clone(), session, path, observed.clone(), clock, gone_tx.clone()));
                }
                Some(()) = gone.recv() => {
                    tasks.abort_all();
                    break;
                }
            }
        }
    }
}

/// Waits for the deletion of one liveness node; tells `gone` when the observer's session ended.
async fn watch_one(
    client: Arc<Client>,
    session: i64,
    path: String,
    observed: Arc<Mutex<BTreeMap<i64, u64>>>,
    clock: Clock,
    gone: mpsc::UnboundedSender<()>,
) {
    let saw = |observed: &Mutex<BTreeMap<i64, u64>>| {
        observed.lock().unwrap_or_else(|e| e.into_inner()).entry(session).or_insert(clock.now());
    };
    loop {
        let check = async {
            client.sync(&path).await?;
            client.check_and_watch_stat(&path).await
        };
        match tokio::time::timeout(WAIT, check).await {
            Ok(Ok((None, _))) => return saw(&observed),
            Ok(Ok((Some(_), watcher))) => {
                let event = watcher.changed().await;
                match event.event_type {
                    EventType::NodeDeleted => return saw(&observed),
                    EventType::Session if event.session_state.is_terminated() => {
                        let _ = gone.send(());
                        return;
                    }
                    _ => {}
                }
            }
            Ok(Err(ZkError::SessionExpired | ZkError::ClientClosed)) => {
                let _ = gone.send(());
                return;
            }
            Ok(Err(e)) if lost_connection(&e) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
