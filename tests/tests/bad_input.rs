//! Malformed input, each case on its own connection, while another client
//! keeps working: the daemon answers with a typed error where it can, closes
//! that connection, and carries on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sessiond_client::Expiry;
use sessiond_protocol::{
    ErrorCode, FrameHeader, HEADER_LEN, Hello, KeyOnly, PROTOCOL_VERSION, Request, Response, decode_frame,
    encode_frame, op,
};
use sessiond_tests::Daemon;

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hello(id: u32, version: u16) -> Vec<u8> {
    let mut out = Vec::new();
    Request::Hello(Hello { version, client: "bad-input-test".into() }).encode_frame(id, &mut out);
    out
}

/// Reads until the daemon closes the connection; panics if it does not
/// within the read timeout. Returns every frame it sent.
fn frames_until_close(s: &mut UnixStream) -> Vec<(FrameHeader, Response)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the daemon did not close the connection: {e}"),
        }
    }
    let mut frames = Vec::new();
    let mut rest = &buf[..];
    while let Some(f) = decode_frame(rest, u32::MAX).expect("the daemon sends valid frames") {
        frames.push((f.header, Response::decode(f.header.opcode, f.body).expect("valid response")));
        rest = &rest[f.len..];
    }
    assert!(rest.is_empty(), "trailing partial frame from the daemon");
    frames
}

/// Sends `bytes` on a fresh connection and expects one error frame with
/// `code` for `request_id`, after any answers to earlier valid frames,
/// then a close.
fn expect_error_then_close(socket: &Path, bytes: &[u8], request_id: u32, code: ErrorCode) {
    let mut s = connect(socket);
    s.write_all(bytes).unwrap();
    let frames = frames_until_close(&mut s);
    let (h, last) = frames.last().unwrap_or_else(|| panic!("no answer; expected {code}"));
    match last {
        Response::Error(e) => {
            assert_eq!((e.code, h.request_id), (code as u16, request_id), "{}", e.message);
        }
        other => panic!("expected {code}, got {other:?}"),
    }
}

fn with_flipped_body_bit(mut frame: Vec<u8>) -> Vec<u8> {
    frame[HEADER_LEN] ^= 0x01;
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);

    // A well-behaved client works throughout.
    let client = daemon.client().await;
    let key = client.create(vec![("n", b"0".to_vec())], Expiry::Default).await.unwrap().key;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let background = {
        let (c, key, stop, served) = (client.clone(), key.clone(), stop.clone(), served.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = served.fetch_add(1, Ordering::Relaxed);
                c.patch(&key, vec![("n", n.to_string().into_bytes())], Vec::new(), None).await.unwrap();
                c.get(&key).await.unwrap();
            }
        })
    };

    let socket = daemon.socket.clone();
    tokio::task::spawn_blocking(move || run_cases(&socket)).await.unwrap();

    stop.store(true, Ordering::Relaxed);
    background.await.unwrap();
    assert!(served.load(Ordering::Relaxed) > 0);
    assert!(daemon.is_running(), "the daemon died; log:\n{}", daemon.log());
    let stats = client.stats().await.unwrap();
    let rejected = stats.iter().find(|c| c.name == "frames_rejected").unwrap().value;
    assert!(rejected >= 5, "rejections are counted: {rejected}");
}

