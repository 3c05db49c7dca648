//! The crash loop: clients write while the daemon is killed with SIGKILL,
//! over and over. After each kill the database is checked offline:
//! - every acknowledged write is present with its exact value (no loss);
//! - every acknowledged delete, and every key cycled away, stays gone (no
//!   resurrection);
//! - no value exists that no client sent (no phantoms);
//! - writes that got no answer (the kill came first) may have gone either way.
//!
//! Strict mode acknowledges a write once its frame in the write-ahead log
//! is synced; redb catches up at checkpoints, so most acknowledged writes
//! of a cycle are found by replaying the log. Relaxed mode's log is written
//! (not synced) before the answer, so a process crash loses nothing there
//! either: it runs the same loop.
//!
//! A positive control deletes the log after each kill, with checkpoints too
//! rare to happen: acknowledged writes then exist only in what was deleted,
//! and the checker must report them lost, or it proves nothing.
//!
//! Another loop kills the daemon while redb makes a durable commit (a
//! checkpoint, which the applier thread runs beside the writer): the log
//! files switch every MiB, so checkpoints run all the time, and each kill
//! waits until STATS shows one running.
//!
//! SESSIOND_CRASH_CYCLES sets the number of cycles (default 12).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sessiond::store::Store;
use sessiond_client::{Client, Error, Expiry};
use sessiond_tests::Daemon;

const TASKS: usize = 8;

/// What a client may assume about a key it wrote.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    /// Acknowledged: present with this value.
    Value(String),
    /// Acknowledged delete, or cycled away: absent.
    Gone,
    /// The last write got no answer: either state is allowed.
    Either(Option<String>, Option<String>),
}

#[derive(Debug, Default)]
struct Tally {
    acked: HashMap<&'static str, u64>,
    indeterminate: u64,
    lost: u64,
    resurrected: u64,
    phantom: u64,
    wrong_value: u64,
}

