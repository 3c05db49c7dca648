//! The load generator works against each target: a few seconds each, to
//! check it runs and reports, never how fast (CI machines are shared).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessiond_tests::{Daemon, binary};

fn load(args: &[&str], json: &std::path::Path) -> serde_json::Value {
    let out = Command::new(binary("sessiond-load"))
        .arg("run")
        .args(args)
        .args(["--duration", "1", "--warmup", "0.5", "--sessions", "200", "--connections", "4"])
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

fn check(report: &serde_json::Value) {
    assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["errors"].as_u64(), Some(0), "{report}");
    for p in ["p50", "p99", "p999", "max"] {
        assert!(report["latency_us"][p].as_f64().unwrap() > 0.0, "{report}");
    }
}

#[test]
fn the_load_generator_drives_sessiond_and_echo() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let target = format!("sessiond:{}", daemon.socket.display());
    let pid = daemon.child.id().to_string();
    let report = load(&["--target", &target, "--workload", "web", "--server-pid", &pid], &dir.path().join("s.json"));
    check(&report);
    assert!(report["by_op"]["touch-get"]["count"].as_u64().unwrap() > 0);
    assert!(report["server"]["rss_bytes"].as_u64().unwrap() > 0);
    let echo = format!("echo:{}", dir.path().join("echo.sock").display());
    check(&load(&["--target", &echo], &dir.path().join("e.json")));
}

#[test]
fn the_load_generator_drives_redis() {
    if Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("skipped: redis-server is not installed (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let mut redis = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
        .arg(&socket)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = format!("redis:{}", socket.display());
    let report = load(&["--target", &target, "--workload", "web"], &dir.path().join("r.json"));
    // The hash mapping, with requests pipelined on each connection.
    let target = format!("redis-hash:{}", socket.display());
    let hash = load(&["--target", &target, "--workload", "web", "--pipeline", "4"], &dir.path().join("h.json"));
    let _ = redis.kill();
    let _ = redis.wait();
    check(&report);
    check(&hash);
    for op in ["touch-get", "patch", "create"] {
        assert!(hash["by_op"][op]["count"].as_u64().unwrap() > 0, "{hash}");
    }
}

#[test]
fn compare_renders_both_redis_mappings() {
    if Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("skipped: redis-server is not installed (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary("sessiond-load"))
        .args(["compare", "--rounds", "1", "--duration", "0.3", "--warmup", "0.1", "--sessions", "100"])
        .args(["--cases", "get1,patch50x16", "--targets", "redis-no-persistence,redis-hash-no-persistence,echo"])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = std::fs::read_to_string(dir.path().join("results/table.md")).unwrap();
    assert!(table.contains("### get x 1 connections"), "{table}");
    assert!(table.contains("### patch x 50 connections x 16 in flight"), "{table}");
    assert!(table.contains("| redis-hash no persistence |"), "{table}");
    assert!(table.contains("| echo |"), "{table}");
    let reports: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results/compare.json")).unwrap()).unwrap();
    // Both mappings in both cases, and the echo floor at depth 1 only.
    assert_eq!(reports.as_array().unwrap().len(), 5, "{reports}");
    for report in reports.as_array().unwrap() {
        check(report);
    }
    assert!(dir.path().join("results/patch-50x16.svg").exists());
}
