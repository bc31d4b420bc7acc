//! Bad input never takes the server down: oversized frames, malformed and truncated records
//! close only the connection that sent them, an unknown opcode gets an error reply, and a few
//! hundred random frames later the server still serves.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use zookeeper_client::Client;

use crate::harness::{Bounded, TestServer, PERSISTENT};
use paddock_testkit::raw::{self, code, op, Connect, Jute, RawConn};

/// The server still answers: the bystander's session works and a new client connects.
async fn still_serving(server: &TestServer, bystander: &Client, path: &str) {
    bystander.create(path, b"", &PERSISTENT).bounded().await.expect("the bystander still works");
    let fresh = server.client().await;
    assert!(fresh.check_stat(path).bounded().await.expect("exists").is_some());
}

async fn tcp(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.client_addr).bounded().await.expect("tcp connect")
}

#[tokio::test]
async fn oversized_frames_close_only_that_connection() {
    let server = TestServer::start().await;
    let bystander = server.client().await;

    // Before the handshake: a length just over jute.maxbuffer (1 MiB).
    let mut stream = tcp(&server).await;
    stream.write_all(&((1 << 20) + 1i32).to_be_bytes()).bounded().await.expect("send");
    stream.write_all(&[0; 64]).bounded().await.expect("send");
    raw::expect_closed(&mut stream).await;

    // After the handshake: a 2 MiB request, of which only the start arrives.
    let mut conn = RawConn::connect(server.client_addr).await;
    conn.stream.write_all(&(2i32 << 20).to_be_bytes()).bounded().await.expect("send");
    conn.stream.write_all(&Jute::new().i32(1).i32(op::CREATE).bytes()).bounded().await.expect("send");
    raw::expect_closed(&mut conn.stream).await;

    // A negative length.
    let mut conn = RawConn::connect(server.client_addr).await;
    conn.stream.write_all(&(-5i32).to_be_bytes()).bounded().await.expect("send");
    raw::expect_closed(&mut conn.stream).await;

    // A whole frame one byte over the limit is refused too.
    let mut conn = RawConn::connect(server.client_addr).await;
    let mut payload = Jute::new().i32(1).i32(op::SET_DATA).str("/x").bytes();
    payload.resize((1 << 20) + 1, 7);
    let _ = raw::write_frame(&mut conn.stream, &payload).bounded().await;
    raw::expect_closed(&mut conn.stream).await;

    still_serving(&server, &bystander, "/after-oversized").await;
}

#[tokio::test]
async fn malformed_records_close_only_that_connection() {
    let server = TestServer::start().await;
    let bystander = server.client().await;
    let cases: [(&str, Vec<u8>); 6] = [
        // getData whose path claims 50 bytes but has 2.
        ("string longer than the frame", Jute::new().i32(1).i32(op::GET_DATA).i32(50).bytes()),
        // create with a negative ACL count and nothing after.
        ("negative vector length", Jute::new().i32(1).i32(op::CREATE).str("/a").buf(b"").i32(-7).bytes()),
        // setData with its version missing.
        ("missing field", Jute::new().i32(1).i32(op::SET_DATA).str("/a").buf(b"x").bytes()),
        // a header cut short.
        ("short header", vec![0, 0, 0, 1, 0, 0]),
        // a multi whose op header is cut short.
        ("truncated multi", Jute::new().i32(1).i32(op::MULTI).i32(op::CREATE).bytes()),
        // an empty frame.
        ("empty frame", Vec::new()),
    ];
    for (what, payload) in cases {
        let mut conn = RawConn::connect(server.client_addr).await;
        raw::write_frame(&mut conn.stream, &payload).bounded().await.expect("send");
        let mut closed = false;
        // The server may answer an error first; either way the connection must end.
        if let Ok(Ok(frame)) = tokio::time::timeout(crate::harness::WAIT, raw::read_frame(&mut conn.stream)).await {
            let mut r = raw::Reader(&frame);
            let (_xid, _zxid, err) = (r.i32(), r.i64(), r.i32());
            assert_ne!(err, 0, "{what}: a malformed request succeeded");
        } else {
            closed = true;
        }
        if !closed {
            raw::expect_closed(&mut conn.stream).await;
        }
    }
    still_serving(&server, &bystander, "/after-malformed").await;
}

