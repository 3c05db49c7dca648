//! The write-ahead log in front of redb.
//!
//! Every batch the writer commits becomes one frame: the rows it put and
//! removed, table by table, in the order it wrote them. A write is
//! acknowledged once its frame is appended (and, in strict mode, synced);
//! redb takes the same rows in one long write transaction that is committed
//! rarely, so its page copying and fsync are paid once per many batches
//! instead of once per batch.
//!
//! Frame: `len u32 | crc32 u32 | seq u64 | payload`, little-endian, the CRC
//! over `seq` and the payload. Sequence numbers rise by one per frame and
//! never restart. The database records, in the same transaction as the rows,
//! the last sequence number it holds (`meta.log_seq`), so after a crash:
//! - frames at or below it are already in redb and skipped;
//! - frames after it are applied in order, while each is whole and follows
//!   its predecessor; the first torn, corrupt or out-of-order frame ends the
//!   log. A frame is only acknowledged after it and all before it were
//!   written, so nothing after that point was acknowledged.
//!
//! After a durable redb commit (a checkpoint) the log starts again at offset
//! 0. It is not truncated: overwriting in place keeps fdatasync from having
//! to journal a size change, and the frames of earlier passes left behind
//! the new ones carry older sequence numbers, so replay stops at them. For
//! the same reason the file grows ahead of the frames in zero-filled chunks
//! ([`GROW_BYTES`], synced once each): on this project's test machine an
//! fdatasync after an append took ~150-200 µs, after an overwrite ~95 µs.
//!
//! A payload entry: `table u8 | key_len u32 | key | op u8 | value_len u32 |
//! value`, op 1 for a put (the value follows) and 0 for a removal (no
//! value). Keys and values are redb's own byte forms of the typed rows.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const FRAME_HEADER: usize = 16;
/// The file grows by at least this much at a time, zero-filled.
pub const GROW_BYTES: u64 = 4 << 20;
/// No frame may be larger. The writer keeps every batch's frame within
/// `max_batch_bytes` (plus one job), which the configuration holds to at
/// most a quarter of this; only a REVOKE_USER of millions of sessions, one
/// job, could reach it, and its batch then fails closed.
pub const MAX_FRAME: usize = 1 << 30;

/// What the log is written to: a file, or in tests a device that forgets
/// what was not synced (the power-loss test).
pub trait LogDevice: Send + std::fmt::Debug {
    /// The length in bytes.
    fn size(&self) -> io::Result<u64>;
    fn read_all(&self) -> io::Result<Vec<u8>>;
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written bytes durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes written bytes and the length durable (fsync).
    fn sync_all(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl LogDevice for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.take(self.size()?).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, bytes, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl LogDevice for Box<dyn LogDevice> {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        (**self).read_all()
    }

    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_all_at(bytes, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        (**self).sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        (**self).sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
}

/// An append-only log file of CRC-framed batches.
#[derive(Debug)]
pub struct Wal {
    file: Box<dyn LogDevice>,
    /// Where the next frame goes.
    offset: u64,
    /// The file's length: written (zeros or frames) and synced.
    allocated: u64,
    /// The frame being written, kept to reuse its allocation.
    frame: Vec<u8>,
    /// The sequence number of the next frame.
    next_seq: u64,
    /// Bytes appended since the last sync.
    unsynced: u64,
}

/// A whole frame read back from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub seq: u64,
    /// Where its header starts in the file.
    pub offset: usize,
    pub payload: &'a [u8],
}

impl Wal {
    /// Opens (creating if needed, mode 0600) the log at `path` and returns it
    /// with the bytes it holds, for [`replayable`]. Nothing is appended
    /// until [`Wal::restart`] says where the sequence continues.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<u8>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)?;
        Self::from_file(file)
    }

    /// The log on an already open file or device: tests hand it one that
    /// fails, or one that forgets what was not synced.
    pub fn from_file(file: impl LogDevice + 'static) -> io::Result<(Self, Vec<u8>)> {
        let bytes = file.read_all()?;
        let allocated = bytes.len() as u64;
        let file = Box::new(file);
        Ok((Self { file, offset: 0, allocated, frame: Vec::new(), next_seq: 1, unsynced: 0 }, bytes))
    }

