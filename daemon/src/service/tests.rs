//! The service's unit tests: the engine in-process, with a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sessiond_protocol::{ErrorCode, Expiry, Field, Replace, Request, Response};

use crate::config::Config;
use crate::store::Store;
use crate::testkit::{Kit, T0, code};

const NOT_FOUND: Option<u16> = Some(ErrorCode::NotFound as u16);

fn session(r: Response) -> sessiond_protocol::SessionBody {
    match r {
        Response::Session(s) => s,
        other => panic!("expected a session, got {other:?}"),
    }
}

#[test]
fn idle_expiry_is_exact_on_every_operation() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::IdleSecs(1800));
    kit.clock.set(T0 + 1_799_999);
    assert_eq!(session(kit.get(&key, false)).fields.len(), 1, "alive one millisecond before");
    kit.clock.set(T0 + 1_800_000);
    assert_eq!(code(&kit.get(&key, false)), NOT_FOUND, "expired at the instant");
    assert_eq!(code(&kit.get(&key, true)), NOT_FOUND);
    assert_eq!(code(&kit.key_op(Request::Touch, &key)), NOT_FOUND);
    assert_eq!(code(&kit.cycle(&key, None)), NOT_FOUND);
    assert_eq!(code(&kit.patch(&key, "b", "2")), NOT_FOUND);
    let replace = Request::Replace(Replace { key: key.clone(), fields: vec![], expected_version: None });
    assert_eq!(code(&kit.call(replace)), NOT_FOUND);
    assert!(matches!(kit.key_op(Request::Exists, &key), Response::Exists(e) if !e.exists));
    assert!(matches!(kit.key_op(Request::Delete, &key), Response::Deleted(d) if !d.existed));
}

#[test]
fn touching_slides_idle_expiry_without_changing_data_or_version() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::IdleSecs(60));
    kit.clock.set(T0 + 59_000);
    assert!(
        matches!(kit.key_op(Request::Touch, &key), Response::Touched(w) if w.version == 1 && w.expires_at_ms == T0 + 119_000)
    );
    kit.clock.set(T0 + 118_999);
    let s = session(kit.get(&key, false));
    assert_eq!((s.version, s.last_active_ms, s.modified_ms), (1, T0 + 59_000, T0));
    kit.clock.set(T0 + 119_000);
    assert_eq!(code(&kit.get(&key, false)), NOT_FOUND);
}

#[test]
fn a_clock_stepping_backwards_never_shortens_or_breaks_a_session() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::IdleSecs(60));
    kit.clock.set(T0 - 3_600_000);
    assert!(matches!(kit.key_op(Request::Touch, &key), Response::Touched(w) if w.expires_at_ms == T0 + 60_000));
    assert!(matches!(kit.patch(&key, "b", "2"), Response::Patched(_)));
    let s = session(kit.get(&key, false));
    assert_eq!((s.expires_at_ms, s.last_active_ms, s.modified_ms), (T0 + 60_000, T0, T0));
}

#[test]
fn the_default_policy_uses_the_configured_age() {
    let kit = Kit::new();
    let key = kit.create(&[], Expiry::Default);
    assert_eq!(session(kit.get(&key, false)).expires_at_ms, T0 + 1_209_600_000);
}

#[test]
fn delete_and_cycle_end_the_old_key_at_once_even_when_cached() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::Default);
    session(kit.get(&key, false)); // now cached
    assert!(matches!(kit.key_op(Request::Delete, &key), Response::Deleted(d) if d.existed));
    assert_eq!(code(&kit.get(&key, false)), NOT_FOUND);

    let key = kit.create(&[("a", "1")], Expiry::Default);
    session(kit.get(&key, false));
    let Response::Cycled(new) = kit.cycle(&key, None) else { panic!("cycle failed") };
    assert_eq!(code(&kit.get(&key, false)), NOT_FOUND);
    let s = session(kit.get(&new.key, false));
    assert_eq!((s.version, s.fields.len()), (2, 1));
}

