//! First byte: the opcode; the rest: a frame body. Decoded as a request and
//! as a response.
//!
//! Properties: no panic; whatever decodes has that opcode, re-encodes
//! (`encode_body`) to bytes that decode to the same value and re-encode to
//! the same bytes, and survives a whole-frame round trip; a SESSION answer
//! encodes byte for byte the same from its borrowed form (`SessionBodyRef`,
//! how the daemon answers GET from its cache).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond_protocol::{Request, Response, decode_frame};

fuzz_target!(|data: &[u8]| {
    let Some((&opcode, body)) = data.split_first() else { return };

    if let Ok(req) = Request::decode(opcode, body) {
        assert_eq!(req.opcode(), opcode);
        let mut bytes = Vec::new();
        req.encode_body(&mut bytes);
        let again = Request::decode(opcode, &bytes).expect("a re-encoded request decodes");
        assert_eq!(again, req);
        let mut bytes2 = Vec::new();
        again.encode_body(&mut bytes2);
        assert_eq!(bytes2, bytes, "encoding is not deterministic");
        let mut frame = Vec::new();
        req.encode_frame(0xdead_beef, &mut frame);
        let f = decode_frame(&frame, u32::MAX).expect("own frame").expect("whole frame");
        assert_eq!((f.len, f.header.request_id, f.body), (frame.len(), 0xdead_beef, &bytes[..]));
    }

    if let Ok(resp) = Response::decode(opcode, body) {
        assert_eq!(resp.opcode(), opcode);
        let mut bytes = Vec::new();
        resp.encode_body(&mut bytes);
        let again = Response::decode(opcode, &bytes).expect("a re-encoded response decodes");
        assert_eq!(again, resp);
        let mut bytes2 = Vec::new();
        again.encode_body(&mut bytes2);
        assert_eq!(bytes2, bytes, "encoding is not deterministic");
        let mut frame = Vec::new();
        resp.encode_frame(7, &mut frame);
        let f = decode_frame(&frame, u32::MAX).expect("own frame").expect("whole frame");
        assert_eq!((f.len, f.body), (frame.len(), &bytes[..]));
        if let Response::Session(session) = &resp {
            let (borrowed, owned_back) = session.with_borrowed(|view| {
                let mut out = Vec::new();
                view.encode_frame(7, &mut out);
                (out, view.to_owned_body())
            });
            assert_eq!(borrowed, frame, "SessionBodyRef encodes unlike SessionBody");
            assert_eq!(&owned_back, session);
        }
    }
});