    /// Starts the log over at offset 0 with `next_seq`: after a checkpoint
    /// made everything written so far durable in the database.
    pub fn restart(&mut self, next_seq: u64) {
        self.offset = 0;
        self.unsynced = 0;
        self.next_seq = next_seq;
    }

    /// Empties the file to one zeroed chunk, durably: at start, once the
    /// database holds all it had. Not to zero bytes, so that a log found
    /// empty was lost, not emptied; but a disk too full for the chunk does
    /// not stop the start (the first append tries again, and fails closed).
    pub fn reset(&mut self) -> io::Result<()> {
        if self.file.size()? > 0 {
            self.file.set_len(0)?;
            self.file.sync_all()?;
        }
        self.allocated = 0;
        self.offset = 0;
        self.unsynced = 0;
        if let Err(e) = self.grow(1) {
            tracing::warn!(error = %e, "cannot preallocate the write-ahead log");
        }
        Ok(())
    }

    /// Appends one frame whose payload is `parts`, in order (not synced);
    /// returns its sequence number. The parts are copied once, into the
    /// frame.
    pub fn append(&mut self, parts: &[&[u8]]) -> io::Result<u64> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "log frame too large"));
        }
        let seq = self.next_seq;
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        frame.extend_from_slice(&(len as u32).to_le_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(&seq.to_le_bytes());
        for part in parts {
            frame.extend_from_slice(part);
        }
        let sum = crc(seq, &frame[FRAME_HEADER..]);
        frame[4..8].copy_from_slice(&sum.to_le_bytes());
        let result = self.write_frame(&frame);
        self.frame = frame;
        result?;
        self.next_seq += 1;
        Ok(seq)
    }

    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let end = self.offset + frame.len() as u64;
        if end > self.allocated {
            self.grow(end)?;
        }
        self.file.write_all_at(frame, self.offset)?;
        self.offset = end;
        self.unsynced += frame.len() as u64;
        Ok(())
    }

    /// Extends the file with zeros to at least `end` (by [`GROW_BYTES`] or
    /// more), durably, so later syncs of frames written there change no
    /// metadata. Zeros read as the end of the log.
    fn grow(&mut self, end: u64) -> io::Result<()> {
        let target = end.max(self.allocated + GROW_BYTES);
        let zeros = vec![0u8; (target - self.allocated) as usize];
        self.file.write_all_at(&zeros, self.allocated)?;
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }

    /// Makes every appended frame durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced > 0 {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Bytes written since the log last started over.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// The sequence number of the last frame appended (0 if none ever).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
}

/// The log as two files written in turn, so that redb can catch up with one
/// while the writer appends to the other: a checkpoint never waits for the
/// writer, nor the writer for a checkpoint.
///
/// The writer switches to the other file once the active one is large or
/// old enough and everything the other holds is durable in the database;
/// the file it switches to starts over at offset 0, as one file did at a
/// checkpoint before. Sequence numbers run on across the switch, so the
/// two files together hold one run of frames, the older file's first.
#[derive(Debug)]
pub struct Log {
    files: [Wal; 2],
    active: usize,
    /// The last frame each file holds from its current pass (0: none).
    last: [u64; 2],
    /// When the active file's first frame of this pass was appended.
    since: Option<std::time::Instant>,
}

impl Log {
    pub fn new(files: [Wal; 2]) -> Self {
        Self { files, active: 0, last: [0, 0], since: None }
    }

    /// Empties both files (see [`Wal::reset`]) and continues the sequence
    /// at `next_seq` in the first: at start, once the database holds
    /// everything they had.
    pub fn reset(&mut self, next_seq: u64) -> io::Result<()> {
        for file in &mut self.files {
            file.reset()?;
            file.restart(next_seq);
        }
        self.active = 0;
        self.last = [0, 0];
        self.since = None;
        Ok(())
    }

    /// Appends one frame to the active file (see [`Wal::append`]).
    pub fn append(&mut self, parts: &[&[u8]]) -> io::Result<u64> {
        let seq = self.files[self.active].append(parts)?;
        self.last[self.active] = seq;
        self.since.get_or_insert_with(std::time::Instant::now);
        Ok(seq)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.files[self.active].sync()
    }