#[test]
fn field_names_are_checked_before_anything_is_queued() {
    let kit = Kit::new();
    let empty = vec![Field { name: String::new(), value: vec![] }];
    let r = kit.call(Request::Create(sessiond_protocol::Create {
        fields: empty,
        expiry: Expiry::Default,
        meta: Default::default(),
    }));
    assert_eq!(code(&r), Some(ErrorCode::BadRequest as u16));
    let key = kit.create(&[("a", "1")], Expiry::Default);
    let both = Request::Patch(sessiond_protocol::Patch {
        key,
        set: vec![Field { name: "a".into(), value: vec![] }],
        remove: vec!["a".into()],
        expected_version: None,
    });
    assert_eq!(code(&kit.call(both)), Some(ErrorCode::BadRequest as u16));
}

#[test]
fn browser_close_is_reported_and_the_default_age_applies() {
    let kit = Kit::new();
    let key = kit.create(&[], Expiry::BrowserClose);
    let s = session(kit.get(&key, false));
    assert_eq!((s.expiry, s.expires_at_ms, s.ttl_ms), (Expiry::BrowserClose, T0 + 1_209_600_000, 1_209_600_000));
}

#[test]
fn an_absolute_expiry_ends_the_session_at_its_instant_whatever_the_activity() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::At(T0 + 60_000));
    for t in (0..60_000).step_by(10_000) {
        kit.clock.set(T0 + t);
        assert!(matches!(kit.patch(&key, "a", "2"), Response::Patched(w) if w.expires_at_ms == T0 + 60_000));
        assert_eq!(session(kit.get(&key, true)).ttl_ms, 60_000 - t);
    }
    kit.clock.set(T0 + 59_999);
    assert!(matches!(kit.get(&key, false), Response::Session(_)));
    kit.clock.set(T0 + 60_000);
    assert_eq!(code(&kit.get(&key, true)), NOT_FOUND);
}

#[test]
fn the_lifetime_cap_ends_a_session_touched_every_ten_minutes_at_twelve_hours() {
    let mut config = Config::default();
    config.expiry.default_idle_secs = 30 * 60;
    config.expiry.max_lifetime_secs = 12 * 3600;
    let kit = Kit::with_config(&config);
    let key = kit.create(&[("a", "1")], Expiry::Default);
    for minute in (10..12 * 60).step_by(10) {
        kit.clock.set(T0 + minute * 60_000);
        assert!(matches!(kit.key_op(Request::Touch, &key), Response::Touched(_)), "minute {minute}");
    }
    kit.clock.set(T0 + 12 * 3_600_000 - 1);
    assert_eq!(session(kit.get(&key, false)).expires_at_ms, T0 + 12 * 3_600_000);
    kit.clock.set(T0 + 12 * 3_600_000);
    assert_eq!(code(&kit.get(&key, true)), NOT_FOUND);
}

#[test]
fn set_expiry_replaces_the_policy_and_may_shorten_it() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::IdleSecs(3600));
    kit.clock.set(T0 + 1_000);
    let set = |expiry| kit.call(Request::SetExpiry(sessiond_protocol::SetExpiry { key: key.clone(), expiry }));
    assert!(
        matches!(set(Expiry::IdleSecs(10)), Response::ExpirySet(w) if w.version == 2 && w.expires_at_ms == T0 + 11_000)
    );
    let s = session(kit.get(&key, false));
    assert_eq!((s.expiry, s.expires_at_ms), (Expiry::IdleSecs(10), T0 + 11_000));
    kit.clock.set(T0 + 11_000);
    assert_eq!(code(&kit.get(&key, false)), NOT_FOUND, "the shorter expiry holds");
    assert_eq!(code(&set(Expiry::Default)), NOT_FOUND, "an expired session cannot be revived");
}

