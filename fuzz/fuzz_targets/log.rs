//! The write-ahead log parser, as the daemon runs it at start-up. The
//! first 8 bytes (little-endian) are `applied`, the last sequence number
//! the database holds; the rest is the log file.
//!
//! Properties: no panic; every frame `replayable` returns lies within the
//! input, where its offset says, with the header the bytes hold and a
//! passing CRC; the frames are numbered `applied + 1`, `applied + 2`, ...
//! and lie back to back; every payload's `entries` lie within it and,
//! re-encoded with `Redo`, give back the payload byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::wal::{Redo, entries, replayable};

const FRAME_HEADER: usize = 16;

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

/// Entries lie within their payload and re-encode to it exactly.
fn check_entries(payload: &[u8]) {
    let Ok(list) = entries(payload) else { return };
    let mut redo = Redo::default();
    for entry in &list {
        assert!(within(payload, entry.key));
        if let Some(value) = entry.value {
            assert!(within(payload, value));
        }
        redo.put(entry.table, entry.key, entry.value);
    }
    assert_eq!(redo.as_bytes(), payload, "entries do not re-encode to their payload");
}

fuzz_target!(|data: &[u8]| {
    let Some((applied, log)) = data.split_first_chunk::<8>() else { return };
    let applied = u64::from_le_bytes(*applied);
    // The payload parser directly too: behind a frame it is reached only
    // once the fuzzer has matched a CRC.
    check_entries(log);
    let Ok(frames) = replayable(log, applied) else { return };

    let mut next_offset = None;
    for (i, frame) in frames.iter().enumerate() {
        assert!(within(log, frame.payload), "payload outside the input");
        let end = frame.offset + FRAME_HEADER + frame.payload.len();
        assert!(end <= log.len());
        assert_eq!(frame.payload.as_ptr(), log[frame.offset + FRAME_HEADER..].as_ptr());
        let header = &log[frame.offset..frame.offset + FRAME_HEADER];
        assert_eq!(u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize, frame.payload.len());
        assert_eq!(u64::from_le_bytes(header[8..16].try_into().unwrap()), frame.seq);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&frame.seq.to_le_bytes());
        crc.update(frame.payload);
        assert_eq!(u32::from_le_bytes(header[4..8].try_into().unwrap()), crc.finalize());
        assert_eq!(Some(frame.seq), applied.checked_add(i as u64 + 1), "frames out of sequence");
        if let Some(expected) = next_offset {
            assert_eq!(frame.offset, expected, "replayed frames are not back to back");
        }
        next_offset = Some(end);

        check_entries(frame.payload);
    }
});
