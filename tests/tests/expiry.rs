//! Expiry through the real binary, on the real clock with short timeouts:
//! every policy ends on time, touches slide idle sessions, nothing expired is
//! ever served, and the sweeper keeps up with a mass expiry under load.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sessiond_client::{Client, Error, Expiry};
use sessiond_tests::{Daemon, sessionctl};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn stats(c: &Client) -> BTreeMap<String, u64> {
    c.stats().await.unwrap().into_iter().map(|c| (c.name, c.value)).collect()
}

/// Waits, up to `limit`, for `key` to stop existing; returns when it did.
async fn gone_at(c: &Client, key: &str, limit: Duration) -> u64 {
    let start = Instant::now();
    while c.exists(key).await.unwrap() {
        assert!(start.elapsed() < limit, "session did not expire within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_expires_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some("[expiry]\ndefault_idle_secs = 2\n"));
    let c = daemon.client().await;

    let idle = c.create([("a", "1")], Expiry::IdleSecs(1)).await.unwrap();
    let at_ms = now_ms() + 1500;
    let absolute = c.create([("a", "1")], Expiry::At(at_ms)).await.unwrap();
    let browser = c.create([("a", "1")], Expiry::BrowserClose).await.unwrap();
    let default = c.create([("a", "1")], Expiry::Default).await.unwrap();

    let s = c.get(&browser.key).await.unwrap();
    assert_eq!(s.expiry, Expiry::BrowserClose, "the client is told to drop the cookie's max-age");
    assert!(s.ttl_ms <= 2000 && s.ttl_ms > 1000, "and the daemon applies its default age: {}", s.ttl_ms);
    assert_eq!(c.get(&absolute.key).await.unwrap().expires_at_ms, at_ms);

    // Activity does not extend an absolute expiry.
    c.touch(&absolute.key).await.unwrap();
    c.patch(&absolute.key, [("b", "2")], Vec::new(), None).await.unwrap();
    assert_eq!(c.get(&absolute.key).await.unwrap().expires_at_ms, at_ms);

    let limit = Duration::from_secs(5);
    for (key, expires_at) in [
        (&idle.key, idle.expires_at_ms),
        (&absolute.key, at_ms),
        (&browser.key, browser.expires_at_ms),
        (&default.key, default.expires_at_ms),
    ] {
        let ended = gone_at(&c, key, limit).await;
        assert!(ended >= expires_at, "served after its expiry? ended {ended} < {expires_at}");
        assert!(ended < expires_at + 500, "ended late: {ended} vs {expires_at}");
        assert!(matches!(c.get(key).await, Err(Error::NotFound)));
        assert!(matches!(c.touch(key).await, Err(Error::NotFound)));
        assert!(matches!(c.set_expiry(key, Expiry::Default).await, Err(Error::NotFound)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_keeps_an_idle_session_alive_without_changing_data_or_version() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let key = c.create([("cart", "3")], Expiry::IdleSecs(1)).await.unwrap().key;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let w = c.touch(&key).await.expect("alive while touched");
        assert_eq!(w.version, 1);
    }
    let s = c.get(&key).await.unwrap();
    assert_eq!((s.version, s.fields["cart"].as_slice()), (1, &b"3"[..]));
    assert!(s.last_active_ms > s.created_ms + 2000, "activity recorded");
    gone_at(&c, &key, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_never_served_before_or_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // No periodic sweeps: only the start-up round and SWEEP remove anything.
    let mut daemon = Daemon::start(&dir.path().join("d"), Some("[expiry]\nsweep_interval_ms = 3600000\n"));
    let c = daemon.client().await;
    let mut short = Vec::new();
    for i in 0..20 {
        short.push(c.create([("i", i.to_string())], Expiry::IdleSecs(1)).await.unwrap().key);
    }
    let long = c.create([("keep", "1")], Expiry::Default).await.unwrap().key;
    for key in &short {
        gone_at(&c, key, Duration::from_secs(5)).await;
        assert!(matches!(c.get(key).await, Err(Error::NotFound)));
    }
    assert_eq!(stats(&c).await["expired_swept"], 0, "not served, though not yet swept");
    assert_eq!(stats(&c).await["sessions"], 21);

    daemon.restart();
    for key in &short {
        assert!(matches!(c.get(key).await, Err(Error::NotFound)), "served after restart");
    }
    // The start-up round removes them without being asked.
    let start = Instant::now();
    while stats(&c).await["expired_swept"] < 20 {
        assert!(start.elapsed() < Duration::from_secs(10), "not swept after start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats(&c).await["sessions"], 1);
    assert!(c.get(&long).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_expiry_is_swept_while_other_sessions_are_read_without_errors() {
    const EXPIRING: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let config = "[durability]\nmode = \"relaxed\"\nflush_interval_ms = 200\n[expiry]\nsweep_batch = 1000\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let c = daemon.client().await;
    let mut long = Vec::new();
    for i in 0..100 {
        long.push(c.create([("i", i.to_string())], Expiry::Default).await.unwrap().key);
    }
    // All of them expire at one instant. Sessions created after it (if
    // creating takes longer) are born expired: a mass expiry still.
    let instant = now_ms() + 10_000;
    let mut tasks = Vec::new();
    for t in 0..50 {
        let c = daemon.client().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..EXPIRING / 50 {
                c.create([("t", t.to_string())], Expiry::At(instant)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (c, long, stop, reads) = (c.clone(), long.clone(), stop.clone(), reads.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for key in &long {
                    c.get(key).await.expect("a live session read failed during the sweep");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    while now_ms() < instant {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expired_at = Instant::now();
    while stats(&c).await["sessions"] > 100 {
        assert!(expired_at.elapsed() < Duration::from_secs(120), "sweep too slow: {:?}", stats(&c).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = expired_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    let s = stats(&c).await;
    assert_eq!(s["expired_swept"], EXPIRING as u64);
    assert!(reads.load(Ordering::Relaxed) > 100, "the reader kept reading");
    eprintln!(
        "swept {EXPIRING} sessions within {took:?} of their expiry ({:.0}/s), {} reads meanwhile",
        EXPIRING as f64 / took.as_secs_f64(),
        reads.load(Ordering::Relaxed)
    );
}

#[test]
fn sessionctl_sets_policies_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let ctl = |args: &[&str]| sessionctl(&daemon.socket, args);
    let (_, key, _) = ctl(&["create", "--browser-close", "--set", "a=1"]);
    assert!(ctl(&["--json", "get", &key]).1.contains(r#""expiry":"browser_close""#));
    assert_eq!(ctl(&["expire", &key, "--idle", "600"]).1, "version 2");
    assert!(ctl(&["get", &key]).1.contains("expiry idle 600s"));
    let at = now_ms() / 1000 + 3600;
    assert_eq!(ctl(&["expire", &key, "--at", &at.to_string()]).0, 0);
    assert!(ctl(&["--json", "get", &key]).1.contains(&format!(r#""expiry":{{"at_ms":{}}}"#, at * 1000)));
    assert_eq!(ctl(&["create", "--idle", "5", "--browser-close"]).0, 2, "one policy at a time");
    assert_eq!(ctl(&["sweep"]), (0, "removed 0".into(), String::new()));
    assert_eq!(ctl(&["expire", &key, "--at", "1"]).0, 0, "a past time ends the session");
    assert_eq!(ctl(&["get", &key]).0, 3);
    assert_eq!(ctl(&["sweep"]).1, "removed 1");
}

/// A measurement, not a check for CI: one million sessions, then a SIGKILL
/// and a restart; prints the TTL index rebuild time and memory, the
/// daemon's resident memory, and the sweep rate when they all expire.
/// `cargo test --release -p sessiond-tests --test expiry -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement at one million sessions; takes minutes"]
async fn measure_one_million_sessions() {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let config = "[durability]\nmode = \"relaxed\"\nflush_interval_ms = 1000\n[expiry]\nsweep_interval_ms = 3600000\n";
    let mut daemon = Daemon::start(&dir.path().join("d"), Some(config));
    // Creating a million takes about a minute here; all expire after that.
    let instant = now_ms() + 150_000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let c = daemon.client().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..N / 64 + 1 {
                c.create([("user", "12345"), ("csrf", "0123456789abcdef")], Expiry::At(instant)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!("created {N} sessions in {:?}", started.elapsed());
    let c = daemon.client().await;
    let before = stats(&c).await;
    // Relaxed mode: let the last creates reach the disk before the kill.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    daemon.restart();
    let log = daemon.log();
    let rebuilt = log.lines().rfind(|l| l.contains("TTL index rebuilt")).unwrap_or_default().to_owned();
    let after = stats(&c).await;
    let rss = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or_default()
        .to_owned();
    let db = std::fs::metadata(dir.path().join("d/sessions.redb")).unwrap().len();
    eprintln!("before restart: sessions {}, ttl_index_bytes {}", before["sessions"], before["ttl_index_bytes"]);
    eprintln!("after restart: {rebuilt}");
    eprintln!(
        "after restart: sessions {}, ttl_index_bytes {} ({:.0} B/session), {rss}, database {} MB ({:.0} B/session)",
        after["sessions"],
        after["ttl_index_bytes"],
        after["ttl_index_bytes"] as f64 / after["sessions"] as f64,
        db / 1_000_000,
        db as f64 / after["sessions"] as f64
    );
    // They all expire at `instant`; then one SWEEP removes them.
    while now_ms() < instant {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let patient = Client::connect(daemon.options().timeout(Duration::from_secs(600))).await.unwrap();
    let sweep_started = Instant::now();
    let removed = patient.sweep().await.unwrap();
    let took = sweep_started.elapsed();
    eprintln!("swept {removed} sessions in {took:?}: {:.0} sessions/s", removed as f64 / took.as_secs_f64());
    assert_eq!(stats(&c).await["sessions"], 0);
}
