//! The daemon's stored session record (`record::Record`), as read back from
//! redb: `Record::decode` (format 2: format byte, CRC-32, bincode body) and
//! `Record::decode_v1` (format 1, no checksum: what the migration reads).
//!
//! Properties: no panic; a record that decodes (either way) encodes, in
//! the current format, to bytes that `Record::decode` gives back as the
//! same record and that re-encode to the same bytes; its packed
//! fields hold the invariant `PackedFields` promises (as many entries as
//! its count, `data_bytes` their total, the same bytes as packing the
//! list afresh); and its GET answer, encoded from the record without a
//! copy, decodes to the same data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::record::Record;
use sessiond_protocol::{PackedFields, Response, decode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        check(&record);
    }
    // The same bytes as a schema 1 record (the body decoder without the
    // checksum in front of it).
    if let Ok(record) = Record::decode_v1(data) {
        check(&record);
    }
});

fn check(record: &Record) {
    let bytes = record.encode();
    let again = Record::decode(&bytes).expect("a re-encoded record decodes");
    assert_eq!(&again, record);
    assert_eq!(again.encode(), bytes, "encoding is not deterministic");

    let fields = &record.fields;
    let list = fields.to_vec();
    assert_eq!(list.len(), fields.len());
    assert_eq!(fields.iter().len(), fields.len());
    assert_eq!(fields.data_bytes(), list.iter().map(|f| f.name.len() + f.value.len()).sum::<usize>());
    assert_eq!(&PackedFields::new(&list), fields, "packed fields differ from packing their own list");
    assert_eq!(record.data_bytes(), fields.data_bytes());
    let _ = record.memory_bytes();

    let handle = "oKGio6Slpqeoqaqr";
    let view = record.body_ref(handle, record.last_active_ms, record.expires_at_ms, record.last_active_ms);
    let mut frame = Vec::new();
    view.encode_frame(1, &mut frame);
    let f = decode_frame(&frame, u32::MAX).expect("own frame").expect("whole frame");
    match Response::decode(f.header.opcode, f.body) {
        Ok(Response::Session(body)) => {
            assert_eq!(body, view.to_owned_body());
            assert_eq!(body.fields, list);
            assert_eq!((body.version, body.expiry, body.user), (record.version, record.expiry, record.user.clone()));
        }
        other => panic!("a record's GET answer does not decode: {other:?}"),
    }
}