    /// Bytes in the active file's current pass.
    pub fn written(&self) -> u64 {
        self.files[self.active].written()
    }

    /// How long ago the active file's first frame of this pass was appended.
    pub fn age(&self) -> Option<std::time::Duration> {
        self.since.map(|t| t.elapsed())
    }

    /// The sequence number of the last frame appended (0 if none ever).
    pub fn last_seq(&self) -> u64 {
        self.files[self.active].last_seq()
    }

    /// Makes the other file the active one, if everything it holds is in
    /// the database durably (`durable`: the last frame that is). Returns
    /// the last frame of the file left, which must become durable in the
    /// database before the next switch; `None` if the other file is not
    /// free yet. The file left is synced first: a power loss must not take
    /// its tail while frames after it survive in the other.
    pub fn switch(&mut self, durable: u64) -> io::Result<Option<u64>> {
        let other = 1 - self.active;
        if self.last[other] > durable {
            return Ok(None);
        }
        self.files[self.active].sync()?;
        let next = self.files[self.active].next_seq;
        self.files[other].restart(next);
        self.last[other] = 0;
        let left = self.last[self.active];
        self.active = other;
        self.since = None;
        Ok(Some(left))
    }
}

/// The frames of the two log files `logs` to replay over a database that
/// holds everything up to `applied`, in order: the file whose current pass
/// began earlier first, then the other from where it ends. An error names
/// the file (0 or 1) it was found in.
pub fn replayable_pair<'a>(logs: [&'a [u8]; 2], applied: u64) -> Result<Vec<Frame<'a>>, (usize, LogError)> {
    // A file with no whole frame at its start has no current pass: it goes
    // first, and holds nothing to replay unless it is damaged.
    let start = |i: usize| frame_at(logs[i], 0).map_or(0, |f| f.seq);
    let order = if start(0) <= start(1) { [0, 1] } else { [1, 0] };
    let mut frames = replayable(logs[order[0]], applied).map_err(|e| (order[0], e))?;
    let next = frames.last().map_or(applied, |f| f.seq);
    frames.extend(replayable(logs[order[1]], next).map_err(|e| (order[1], e))?);
    Ok(frames)
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The frame whose header starts at `at`, if one is whole there and
/// passes its CRC.
fn frame_at(bytes: &[u8], at: usize) -> Option<Frame<'_>> {
    let header = bytes.get(at..at.checked_add(FRAME_HEADER)?)?;
    let word = |r: std::ops::Range<usize>| header[r].iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    let (len, sum, seq) = (word(0..4) as usize, word(4..8) as u32, word(8..16));
    if len > MAX_FRAME || seq == 0 {
        return None;
    }
    let payload = bytes.get(at + FRAME_HEADER..)?.get(..len)?;
    (crc(seq, payload) == sum).then_some(Frame { seq, offset: at, payload })
}

/// Every whole frame from the start of `bytes`, and the offset of the first
/// byte that does not start one (torn, corrupt, the zeros past the end).
fn parse(bytes: &[u8]) -> (Vec<Frame<'_>>, usize) {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while let Some(frame) = frame_at(bytes, at) {
        at += FRAME_HEADER + frame.payload.len();
        frames.push(frame);
    }
    (frames, at)
}

