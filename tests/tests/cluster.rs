//! Several daemons, one store: the Rust client's `Cluster` against three
//! real daemons, each on its own socket and data directory. Placement
//! (rendezvous hashing) spreads keys evenly and moves only the share of a
//! daemon added or removed; a user's sessions on several daemons are listed
//! and revoked as one; a daemon that is down fails only what needs it, and
//! fan-outs say so rather than answer in part; a cycle keeps a session on
//! its daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::RngCore;
use sessiond_client::cluster::{route, weight};
use sessiond_client::{BlockingCluster, Cluster, Error, Expiry, Meta};
use sessiond_protocol::SessionKey;
use sessiond_tests::Daemon;

const IDS: [&str; 3] = ["sessiond-a", "sessiond-b", "sessiond-c"];

fn random_key(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    SessionKey::from_bytes(bytes).encode()
}

fn meta(user: &str) -> Meta {
    Meta { user: Some(user.into()), ip: Some("192.0.2.7".into()), user_agent: Some("Mozilla/5.0".into()) }
}

/// Three daemons, and a cluster of them under `IDS`.
fn three(dir: &std::path::Path) -> (Vec<Daemon>, Cluster) {
    let daemons: Vec<Daemon> = IDS.iter().map(|id| Daemon::start(&dir.join(id), None)).collect();
    let cluster = Cluster::new(IDS.iter().zip(&daemons).map(|(id, d)| (*id, d.options()))).unwrap();
    (daemons, cluster)
}

/// The vector in PROTOCOL.md's "Several daemons" section, read from the
/// document itself: the Python client is held to the same lines.
#[test]
fn the_placement_vector_in_protocol_md_matches_the_code() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../protocol/PROTOCOL.md")).unwrap();
    let block: Vec<&str> =
        doc.lines().map(str::trim).skip_while(|l| *l != "```placement").skip(1).take_while(|l| *l != "```").collect();
    let key = block.iter().find_map(|l| l.strip_prefix("key ")).expect("a key line").trim();
    let mut ids = Vec::new();
    for line in &block {
        if let Some(rest) = line.strip_prefix("weight ") {
            let [id, hex]: [&str; 2] = rest.split_whitespace().collect::<Vec<_>>().try_into().unwrap();
            assert_eq!(format!("{:016x}", weight(id, key)), hex, "weight of {id}");
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 3, "three weights in the vector");
    let routed = block.iter().find_map(|l| l.strip_prefix("route ")).expect("a route line").trim();
    assert_eq!(ids[route(&ids, key).unwrap()], routed);
}

