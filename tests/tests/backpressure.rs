//! Answers that wait for their client: a client that reads gets every
//! answer however large, one that does not holds a bounded amount of the
//! daemon's memory until the write timeout closes it, and large writes
//! queue within their byte bounds. The bounds asserted are the ones the
//! daemon guarantees (its output limits plus one answer per connection),
//! with room for the allocator; before these limits, the same clients took
//! the daemon to gigabytes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use sessiond_client::Expiry;
use sessiond_protocol::{Get, Hello, PROTOCOL_VERSION, Request};
use sessiond_tests::{Daemon, rss_bytes, sessionctl};

const MIB: u64 = 1 << 20;
/// Just under the default `max_session_bytes` (512 KiB).
const BIG: usize = 500 << 10;

fn stat(daemon: &Daemon, name: &str) -> u64 {
    let stats = daemon.blocking().stats().unwrap();
    stats.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no counter {name}")).value
}

/// HELLO, then `n` GETs of `key`, as one byte string.
fn pipelined_gets(key: &str, n: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    Request::Hello(Hello { version: PROTOCOL_VERSION, client: "backpressure-test".into() }).encode_frame(1, &mut bytes);
    for id in 2..n + 2 {
        Request::Get(Get { key: key.into(), touch: false, ip: None, user_agent: None }).encode_frame(id, &mut bytes);
    }
    bytes
}

/// A connection that sends `bytes` and never reads. The send runs on its
/// own thread, since the daemon stops reading it; the socket is returned so
/// it stays open.
fn never_reading(socket: &Path, bytes: Vec<u8>) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap();
    let mut writer = s.try_clone().unwrap();
    writer.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
    });
    s
}

/// The daemon's RSS once it has settled: the largest of a few readings over
/// `over`, so a climb still under way is seen.
fn settled_rss(daemon: &Daemon, over: Duration) -> u64 {
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < over {
        peak = peak.max(rss_bytes(daemon.child.id()));
        std::thread::sleep(Duration::from_millis(100));
    }
    peak
}

#[test]
fn a_client_that_never_reads_holds_bounded_memory_until_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some("[limits]\nwrite_timeout_secs = 2\n"));
    let c = daemon.blocking();
    let key = c.create([("v", vec![b'x'; BIG])], Expiry::Default).unwrap().key;
    let before = settled_rss(&daemon, Duration::from_millis(300));

    // 3,000 GETs of a 500 KiB session: 1.5 GB of answers if all were encoded.
    let _stuck = never_reading(&daemon.socket, pipelined_gets(&key, 3000));
    let during = settled_rss(&daemon, Duration::from_millis(1500));
    eprintln!("one stuck reader: RSS grew by {} MiB", during.saturating_sub(before) / MIB);
    // Guaranteed: max_output_bytes (1 MiB) plus one answer, and buffers.
    assert!(during < before + 32 * MIB, "RSS grew by {} MiB", (during - before) / MIB);
    assert!(c.get(&key).is_ok(), "others are served meanwhile");

    let start = Instant::now();
    while stat(&daemon, "limit_write_timeout_closed") == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the stuck reader was never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stat(&daemon, "limit_output_paused") >= 1);
}

#[test]
fn many_clients_that_never_read_hold_bounded_memory_together() {
    let dir = tempfile::tempdir().unwrap();
    // A per-connection limit far above the total: the total must hold.
    let config = "[limits]\nmax_output_bytes = 4194304\nmax_output_total_bytes = 8388608\nwrite_timeout_secs = 30\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let c = daemon.blocking();
    let key = c.create([("v", vec![b'x'; BIG])], Expiry::Default).unwrap().key;
    let before = settled_rss(&daemon, Duration::from_millis(300));

    let stuck: Vec<UnixStream> = (0..100).map(|_| never_reading(&daemon.socket, pipelined_gets(&key, 50))).collect();
    let during = settled_rss(&daemon, Duration::from_millis(2000));
    eprintln!("100 stuck readers: RSS grew by {} MiB", during.saturating_sub(before) / MIB);
    // Guaranteed: the 8 MiB total plus one answer (~0.5 MiB) per connection,
    // 58 MiB; by the per-connection limit alone it would be 450 MiB.
    assert!(during < before + 96 * MIB, "RSS grew by {} MiB", (during - before) / MIB);
    // Readers still get answers, one at a time, while the total is reached.
    for _ in 0..3 {
        assert_eq!(c.get(&key).unwrap().fields["v"].len(), BIG);
    }
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_gets_every_large_answer() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let key = c.create([("v", vec![b'x'; BIG])], Expiry::Default).await.unwrap().key;
    // 32 answers of 500 KiB pipelined on one connection: 16 MB, sixteen
    // times max_output_bytes.
    let gets: Vec<_> = (0..32)
        .map(|_| {
            let (c, key) = (c.clone(), key.clone());
            tokio::spawn(async move { c.get(&key).await })
        })
        .collect();
    for get in gets {
        assert_eq!(get.await.unwrap().expect("every answer arrives").fields["v"].len(), BIG);
    }
    assert_eq!(stat_async(&c, "limit_write_timeout_closed").await, 0);
}

