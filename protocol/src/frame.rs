//! Frame layout: a fixed 16-byte little-endian header, then the body.
//!
//! ```text
//! offset size field
//! 0      4    body_len   u32 LE, bytes after the header
//! 4      4    crc32      u32 LE, CRC-32 (IEEE) of the body
//! 8      4    request_id u32 LE, echoed in the response
//! 12     1    opcode     u8
//! 13     3    reserved   must be zero
//! ```
//!
//! Decoding is two-phase, as in mini-redis: first check that a whole frame is
//! buffered (`Ok(None)` when not, which is not an error), then hand out the
//! body. The length is checked against the limit before the caller waits
//! for, or allocates, the body.

use crate::error::FrameError;

pub const HEADER_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub crc: u32,
    pub request_id: u32,
    pub opcode: u8,
}

impl FrameHeader {
    /// Parses and checks a header; `max_body` is the receiver's frame limit.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_body: u32) -> Result<Self, FrameError> {
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let header = Self { body_len: u32_at(0), crc: u32_at(4), request_id: u32_at(8), opcode: bytes[12] };
        if bytes[13..16] != [0, 0, 0] {
            return Err(FrameError::Reserved);
        }
        if header.body_len > max_body {
            return Err(FrameError::TooLarge { len: header.body_len, max: max_body });
        }
        Ok(header)
    }

    /// Checks a body, read separately from the header, against the CRC.
    pub fn verify(&self, body: &[u8]) -> Result<(), FrameError> {
        if crc32fast::hash(body) == self.crc { Ok(()) } else { Err(FrameError::BadCrc) }
    }
}

/// A whole frame found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub body: &'a [u8],
    /// Bytes the frame occupies: header plus body.
    pub len: usize,
}

/// Looks for one whole frame at the start of `buf`.
///
/// Returns `Ok(None)` if more bytes are needed. The header is checked before the
/// body is awaited, so an oversized length fails at once.
pub fn decode_frame(buf: &[u8], max_body: u32) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = FrameHeader::parse(head, max_body)?;
    let total = HEADER_LEN + header.body_len as usize;
    let Some(body) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    header.verify(body)?;
    Ok(Some(Frame { header, body, len: total }))
}

/// Appends a frame to `out`; `write_body` appends the body bytes.
///
/// The header is written first as a placeholder and patched once the body
/// length and CRC are known, so the body is encoded in place, without a copy.
pub fn encode_frame(out: &mut Vec<u8>, request_id: u32, opcode: u8, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    write_body(out);
    let body = &out[start + HEADER_LEN..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(body);
    let head = &mut out[start..start + HEADER_LEN];
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    head[8..12].copy_from_slice(&request_id.to_le_bytes());
    head[12] = opcode;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, 7, 0x02, |o| o.extend_from_slice(body));
        out
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let f = frame(b"hello");
        for cut in 0..f.len() {
            assert_eq!(decode_frame(&f[..cut], 1024), Ok(None), "cut at {cut}");
        }
        let frame = decode_frame(&f, 1024).unwrap().unwrap();
        let h = frame.header;
        assert_eq!((h.request_id, h.opcode, frame.body, frame.len), (7, 0x02, &b"hello"[..], f.len()));
    }

    #[test]
    fn oversized_length_fails_before_the_body_arrives() {
        let mut f = frame(b"");
        f[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_frame(&f[..HEADER_LEN], 1 << 20), Err(FrameError::TooLarge { len: u32::MAX, max: 1 << 20 }));
    }

    #[test]
    fn every_single_bit_flip_in_the_body_is_rejected() {
        let f = frame(b"some body bytes");
        for bit in HEADER_LEN * 8..f.len() * 8 {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_frame(&g, 1024), Err(FrameError::BadCrc), "bit {bit}");
        }
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        let mut f = frame(b"x");
        f[14] = 1;
        assert_eq!(decode_frame(&f, 1024), Err(FrameError::Reserved));
    }
}
