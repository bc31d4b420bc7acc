//! A bare ZooKeeper wire client for what `zookeeper-client` will not send or will not show:
//! invalid paths, exact multi result codes, watch checks, setWatches, silent sessions,
//! malformed frames, and every frame of a connection in arrival order with its header zxid.
//! Encoding is written out by hand from the jute records so the server's codec is checked, not
//! reused.
//!
//! Two ways to use a [`RawConn`]: the asserting one of the server suites ([`RawConn::connect`],
//! [`RawConn::request`], [`RawConn::next_event`]: every step bounded by [`crate::WAIT`], a
//! surprise fails the test), and the fallible one of the robustness workload
//! ([`RawConn::try_connect`], [`RawConn::send`], [`RawConn::recv`]: I/O errors are returned, the
//! caller bounds each step and drops a connection whose step timed out). Do not mix them on one
//! connection.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wait::Bounded;

/// Request opcodes (`ZooDefs.OpCode`).
pub mod op {
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const SET_WATCHES: i32 = 101;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const CLOSE_SESSION: i32 = -11;
    pub const ERROR: i32 = -1;
}

/// Create flags (`CreateMode`).
pub mod flags {
    pub const PERSISTENT: i32 = 0;
    pub const EPHEMERAL: i32 = 1;
    pub const PERSISTENT_SEQUENTIAL: i32 = 2;
}

/// The xid of pings and their replies.
pub const PING_XID: i32 = -2;
/// The xid of notifications.
pub const NOTIFICATION_XID: i32 = -1;

/// Error codes (`KeeperException.Code`).
pub mod code {
    pub const OK: i32 = 0;
    pub const RUNTIME_INCONSISTENCY: i32 = -2;
    pub const CONNECTION_LOSS: i32 = -4;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const BAD_VERSION: i32 = -103;
    pub const NODE_EXISTS: i32 = -110;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
    pub const NO_WATCHER: i32 = -121;
    pub const RECONFIG_DISABLED: i32 = -123;
}

