//! The input is a byte stream as a client would send it: decode every whole
//! frame with `decode_frame`, as a connection does, and each body with
//! `Request::decode` and `Response::decode`.
//!
//! Properties: no panic; a frame never claims more bytes than remain, and
//! claims exactly its header plus its body; its header is what the bytes
//! say and its body passes the CRC; `Ok(None)` ("need more") only when the
//! frame is really incomplete; whatever decodes has the frame's opcode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond_protocol::{HEADER_LEN, Request, Response, decode_frame};

/// The daemon's default `max_frame`.
const MAX_BODY: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match decode_frame(rest, MAX_BODY) {
            Ok(Some(frame)) => {
                assert!(frame.len <= rest.len(), "frame of {} bytes in {} remaining", frame.len, rest.len());
                assert_eq!(frame.len, HEADER_LEN + frame.body.len());
                assert_eq!(frame.body, &rest[HEADER_LEN..frame.len]);
                let h = frame.header;
                assert_eq!(h.body_len as usize, frame.body.len());
                assert!(h.body_len <= MAX_BODY);
                assert_eq!(h.crc, crc32fast::hash(frame.body));
                assert_eq!(h.request_id.to_le_bytes(), rest[8..12]);
                assert_eq!((h.opcode, &rest[13..16]), (rest[12], &[0u8, 0, 0][..]));
                if let Ok(req) = Request::decode(h.opcode, frame.body) {
                    assert_eq!(req.opcode(), h.opcode);
                }
                if let Ok(resp) = Response::decode(h.opcode, frame.body) {
                    assert_eq!(resp.opcode(), h.opcode);
                }
                rest = &rest[frame.len..];
            }
            Ok(None) => {
                // Only a short header, or a body not all here yet.
                if rest.len() >= HEADER_LEN {
                    let len = u32::from_le_bytes(rest[0..4].try_into().unwrap()) as usize;
                    assert!(rest.len() < HEADER_LEN + len, "a whole frame of {len} bytes was not found");
                }
                break;
            }
            // The daemon closes the connection on a framing error.
            Err(_) => break,
        }
    }
});