/// The first whole frame at or after `from` with a sequence number of at
/// least `min_seq`, found by trying every offset. Frames of earlier passes
/// and the zeros ahead of the frames have lower numbers, so only a frame
/// written after the point where parsing stopped qualifies.
///
/// Frame `min_seq` belonged at `from`, and every frame takes at least a
/// header, so frame `min_seq + j` cannot start before `from + j` headers:
/// only a number in about that range is a candidate. (The frames of an earlier
/// pass hold records full of timestamps and counters, and at some offset
/// their bytes read as almost any number: a looser range, up to 2^40 past
/// `min_seq`, found over a hundred thousand candidates in a 36 MiB log
/// after a clean stop, and the budget below refused the log.)
///
/// Each candidate costs a CRC over the length its header claims, so a log
/// crafted (or damaged) to hold a plausible header every few bytes would
/// make the scan quadratic: the bytes checked are capped at a few times the
/// log's size, and past that the scan gives up (`Err`), which the caller
/// treats as damage it cannot rule out.
fn later_frame(bytes: &[u8], from: usize, min_seq: u64) -> Result<Option<Frame<'_>>, ()> {
    let mut budget = bytes.len().saturating_mul(4).saturating_add(64 << 20);
    for at in from..bytes.len().saturating_sub(FRAME_HEADER) {
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        // One more than the room allows: a frame numbered past `min_seq`
        // right at `from` was never written by us, but is damage all the same.
        if seq < min_seq || seq - min_seq > ((at - from) / FRAME_HEADER + 1) as u64 {
            continue;
        }
        // Only a frame that fits is checked, so only its bytes count.
        let claimed = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if claimed <= MAX_FRAME && at + FRAME_HEADER + claimed <= bytes.len() {
            budget = budget.checked_sub(claimed).ok_or(())?;
        }
        if let Some(frame) = frame_at(bytes, at) {
            return Ok(Some(frame));
        }
    }
    Ok(None)
}

/// The frames of the log `bytes` to replay over a database that holds
/// everything up to `applied`: those after it, consecutive. Frames at or
/// below it that precede them are skipped.
///
/// Where the run ends tells a crash from damage. After a crash the run ends
/// at a torn frame, at the zeros ahead of the frames or at a frame of an
/// earlier pass, and nothing written later follows, since each frame was
/// written only after the one before it was whole. A whole frame numbered
/// past the end of the run, found anywhere after it, shows that the log
/// was damaged in the middle: the frames from that point on were
/// acknowledged, and replaying only those before it would undo them.
pub fn replayable(bytes: &[u8], applied: u64) -> Result<Vec<Frame<'_>>, LogError> {
    let (frames, stop) = parse(bytes);
    let mut out = Vec::new();
    // Sequence numbers never reach u64::MAX in use; a database or log that
    // claims they did holds nothing more to replay.
    let Some(mut expected) = applied.checked_add(1) else { return Ok(out) };
    let mut end = stop;
    for frame in frames {
        if frame.seq == expected {
            out.push(frame);
            let Some(next) = expected.checked_add(1) else { break };
            expected = next;
        } else if out.is_empty() && frame.seq < expected {
            continue;
        } else if out.is_empty() && frame.seq > expected {
            // The log was restarted past what the database holds: a
            // checkpoint it relied on is missing. Refuse rather than lose.
            return Err(LogError::Gap { applied, found: frame.seq });
        } else {
            end = frame.offset;
            break;
        }
    }
    match later_frame(bytes, end, expected) {
        Ok(Some(later)) => {
            Err(LogError::Damaged { offset: end as u64, expected, found: later.seq, at: later.offset as u64 })
        }
        Err(()) => Err(LogError::Unscannable { offset: end as u64, expected }),
        Ok(None) => Ok(out),
    }
}

/// A log that cannot be replayed without losing acknowledged writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the log starts at frame {found} but the database holds frames only up to {applied}")]
    Gap { applied: u64, found: u64 },
    #[error(
        "damaged at byte {offset}: frame {expected} is unreadable there, yet frame {found} follows at byte {at}, so \
         acknowledged writes lie past the damage"
    )]
    Damaged { offset: u64, expected: u64, found: u64, at: u64 },
    #[error(
        "damaged at byte {offset}: frame {expected} is unreadable there, and what follows holds so many \
         frame-like headers that it cannot be told in bounded time whether acknowledged writes lie past it"
    )]
    Unscannable { offset: u64, expected: u64 },
}

/// Builds the payload of one frame.
#[derive(Debug, Default)]
pub struct Redo {
    bytes: Vec<u8>,
}