/// Watch event types.
pub mod event {
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

/// `AddWatchMode` of addWatch.
pub mod watch_mode {
    pub const PERSISTENT: i32 = 0;
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

/// `WatcherType` of checkWatches / removeWatches.
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// Jute encoding into a byte vector.
#[derive(Default)]
pub struct Jute(pub Vec<u8>);

impl Jute {
    pub fn new() -> Self {
        Jute(Vec::new())
    }
    pub fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bool(mut self, v: bool) -> Self {
        self.0.push(u8::from(v));
        self
    }
    pub fn buf(self, v: &[u8]) -> Self {
        let mut s = self.i32(v.len() as i32);
        s.0.extend_from_slice(v);
        s
    }
    pub fn str(self, v: &str) -> Self {
        self.buf(v.as_bytes())
    }
    pub fn strs(self, v: &[&str]) -> Self {
        v.iter().fold(self.i32(v.len() as i32), |s, p| s.str(p))
    }
    /// An ACL list of `(perms, scheme, id)`.
    pub fn acl(self, entries: &[(i32, &str, &str)]) -> Self {
        entries.iter().fold(self.i32(entries.len() as i32), |s, (perms, scheme, id)| s.i32(*perms).str(scheme).str(id))
    }
    /// The world-anyone, all-permissions ACL.
    pub fn open_acl(self) -> Self {
        self.acl(&[(31, "world", "anyone")])
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A create (or create2) request body: persistent, open ACL.
pub fn create_body(path: &str, data: &[u8], flags: i32) -> Vec<u8> {
    Jute::new().str(path).buf(data).open_acl().i32(flags).bytes()
}

/// Jute decoding.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "reply truncated: wanted {n} bytes, have {}", self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    pub fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    pub fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    pub fn bool(&mut self) -> bool {
        self.take(1)[0] != 0
    }
    pub fn buf(&mut self) -> Vec<u8> {
        let len = self.i32();
        if len < 0 {
            return Vec::new();
        }
        self.take(len as usize).to_vec()
    }
    pub fn str(&mut self) -> String {
        String::from_utf8(self.buf()).expect("utf-8 string")
    }
    pub fn rest(&self) -> usize {
        self.0.len()
    }
    /// A Stat record.
    pub fn stat(&mut self) -> Stat {
        Stat {
            czxid: self.i64(),
            mzxid: self.i64(),
            ctime: self.i64(),
            mtime: self.i64(),
            version: self.i32(),
            cversion: self.i32(),
            aversion: self.i32(),
            ephemeral_owner: self.i64(),
            data_length: self.i32(),
            num_children: self.i32(),
            pzxid: self.i64(),
        }
    }
    /// A vector of strings.
    pub fn strs(&mut self) -> Vec<String> {
        let n = self.i32().max(0);
        (0..n).map(|_| self.str()).collect()
    }
}

/// A znode's Stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// A request body of a path and a watch flag: getData, exists, getChildren(2).
pub fn path_watch_body(path: &str, watch: bool) -> Vec<u8> {
    Jute::new().str(path).bool(watch).bytes()
}

/// A setData request body (`version` -1: any).
pub fn set_data_body(path: &str, data: &[u8], version: i32) -> Vec<u8> {
    Jute::new().str(path).buf(data).i32(version).bytes()
}

/// A delete request body (`version` -1: any).
pub fn delete_body(path: &str, version: i32) -> Vec<u8> {
    Jute::new().str(path).i32(version).bytes()
}

/// A setWatches request body: the watches to set again after a reconnection, relative to the
/// last zxid the client saw.
pub fn set_watches_body(relative_zxid: i64, data: &[&str], exist: &[&str], child: &[&str]) -> Vec<u8> {
    Jute::new().i64(relative_zxid).strs(data).strs(exist).strs(child).bytes()
}

/// A setWatches2 request body: [`set_watches_body`] with the persistent and the persistent
/// recursive watches too.
pub fn set_watches2_body(relative_zxid: i64, [data, exist, child, persistent, recursive]: [&[&str]; 5]) -> Vec<u8> {
    Jute::new().i64(relative_zxid).strs(data).strs(exist).strs(child).strs(persistent).strs(recursive).bytes()
}

/// An addWatch request body: `path` and the mode ([`watch_mode`]).
pub fn add_watch_body(path: &str, mode: i32) -> Vec<u8> {
    Jute::new().str(path).i32(mode).bytes()
}

/// The body of a getData reply: data and stat.
pub fn data_reply(body: &[u8]) -> (Vec<u8>, Stat) {
    let mut r = Reader(body);
    let data = r.buf();
    (data, r.stat())
}

/// The body of a getChildren (op 8) reply.
pub fn children_reply(body: &[u8]) -> Vec<String> {
    Reader(body).strs()
}

/// One reply.
#[derive(Debug)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

/// One watch notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_type: i32,
    pub path: String,
    pub zxid: i64,
}

impl Event {
    /// Decodes a notification's body (after the reply header, whose zxid is `zxid`).
    fn decode(zxid: i64, body: &[u8]) -> Event {
        let mut r = Reader(body);
        let event_type = r.i32();
        let _state = r.i32();
        let path = r.str();
        Event { event_type, path, zxid }
    }
}

/// One frame the server sent on a connection: a reply (pings' included) or a notification.
#[derive(Debug)]
pub enum Frame {
    Reply(Reply),
    Event(Event),
}

/// The handshake answer.
#[derive(Debug)]
pub struct Handshake {
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    /// Whether the answer carried the trailing readOnly byte.
    pub read_only: Option<bool>,
}

/// A ConnectRequest's fields.
pub struct Connect {
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub password: Vec<u8>,
    pub read_only: Option<bool>,
}

impl Default for Connect {
    fn default() -> Self {
        Connect { last_zxid_seen: 0, timeout_ms: 2000, session_id: 0, password: vec![0; 16], read_only: Some(false) }
    }
}

/// A raw connection.
pub struct RawConn {
    pub stream: TcpStream,
    pub handshake: Handshake,
    next_xid: i32,
    /// Notifications received while waiting for replies.
    pub events: VecDeque<Event>,
}

/// Writes one length-prefixed frame.
pub async fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await
}

