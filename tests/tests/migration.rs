//! Keys at rest: a data directory of schema 1 (written by the daemon before
//! keys were hashed, with writes both checkpointed and only in its log)
//! opens after the migration with every session intact, and afterwards no
//! file of the data directory holds any key a client was given.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond_client::{Error, Expiry};
use sessiond_tests::Daemon;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// (key, what it holds): the name of its `n` field, or "gone".
fn fixture_keys() -> Vec<(String, String)> {
    std::fs::read_to_string(fixture().join("v1-data/keys.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (key, name) = l.split_once(' ').unwrap();
            (key.to_owned(), name.to_owned())
        })
        .collect()
}

/// The keys of `keys` that some file directly under `dir` holds, raw or in
/// their text form, with the file. One pass per file: every 8-byte window
/// is looked up among the needles' first 8 bytes.
fn keys_on_disk(dir: &Path, keys: &[String]) -> Vec<(String, PathBuf)> {
    let mut needles: HashMap<[u8; 8], Vec<(usize, Vec<u8>)>> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        for needle in [URL_SAFE_NO_PAD.decode(key).unwrap(), key.as_bytes().to_vec()] {
            needles.entry(needle[..8].try_into().unwrap()).or_default().push((i, needle));
        }
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for at in 0..bytes.len().saturating_sub(7) {
            let Some(candidates) = needles.get(&bytes[at..at + 8]) else { continue };
            for (i, needle) in candidates {
                if bytes[at..].starts_with(needle) {
                    found.push((keys[*i].clone(), path.clone()));
                }
            }
        }
    }
    found
}

fn stop_cleanly(daemon: &mut Daemon) {
    daemon.signal(rustix::process::Signal::TERM);
    assert!(daemon.wait_exit(std::time::Duration::from_secs(10)).unwrap().success());
}

#[test]
fn a_schema_1_data_directory_migrates_with_every_session_and_no_key_left_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Modes as the previous daemon left them (git keeps none of them): the
    // key ring 0600, which it checks; the database 0644, which it narrows.
    for (file, mode) in [("sessions.redb", 0o644), ("sessions.log", 0o600), ("keyring", 0o600)] {
        std::fs::copy(fixture().join("v1-data").join(file), data.join(file)).unwrap();
        std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let keys = fixture_keys();
    let all: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    assert!(keys_on_disk(&data, &all).len() >= 10, "the fixture holds raw keys");
    let config = std::fs::read_to_string(fixture().join("v1-data.toml")).unwrap();
    let mut daemon = Daemon::start(&data, Some(&config));
    assert!(daemon.log().contains("migrated the database to schema 2"), "{}", daemon.log());

    let c = daemon.blocking();
    for (key, name) in &keys {
        match (name.as_str(), c.get(key)) {
            ("gone", Err(Error::NotFound)) => {}
            ("gone", other) => panic!("{key} was deleted or cycled away, yet: {other:?}"),
            (name, Ok(session)) => assert_eq!(session.fields["n"], name.as_bytes(), "{key}"),
            (name, Err(e)) => panic!("{name} ({key}) lost in the migration: {e:?}"),
        }
    }
    let alice = c.list_user("alice").unwrap();
    let mut ips: Vec<_> = alice.iter().filter_map(|s| s.ip.clone()).collect();
    ips.sort();
    assert_eq!(ips, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    // The alias from a transfer still names its session: a write through
    // one key is read through the other.
    let shared: Vec<_> = keys.iter().filter(|(_, n)| n == "shared").map(|(k, _)| k.clone()).collect();
    c.patch(&shared[1], [("seen", "b")], Vec::new(), None).unwrap();
    assert_eq!(c.get(&shared[0]).unwrap().fields["seen"], b"b");
    // New sessions after the migration, and a handle revoke.
    let fresh = c.create([("n", "fresh")], Expiry::Default).unwrap().key;
    assert_eq!(c.revoke(&alice[0].handle).unwrap(), 1);
    drop(c);

    stop_cleanly(&mut daemon);
    let mut all = all;
    all.push(fresh.clone());
    assert_eq!(keys_on_disk(&data, &all), Vec::new(), "keys left on disk");
    // And it starts again, as schema 2, with the same sessions.
    daemon.restart();
    assert_eq!(daemon.log().matches("migrated the database").count(), 1);
    assert_eq!(daemon.blocking().get(&fresh).unwrap().fields["n"], b"fresh");
    assert_eq!(daemon.blocking().get(&shared[0]).unwrap().fields["seen"], b"b");
}

#[test]
fn no_key_a_client_is_given_reaches_the_database_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.blocking();
    let mut keys = Vec::new();
    for i in 0..20 {
        let key = c.create([("i", i.to_string())], Expiry::Default).unwrap().key;
        keys.push(c.cycle(&key).unwrap().key);
        keys.push(key);
    }
    // Before a checkpoint the sessions are in the log only; after one, in
    // the database: neither may hold a key.
    assert_eq!(keys_on_disk(&daemon.data_dir, &keys), Vec::new(), "keys in the log");
    drop(c);
    let mut daemon = daemon;
    stop_cleanly(&mut daemon);
    assert_eq!(keys_on_disk(&daemon.data_dir, &keys), Vec::new(), "keys in the database");
}