fn stored_expiry(kit: &Kit, key: &str) -> u64 {
    let key = crate::testkit::id(key);
    kit.checkpoint();
    kit.store.get(&key).unwrap().unwrap().expires_at_ms
}

#[test]
fn touches_are_written_lazily_once_past_the_granularity() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::IdleSecs(3600));
    kit.clock.set(T0 + 30_000);
    assert_eq!(session(kit.get(&key, true)).expires_at_ms, T0 + 3_630_000);
    assert_eq!(stored_expiry(&kit, &key), T0 + 3_600_000, "30 s of lag is within the granularity");
    kit.clock.set(T0 + 61_000);
    kit.key_op(Request::Touch, &key);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stored_expiry(&kit, &key) != T0 + 3_661_000 {
        assert!(std::time::Instant::now() < deadline, "the touch was never persisted");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let s = session(kit.get(&key, false));
    assert_eq!((s.version, s.fields.len(), s.last_active_ms), (1, 1, T0 + 61_000), "data and version untouched");
}

#[test]
fn a_crash_shortens_an_idle_life_by_at_most_the_granularity_and_never_lengthens_it() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::IdleSecs(3600));
    for s in 1..=100 {
        kit.clock.set(T0 + s * 7_000);
        kit.key_op(Request::Touch, &key);
    }
    let truth = T0 + 700_000 + 3_600_000;
    assert_eq!(session(kit.get(&key, false)).expires_at_ms, truth);
    let kit = kit.restart(T0 + 700_000);
    let after = session(kit.get(&key, false)).expires_at_ms;
    assert!(after <= truth && truth - after < 60_000, "expiry after restart {after}, before {truth}");
}

#[test]
fn expired_sessions_are_never_served_after_a_restart_and_are_swept() {
    let kit = Kit::new();
    let short = kit.create(&[("a", "1")], Expiry::IdleSecs(10));
    let long = kit.create(&[("a", "1")], Expiry::Default);
    // It expires while the daemon is down.
    let kit = kit.restart(T0 + 10_000);
    assert_eq!(code(&kit.get(&short, false)), NOT_FOUND);
    assert!(matches!(kit.key_op(Request::Exists, &short), Response::Exists(e) if !e.exists));
    // The start-up round removed it without being asked.
    let Response::Stats(stats) = kit.call(Request::Stats(sessiond_protocol::Empty {})) else { panic!() };
    assert_eq!(stats.counters.iter().find(|c| c.name == "expired_swept").unwrap().value, 1);
    kit.checkpoint();
    assert_eq!(kit.store.scan().unwrap().len(), 1);
    assert!(matches!(kit.get(&long, false), Response::Session(_)));
}

#[test]
fn a_sweep_removes_every_expired_session_in_batches_with_its_expiry_row() {
    let kit = Kit::new();
    let keep: Vec<String> = (0..10).map(|_| kit.create(&[("k", "1")], Expiry::Default)).collect();
    for _ in 0..2_500 {
        kit.create(&[("e", "1")], Expiry::IdleSecs(10));
    }
    assert_eq!(kit.ttl.len(), 2_510);
    kit.clock.set(T0 + 11_000);
    // Nothing expired is served even before the sweep.
    let swept = kit.call(Request::Sweep(sessiond_protocol::Empty {}));
    assert!(matches!(&swept, Response::Swept(s) if s.removed == 2_500), "{swept:?}");
    kit.checkpoint();
    assert_eq!(kit.store.scan().unwrap().len(), 10);
    let rebuilt = crate::ttl::TtlIndex::new(60_000);
    assert_eq!(kit.store.load_index(&rebuilt).unwrap(), 10, "expiry rows follow the sessions");
    assert_eq!(kit.ttl.len(), 10);
    for key in &keep {
        assert!(matches!(kit.get(key, false), Response::Session(_)));
    }
    let Response::Stats(stats) = kit.call(Request::Stats(sessiond_protocol::Empty {})) else { panic!() };
    let get = |n: &str| stats.counters.iter().find(|c| c.name == n).unwrap().value;
    assert_eq!((get("expired_swept"), get("sessions"), get("last_sweep_ms")), (2_500, 10, T0 + 11_000));
}

