//! Feeds arbitrary bytes to the client-facing decoders: a request frame (header, then the body
//! for its opcode, then a re-encode/decode round trip) and a handshake. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_server::proto::{ConnectRequest, Request, RequestHeader};

fuzz_target!(|frame: &[u8]| {
    if let Ok((header, body)) = RequestHeader::decode(frame) {
        if let Ok(request) = Request::decode(header.op, body) {
            let mut out = Vec::new();
            request.encode(header.op, &mut out);
            assert_eq!(Request::decode(header.op, &out).as_ref(), Ok(&request));
        }
    } else {
        let _ = RequestHeader::read_xid(frame);
    }
    if let Ok(connect) = ConnectRequest::decode(frame) {
        let mut out = Vec::new();
        connect.encode(&mut out);
        assert_eq!(ConnectRequest::decode(&out).as_ref(), Ok(&connect));
    }
});
