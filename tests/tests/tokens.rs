//! Transfer tokens and sealed cookies through the real binary: the seed's
//! flow with sessionctl, replay after SIGKILL, 32 concurrent redeems, key
//! rotation, sealed cookies, and a key ring that start-up refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use sessiond_client::{ErrorCode, Expiry};
use sessiond_tests::{Daemon, binary, sessionctl};

const SITES: &str = "[transfer]\nsites = [\"www.example.com\", \"www.example.org\", \"www.example.net\"]\n";

#[test]
fn the_shared_session_flow_with_sessionctl() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some(SITES));
    let ctl = |args: &[&str]| sessionctl(&daemon.socket, args);
    let (_, key, _) = ctl(&["create", "--set", "cart=3"]);
    // The source page renders one <script src="https://HOST/shared-session/TOKEN.js">
    // per line of this output.
    let (code, out, _) = ctl(&["transfer", "issue", &key, "--from", "www.example.com"]);
    assert_eq!(code, 0);
    let lines: Vec<(&str, &str)> = out.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(lines.iter().map(|(h, _)| *h).collect::<Vec<_>>(), ["www.example.org", "www.example.net"]);
    let token = lines[0].1;
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "safe in a URL path");

    let (code, org_key, _) = ctl(&["transfer", "redeem", token, "--host", "www.example.org"]);
    assert_eq!(code, 0);
    assert_ne!(org_key, key);
    assert_eq!(ctl(&["get", &org_key]).1.lines().next(), Some("cart=3"));
    let (code, _, err) = ctl(&["transfer", "redeem", token, "--host", "www.example.org"]);
    assert_eq!((code, err.as_str()), (4, "sessionctl: token rejected"));
    assert_eq!(ctl(&["transfer", "redeem", lines[1].1, "--host", "www.example.org"]).0, 4, "meant for .net");
    assert_eq!(ctl(&["transfer", "issue", &key, "--from", "evil.example"]).0, 1);
    let (code, _, _) = ctl(&["--json", "transfer", "redeem", lines[1].1, "--host", "www.example.net"]);
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeemed_token_stays_redeemed_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), Some(SITES));
    let c = daemon.client().await;
    let key = c.create([("a", "1")], Expiry::Default).await.unwrap().key;
    let tokens = c.issue_transfer(&key, "www.example.com", &["www.example.org"], None).await.unwrap();
    c.redeem_transfer(&tokens[0].token, "www.example.org", None, false, None).await.unwrap();
    daemon.restart();
    let err = c.redeem_transfer(&tokens[0].token, "www.example.org", None, false, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TokenRejected));
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.iter().find(|s| s.name == "token_rejected_replay").unwrap().value, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_redeems_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some(SITES));
    let c = daemon.client().await;
    let key = c.create([("a", "1")], Expiry::Default).await.unwrap().key;
    let token = c.issue_transfer(&key, "www.example.com", &["www.example.org"], None).await.unwrap().remove(0).token;
    let mut tasks = Vec::new();
    for i in 0..32 {
        // Half share a connection, half have their own.
        let c = if i % 2 == 0 { c.clone() } else { daemon.client().await };
        let token = token.clone();
        tasks.push(tokio::spawn(async move { c.redeem_transfer(&token, "www.example.org", None, false, None).await }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::TokenRejected)),
        }
    }
    assert_eq!(wins, 1);
}

#[test]
fn keys_rotate_without_breaking_tokens_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some(SITES));
    let ctl = |args: &[&str]| sessionctl(&daemon.socket, args);
    let (_, key, _) = ctl(&["create", "--set", "a=1"]);
    let before = ctl(&["transfer", "issue", &key, "--from", "www.example.com", "--to", "www.example.org"]).1;
    let cookie = ctl(&["seal", "cart=3", "--cookie", "s", "--host", "www.example.com"]).1;
    let (code, kid, _) = ctl(&["keys", "rotate"]);
    assert_eq!((code, kid.len()), (0, 8));
    let token = before.split_once(' ').unwrap().1;
    assert_eq!(ctl(&["transfer", "redeem", token, "--host", "www.example.org"]).0, 0);
    assert_eq!(ctl(&["unseal", &cookie, "--cookie", "s", "--host", "www.example.com"]).0, 0);
    let ring = std::fs::read_to_string(dir.path().join("d/keyring")).unwrap();
    assert!(ring.contains(&format!("{kid} active")), "{ring}");
    assert_eq!(ring.lines().filter(|l| l.contains(" verify ")).count(), 1);
}

#[test]
fn sealed_cookies_with_sessionctl() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let ctl = |args: &[&str]| sessionctl(&daemon.socket, args);
    let (code, value, _) = ctl(&["seal", "cart=3", "user=alice", "--cookie", "__Host-s", "--host", "www.example.com"]);
    assert_eq!(code, 0);
    let (code, out, _) = ctl(&["unseal", &value, "--cookie", "__Host-s", "--host", "www.example.com"]);
    assert_eq!(code, 0);
    assert_eq!(&out.lines().collect::<Vec<_>>()[..2], ["cart=3", "user=alice"]);
    assert_eq!(ctl(&["unseal", &value, "--cookie", "__Host-s", "--host", "www.example.org"]).0, 4);
    let big = format!("d={}", "x".repeat(4000));
    let (code, _, err) = ctl(&["seal", &big, "--cookie", "s", "--host", "www.example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("TOO_LARGE") && err.contains("4096"), "{err}");
    assert_eq!(ctl(&["revoke-sealed", &value, "--cookie", "__Host-s", "--host", "www.example.com"]).0, 0);
    assert_eq!(ctl(&["unseal", &value, "--cookie", "__Host-s", "--host", "www.example.com"]).0, 4);
}

#[test]
fn start_up_refuses_an_unsafe_key_ring() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut daemon = Daemon::start(&data, None);
    daemon.kill();
    let ring = data.join("keyring");
    assert_eq!(std::fs::metadata(&ring).unwrap().permissions().mode() & 0o777, 0o600, "created private");
    let start = |data: &std::path::Path| Command::new(binary("sessiond")).arg("--data-dir").arg(data).output().unwrap();
    for mode in [0o644, 0o640] {
        std::fs::set_permissions(&ring, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = start(&data);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("readable by group or others") && err.contains("chmod 600"), "{err}");
    }
    std::fs::set_permissions(&ring, std::fs::Permissions::from_mode(0o600)).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::rename(&ring, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &ring).unwrap();
    let out = start(&data);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("symlink"));
    std::fs::remove_file(&ring).unwrap();
    std::fs::write(&ring, "sessiond-keyring v1\nnot a key\n").unwrap();
    std::fs::set_permissions(&ring, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = start(&data);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed"));
}