#[test]
fn sweeps_and_deletes_keep_the_owner_and_handle_tables_exact() {
    let kit = Kit::new();
    let meta = |user: &str| sessiond_protocol::Meta { user: Some(user.into()), ip: None, user_agent: None };
    let mut handles = Vec::new();
    for _ in 0..3 {
        let key = kit.create_with(vec![], Expiry::IdleSecs(10), meta("u"));
        handles.push(session(kit.get(&key, false)).handle);
    }
    let kept = kit.create_with(vec![], Expiry::Default, meta("u"));
    let deleted = kit.create_with(vec![], Expiry::Default, meta("u"));
    kit.key_op(Request::Delete, &deleted);
    kit.clock.set(T0 + 11_000);
    assert!(matches!(kit.call(Request::Sweep(sessiond_protocol::Empty {})), Response::Swept(s) if s.removed == 3));
    kit.checkpoint();
    let owned = kit.store.user_sessions("u").unwrap();
    assert_eq!(owned, vec![crate::testkit::id(&kept)], "only the live one is indexed");
    for handle in handles {
        let revoke = Request::Revoke(sessiond_protocol::Revoke { handle });
        assert!(matches!(kit.call(revoke), Response::Revoked(r) if r.count == 0), "swept handles are gone");
    }
}

/// A storage backend whose writes and syncs fail while `fail` is set, with
/// an error or, if `panics`, with a panic (a bug on the storage path).
#[derive(Debug)]
struct Flaky {
    inner: redb::backends::InMemoryBackend,
    fail: Arc<AtomicBool>,
    panics: bool,
}

impl Flaky {
    fn injected(&self, what: &str) -> Result<(), std::io::Error> {
        match (self.fail.load(Ordering::SeqCst), self.panics) {
            (false, _) => Ok(()),
            (true, false) => Err(std::io::Error::other(format!("injected {what} failure"))),
            (true, true) => panic!("injected {what} panic"),
        }
    }
}

impl redb::StorageBackend for Flaky {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.injected("sync")?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.injected("write")?;
        self.inner.write(offset, data)
    }
}

fn log_files() -> [Box<dyn crate::wal::LogDevice>; 2] {
    [Box::new(tempfile::tempfile().unwrap()), Box::new(tempfile::tempfile().unwrap())]
}

#[test]
fn after_a_failed_commit_no_write_is_ever_acknowledged() {
    let fail = Arc::new(AtomicBool::new(false));
    let backend = Flaky { inner: redb::backends::InMemoryBackend::new(), fail: fail.clone(), panics: false };
    let (store, _) = Store::open_backend(backend, log_files()).unwrap();
    let kit = Kit::with_store(store, &Config::default());
    let key = kit.create(&[("a", "1")], Expiry::Default);

    fail.store(true, Ordering::SeqCst);
    // Acknowledged from the log, which still works...
    assert!(matches!(kit.patch(&key, "a", "2"), Response::Patched(_)));
    // ...but redb cannot take it.
    assert!(!kit.engine.as_ref().unwrap().checkpoint(), "the checkpoint fails");
    assert!(kit.fatal.recv_timeout(std::time::Duration::from_secs(5)).is_ok(), "the daemon is told to stop");

    // Even once the disk recovers, the writer stays closed: the state of
    // the failed commit is unknown, so only a restart may write again.
    fail.store(false, Ordering::SeqCst);
    let unavailable = Some(ErrorCode::Unavailable as u16);
    assert_eq!(code(&kit.patch(&key, "a", "3")), unavailable);
    assert_eq!(
        code(&kit.call(Request::Create(sessiond_protocol::Create {
            fields: vec![],
            expiry: Expiry::Default,
            meta: Default::default()
        }))),
        unavailable
    );
    // The acknowledged state is still what readers see.
    assert_eq!(session(kit.get(&key, false)).fields[0].value, b"2");
}

