//! Many tasks on one session: no lost updates, conflicts always reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeSet;

use sessiond_client::{Error, Expiry};
use sessiond_tests::Daemon;

/// More event loops than cores, so connections are dealt across loops and
/// their answers cross threads, whatever the machine.
const LOOPS: &str = "threads = 3\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_tasks_patching_different_fields_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some(LOOPS));
    let client = daemon.client().await;
    let key = client.create(Vec::<(String, Vec<u8>)>::new(), Expiry::Default).await.unwrap().key;
    let mut tasks = Vec::new();
    for t in 0..32 {
        // Half share the first client's connection, half have their own.
        let c = if t % 2 == 0 { client.clone() } else { daemon.client().await };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let field = format!("task{t}");
                c.patch(&key, vec![(field, format!("{round}").into_bytes())], Vec::new(), None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = client.get(&key).await.unwrap();
    assert_eq!(s.fields.len(), 32);
    assert!(s.fields.values().all(|v| v == b"9"));
    assert_eq!(s.version, 1 + 32 * 10, "every patch counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_counter_never_loses_an_increment() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some(LOOPS));
    let client = daemon.client().await;
    let key = client.create(vec![("n", b"0".to_vec())], Expiry::Default).await.unwrap().key;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, key) = (client.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let (mut won, mut conflicts) = (0u64, 0u64);
            while won < 5 {
                let s = c.get(&key).await.unwrap();
                let n: u64 = std::str::from_utf8(&s.fields["n"]).unwrap().parse().unwrap();
                let next = (n + 1).to_string().into_bytes();
                match c.replace(&key, vec![("n", next)], Some(s.version)).await {
                    Ok(_) => won += 1,
                    Err(Error::VersionConflict(_)) => conflicts += 1,
                    Err(e) => panic!("{e}"),
                }
                assert!(conflicts < 10_000, "livelock");
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let s = client.get(&key).await.unwrap();
    assert_eq!(s.fields["n"], b"80", "16 tasks x 5 increments, {conflicts} conflicts retried");
    assert_eq!(s.version, 81);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_on_one_connection_all_get_their_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), Some(LOOPS));
    let client = daemon.client().await;
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let k = c.create(vec![("i", i.to_string().into_bytes())], Expiry::Default).await.unwrap().key;
            let s = c.get(&k).await.unwrap();
            assert_eq!(s.fields["i"], i.to_string().into_bytes());
            k
        }));
    }
    let mut keys = BTreeSet::new();
    for t in tasks {
        keys.insert(t.await.unwrap());
    }
    assert_eq!(keys.len(), 500);
}
