//! One client connection: its buffers and framing state. No policy here;
//! the event loop decides when to read, dispatch, flush and close.

use std::io;
use std::time::Instant;

use sessiond_protocol::{ErrorCode, HEADER_LEN, Request, Response, decode_frame};

use super::transport::Stream;

const INITIAL_READ_BUF: usize = 4096;
/// A buffer that grew past this for a large frame or answer is given back
/// once it is empty, so an idle connection holds kilobytes, not the
/// largest thing it ever carried.
const KEEP_BUF: usize = 64 << 10;

#[derive(Debug)]
pub(super) enum ReadOutcome {
    /// Bytes arrived; `drained`: fewer than asked for, so the socket's
    /// receive queue was empty when the read returned.
    Data {
        drained: bool,
    },
    WouldBlock,
    Eof,
}

/// What the next buffered frame holds.
#[derive(Debug)]
pub(super) enum Incoming {
    /// No whole frame is buffered yet.
    Nothing,
    Request(u32, Request),
    /// A frame that cannot be served; the stream cannot be trusted after it.
    Bad {
        request_id: u32,
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug)]
pub(super) struct Conn {
    pub stream: Stream,
    /// When the connection was accepted: for the TLS handshake timeout.
    pub opened: Instant,
    /// Distinguishes this connection from earlier ones in the same slot, so
    /// a late answer for a closed connection is never sent to a new one.
    pub generation: u64,
    /// Unparsed input is `rbuf[lo..hi]`.
    rbuf: Vec<u8>,
    lo: usize,
    hi: usize,
    /// Unsent output is `wbuf[wpos..]`.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Requests queued to the writer and not yet answered.
    pub inflight: u32,
    pub greeted: bool,
    /// Read no more requests; close once answers are flushed.
    pub closing: bool,
    pub peer_eof: bool,
    pub write_interest: bool,
    /// Already on the loop's list of connections to drive this round.
    pub scheduled: bool,
    /// Last byte received or answer delivered: for the idle timeout.
    pub last_activity: Instant,
    /// Since when answers have been waiting with none of their bytes taken
    /// by the client: for the write timeout. `None` with nothing pending.
    pub write_stalled_since: Option<Instant>,
    /// This connection's pending output as last added to the loops' shared
    /// total (see `EventLoop::account`).
    pub accounted: usize,
    /// When the frame now partly buffered began: for the frame timeout.
    pub frame_started: Option<Instant>,
    /// Stopped reading at the in-flight limit (counted once per stop).
    pub paused: bool,
    /// Stopped serving for unsent answers (counted once per stop).
    pub output_paused: bool,
    /// The socket may hold unread bytes: set by every poll event for it,
    /// cleared when a read finds the receive queue empty. Polling is
    /// edge-triggered, so a cleared flag is set again by the next arrival.
    pub readable: bool,
    /// The peer closed its side (or the socket failed): read until EOF,
    /// since no further event will come to report it.
    pub read_closed: bool,
}

impl Conn {
    pub fn new(stream: Stream, generation: u64) -> Self {
        Self {
            stream,
            opened: Instant::now(),
            generation,
            rbuf: vec![0; INITIAL_READ_BUF],
            lo: 0,
            hi: 0,
            wbuf: Vec::new(),
            wpos: 0,
            inflight: 0,
            greeted: false,
            closing: false,
            peer_eof: false,
            write_interest: false,
            scheduled: false,
            last_activity: Instant::now(),
            write_stalled_since: None,
            accounted: 0,
            frame_started: None,
            paused: false,
            output_paused: false,
            readable: true,
            read_closed: false,
        }
    }

    /// Reads once into the buffer, which grows up to `max_total` bytes (one
    /// header plus the largest frame). Never called with a full buffer: a
    /// buffer of `max_total` always holds a whole frame, which the loop
    /// consumes before reading again.
    pub fn read_some(&mut self, max_total: usize) -> io::Result<ReadOutcome> {
        if self.lo == self.hi {
            self.lo = 0;
            self.hi = 0;
            if self.rbuf.len() > KEEP_BUF {
                self.rbuf = vec![0; INITIAL_READ_BUF];
            }
        }
        if self.hi == self.rbuf.len() {
            if self.lo > 0 {
                self.rbuf.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            } else {
                let grown = (self.rbuf.len() * 2).min(max_total);
                if grown == self.rbuf.len() {
                    return Err(io::Error::other("read buffer full without a whole frame"));
                }
                self.rbuf.resize(grown, 0);
            }
        }
        let space = self.rbuf.len() - self.hi;
        match self.stream.read(&mut self.rbuf[self.hi..]) {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => {
                self.hi += n;
                self.last_activity = Instant::now();
                Ok(ReadOutcome::Data { drained: n < space && self.stream.short_read_drains() })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(ReadOutcome::Data { drained: false }),
            Err(e) => Err(e),
        }
    }

    /// Takes the next whole frame from the buffer, if any.
    pub fn next_frame(&mut self, max_frame: u32) -> Incoming {
        let buffered = &self.rbuf[self.lo..self.hi];
        match decode_frame(buffered, max_frame) {
            Ok(None) => Incoming::Nothing,
            Ok(Some(frame)) => {
                let header = frame.header;
                let decoded = Request::decode(header.opcode, frame.body);
                self.lo += frame.len;
                match decoded {
                    Ok(request) => Incoming::Request(header.request_id, request),
                    Err(e) => Incoming::Bad { request_id: header.request_id, code: e.code(), message: e.to_string() },
                }
            }
            Err(e) => {
                // The header was whole (errors need it), so its id is readable.
                let id = buffered.get(8..12).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                Incoming::Bad { request_id: id, code: e.code(), message: e.to_string() }
            }
        }
    }

    /// Bytes of a frame not yet complete.
    pub fn partial_frame(&self) -> bool {
        self.hi > self.lo
    }

    pub fn push_response(&mut self, request_id: u32, response: &Response) {
        response.encode_frame(request_id, &mut self.wbuf);
    }

    /// The output buffer, for answers encoded without a [`Response`].
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    pub fn output_pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Every answer has left, including bytes the stream itself still
    /// holds (TLS records).
    pub fn all_sent(&self) -> bool {
        self.output_pending() == 0 && !self.stream.holds_output()
    }

    /// Writes as much output as the socket takes. Returns true when all of
    /// it is written.
    pub fn flush(&mut self) -> io::Result<bool> {
        let start = self.wpos;
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The clock runs from the last byte the client took.
                    if self.wpos > start || self.write_stalled_since.is_none() {
                        self.write_stalled_since = Some(Instant::now());
                    }
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The stream's own bytes (TLS records) must leave too before the
        // answers count as delivered.
        if !self.stream.flush()? {
            if self.wpos > start || self.write_stalled_since.is_none() {
                self.write_stalled_since = Some(Instant::now());
            }
            self.release_wbuf();
            return Ok(false);
        }
        self.write_stalled_since = None;
        self.release_wbuf();
        Ok(true)
    }

    fn release_wbuf(&mut self) {
        if self.wbuf.capacity() > KEEP_BUF {
            self.wbuf = Vec::new();
        } else {
            self.wbuf.clear();
        }
        self.wpos = 0;
    }
}

/// Bytes one connection may buffer for reading: a header and the largest frame.
pub(super) fn read_capacity(max_frame: u32) -> usize {
    HEADER_LEN + max_frame as usize
}
