//! sessionctl against the real daemon: every command, its output and its
//! exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use sessiond_tests::{Daemon, sessionctl};

#[test]
fn every_command_works_with_the_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let ctl = |args: &[&str]| sessionctl(&daemon.socket, args);

    assert_eq!(ctl(&["ping"]), (0, "pong".into(), String::new()));
    let (code, key, _) = ctl(&["create", "--set", "user=alice", "--set", "theme=dark", "--idle", "600"]);
    assert_eq!((code, key.len()), (0, 43));

    let (code, out, _) = ctl(&["get", &key]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["theme=dark", "user=alice"]);
    assert!(lines[2].starts_with("# version 1 "), "{out}");

    assert_eq!(ctl(&["set", &key, "cart=3", "lang=fr"]).1, "version 2");
    assert_eq!(ctl(&["unset", &key, "theme"]).1, "version 3");
    assert_eq!(ctl(&["set", &key, "x=1", "--if-version", "1"]).0, 1, "CAS conflict is an error");
    let (code, out, _) = ctl(&["--json", "get", &key]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""fields":{"cart":"3","lang":"fr","user":"alice"}"#), "{out}");
    assert!(out.contains(r#""expiry":{"idle_secs":600}"#), "{out}");

    assert_eq!(ctl(&["replace", &key, "only=this"]).1, "version 4");
    assert_eq!(ctl(&["get", &key]).1.lines().next(), Some("only=this"));
    assert_eq!(ctl(&["touch", &key]).1, "version 4");
    assert_eq!(ctl(&["exists", &key]), (0, "true".into(), String::new()));

    let (code, new_key, _) = ctl(&["cycle", &key]);
    assert_eq!((code, new_key.len()), (0, 43));
    assert_ne!(new_key, key);
    let (code, _, err) = ctl(&["get", &key]);
    assert_eq!((code, err.as_str()), (3, "sessionctl: session not found"));
    assert_eq!(ctl(&["exists", &key]).0, 3);

    assert_eq!(ctl(&["delete", &new_key]), (0, "deleted".into(), String::new()));
    assert_eq!(ctl(&["delete", &new_key]).0, 3);

    let (code, out, _) = ctl(&["stats"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("requests ")), "{out}");
    let (code, out, _) = ctl(&["--json", "stats"]);
    assert!(code == 0 && out.starts_with('{') && out.contains("\"commits\":"), "{out}");
}

#[test]
fn usage_and_connection_errors_have_their_own_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("none.sock");
    let (code, _, err) = sessionctl(&nowhere, &["ping"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("sessionctl: cannot reach sessiond"), "{err}");
    assert_eq!(sessionctl(&nowhere, &["frobnicate"]).0, 2);
    assert_eq!(sessionctl(&nowhere, &["set", "KEY", "no-equals-sign"]).0, 2);
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let (code, _, err) = sessionctl(&daemon.socket, &["get", "not-a-key"]);
    assert_eq!(code, 1);
    assert!(err.contains("BAD_KEY"), "{err}");
}