impl Redo {
    pub fn put(&mut self, table: u8, key: &[u8], value: Option<&[u8]>) {
        self.bytes.push(table);
        self.bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(key);
        match value {
            Some(value) => {
                self.bytes.push(1);
                self.bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
                self.bytes.extend_from_slice(value);
            }
            None => self.bytes.push(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// One row change read back from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub table: u8,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// A payload that does not parse: the frame passed its CRC, so only a bug
/// or a tampered file can cause this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed log entry at byte {0} of frame")]
pub struct Malformed(pub usize);

/// The entries of a payload, in the order they were written.
pub fn entries(payload: &[u8]) -> Result<Vec<Entry<'_>>, Malformed> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], Malformed> {
        let bytes = payload.get(*at..*at + n).ok_or(Malformed(*at))?;
        *at += n;
        Ok(bytes)
    };
    let len = |bytes: &[u8]| u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize;
    while at < payload.len() {
        let table = take(&mut at, 1)?[0];
        let key_len = len(take(&mut at, 4)?);
        let key = take(&mut at, key_len)?;
        let value = match take(&mut at, 1)?[0] {
            0 => None,
            1 => {
                let value_len = len(take(&mut at, 4)?);
                Some(take(&mut at, value_len)?)
            }
            _ => return Err(Malformed(at - 1)),
        };
        out.push(Entry { table, key, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(frames: &[Frame<'_>]) -> Vec<u64> {
        frames.iter().map(|f| f.seq).collect()
    }

    /// A log of frames numbered `seqs`, in that order, each with a payload of
    /// its number's low byte repeated `len` times; and each frame's offset.
    fn log_of(seqs: &[u64], len: usize) -> (Vec<u8>, Vec<usize>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, _) = Wal::open(&path).unwrap();
        let mut offsets = Vec::new();
        for &seq in seqs {
            wal.restart(seq);
            wal.offset = offsets.last().map_or(0, |&o: &usize| o as u64 + (FRAME_HEADER + len) as u64);
            offsets.push(wal.offset as usize);
            wal.append(&[&vec![seq as u8; len]]).unwrap();
        }
        (std::fs::read(&path).unwrap(), offsets)
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, old) = Wal::open(&path).unwrap();
        assert!(old.is_empty());
        wal.restart(7);
        assert_eq!(wal.append(&[b"first"]).unwrap(), 7);
        // A payload given in parts is one frame, checked as a whole.
        assert_eq!(wal.append(&[b"sec".as_slice(), b"ond"]).unwrap(), 8);
        wal.sync().unwrap();
        let whole = wal.written();
        assert_eq!(wal.append(&[&[9u8; 100]]).unwrap(), 9);
        drop(wal);

        // Cut the last frame short, as a crash mid-write would.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(whole + 40).unwrap();
        let (_, bytes) = Wal::open(&path).unwrap();
        let read = replayable(&bytes, 6).unwrap();
        assert_eq!(
            read.iter().map(|f| (f.seq, f.payload)).collect::<Vec<_>>(),
            vec![(7, b"first".as_slice()), (8, b"second".as_slice())]
        );
    }

    #[test]
    fn the_file_grows_in_zeroed_chunks_ahead_of_the_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&[b"one"]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), GROW_BYTES);
        // A frame larger than a chunk still fits.
        let big = vec![7u8; GROW_BYTES as usize];
        wal.append(&[&big]).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len >= wal.written() && len >= GROW_BYTES + FRAME_HEADER as u64, "{len}");
        drop(wal);
        // The zeros after the frames end the log.
        let (_, bytes) = Wal::open(&path).unwrap();
        let read = replayable(&bytes, 0).unwrap();
        assert_eq!(seqs(&read), vec![1, 2]);
        assert_eq!(read[1].payload, big.as_slice());
    }

    #[test]
    fn a_damaged_last_frame_ends_the_log_and_a_damaged_middle_is_refused() {
        let (bytes, offsets) = log_of(&[1, 2, 3], 40);
        let mut last = bytes.clone();
        last[offsets[2] + FRAME_HEADER + 5] ^= 0x10;
        assert_eq!(seqs(&replayable(&last, 0).unwrap()), vec![1, 2]);
        // The same flip one frame earlier: frame 3 shows frame 2 was
        // acknowledged, so stopping at it would lose both.
        for at in [offsets[1] + FRAME_HEADER + 5, offsets[1] + 1, offsets[1] + 9] {
            let mut middle = bytes.clone();
            middle[at] ^= 0x10;
            assert_eq!(
                replayable(&middle, 0),
                Err(LogError::Damaged { offset: offsets[1] as u64, expected: 2, found: 3, at: offsets[2] as u64 }),
                "flip at {at}"
            );
        }
        // Damage in frames the database already holds still hides later ones.
        let mut first = bytes.clone();
        first[offsets[0] + FRAME_HEADER] ^= 1;
        assert!(matches!(replayable(&first, 1), Err(LogError::Damaged { expected: 2, found: 2, .. })));
    }

