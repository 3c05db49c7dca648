//! What the daemon leaves on disk, and what it does when it finds it
//! damaged: private modes, a log damaged in the middle refused (never
//! replayed in part, never truncated, kept aside), a lost log noticed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sessiond_client::Expiry;
use sessiond_tests::{Daemon, start_refused};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The offset of every frame in a log: `len u32 | crc u32 | seq u64 |
/// payload`, back to back from the start, up to the zeros after them.
fn frame_offsets(log: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while let Some(header) = log.get(at..at + 16) {
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        if u64::from_le_bytes(header[8..16].try_into().unwrap()) == 0 {
            break;
        }
        offsets.push(at);
        at += 16 + len;
    }
    offsets
}

#[test]
fn the_database_log_and_directory_are_private_and_loose_modes_are_narrowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    daemon.blocking().create([("a", "1")], Expiry::Default).unwrap();
    let db = daemon.data_dir.join("sessions.redb");
    let log = daemon.data_dir.join("sessions.log");
    assert_eq!((mode(&daemon.data_dir), mode(&db), mode(&log)), (0o700, 0o600, 0o600));

    // An older build, or an operator, left them readable by others.
    for file in [&db, &log] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    daemon.restart();
    assert_eq!((mode(&db), mode(&log)), (0o600, 0o600));
    assert!(daemon.log().contains("narrowed a data file readable by others"));
    // The log goes to a file here: no colour escapes in it.
    assert!(!daemon.log().contains('\u{1b}'), "ANSI escapes in a log file");

    // A directory others may write to is refused.
    daemon.kill();
    std::fs::set_permissions(&daemon.data_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, stderr) = start_refused(&daemon.data_dir);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("writable by group or others"), "{stderr}");
}

#[test]
fn a_log_damaged_in_the_middle_is_refused_kept_and_never_replayed_in_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.blocking();
    let keys: Vec<String> = (0..30).map(|i| c.create([("i", i.to_string())], Expiry::Default).unwrap().key).collect();
    // Logouts, each acknowledged in a frame of its own, after the creates.
    for key in &keys {
        c.delete(key).unwrap();
    }
    drop(c);
    daemon.kill();
    let log_path = daemon.data_dir.join("sessions.log");
    let mut log = std::fs::read(&log_path).unwrap();
    let offsets = frame_offsets(&log);
    assert!(offsets.len() >= 60, "one frame per acknowledged write: {}", offsets.len());
    // One flipped byte inside a frame among the creates.
    let damaged_at = offsets[10];
    log[damaged_at + 20] ^= 0x40;
    std::fs::write(&log_path, &log).unwrap();

    let (code, stderr) = start_refused(&daemon.data_dir);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("damaged at byte {damaged_at}")), "{stderr}");
    assert_eq!(std::fs::read(&log_path).unwrap(), log, "the damaged log was changed");
    let copy = daemon.data_dir.join("sessions.log.damaged");
    assert_eq!(std::fs::read(&copy).unwrap(), log, "no copy of the damaged log kept aside");
    assert_eq!(mode(&copy), 0o600);
    // A second refusal keeps the first copy and refuses the same way.
    let (again, _) = start_refused(&daemon.data_dir);
    assert_eq!(again, code);

    // The operator's way out: with the log moved aside, the daemon starts
    // from the database and says what may be lost.
    std::fs::rename(&log_path, daemon.data_dir.join("moved.log")).unwrap();
    daemon.restart();
    assert!(daemon.log().contains("write-ahead log is missing after an unclean shutdown"), "{}", daemon.log());
}

#[test]
fn an_emptied_log_after_a_crash_is_reported_and_a_clean_stop_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    daemon.blocking().create([("a", "1")], Expiry::Default).unwrap();
    daemon.kill();
    std::fs::write(daemon.data_dir.join("sessions.log"), b"").unwrap();
    daemon.restart();
    assert!(daemon.log().contains("write-ahead log is empty after an unclean shutdown"), "{}", daemon.log());

    // After a clean stop the database holds everything: an empty log loses
    // nothing and is not reported.
    daemon.signal(rustix::process::Signal::TERM);
    assert!(daemon.wait_exit(std::time::Duration::from_secs(10)).unwrap().success());
    std::fs::write(daemon.data_dir.join("sessions.log"), b"").unwrap();
    let before = daemon.log().matches("after an unclean shutdown").count();
    daemon.restart();
    assert_eq!(daemon.log().matches("after an unclean shutdown").count(), before, "{}", daemon.log());
}

