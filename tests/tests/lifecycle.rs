//! Start-up and shutdown of the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use sessiond_client::{Error, Expiry};
use sessiond_tests::{Daemon, binary};

#[test]
fn a_second_daemon_on_the_same_data_directory_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut first = Daemon::start(&data, None);
    let out = Command::new(binary("sessiond")).arg("--data-dir").arg(&data).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held by another process"), "{err}");
    // Another data directory but the live daemon's socket: refused too.
    let out = Command::new(binary("sessiond"))
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .arg("--socket")
        .arg(&first.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already serving"));
    // The first daemon is unharmed.
    assert!(first.is_running());
    first.blocking().ping().unwrap();
}

#[test]
fn a_stale_socket_from_a_killed_daemon_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    daemon.kill();
    assert!(daemon.socket.exists(), "SIGKILL leaves the socket file behind");
    daemon.restart();
    daemon.blocking().ping().unwrap();
}

#[test]
fn shutdown_leaves_a_socket_another_daemon_bound_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    // What a daemon on another data directory does with the same socket
    // path once it finds this one's file stale: unlink it and bind its own.
    std::fs::remove_file(&daemon.socket).unwrap();
    let newer = std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap();
    daemon.signal(Signal::TERM);
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(daemon.socket.exists(), "the newer socket file is left in place");
    std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    drop(newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_in_flight_requests_commits_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    let client = daemon.client().await;
    // Writers run until the daemon stops answering, so requests are in
    // flight when the signal arrives.
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000u32 {
                match c.create(vec![("i", format!("{t}-{i}"))], Expiry::Default).await {
                    Ok(created) => acked.push(created.key),
                    Err(Error::Disconnected | Error::Io(_)) => return acked,
                    Err(e) => panic!("unexpected error during shutdown: {e}"),
                }
            }
            panic!("the daemon never stopped");
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    daemon.signal(Signal::TERM);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(!acked.is_empty());
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(!daemon.socket.exists(), "the socket file is removed");
    assert!(daemon.log().contains("stopped cleanly"));
    daemon.restart();
    let c = daemon.client().await;
    for key in &acked {
        c.get(key).await.expect("every acknowledged create survived the shutdown");
    }
}

#[test]
fn configuration_errors_name_the_problem_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[limits]\nmax_frmae = 1\n").unwrap();
    let out = Command::new(binary("sessiond")).arg("--config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_frmae") && err.contains("bad.toml"), "{err}");
    let out = Command::new(binary("sessiond")).arg("--config").arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_every_option() {
    let out = Command::new(binary("sessiond")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in ["--config", "--data-dir", "--socket", "--threads", "sessiond-data"] {
        assert!(help.contains(option), "--help does not mention {option}:\n{help}");
    }
}

#[test]
fn with_no_arguments_it_serves_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary("sessiond"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "sessiond ready: listening on sessiond-data/sessiond.sock");
    let socket = dir.path().join("sessiond-data/sessiond.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);
    assert!(dir.path().join("sessiond-data/sessions.redb").exists());
    let client = sessiond_client::blocking::Client::connect(sessiond_client::Options::new(&socket)).unwrap();
    client.ping().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn every_sample_config_in_the_repository_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut samples =
        vec![("dist/sessiond.toml".to_owned(), std::fs::read_to_string(root.join("dist/sessiond.toml")).unwrap())];
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (i, block) in readme.split("```toml\n").skip(1).enumerate() {
        samples.push((format!("README.md block {i}"), block.split("```").next().unwrap().to_owned()));
    }
    assert!(samples.len() >= 2, "the README shows its configuration");
    for (name, text) in samples {
        sessiond::Config::from_toml(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    }
}