/// Reads one length-prefixed frame; fails the test on a length out of bounds.
pub async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    assert!((0..=16 << 20).contains(&len), "server sent frame length {len}");
    let mut body = vec![0; len as usize];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one length-prefixed frame; a length out of bounds is an `InvalidData` error. Not
/// cancel-safe: a connection whose read was dropped half-way is out of step.
async fn try_read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    if !(0..=16 << 20).contains(&len) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("server sent frame length {len}")));
    }
    let mut body = vec![0; len as usize];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Splits a frame into its reply header and body, and a notification's body into its event.
fn decode_frame(frame: &[u8]) -> io::Result<Frame> {
    if frame.len() < 16 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a {}-byte reply frame", frame.len())));
    }
    let mut r = Reader(frame);
    let (xid, zxid, err) = (r.i32(), r.i64(), r.i32());
    Ok(if xid == NOTIFICATION_XID {
        Frame::Event(Event::decode(zxid, r.0))
    } else {
        Frame::Reply(Reply { xid, zxid, err, body: r.0.to_vec() })
    })
}

/// Reads until the server closes the connection, ignoring whatever it sends first. Fails the
/// test if the connection stays open for [`crate::WAIT`].
pub async fn expect_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }
    .bounded()
    .await
}

/// Decodes a ConnectResponse; the count of trailing bytes after it.
fn decode_handshake(body: &[u8]) -> (Handshake, usize) {
    let mut r = Reader(body);
    let _protocol_version = r.i32();
    let timeout_ms = r.i32();
    let session_id = r.i64();
    let password = r.buf();
    let read_only = (r.rest() > 0).then(|| r.bool());
    (Handshake { timeout_ms, session_id, password, read_only }, r.rest())
}

/// Encodes a ConnectRequest (without the frame length).
pub fn connect_body(c: &Connect) -> Vec<u8> {
    let mut j = Jute::new().i32(0).i64(c.last_zxid_seen).i32(c.timeout_ms).i64(c.session_id).buf(&c.password);
    if let Some(read_only) = c.read_only {
        j = j.bool(read_only);
    }
    j.bytes()
}