/// Stops the daemon cleanly, which puts every record in the database,
/// where redb checks no page again (it verifies pages only when repairing
/// after a crash); then flips a bit in the record holding `marker`.
fn stop_and_damage(daemon: &mut Daemon, marker: &[u8]) {
    daemon.signal(rustix::process::Signal::TERM);
    assert!(daemon.wait_exit(std::time::Duration::from_secs(10)).unwrap().success());
    let db = daemon.data_dir.join("sessions.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("the value is in the database");
    bytes[at + 2] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();
}

#[test]
fn a_flipped_byte_in_a_stored_record_is_an_error_and_a_counter_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    let marker = b"a value to be damaged on disk";
    let key = daemon.blocking().create([("v", marker.as_slice())], Expiry::Default).unwrap().key;
    let other = daemon.blocking().create([("v", "intact")], Expiry::Default).unwrap().key;
    stop_and_damage(&mut daemon, marker);

    daemon.restart();
    let c = daemon.blocking();
    let err = c.get(&key).unwrap_err();
    assert_eq!(err.code(), Some(sessiond_protocol::ErrorCode::Internal), "{err:?}");
    assert_eq!(c.get(&other).unwrap().fields["v"], b"intact");
    let corrupt = c.stats().unwrap().into_iter().find(|s| s.name == "corrupt_records").unwrap().value;
    assert_eq!(corrupt, 1);
    drop(c);

    // Offline: check finds it, salvage copies out everything else.
    daemon.signal(rustix::process::Signal::TERM);
    assert!(daemon.wait_exit(std::time::Duration::from_secs(10)).unwrap().success());
    let (code, out) = tool(&daemon.data_dir, &["check"]);
    assert_eq!(code, Some(1), "{out}");
    // redb's page checksums and the record's own both see the flipped byte.
    assert!(out.contains("corrupt records: 1") && out.contains("redb integrity: FAILED"), "{out}");
    let rescued = dir.path().join("rescued");
    let (code, out) = tool(&daemon.data_dir, &["salvage", "--to", rescued.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("salvaged 1 sessions") && out.contains("1 unreadable"), "{out}");
    let (code, out) = tool(&rescued, &["check"]);
    assert_eq!(code, Some(0), "{out}");
    let rescued_daemon = Daemon::start(&rescued, None);
    let c = rescued_daemon.blocking();
    assert_eq!(c.get(&other).unwrap().fields["v"], b"intact");
    assert_eq!(c.get(&key).unwrap_err().code(), Some(sessiond_protocol::ErrorCode::NotFound));
}

#[test]
fn a_database_redb_refuses_after_a_crash_is_salvaged_from_its_last_commit_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    let marker = b"a value to be damaged on disk";
    let c = daemon.blocking();
    let damaged = c.create([("v", marker.as_slice())], Expiry::Default).unwrap().key;
    let kept: Vec<String> = (0..20).map(|i| c.create([("n", i.to_string())], Expiry::Default).unwrap().key).collect();
    let logged_out = c.create([("v", "signed out")], Expiry::Default).unwrap().key;
    c.delete(&logged_out).unwrap();
    drop(c);
    stop_and_damage(&mut daemon, marker);

    // A crash after the damage: the next open makes redb verify every
    // page, and it refuses the whole file. The write acknowledged before
    // the crash is only in the log.
    daemon.restart();
    let after = daemon.blocking().create([("v", "after the damage")], Expiry::Default).unwrap().key;
    daemon.kill();
    let (code, err) = start_refused(&daemon.data_dir);
    assert_ne!(code, Some(0));
    assert!(err.contains("corrupted"), "{err}");

    let rescued = dir.path().join("rescued");
    let (code, out) = tool(&daemon.data_dir, &["salvage", "--to", rescued.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("read without repair"), "{out}");
    assert!(out.contains("salvaged 20 sessions") && out.contains("1 unreadable"), "{out}");
    let (code, out) = tool(&rescued, &["check"]);
    assert_eq!(code, Some(0), "{out}");
    let rescued_daemon = Daemon::start(&rescued, None);
    let c = rescued_daemon.blocking();
    for (i, key) in kept.iter().enumerate() {
        assert_eq!(c.get(key).unwrap().fields["n"], i.to_string().as_bytes());
    }
    assert_eq!(c.get(&after).unwrap().fields["v"], b"after the damage", "the log was replayed");
    for gone in [&damaged, &logged_out] {
        assert_eq!(c.get(gone).unwrap_err().code(), Some(sessiond_protocol::ErrorCode::NotFound));
    }
}

/// Runs `sessiond --data-dir DIR ARGS...`; returns its exit code and output.
fn tool(data_dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(sessiond_tests::binary("sessiond"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_database_file_half_made_when_the_power_failed_does_not_stop_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A new database is made under another name and renamed whole: a power
    // loss part-way leaves this, never a sessions.redb redb cannot open.
    std::fs::write(data.join("sessions.redb.new"), b"redb wrote only this much").unwrap();
    let daemon = Daemon::start(&data, None);
    daemon.blocking().create([("a", "1")], Expiry::Default).unwrap();
    assert!(!data.join("sessions.redb.new").exists());
    assert!(data.join("sessions.redb").exists());
}