/// A whole request and the client's hang-up that reach the daemon together
/// (it is stopped while they are sent): the request is answered and the
/// connection closed at once, not at the idle timeout. The hang-up is seen
/// only by reading past the request's bytes, which a read that returns
/// fewer bytes than asked for would otherwise end.
#[test]
fn a_request_and_a_hang_up_arriving_together_are_both_seen() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let mut ping = Vec::new();
    Request::Ping(sessiond_protocol::Empty {}).encode_frame(2, &mut ping);
    for _ in 0..3 {
        // Greeted first, so the connection is registered and idle.
        let mut s = connect(&daemon.socket);
        let greeting = hello(1, PROTOCOL_VERSION);
        s.write_all(&greeting).unwrap();
        let mut answer = [0u8; HEADER_LEN];
        s.read_exact(&mut answer).unwrap();
        let header = FrameHeader::parse(&answer, u32::MAX).unwrap();
        s.read_exact(&mut vec![0; header.body_len as usize]).unwrap();
        daemon.signal(rustix::process::Signal::STOP);
        s.write_all(&ping).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        daemon.signal(rustix::process::Signal::CONT);
        let frames = frames_until_close(&mut s);
        assert!(matches!(frames.as_slice(), [(h, Response::Pong(_))] if h.request_id == 2), "{frames:?}");
    }
}

fn run_cases(socket: &Path) {
    // Bad CRC on the very first frame: the header is whole, so its id is echoed.
    expect_error_then_close(socket, &with_flipped_body_bit(hello(7, PROTOCOL_VERSION)), 7, ErrorCode::BadFrame);

    // Bad CRC after a good exchange.
    let mut bytes = hello(1, PROTOCOL_VERSION);
    let mut ping = Vec::new();
    Request::Ping(sessiond_protocol::Empty {}).encode_frame(2, &mut ping);
    bytes.extend(with_flipped_body_bit({
        let mut get = Vec::new();
        Request::Exists(KeyOnly { key: "A".repeat(43) }).encode_frame(3, &mut get);
        get
    }));
    expect_error_then_close(socket, &bytes, 3, ErrorCode::BadFrame);

    // A length far over the limit: refused from the header alone, before
    // any body is sent, and without waiting for the client to hang up.
    let mut huge = hello(9, PROTOCOL_VERSION)[..HEADER_LEN].to_vec();
    huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_error_then_close(socket, &huge, 9, ErrorCode::TooLarge);

    // Unknown opcode after HELLO.
    let mut bytes = hello(1, PROTOCOL_VERSION);
    encode_frame(&mut bytes, 5, 0x7E, |_| {});
    expect_error_then_close(socket, &bytes, 5, ErrorCode::Unsupported);

    // A known opcode with a body that does not decode.
    let mut bytes = Vec::new();
    encode_frame(&mut bytes, 4, op::HELLO, |b| b.extend_from_slice(&[0xFF, 0xFF]));
    expect_error_then_close(socket, &bytes, 4, ErrorCode::BadFrame);

    // Trailing bytes inside a body.
    let mut bytes = Vec::new();
    encode_frame(&mut bytes, 6, op::HELLO, |b| {
        Request::Hello(Hello { version: PROTOCOL_VERSION, client: String::new() }).encode_body(b);
        b.push(0);
    });
    expect_error_then_close(socket, &bytes, 6, ErrorCode::BadFrame);

    // Reserved header bytes set.
    let mut bytes = hello(8, PROTOCOL_VERSION);
    bytes[15] = 1;
    expect_error_then_close(socket, &bytes, 8, ErrorCode::BadFrame);

    // Anything but HELLO first, and HELLO with a version we do not speak.
    expect_error_then_close(socket, &ping, 2, ErrorCode::HelloRequired);
    expect_error_then_close(socket, &hello(3, 99), 3, ErrorCode::Unsupported);

    // A truncated frame, then the client hangs up: closed, nothing served.
    let mut s = connect(socket);
    s.write_all(&hello(1, PROTOCOL_VERSION)[..10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(frames_until_close(&mut s).is_empty());

    // Random bytes: every answer is an error frame, and the connection ends.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x05e5_510d);
    for _ in 0..200 {
        let len = rng.random_range(1..300);
        let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let mut s = connect(socket);
        // The daemon may close before all bytes are written.
        let _ = s.write_all(&junk);
        let _ = s.shutdown(Shutdown::Write);
        for (_, r) in frames_until_close(&mut s) {
            assert!(matches!(r, Response::Error(_)), "random bytes got a non-error answer: {r:?}");
        }
    }
}