impl RawConn {
    /// A new session with a 2 s timeout.
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let conn = Self::connect_with(addr, &Connect::default()).await;
        assert_ne!(conn.handshake.session_id, 0, "server refused a new session");
        conn
    }

    /// Handshakes with `c`; the answer may be a refusal (session 0).
    pub async fn connect_with(addr: SocketAddr, c: &Connect) -> RawConn {
        let mut stream = TcpStream::connect(addr).bounded().await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        write_frame(&mut stream, &connect_body(c)).bounded().await.expect("send handshake");
        let body = read_frame(&mut stream).bounded().await.expect("handshake answer");
        let handshake = decode_handshake(&body);
        assert_eq!(handshake.1, 0, "trailing bytes in the handshake answer");
        RawConn { stream, handshake: handshake.0, next_xid: 1, events: VecDeque::new() }
    }

    /// Handshakes with `c` without asserting anything: an error when the connection fails or
    /// the server closes it without an answer (it turned the client away). The answer may be a
    /// refusal (session 0: expired or unknown). Unbounded: the caller bounds it.
    pub async fn try_connect(addr: SocketAddr, c: &Connect) -> io::Result<RawConn> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        write_frame(&mut stream, &connect_body(c)).await?;
        let body = try_read_frame(&mut stream).await?;
        if body.len() < 4 + 4 + 8 + 4 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short handshake answer"));
        }
        let (handshake, _) = decode_handshake(&body);
        Ok(RawConn { stream, handshake, next_xid: 1, events: VecDeque::new() })
    }

    /// Sends a request under a fresh xid without waiting; returns the xid.
    pub async fn send(&mut self, op: i32, body: &[u8]) -> io::Result<i32> {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.send_with_xid(xid, op, body).await?;
        Ok(xid)
    }

    /// Sends a request under `xid` without waiting.
    pub async fn send_with_xid(&mut self, xid: i32, op: i32, body: &[u8]) -> io::Result<()> {
        let mut payload = Jute::new().i32(xid).i32(op).bytes();
        payload.extend_from_slice(body);
        write_frame(&mut self.stream, &payload).await
    }

    /// Sends a ping (answered under [`PING_XID`]) without waiting.
    pub async fn send_ping(&mut self) -> io::Result<()> {
        self.send_with_xid(PING_XID, op::PING, &[]).await
    }

    /// The next frame off the wire, reply or notification, in arrival order. Not cancel-safe
    /// (see [`try_read_frame`]): drop the connection if this is timed out.
    pub async fn recv(&mut self) -> io::Result<Frame> {
        let frame = try_read_frame(&mut self.stream).await?;
        decode_frame(&frame)
    }

    /// The session id.
    pub fn session_id(&self) -> i64 {
        self.handshake.session_id
    }

    /// Sends a request with a fresh xid and waits for its reply, queueing notifications that
    /// arrive first.
    pub async fn request(&mut self, op: i32, body: &[u8]) -> Reply {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.request_with_xid(xid, op, body).await
    }

    /// Sends a request under `xid` and waits for the reply with that xid.
    pub async fn request_with_xid(&mut self, xid: i32, op: i32, body: &[u8]) -> Reply {
        let mut payload = Jute::new().i32(xid).i32(op).bytes();
        payload.extend_from_slice(body);
        write_frame(&mut self.stream, &payload).bounded().await.expect("send request");
        loop {
            let reply = self.next_reply().await;
            if reply.xid == xid {
                return reply;
            }
            assert_eq!(reply.xid, -2, "unexpected reply {reply:?} while waiting for xid {xid}");
        }
    }

    /// Reads the next non-notification reply (of pipelined requests, say), queueing the
    /// notifications that arrive first.
    pub async fn next_reply(&mut self) -> Reply {
        loop {
            let frame = read_frame(&mut self.stream).bounded().await.expect("reply frame");
            match decode_frame(&frame).expect("a reply frame") {
                Frame::Event(event) => self.events.push_back(event),
                Frame::Reply(reply) => return reply,
            }
        }
    }

    /// A ping round trip: every notification the server queued for this connection before the
    /// ping is in [`RawConn::events`] afterwards.
    pub async fn ping(&mut self) {
        let reply = self.request_with_xid(PING_XID, op::PING, &[]).await;
        assert_eq!(reply.err, 0);
    }

    /// Waits until at least one notification is queued and takes it.
    pub async fn next_event(&mut self) -> Event {
        if let Some(event) = self.events.pop_front() {
            return event;
        }
        let frame = read_frame(&mut self.stream).bounded().await.expect("notification frame");
        match decode_frame(&frame).expect("a notification frame") {
            Frame::Event(event) => event,
            Frame::Reply(reply) => panic!("expected a notification, got {reply:?}"),
        }
    }

    /// Closes the session (closeSession) and waits for the server's answer.
    pub async fn close_session(&mut self) -> Reply {
        self.request(op::CLOSE_SESSION, &[]).await
    }
}

/// A multi request body from `(opcode, body)` pairs.
pub fn multi_body(ops: &[(i32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (op, body) in ops {
        out.extend(Jute::new().i32(*op).bool(false).i32(-1).bytes());
        out.extend_from_slice(body);
    }
    out.extend(Jute::new().i32(-1).bool(true).i32(-1).bytes());
    out
}

/// A multi result: `(type, err)` per op; `err` is the error code for error results, else 0.
pub fn multi_results(body: &[u8]) -> Vec<(i32, i32)> {
    let mut r = Reader(body);
    let mut results = Vec::new();
    loop {
        let (ty, done, err) = (r.i32(), r.bool(), r.i32());
        if done {
            break;
        }
        match ty {
            op::ERROR => results.push((ty, r.i32())),
            op::CREATE => {
                r.str();
                results.push((ty, err));
            }
            op::CREATE2 => {
                r.str();
                r.take(68);
                results.push((ty, err));
            }
            op::SET_DATA => {
                r.take(68);
                results.push((ty, err));
            }
            op::DELETE | op::CHECK => results.push((ty, err)),
            other => panic!("unexpected multi result type {other}"),
        }
    }
    assert_eq!(r.rest(), 0, "trailing bytes after the multi results");
    results
}
