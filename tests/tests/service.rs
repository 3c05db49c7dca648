//! Running as a system service: who may connect, the socket's modes, every
//! connection limit, SIGHUP reload, readiness notification, Prometheus
//! metrics, and logs that never carry a secret.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use sessiond_client::{ErrorCode, Expiry};
use sessiond_protocol::{Hello, PROTOCOL_VERSION, Request};
use sessiond_tests::{Daemon, binary, sessionctl};

fn stat(daemon: &Daemon, name: &str) -> u64 {
    let stats = daemon.blocking().stats().unwrap();
    stats.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no counter {name}")).value
}

fn hello(id: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Request::Hello(Hello { version: PROTOCOL_VERSION, client: "limits".into() }).encode_frame(id, &mut out);
    out
}

/// Reads until the daemon closes; returns how long that took.
fn time_to_close(s: &mut UnixStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the daemon did not close the connection within {limit:?}: {e}"),
        }
    }
}

#[test]
fn peers_that_are_not_allowed_are_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running a client as another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // File permissions loosened on purpose: only the credentials check stands.
    let open = "socket_mode = \"0666\"\n";
    let as_nobody = |daemon: &Daemon| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(binary("sessionctl"))
            .arg("--socket")
            .arg(&daemon.socket)
            .arg("ping")
            .output()
            .unwrap()
    };
    let strict = Daemon::start(&dir.path().join("strict"), Some(open));
    std::fs::set_permissions(dir.path().join("strict"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&strict);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FORBIDDEN"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stat(&strict, "connections_forbidden"), 1);
    assert!(strict.log().contains("refused a connection"));
    // A client that keeps retrying is counted, not logged line by line.
    for _ in 0..30 {
        assert_eq!(as_nobody(&strict).status.code(), Some(1));
    }
    assert_eq!(stat(&strict, "connections_forbidden"), 31);
    assert_eq!(strict.log().matches("refused a connection").count(), 1, "{}", strict.log());

    let allowing = Daemon::start(&dir.path().join("allow"), Some(&format!("{open}[access]\nallowed_uids = [65534]\n")));
    std::fs::set_permissions(dir.path().join("allow"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&allowing);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_socket_and_its_directory_get_their_modes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/sessiond.sock");
    let daemon = Daemon::start(&dir.path().join("d"), Some(&format!("socket = {:?}\n", socket.display().to_string())));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o660);
    assert_eq!(mode(&dir.path().join("run")), 0o750);
    drop(daemon);
}

#[test]
fn idle_and_slow_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits]\nidle_timeout_secs = 1\nframe_timeout_secs = 1\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let mut idle = UnixStream::connect(&daemon.socket).unwrap();
    idle.write_all(&hello(1)).unwrap();
    let took = time_to_close(&mut idle, Duration::from_secs(5));
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "idle closed after {took:?}");

    // A slow sender: half a header, then nothing.
    let mut slow = UnixStream::connect(&daemon.socket).unwrap();
    slow.write_all(&hello(1)).unwrap();
    slow.write_all(&hello(2)[..10]).unwrap();
    let took = time_to_close(&mut slow, Duration::from_secs(5));
    assert!(took < Duration::from_secs(3), "slow sender closed after {took:?}");
    assert!(stat(&daemon, "limit_idle_closed") >= 1);
    assert!(stat(&daemon, "limit_frame_timeout_closed") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inflight_and_connection_limits_hold() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some("[limits]\nmax_inflight = 1\nmax_connections = 2\n"));
    let c = daemon.client().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.create([("i", i.to_string())], Expiry::Default).await }));
    }
    for t in tasks {
        t.await.unwrap().expect("pipelined writes all answered under backpressure");
    }
    assert!(stat_async(&c, "limit_inflight_paused").await >= 1);
    // The limit holds for frames already read, not just for reading more:
    // with one write in flight, a commit holds that write and at most one
    // job of the daemon's own (a sweep). Without it, 50 pipelined writes
    // arrive in a few reads and are committed 8 and 64 at a time.
    let metrics = c.metrics().await.unwrap();
    let batch = metrics.histograms.iter().find(|h| h.name == "commit_batch_size").unwrap();
    let largest = batch.bounds.iter().zip(&batch.counts).filter(|(_, n)| **n > 0).map(|(b, _)| *b).max();
    assert!(largest <= Some(2), "a commit of more than one write: {batch:?}");
    let _second = daemon.client().await;
    let third = sessiond_client::Client::connect(daemon.options()).await.unwrap_err();
    assert_eq!(third.code(), Some(ErrorCode::Busy), "{third:?}");
    assert!(stat_async(&c, "connections_refused").await >= 1);
}