#[test]
fn a_panic_on_the_writer_answers_its_waiters_and_fails_closed() {
    let fail = Arc::new(AtomicBool::new(false));
    let backend = Flaky { inner: redb::backends::InMemoryBackend::new(), fail: fail.clone(), panics: true };
    let (store, _) = Store::open_backend(backend, log_files()).unwrap();
    let kit = Kit::with_store(store, &Config::default());
    let key = kit.create(&[("a", "1")], Expiry::Default);
    // A checkpoint writes to the backend inside its batch.
    fail.store(true, Ordering::SeqCst);
    let unavailable = Some(ErrorCode::Unavailable as u16);
    let (tx, rx) = std::sync::mpsc::channel();
    let job = crate::writer::Job { op: crate::writer::Op::Checkpoint, reply: crate::reply::ReplyTo::Channel(tx) };
    kit.service.writer.submit_wait(job).unwrap();
    let answer = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("answered, not dropped or left hanging");
    assert!(matches!(answer, Err(crate::answer::Refusal::Unavailable(_))), "{answer:?}");
    let why = kit.fatal.recv_timeout(std::time::Duration::from_secs(5)).expect("the daemon is told to stop");
    assert!(why.contains("panicked"), "{why}");
    fail.store(false, Ordering::SeqCst);
    assert_eq!(code(&kit.patch(&key, "a", "2")), unavailable, "writes stay refused");
    // redb's own drop panics on a database whose writer panicked inside
    // it; the daemon exits non-zero at that point either way.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(kit)));
}

#[test]
fn after_a_failed_log_write_no_write_is_ever_acknowledged() {
    let full = || Box::new(std::fs::File::options().read(true).write(true).open("/dev/full").unwrap()) as _;
    let (store, _) = Store::open_backend(redb::backends::InMemoryBackend::new(), [full(), full()]).unwrap();
    let kit = Kit::with_store(store, &Config::default());
    let create = || {
        Request::Create(sessiond_protocol::Create { fields: vec![], expiry: Expiry::Default, meta: Default::default() })
    };
    let unavailable = Some(ErrorCode::Unavailable as u16);
    assert_eq!(code(&kit.call(create())), unavailable, "a write the log could not take is refused");
    assert!(kit.fatal.recv_timeout(std::time::Duration::from_secs(5)).is_ok(), "the daemon is told to stop");
    assert_eq!(code(&kit.call(create())), unavailable);
    assert_eq!(kit.store.scan().unwrap().len(), 0, "nothing of it reached redb");
}

#[test]
fn a_wall_clock_leap_does_not_sweep_every_session_away() {
    let kit = Kit::new();
    let key = kit.create(&[("a", "1")], Expiry::Default);
    let sweep = || match kit.call(Request::Sweep(sessiond_protocol::Empty {})) {
        Response::Swept(s) => s.removed,
        other => panic!("{other:?}"),
    };
    assert_eq!(sweep(), 0);
    // +15 days in an instant: every session looks expired, and reads say
    // so, but nothing is deleted while the clock has just leapt...
    kit.clock.jump(15 * 86_400_000);
    assert_eq!(sweep(), 0);
    assert!(matches!(kit.get(&key, false), Response::Error(_)), "reads follow the wall clock");
    // ...so when it is set right, the session is still there.
    kit.clock.jump(-15 * 86_400_000);
    assert!(matches!(kit.get(&key, false), Response::Session(_)));
    // A clock that stays leapt is believed once it has run steadily.
    kit.clock.jump(15 * 86_400_000);
    assert_eq!(sweep(), 0);
    kit.clock.advance(600_000);
    assert_eq!(sweep(), 1);
}