async fn stat_async(c: &sessiond_client::Client, name: &str) -> u64 {
    c.stats().await.unwrap().into_iter().find(|s| s.name == name).unwrap().value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_larger_than_the_output_limit_reaches_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some("[limits]\nmax_output_bytes = 65536\n"));
    let c = daemon.client().await;
    let ua = "a".repeat(300);
    let creates: Vec<_> = (0..2000)
        .map(|_| {
            let meta = sessiond_protocol::Meta {
                user: Some("alice".into()),
                ip: Some("192.0.2.1".into()),
                user_agent: Some(ua.clone()),
            };
            let c = c.clone();
            tokio::spawn(async move { c.create_with_meta([("a", "1")], Expiry::Default, meta).await })
        })
        .collect();
    for create in creates {
        create.await.unwrap().unwrap();
    }
    // ~700 KB of listing against 64 KiB of output limit, many times over.
    let socket = daemon.socket.clone();
    let listed = tokio::task::spawn_blocking(move || {
        (0..10).map(|_| sessionctl(&socket, &["list", "--user", "alice"])).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (code, out, err) in listed {
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().filter(|l| l.contains("192.0.2.1")).count(), 2000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_writes_from_many_clients_are_bounded_and_never_stop_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits]\nmax_batch_bytes = 4194304\nmax_queued_write_bytes = 16777216\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let c = daemon.client().await;
        for _ in 0..16 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { c.create([("v", vec![b'y'; BIG])], Expiry::Default).await }));
        }
    }
    let (mut created, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) if e.code() == Some(sessiond_protocol::ErrorCode::Busy) => busy += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(created + busy, 12 * 16);
    assert!(created > 0);
    let c = daemon.client().await;
    // Every commit stayed within its byte bound: 8 sessions of 500 KiB at
    // most, not all 192 of them.
    let metrics = c.metrics().await.unwrap();
    let batch = metrics.histograms.iter().find(|h| h.name == "commit_batch_size").expect("commit_batch_size histogram");
    let largest = batch.bounds.iter().zip(&batch.counts).filter(|(_, n)| **n > 0).map(|(b, _)| *b).max().unwrap_or(0);
    assert!(largest <= 16, "a batch of up to {largest} sessions of 500 KiB");
    c.ping().await.expect("the daemon is still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_user_with_20000_sessions_reads_nothing_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let mut creates = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let c = daemon.client().await;
        creates.spawn(async move {
            let mut pending = tokio::task::JoinSet::new();
            for _ in 0..2500 {
                let c = c.clone();
                let meta = sessiond_protocol::Meta { user: Some("alice".into()), ..Default::default() };
                pending.spawn(async move {
                    c.create_with_meta([("chunk", chunk.to_string())], Expiry::Default, meta).await
                });
            }
            while let Some(done) = pending.join_next().await {
                done.unwrap().unwrap();
            }
        });
    }
    while let Some(done) = creates.join_next().await {
        done.unwrap();
    }
    let reads_before = stat_async(&c, "db_reads").await;
    let other = daemon.client().await;
    let key = other.create([("other", "1")], Expiry::Default).await.unwrap().key;
    // Others are served between listings: the listing is memory work only.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let listing = {
            let c = c.clone();
            tokio::spawn(async move { c.list_user("alice").await })
        };
        while !listing.is_finished() {
            let started = Instant::now();
            other.get(&key).await.unwrap();
            slowest = slowest.max(started.elapsed());
        }
        assert_eq!(listing.await.unwrap().unwrap().len(), 20_000);
    }
    eprintln!("slowest GET while listing 20,000 sessions: {slowest:?}");
    assert_eq!(stat_async(&c, "db_reads").await, reads_before, "a listing or a GET went to disk");
}