#[tokio::test]
async fn truncated_frames_and_handshakes_close_only_that_connection() {
    let server = TestServer::start().await;
    let bystander = server.client().await;

    // A handshake cut off mid-way, then EOF.
    let mut stream = tcp(&server).await;
    let body = raw::connect_body(&Connect::default());
    stream.write_all(&(body.len() as i32).to_be_bytes()).bounded().await.expect("send");
    stream.write_all(&body[..10]).bounded().await.expect("send");
    stream.shutdown().bounded().await.expect("shutdown");
    raw::expect_closed(&mut stream).await;

    // A handshake frame too short for a ConnectRequest.
    let mut stream = tcp(&server).await;
    raw::write_frame(&mut stream, &body[..20]).bounded().await.expect("send");
    raw::expect_closed(&mut stream).await;

    // A handshake with a password length beyond the frame.
    let mut stream = tcp(&server).await;
    let lying = Jute::new().i32(0).i64(0).i32(2000).i64(0).i32(1_000_000).bytes();
    raw::write_frame(&mut stream, &lying).bounded().await.expect("send");
    raw::expect_closed(&mut stream).await;

    // A request frame cut off mid-way, then EOF.
    let mut conn = RawConn::connect(server.client_addr).await;
    conn.stream.write_all(&100i32.to_be_bytes()).bounded().await.expect("send");
    conn.stream.write_all(&Jute::new().i32(1).i32(op::GET_DATA).bytes()).bounded().await.expect("send");
    conn.stream.shutdown().bounded().await.expect("shutdown");
    raw::expect_closed(&mut conn.stream).await;

    still_serving(&server, &bystander, "/after-truncated").await;
}

#[tokio::test]
async fn unknown_opcode_gets_unimplemented() {
    let server = TestServer::start().await;
    let bystander = server.client().await;
    for unknown in [9999, 42, -77, 23] {
        let mut conn = RawConn::connect(server.client_addr).await;
        let reply = conn.request(unknown, &[1, 2, 3]).await;
        assert_eq!(reply.err, code::UNIMPLEMENTED, "opcode {unknown}");
    }
    still_serving(&server, &bystander, "/after-unknown").await;
}

/// Deterministic xorshift64.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test]
async fn random_garbage_does_not_take_the_server_down() {
    let server = TestServer::start().await;
    let bystander = server.client().await;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let opcodes =
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 100, 101, 103, 104, 105, 106, 107];
    for round in 0..200u32 {
        let mut stream = tcp(&server).await;
        let mode = round % 4;
        let len = rng.below(96) as usize;
        let mut garbage = rng.bytes(len);
        if mode >= 2 {
            // A valid session first, so the request decoders see the garbage.
            raw::write_frame(&mut stream, &raw::connect_body(&Connect::default())).bounded().await.expect("send");
            raw::read_frame(&mut stream).bounded().await.expect("handshake answer");
        }
        match mode {
            // Raw bytes where a handshake frame should be.
            0 => stream.write_all(&garbage).bounded().await.expect("send"),
            // A well-framed but random handshake.
            1 => raw::write_frame(&mut stream, &garbage).bounded().await.expect("send"),
            // A well-framed request: a real opcode with a random body.
            2 => {
                let op = opcodes[rng.below(opcodes.len() as u64) as usize];
                let mut payload = Jute::new().i32(rng.next() as i32 & 0x7fff_ffff).i32(op).bytes();
                payload.append(&mut garbage);
                raw::write_frame(&mut stream, &payload).bounded().await.expect("send");
            }
            // Raw bytes after the handshake.
            _ => stream.write_all(&garbage).bounded().await.expect("send"),
        }
        // EOF: whatever the server was waiting for will not come.
        let _ = stream.shutdown().await;
        raw::expect_closed(&mut stream).await;
    }
    still_serving(&server, &bystander, "/after-garbage").await;
    let mut conn = RawConn::connect(server.client_addr).await;
    conn.ping().await;
}