#[derive(Debug, Default)]
struct Model {
    keys: HashMap<String, Known>,
    sent: HashSet<String>,
    tally: Tally,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let cycles = std::env::var("SESSIOND_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let tally = crash_loop(None, cycles, 0xC0FFEE, KeepLog).await;
    eprintln!("strict: {cycles} cycles, {tally:?}");
    assert_nothing_lost(&tally, cycles);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_during_checkpoints() {
    let cycles = std::env::var("SESSIOND_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let busy_checkpoints = "[durability]\ncheckpoint_mb = 1\ncheckpoint_secs = 1\n";
    // Values of 16 KiB fill a log file in a few dozen writes: the writer
    // comes back to a file while the checkpoint of its frames may still
    // run, and must not overwrite them until it is done.
    let (tally, during) =
        crash_loop_with(Some(busy_checkpoints), cycles, 0xC4EC, KeepLog, (KillAt::Checkpoint, 16 << 10)).await;
    eprintln!("strict, killed during checkpoints: {cycles} cycles, {during} kills with one running, {tally:?}");
    assert_nothing_lost(&tally, cycles);
    assert!(during * 2 >= cycles, "only {during} of {cycles} kills came while a checkpoint ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_mode_loses_nothing_to_a_process_crash() {
    let relaxed = "[durability]\nmode = \"relaxed\"\nflush_interval_ms = 3600000\n";
    let tally = crash_loop(Some(relaxed), 3, 0xBEEF, KeepLog).await;
    eprintln!("relaxed: {tally:?}");
    assert_nothing_lost(&tally, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positive_control_the_checker_sees_losses_when_the_log_is_lost() {
    let rare_checkpoints = "[durability]\ncheckpoint_secs = 3600\n";
    let tally = crash_loop(Some(rare_checkpoints), 3, 0xBAD, DeleteLog).await;
    eprintln!("log deleted (positive control): {tally:?}");
    assert!(tally.lost + tally.resurrected + tally.wrong_value > 0, "the checker missed lost acknowledged writes");
}

fn assert_nothing_lost(tally: &Tally, cycles: usize) {
    let acked: u64 = tally.acked.values().sum();
    assert!(acked > 100 * cycles as u64 / 4, "too little work to prove anything: {acked}");
    assert_eq!(tally.lost, 0, "acknowledged writes lost");
    assert_eq!(tally.wrong_value, 0, "acknowledged writes with a wrong value");
    assert_eq!(tally.resurrected, 0, "deleted or cycled-away sessions came back");
    assert_eq!(tally.phantom, 0, "values that no client wrote");
}

/// What happens to the write-ahead log between the kill and the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFate {
    KeepLog,
    DeleteLog,
}
use LogFate::{DeleteLog, KeepLog};

/// When each cycle's kill comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillAt {
    /// 50 to 400 ms after the clients start.
    Random,
    /// After 100 to 600 ms, as soon as STATS shows a checkpoint running.
    Checkpoint,
}

async fn crash_loop(config: Option<&str>, cycles: usize, seed: u64, log: LogFate) -> Tally {
    crash_loop_with(config, cycles, seed, log, (KillAt::Random, 0)).await.0
}

/// Returns the tally and how many kills came while a checkpoint ran. Each
/// value written is `pad` bytes longer than its unique part.
async fn crash_loop_with(
    config: Option<&str>,
    cycles: usize,
    seed: u64,
    log: LogFate,
    (at, pad): (KillAt, usize),
) -> (Tally, usize) {
    let mut during = 0;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let model = Arc::new(Mutex::new(Model::default()));
    for cycle in 0..cycles {
        let mut daemon = Daemon::start(&data, config);
        let handed_out = hand_out_keys(&model.lock().unwrap().keys);
        let mut tasks = Vec::new();
        for (t, keys) in handed_out.into_iter().enumerate() {
            let client = daemon.client().await;
            let task_seed = rng.random::<u64>();
            let model = model.clone();
            let shape = (cycle, t, task_seed, pad);
            tasks.push(tokio::spawn(async move { write_until_killed(client, keys, model, shape).await }));
        }
        match at {
            KillAt::Random => tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await,
            KillAt::Checkpoint => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
                let watcher = daemon.client().await;
                for _ in 0..2_000 {
                    let counters = watcher.stats().await.unwrap();
                    if counters.iter().any(|c| c.name == "checkpoint_running" && c.value == 1) {
                        during += 1;
                        break;
                    }
                }
            }
        }
        daemon.kill();
        for task in tasks {
            let results = task.await.unwrap();
            model.lock().unwrap().keys.extend(results);
        }
        let db = data.join("sessions.redb");
        if log == DeleteLog {
            for file in sessiond::store::log_paths(&db) {
                std::fs::remove_file(file).unwrap();
            }
        }
        check(&db, &mut model.lock().unwrap());
    }
    (Arc::try_unwrap(model).unwrap().into_inner().unwrap().tally, during)
}

/// Live sessions one task keeps when its values are padded.
const PADDED_LIVE_PER_TASK: usize = 64;

/// Deals the keys whose state is certain to the tasks, round-robin.
fn hand_out_keys(keys: &HashMap<String, Known>) -> Vec<Vec<(String, String)>> {
    let mut out = vec![Vec::new(); TASKS];
    let mut certain: Vec<_> = keys
        .iter()
        .filter_map(|(k, s)| match s {
            Known::Value(v) => Some((k.clone(), v.clone())),
            _ => None,
        })
        .collect();
    certain.sort();
    for (i, kv) in certain.into_iter().enumerate() {
        out[i % TASKS].push(kv);
    }
    out
}

/// One client: a mix of create (40%), patch (30%), cycle (15%) and delete
/// (15%), each value unique, until the daemon dies. Returns what it knows.
async fn write_until_killed(
    client: Client,
    mut live: Vec<(String, String)>,
    model: Arc<Mutex<Model>>,
    (cycle, task, seed, pad): (usize, usize, u64, usize),
) -> Vec<(String, Known)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut known = Vec::new();
    for op in 0.. {
        let value = format!("c{cycle}-t{task}-o{op}-{:016x}{}", rng.random::<u64>(), "x".repeat(pad));
        // Without the padding: a long run must not hold every large value.
        model.lock().unwrap().sent.insert(value.trim_end_matches('x').to_owned());
        let roll = rng.random_range(0..100);
        // Large values: creates give way to patches past a bound, so the
        // database and the model stay small over hundreds of cycles.
        let room = pad == 0 || live.len() < PADDED_LIVE_PER_TASK;
        let ack = |m: &Arc<Mutex<Model>>, kind: &'static str| {
            *m.lock().unwrap().tally.acked.entry(kind).or_default() += 1;
        };
        if (roll < 40 && room) || live.is_empty() {
            match client.create(vec![("v", value.clone())], Expiry::Default).await {
                Ok(c) => {
                    ack(&model, "create");
                    live.push((c.key, value));
                }
                Err(e) => return stop(e, &model, known, live),
            }
            continue;
        }
        let i = rng.random_range(0..live.len());
        let (key, old) = live.swap_remove(i);
        if roll < 70 {
            match client.patch(&key, vec![("v", value.clone())], Vec::new(), None).await {
                Ok(_) => {
                    ack(&model, "patch");
                    live.push((key, value));
                }
                Err(e) => {
                    known.push((key, Known::Either(Some(old), Some(value))));
                    return stop(e, &model, known, live);
                }
            }
        } else if roll < 85 {
            match client.cycle(&key).await {
                Ok(c) => {
                    ack(&model, "cycle");
                    known.push((key, Known::Gone));
                    live.push((c.key, old));
                }
                Err(e) => {
                    known.push((key, Known::Either(Some(old), None)));
                    return stop(e, &model, known, live);
                }
            }
        } else {
            match client.delete(&key).await {
                Ok(true) => {
                    ack(&model, "delete");
                    known.push((key, Known::Gone));
                }
                Ok(false) => panic!("a session this client owns vanished before its delete"),
                Err(e) => {
                    known.push((key, Known::Either(Some(old), None)));
                    return stop(e, &model, known, live);
                }
            }
        }
    }
    unreachable!()
}

fn stop(
    error: Error,
    model: &Arc<Mutex<Model>>,
    mut known: Vec<(String, Known)>,
    live: Vec<(String, String)>,
) -> Vec<(String, Known)> {
    assert!(
        matches!(error, Error::Disconnected | Error::Io(_) | Error::Timeout),
        "only the kill may stop a client: {error:?}"
    );
    model.lock().unwrap().tally.indeterminate += 1;
    known.extend(live.into_iter().map(|(k, v)| (k, Known::Value(v))));
    known
}

/// Opens the database as the next daemon would (repairing it, replaying the log) and checks
/// every key against the model; resolves keys whose state was uncertain.
fn check(db: &Path, model: &mut Model) {
    let (store, _) = Store::open(db).expect("the database opens after a crash");
    let stored: HashMap<String, String> = store
        .scan()
        .expect("every record decodes")
        .into_iter()
        .map(|(key, record)| {
            assert_eq!(record.fields.len(), 1, "records hold exactly what clients wrote");
            (key.encode(), String::from_utf8(record.fields.to_vec().remove(0).value).unwrap())
        })
        .collect();
    drop(store);
    let Model { keys, sent, tally } = model;
    for value in stored.values() {
        if !sent.contains(value.trim_end_matches('x')) {
            tally.phantom += 1;
        }
    }
    for (key, state) in keys.iter_mut() {
        // The store keeps each session under its key's id, never the key.
        let id = sessiond::keys::id_of(&sessiond_protocol::SessionKey::parse(key).unwrap()).encode();
        let actual = stored.get(&id);
        match (&*state, actual) {
            (Known::Value(_), None) => tally.lost += 1,
            (Known::Value(v), Some(a)) if v != a => tally.wrong_value += 1,
            (Known::Gone, Some(_)) => tally.resurrected += 1,
            (Known::Either(a, b), actual) => {
                let actual = actual.cloned();
                if actual != *a && actual != *b {
                    tally.wrong_value += 1;
                }
                *state = actual.map_or(Known::Gone, Known::Value);
            }
            _ => {}
        }
        // A lost write is not counted again in later cycles.
        if let (Known::Value(_), None) = (&*state, actual) {
            *state = Known::Gone;
        }
    }
}