    #[test]
    fn after_a_restart_the_frames_of_the_last_pass_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, _) = Wal::open(&path).unwrap();
        for _ in 0..5 {
            wal.append(&[&[0xAB; 64]]).unwrap();
        }
        // Checkpoint at 5: the log starts over and writes one short frame.
        wal.restart(6);
        wal.append(&[b"six"]).unwrap();
        drop(wal);
        let (_, bytes) = Wal::open(&path).unwrap();
        // The short frame leaves the tail of frame 1 behind it, which does
        // not parse, so the old frames are never reached.
        assert_eq!(seqs(&replayable(&bytes, 5).unwrap()), vec![6]);
        // A torn frame 7 over the old pass is a crash, not damage: what
        // follows it is older.
        let mut torn = bytes.clone();
        torn[FRAME_HEADER + 3..FRAME_HEADER + 3 + FRAME_HEADER].copy_from_slice(&{
            let mut h = [0u8; FRAME_HEADER];
            h[0] = 200;
            h[8] = 7;
            h
        });
        assert_eq!(seqs(&replayable(&torn, 5).unwrap()), vec![6]);
    }

    #[test]
    fn the_log_moves_to_a_file_only_once_the_database_holds_it_and_replays_both_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [dir.path().join("a"), dir.path().join("b")];
        let open = || paths.each_ref().map(|p| Wal::open(p).unwrap());
        let [(a, _), (b, _)] = open();
        let mut log = Log::new([a, b]);
        log.reset(1).unwrap();
        for _ in 0..3 {
            log.append(&[b"a"]).unwrap();
        }
        // The second file is empty: free at once. Frames 1-3 stay in the first.
        assert_eq!(log.switch(0).unwrap(), Some(3));
        for _ in 0..3 {
            log.append(&[b"b"]).unwrap();
        }
        // Back to the first file only once the database holds 1-3 durably:
        // overwriting them sooner would lose them to a crash.
        assert_eq!(log.switch(2).unwrap(), None, "frame 3 is not durable yet");
        log.append(&[b"b"]).unwrap();
        let [(_, a), (_, b)] = open();
        assert_eq!(seqs(&replayable_pair([&a, &b], 0).unwrap()), (1..=7).collect::<Vec<_>>());
        assert_eq!(seqs(&replayable_pair([&b, &a], 2).unwrap()), (3..=7).collect::<Vec<_>>());
        assert_eq!(log.switch(3).unwrap(), Some(7));
        log.append(&[b"a"]).unwrap();
        log.sync().unwrap();
        // Frame 8 went to the start of the first file; the second holds
        // 4-7 and is read first, whatever order the files are given in.
        let [(_, a), (_, b)] = open();
        assert_eq!(seqs(&replayable_pair([&a, &b], 3).unwrap()), vec![4, 5, 6, 7, 8]);
        assert_eq!(seqs(&replayable_pair([&b, &a], 5).unwrap()), vec![6, 7, 8]);
        // A database behind the second file's start has lost a checkpoint.
        assert!(matches!(replayable_pair([&a, &b], 1), Err((1, LogError::Gap { applied: 1, found: 4 }))));
    }

    #[test]
    fn replay_skips_what_the_database_holds_and_stops_out_of_sequence() {
        // Database at 3; log restarted after 2, so frames 3.. follow.
        assert_eq!(seqs(&replayable(&log_of(&[3, 4, 5], 8).0, 3).unwrap()), vec![4, 5]);
        // A checkpoint at 5 committed, but the crash came before the log
        // restarted: everything is already in the database.
        assert_eq!(seqs(&replayable(&log_of(&[1, 2, 3, 4, 5], 8).0, 5).unwrap()), Vec::<u64>::new());
        // New frames, then the older frames of an earlier pass.
        assert_eq!(seqs(&replayable(&log_of(&[6, 7, 3, 4], 8).0, 5).unwrap()), vec![6, 7]);
        // A duplicate ends the run; a later frame after it, or a jump, is
        // damage.
        assert_eq!(seqs(&replayable(&log_of(&[6, 7, 7], 8).0, 5).unwrap()), vec![6, 7]);
        assert!(matches!(replayable(&log_of(&[6, 7, 7, 8], 8).0, 5), Err(LogError::Damaged { found: 8, .. })));
        assert!(matches!(replayable(&log_of(&[6, 8], 8).0, 5), Err(LogError::Damaged { expected: 7, found: 8, .. })));
        // Frames beyond a missing checkpoint are refused, not skipped.
        assert_eq!(replayable(&log_of(&[9, 10], 8).0, 5), Err(LogError::Gap { applied: 5, found: 9 }));
    }

    #[test]
    fn a_log_full_of_frame_like_headers_is_refused_in_bounded_time() {
        // Found by the `log` fuzz target: a header every few bytes claiming
        // half the log, each costing a CRC over it. 1 MiB took seconds.
        let len: usize = 1 << 20;
        let mut bytes = vec![0u8; 8];
        let claim = len as u32 / 2;
        while bytes.len() < len {
            bytes.extend_from_slice(&claim.to_le_bytes());
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(&1u64.to_le_bytes());
        }
        let started = std::time::Instant::now();
        assert_eq!(replayable(&bytes, 0), Err(LogError::Unscannable { offset: 0, expected: 1 }));
        eprintln!("refused in {:?}", started.elapsed());
    }

    #[test]
    fn an_earlier_pass_full_of_numbers_is_scanned_without_refusing_the_log() {
        // After a clean stop at frame 6, the rest of the file is an earlier
        // pass whose records read, at every 16th byte, as a header claiming
        // 64 KiB and numbered within 2^40 of 7: the shape that refused
        // real logs. No frame numbered 7 or later can be there.
        let mut stale = Vec::new();
        while stale.len() < 1 << 20 {
            stale.extend_from_slice(&(64u32 << 10).to_le_bytes());
            stale.extend_from_slice(&[0; 4]);
            stale.extend_from_slice(&(7u64 + (1 << 30)).to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.restart(2);
        wal.append(&[b"pass one"]).unwrap();
        wal.append(&[&stale]).unwrap();
        wal.restart(6);
        wal.offset = 0;
        wal.append(&[b"six"]).unwrap();
        drop(wal);
        let (_, bytes) = Wal::open(&path).unwrap();
        assert_eq!(replayable(&bytes, 6), Ok(Vec::new()));
        assert_eq!(seqs(&replayable(&bytes, 5).unwrap()), vec![6]);
    }

    #[test]
    fn sequence_numbers_at_the_top_of_the_range_end_the_log_without_overflow() {
        // Found by the `log` fuzz target: an applied number of u64::MAX.
        assert_eq!(replayable(&log_of(&[1, 2], 8).0, u64::MAX), Ok(Vec::new()));
        assert_eq!(seqs(&replayable(&log_of(&[u64::MAX - 1], 8).0, u64::MAX - 2).unwrap()), vec![u64::MAX - 1]);
    }

    #[test]
    fn payload_entries_round_trip_and_truncations_are_errors() {
        let mut redo = Redo::default();
        redo.put(1, b"key", Some(b"value"));
        redo.put(2, &[7; 32], None);
        redo.put(3, b"", Some(b""));
        let bytes = redo.as_bytes().to_vec();
        let parsed = entries(&bytes).unwrap();
        assert_eq!(
            parsed,
            vec![
                Entry { table: 1, key: b"key", value: Some(b"value") },
                Entry { table: 2, key: &[7; 32], value: None },
                Entry { table: 3, key: b"", value: Some(b"") },
            ]
        );
        for cut in 1..bytes.len() {
            let prefix = &bytes[..cut];
            // A prefix either ends on an entry boundary or is refused.
            if let Ok(found) = entries(prefix) {
                assert!(found.len() < 3 && parsed.starts_with(&found), "cut {cut}");
            }
        }
        let mut bad = bytes.clone();
        bad[1 + 4 + 3] = 9;
        assert!(entries(&bad).is_err());
    }
}