async fn stat_async(c: &sessiond_client::Client, name: &str) -> u64 {
    c.stats().await.unwrap().into_iter().find(|s| s.name == name).unwrap().value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_keys_and_settings_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let sites = |list: &str| format!("[transfer]\nsites = [{list}]\n");
    let daemon = Daemon::start(&dir.path().join("d"), Some(&sites(r#""a.example", "b.example""#)));
    let c = daemon.client().await;
    let key = c.create([("a", "1")], Expiry::Default).await.unwrap().key;
    let err = c.issue_transfer(&key, "a.example", &["c.example"], None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
    let old = c.issue_transfer(&key, "a.example", &["b.example"], None).await.unwrap().remove(0).token;
    let accepted = stat_async(&c, "connections_accepted").await;

    // New sites, a new key ring (from another daemon), and a change that
    // needs a restart.
    let other = Daemon::start(&dir.path().join("other"), None);
    drop(other);
    std::fs::copy(dir.path().join("other/keyring"), dir.path().join("d/keyring")).unwrap();
    let config = format!("cache_bytes = 1000000\n{}", sites(r#""a.example", "b.example", "c.example""#));
    std::fs::write(daemon.config_path().unwrap(), config).unwrap();
    daemon.signal(Signal::HUP);
    let start = Instant::now();
    while !daemon.log().contains("reloaded the key ring") {
        assert!(start.elapsed() < Duration::from_secs(5), "no reload; log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(c.issue_transfer(&key, "a.example", &["c.example"], None).await.is_ok(), "the new site is known");
    let err = c.redeem_transfer(&old, "b.example", None, false, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TokenRejected), "the old key ring is gone");
    assert!(daemon.log().contains("needs a restart") && daemon.log().contains("cache_bytes"), "{}", daemon.log());
    assert_eq!(stat_async(&c, "connections_accepted").await, accepted, "the connection survived");

    // A broken configuration is refused and changes nothing.
    std::fs::write(daemon.config_path().unwrap(), "colour = 1\n").unwrap();
    daemon.signal(Signal::HUP);
    let start = Instant::now();
    while !daemon.log().contains("reload refused") {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(c.issue_transfer(&key, "a.example", &["c.example"], None).await.is_ok());

    // A key ring gone missing is an error that keeps the running keys: a
    // token issued before the reload still redeems after it.
    let config = sites(r#""a.example", "b.example", "c.example""#);
    std::fs::write(daemon.config_path().unwrap(), config).unwrap();
    let before = c.issue_transfer(&key, "a.example", &["b.example"], None).await.unwrap().remove(0).token;
    std::fs::remove_file(dir.path().join("d/keyring")).unwrap();
    daemon.signal(Signal::HUP);
    let start = Instant::now();
    while !daemon.log().contains("is missing; restore it") {
        assert!(start.elapsed() < Duration::from_secs(5), "no refusal; log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!dir.path().join("d/keyring").exists(), "no new key ring was made");
    c.redeem_transfer(&before, "b.example", None, false, None).await.expect("the running keys stayed");
}

#[test]
fn readiness_and_stopping_are_notified() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut daemon =
        Daemon::start_with_env(&dir.path().join("d"), None, &[("NOTIFY_SOCKET", notify.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 sent");
    assert_eq!(&buf[..n], b"READY=1\n");
    daemon.blocking().ping().expect("ready means serving");
    daemon.signal(Signal::TERM);
    let n = socket.recv(&mut buf).expect("STOPPING=1 sent");
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)).unwrap().code(), Some(0));
}

#[test]
fn prometheus_output_parses() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.blocking();
    let key = c.create([("a", "1")], Expiry::Default).unwrap().key;
    for _ in 0..20 {
        c.get(&key).unwrap();
    }
    let _ = c.get(&"A".repeat(43));
    let (code, text, _) = sessionctl(&daemon.socket, &["stats", "--prometheus"]);
    assert_eq!(code, 0);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in\n{text}"))
    };
    assert!(matches!(value("sessiond_requests_total", None), prometheus_parse::Value::Counter(n) if n >= 22.0));
    assert!(matches!(value("sessiond_sessions", None), prometheus_parse::Value::Gauge(n) if n == 1.0));
    assert!(
        matches!(value("sessiond_errors_total", Some(("code", "not_found"))), prometheus_parse::Value::Counter(n) if n == 1.0)
    );
    match value("sessiond_request_latency_seconds", Some(("op", "GET"))) {
        prometheus_parse::Value::Histogram(buckets) => {
            let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(total, 21.0, "{buckets:?}");
        }
        other => panic!("GET latency is not a histogram: {other:?}"),
    }
    assert!(text.contains("sessiond_commit_batch_size_bucket"));
    assert!(text.contains("sessiond_token_rejected_total{reason=\"replay\"} 0"));
}

#[test]
fn logs_never_carry_keys_tokens_or_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[transfer]\nsites = [\"a.example\", \"b.example\"]\n";
    let daemon = Daemon::start_with_env(&dir.path().join("d"), Some(config), &[("RUST_LOG", "trace")]);
    let c = daemon.blocking();
    let mut secrets = Vec::new();
    let key = c.create([("a", "1")], Expiry::Default).unwrap().key;
    secrets.push(key.clone());
    c.get_touch(&key).unwrap();
    let cycled = c.cycle_bind(&key, "alice").unwrap().key;
    secrets.push(cycled.clone());
    let tokens = c.issue_transfer(&cycled, "a.example", &[], None).unwrap();
    let redeemed = c.redeem_transfer(&tokens[0].token, "b.example", None, false, None).unwrap();
    let _ = c.redeem_transfer(&tokens[0].token, "b.example", None, false, None); // a replay, logged
    let _ = c.redeem_transfer(&tokens[0].token, "a.example", None, false, None); // another host, logged
    secrets.push(tokens[0].token.clone());
    secrets.push(redeemed.key.clone());
    let sealed = c.seal([("cart", "3")], Expiry::Default, Some("alice"), "s", "a.example").unwrap().value;
    let _ = c.unseal(&sealed, "s", "b.example"); // rejected, logged
    c.revoke_sealed(&sealed, "s", "a.example").unwrap();
    secrets.push(sealed);
    let _ = c.get("not-a-key-but-secret-looking");
    c.revoke_user("alice", None).unwrap();
    c.delete(&redeemed.key).unwrap();
    let keyring = std::fs::read_to_string(dir.path().join("d/keyring")).unwrap();
    secrets.extend(keyring.lines().skip(1).map(|l| l.rsplit(' ').next().unwrap().to_owned()));
    let log = daemon.log();
    // The paths that handle secrets did log: requests, and the rejections.
    for expected in ["request", "transfer token rejected", "replayed transfer token", "sealed cookie rejected"] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
        assert!(!log.contains(&secret[..16]), "a secret's prefix is in the log");
    }
}