#[test]
fn keys_spread_evenly_and_a_change_of_daemons_moves_only_its_share() {
    const KEYS: usize = 100_000;
    let mut rng = rand::rng();
    let keys: Vec<String> = (0..KEYS).map(|_| random_key(&mut rng)).collect();
    let place = |ids: &[&'static str], key: &str| ids[route(ids, key).unwrap()];

    let three: Vec<&str> = keys.iter().map(|k| place(&IDS, k)).collect();
    let mut counts = BTreeMap::new();
    for id in &three {
        *counts.entry(*id).or_insert(0usize) += 1;
    }
    println!("spread of {KEYS} keys over 3 daemons: {counts:?}");
    for (id, n) in &counts {
        let share = *n as f64 / KEYS as f64;
        assert!((0.31..=0.357).contains(&share), "{id} has {share:.4} of the keys");
    }
    assert_eq!(counts.len(), 3);

    // Removing sessiond-b: only its keys move, and they split evenly
    // between the two others (weights of one key on two daemons are
    // independent).
    let two = ["sessiond-a", "sessiond-c"];
    let mut moved = BTreeMap::new();
    for (key, before) in keys.iter().zip(&three) {
        let after = place(&two, key);
        if *before == "sessiond-b" {
            *moved.entry(after).or_insert(0usize) += 1;
        } else {
            assert_eq!(after, *before, "a key not on the removed daemon moved");
        }
    }
    println!("sessiond-b removed: its {} keys went {moved:?}", counts["sessiond-b"]);
    for (id, n) in &moved {
        let share = *n as f64 / counts["sessiond-b"] as f64;
        assert!((0.47..=0.53).contains(&share), "{id} took {share:.4} of the removed daemon's keys");
    }

    // Adding a fourth: keys move only to it, about a quarter of them.
    let four = ["sessiond-a", "sessiond-b", "sessiond-c", "sessiond-d"];
    let mut to_new = 0usize;
    for (key, before) in keys.iter().zip(&three) {
        let after = place(&four, key);
        if after == "sessiond-d" {
            to_new += 1;
        } else {
            assert_eq!(after, *before, "a key moved between two old daemons");
        }
    }
    let share = to_new as f64 / KEYS as f64;
    println!("sessiond-d added: {to_new} keys ({share:.4}) moved to it");
    assert!((0.24..=0.26).contains(&share), "the new daemon took {share:.4} of the keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_sessions_spread_over_the_daemons_are_listed_and_revoked_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let (daemons, cluster) = three(dir.path());
    let mut handles = BTreeSet::new();
    let mut keys = Vec::new();
    for i in 0..30 {
        let c = cluster.create_with_meta([("n", i.to_string())], Expiry::Default, meta("alice")).await.unwrap();
        assert!(handles.insert(c.handle.clone()));
        keys.push(c.key);
    }
    // Each session is on the daemon its key routes to, and on no other.
    let direct = [daemons[0].client().await, daemons[1].client().await, daemons[2].client().await];
    for key in &keys {
        let home = IDS.iter().position(|id| *id == cluster.daemon_for(key)).unwrap();
        for (i, c) in direct.iter().enumerate() {
            assert_eq!(c.exists(key).await.unwrap(), i == home, "key on daemon {i}, routed to {home}");
        }
        assert_eq!(cluster.get(key).await.unwrap().user.as_deref(), Some("alice"));
    }
    let mut per_daemon = Vec::new();
    for c in &direct {
        per_daemon.push(c.list_user("alice").await.unwrap().len());
    }
    println!("alice's 30 sessions per daemon: {per_daemon:?}");
    assert_eq!(per_daemon.iter().sum::<usize>(), 30);
    assert!(per_daemon.iter().filter(|n| **n > 0).count() >= 2, "all on one daemon: {per_daemon:?}");

    // Touch a few, so the merged order is checked across daemons.
    for key in keys.iter().step_by(7) {
        tokio::time::sleep(Duration::from_millis(3)).await;
        cluster.touch(key).await.unwrap();
    }
    let listed = cluster.list_user("alice").await.unwrap();
    assert_eq!(listed.iter().map(|s| s.handle.clone()).collect::<BTreeSet<_>>(), handles);
    assert!(
        listed.windows(2).all(|w| (std::cmp::Reverse(w[0].last_active_ms), &w[0].handle)
            < (std::cmp::Reverse(w[1].last_active_ms), &w[1].handle)),
        "most recently active first, then by handle"
    );
    assert_eq!(listed[0].handle, cluster.get(&keys[28]).await.unwrap().handle, "the last touched first");

    // A handle lives on one daemon; revoking it through the cluster finds it.
    let one = listed[5].handle.clone();
    assert_eq!(cluster.revoke(&one).await.unwrap(), 1);
    assert_eq!(cluster.revoke(&one).await.unwrap(), 0);
    // Revoking all, keeping one: every daemon revokes, keep holds where it is.
    let keep = listed[0].handle.clone();
    assert_eq!(cluster.revoke_user("alice", Some(&keep)).await.unwrap(), 28);
    assert_eq!(cluster.list_user("alice").await.unwrap().len(), 1);
    assert_eq!(cluster.revoke_user("alice", None).await.unwrap(), 1);
    for c in &direct {
        assert!(c.list_user("alice").await.unwrap().is_empty());
    }
    for key in &keys {
        assert!(matches!(cluster.get(key).await, Err(Error::NotFound)));
    }
    // A bad user id is the caller's error, not a daemon's failure.
    let bad = cluster.list_user("").await.unwrap_err();
    assert_eq!(bad.code(), Some(sessiond_client::ErrorCode::BadRequest), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_down_fails_only_its_share_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut daemons, cluster) = three(dir.path());
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for i in 0..30 {
        let c = cluster.create_with_meta([("n", i.to_string())], Expiry::Default, meta("bob")).await.unwrap();
        acknowledged.push((c.key, i.to_string()));
    }
    for i in 0..12 {
        cluster.create_with_meta([("n", i.to_string())], Expiry::Default, meta("carol")).await.unwrap();
    }
    let on_b = |key: &str| cluster.daemon_for(key) == "sessiond-b";
    assert!(acknowledged.iter().any(|(k, _)| on_b(k)) && acknowledged.iter().any(|(k, _)| !on_b(k)));

    daemons[1].kill();
    // Its sessions fail with the client's transport error, never NOT_FOUND;
    // the others' are served.
    for (key, n) in &acknowledged {
        match cluster.get(key).await {
            Ok(s) => {
                assert!(!on_b(key));
                assert_eq!(s.fields["n"], n.as_bytes());
            }
            Err(Error::Io(_) | Error::Disconnected) => assert!(on_b(key)),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    // New sessions: those routed to the dead daemon fail, the rest are
    // created and acknowledged.
    let (mut created, mut refused) = (0, 0);
    for i in 30..60 {
        match cluster.create_with_meta([("n", i.to_string())], Expiry::Default, meta("bob")).await {
            Ok(c) => {
                assert!(!on_b(&c.key));
                acknowledged.push((c.key, i.to_string()));
                created += 1;
            }
            Err(Error::Io(_) | Error::Disconnected) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    println!("with sessiond-b down: {created} creates served, {refused} refused");
    assert!(created > 0 && refused > 0);
    // A cycle on a live daemon works; patches too.
    let (live_key, _) = acknowledged.iter().find(|(k, _)| !on_b(k)).unwrap().clone();
    let cycled = cluster.cycle(&live_key).await.unwrap();
    cluster.patch(&cycled.key, [("after", "cycle")], Vec::new(), None).await.unwrap();
    for entry in acknowledged.iter_mut().filter(|(k, _)| *k == live_key) {
        entry.0 = cycled.key.clone();
    }

    // Fan-outs name the daemon that is down, and revoke-all says how many
    // the others ended.
    match cluster.list_user("bob").await {
        Err(Error::Incomplete { failed, revoked: None }) => {
            assert_eq!(failed.iter().map(|f| f.daemon.as_str()).collect::<Vec<_>>(), ["sessiond-b"]);
        }
        other => panic!("a listing with a daemon down: {other:?}"),
    }
    assert!(cluster.list_user("bob").await.unwrap_err().to_string().contains("sessiond-b"));
    let carol_elsewhere = {
        let mut n = 0;
        for d in [&daemons[0], &daemons[2]] {
            n += d.client().await.list_user("carol").await.unwrap().len() as u64;
        }
        n
    };
    match cluster.revoke_user("carol", None).await {
        Err(Error::Incomplete { failed, revoked: Some(n) }) => {
            assert_eq!(failed.len(), 1);
            assert_eq!(n, carol_elsewhere, "the count the live daemons revoked");
        }
        other => panic!("a revoke-all with a daemon down: {other:?}"),
    }

    // Back: the client reconnects by itself, and every acknowledged
    // session is there.
    daemons[1].restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (key, n) in &acknowledged {
        let session = loop {
            match cluster.get(key).await {
                Err(Error::Io(_) | Error::Disconnected) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(session.fields["n"], n.as_bytes());
    }
    assert_eq!(cluster.list_user("bob").await.unwrap().len(), acknowledged.len());
    assert!(matches!(cluster.get(&live_key).await, Err(Error::NotFound)), "the cycled-away key stays gone");
    let rest = cluster.revoke_user("carol", None).await.unwrap();
    assert_eq!(rest + carol_elsewhere, 12, "the rest of carol's sessions, from the daemon that came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_keeps_the_session_on_its_daemon_and_ends_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let (daemons, cluster) = three(dir.path());
    let created = cluster.create([("cart", "3")], Expiry::IdleSecs(1800)).await.unwrap();
    let home = cluster.daemon_for(&created.key).to_owned();
    let direct = daemons[IDS.iter().position(|id| *id == home).unwrap()].client().await;
    let mut key = created.key.clone();
    for round in 0..20 {
        let next = if round == 10 {
            cluster.cycle_bind(&key, "dave").await.unwrap()
        } else {
            cluster.cycle(&key).await.unwrap()
        };
        assert_ne!(next.key, key);
        assert_eq!(next.handle, created.handle, "same session");
        assert_eq!(cluster.daemon_for(&next.key), home, "the new key routes to the same daemon");
        assert!(matches!(cluster.get(&key).await, Err(Error::NotFound)), "old key gone");
        assert!(!direct.exists(&key).await.unwrap());
        let s = cluster.get(&next.key).await.unwrap();
        assert_eq!(s.fields["cart"], b"3");
        key = next.key;
    }
    assert_eq!(cluster.list_user("dave").await.unwrap().len(), 1);
    assert!(matches!(cluster.cycle(&created.key).await, Err(Error::NotFound)));
}

/// Fan-out listing latency: a user's sessions on three daemons, listed
/// through the cluster, against the same number on one daemon listed
/// directly. Prints figures; asserts nothing about time.
/// `cargo test --release -p sessiond-tests --test cluster -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn fan_out_listing_latency() {
    const SESSIONS: usize = 30;
    const ROUNDS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (_daemons, cluster) = three(dir.path());
    let single_daemon = Daemon::start(&dir.path().join("single"), None);
    let single = single_daemon.client().await;
    for i in 0..SESSIONS {
        cluster.create_with_meta([("n", i.to_string())], Expiry::Default, meta("erin")).await.unwrap();
        single.create_with_meta([("n", i.to_string())], Expiry::Default, meta("erin")).await.unwrap();
    }
    let percentile = |mut v: Vec<Duration>, p: f64| {
        v.sort_unstable();
        v[((v.len() - 1) as f64 * p) as usize]
    };
    for round in 0..3 {
        let mut one = Vec::with_capacity(ROUNDS);
        let mut fan = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            assert_eq!(single.list_user("erin").await.unwrap().len(), SESSIONS);
            one.push(t.elapsed());
            let t = Instant::now();
            assert_eq!(cluster.list_user("erin").await.unwrap().len(), SESSIONS);
            fan.push(t.elapsed());
        }
        println!(
            "round {round}: {SESSIONS} sessions, {ROUNDS} listings each: one daemon p50 {:?} p99 {:?}; \
             3 daemons fan-out p50 {:?} p99 {:?}",
            percentile(one.clone(), 0.5),
            percentile(one, 0.99),
            percentile(fan.clone(), 0.5),
            percentile(fan, 0.99),
        );
    }
}

#[test]
fn the_blocking_cluster_places_lists_cycles_and_reports_a_daemon_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemons: Vec<Daemon> = IDS.iter().map(|id| Daemon::start(&dir.path().join(id), None)).collect();
    let cluster = BlockingCluster::new(IDS.iter().zip(&daemons).map(|(id, d)| (*id, d.options()))).unwrap();
    let mut keys = Vec::new();
    for i in 0..15 {
        keys.push(cluster.create_with_meta([("n", i.to_string())], Expiry::Default, meta("frank")).unwrap().key);
    }
    for key in &keys {
        let home = IDS.iter().position(|id| *id == cluster.daemon_for(key)).unwrap();
        assert!(daemons[home].blocking().exists(key).unwrap(), "on the daemon it routes to");
    }
    // Ten rounds: a key the daemon drew would stay by chance one time in three.
    for _ in 0..10 {
        let cycled = cluster.cycle(&keys[0]).unwrap();
        assert_eq!(cluster.daemon_for(&cycled.key), cluster.daemon_for(&keys[0]), "the new key stays");
        assert!(matches!(cluster.get(&keys[0]), Err(Error::NotFound)));
        assert_eq!(cluster.get(&cycled.key).unwrap().fields["n"], b"0");
        keys[0] = cycled.key;
    }
    let listed = cluster.list_user("frank").unwrap();
    assert_eq!(listed.len(), 15);

    daemons[2].kill();
    match cluster.list_user("frank") {
        Err(Error::Incomplete { failed, revoked: None }) => assert_eq!(failed[0].daemon, "sessiond-c"),
        other => panic!("a listing with a daemon down: {other:?}"),
    }
    let on_c = keys.iter().filter(|k| cluster.daemon_for(k) == "sessiond-c").count() as u64;
    match cluster.revoke_user("frank", None) {
        Err(Error::Incomplete { revoked: Some(n), .. }) => assert_eq!(n, 15 - on_c),
        other => panic!("a revoke-all with a daemon down: {other:?}"),
    }
    daemons[2].restart();
    assert_eq!(cluster.revoke_user("frank", None).unwrap(), on_c, "the rest, once the daemon is back");
    assert!(cluster.list_user("frank").unwrap().is_empty());
}
