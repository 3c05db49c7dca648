//! Every operation through the async and blocking clients, against the
//! real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeMap;

use sessiond_client::{Error, ErrorCode, Expiry};
use sessiond_tests::Daemon;

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    fields(pairs).into_iter().collect()
}

#[tokio::test]
async fn every_operation_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;

    c.ping().await.unwrap();
    let created = c.create(fields(&[("user", "alice"), ("theme", "dark")]), Expiry::Default).await.unwrap();
    assert_eq!(created.key.len(), 43);
    assert_eq!(created.version, 1);

    let s = c.get(&created.key).await.unwrap();
    assert_eq!(s.fields, map(&[("user", "alice"), ("theme", "dark")]));
    assert_eq!((s.version, s.expiry), (1, Expiry::Default));
    // Django's default age: two weeks from the last activity.
    assert_eq!(s.expires_at_ms - s.last_active_ms, 1_209_600_000);
    assert!(c.exists(&created.key).await.unwrap());

    let w = c.patch(&created.key, fields(&[("cart", "3")]), vec!["theme".to_string()], None).await.unwrap();
    assert_eq!(w.version, 2);
    assert_eq!(c.get(&created.key).await.unwrap().fields, map(&[("user", "alice"), ("cart", "3")]));

    let w = c.replace(&created.key, fields(&[("only", "this")]), Some(2)).await.unwrap();
    assert_eq!(w.version, 3);
    assert_eq!(c.get(&created.key).await.unwrap().fields, map(&[("only", "this")]));

    let err = c.replace(&created.key, fields(&[("x", "y")]), Some(2)).await.unwrap_err();
    assert!(matches!(err, Error::VersionConflict(_)), "{err:?}");
    let err = c.patch(&created.key, fields(&[("x", "y")]), Vec::new(), Some(1)).await.unwrap_err();
    assert!(matches!(err, Error::VersionConflict(_)), "{err:?}");

    let touched = c.touch(&created.key).await.unwrap();
    assert_eq!(touched.version, 3, "touch does not change the version");
    let s = c.get_touch(&created.key).await.unwrap();
    assert_eq!((s.version, s.fields.len()), (3, 1));

    let cycled = c.cycle(&created.key).await.unwrap();
    assert_ne!(cycled.key, created.key);
    assert!(matches!(c.get(&created.key).await, Err(Error::NotFound)), "the old key is gone");
    assert_eq!(c.get(&cycled.key).await.unwrap().fields, map(&[("only", "this")]));

    assert!(c.delete(&cycled.key).await.unwrap());
    assert!(!c.delete(&cycled.key).await.unwrap(), "a second delete finds nothing");
    assert!(matches!(c.get(&cycled.key).await, Err(Error::NotFound)));
    assert!(!c.exists(&cycled.key).await.unwrap());

    let stats: BTreeMap<String, u64> = c.stats().await.unwrap().into_iter().map(|c| (c.name, c.value)).collect();
    assert!(stats["requests"] >= 15, "{stats:?}");
    assert_eq!(stats["errors_version_conflict"], 2);
}

#[tokio::test]
async fn unknown_and_malformed_keys_are_never_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    // Well formed but unknown: NOT_FOUND for reads and writes alike, and
    // nothing is created under it.
    let unknown = "A".repeat(43);
    assert!(matches!(c.get(&unknown).await, Err(Error::NotFound)));
    assert!(matches!(c.patch(&unknown, fields(&[("a", "b")]), Vec::new(), None).await, Err(Error::NotFound)));
    assert!(matches!(c.replace(&unknown, fields(&[("a", "b")]), None).await, Err(Error::NotFound)));
    assert!(matches!(c.touch(&unknown).await, Err(Error::NotFound)));
    assert!(matches!(c.cycle(&unknown).await, Err(Error::NotFound)));
    assert!(!c.exists(&unknown).await.unwrap());
    for bad in ["", "short", &"A".repeat(21), &"A".repeat(87), &"*".repeat(43)] {
        let err = c.get(bad).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadKey), "{bad:?}: {err:?}");
    }
    let stats = c.stats().await.unwrap();
    let stat = |name: &str| stats.iter().find(|c| c.name == name).unwrap().value;
    assert_eq!(stat("sessions"), 0, "nothing was created");
    assert_eq!(stat("cache_misses"), 0, "unknown keys are refused by the index, before the cache or the database");
}

#[tokio::test]
async fn limits_are_enforced_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[limits]\nmax_frame = 65536\nmax_session_bytes = 1000\nmax_fields = 4\nmax_field_name = 8\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let c = daemon.client().await;
    let limits = c.limits().await.unwrap();
    assert_eq!((limits.max_session_bytes, limits.max_fields, limits.max_field_name), (1000, 4, 8));

    let too_big = vec![("v".to_string(), vec![0u8; 1000])];
    assert_eq!(c.create(too_big, Expiry::Default).await.unwrap_err().code(), Some(ErrorCode::TooLarge));
    let many: Vec<_> = (0..5).map(|i| (format!("f{i}"), vec![1u8])).collect();
    assert_eq!(c.create(many, Expiry::Default).await.unwrap_err().code(), Some(ErrorCode::TooLarge));
    let long_name = vec![("123456789".to_string(), vec![1u8])];
    assert_eq!(c.create(long_name, Expiry::Default).await.unwrap_err().code(), Some(ErrorCode::TooLarge));
    let dup = fields(&[("a", "1"), ("a", "2")]);
    assert_eq!(c.create(dup, Expiry::Default).await.unwrap_err().code(), Some(ErrorCode::BadRequest));

    // A patch is checked against the merged session, not just itself.
    let key = c.create(vec![("a".to_string(), vec![0u8; 600])], Expiry::Default).await.unwrap().key;
    let err = c.patch(&key, vec![("b".to_string(), vec![0u8; 600])], Vec::new(), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge));
    let s = c.get(&key).await.unwrap();
    assert_eq!((s.version, s.fields.len()), (1, 1), "a refused patch changes nothing");
}

#[tokio::test]
async fn idle_sessions_expire_and_are_never_served_after() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let key = c.create(fields(&[("a", "1")]), Expiry::IdleSecs(1)).await.unwrap().key;
    let s = c.get(&key).await.unwrap();
    assert_eq!(s.expiry, Expiry::IdleSecs(1));
    assert_eq!(s.expires_at_ms - s.last_active_ms, 1000);
    // Bounded wait for the real clock to pass the expiry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c.exists(&key).await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "session did not expire");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(matches!(c.get(&key).await, Err(Error::NotFound)));
    assert!(matches!(c.touch(&key).await, Err(Error::NotFound)));
    assert!(matches!(c.patch(&key, fields(&[("b", "2")]), Vec::new(), None).await, Err(Error::NotFound)));
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_clients_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let kept = c.create(fields(&[("user", "alice")]), Expiry::Default).await.unwrap().key;
    c.patch(&kept, fields(&[("cart", "9")]), Vec::new(), None).await.unwrap();
    let gone = c.create(fields(&[("user", "bob")]), Expiry::Default).await.unwrap().key;
    c.delete(&gone).await.unwrap();
    let old = c.create(fields(&[("user", "carol")]), Expiry::Default).await.unwrap().key;
    let new = c.cycle(&old).await.unwrap().key;

    daemon.restart(); // SIGKILL, then start again on the same directory

    // The same client object reconnects by itself.
    assert_eq!(c.get(&kept).await.unwrap().fields, map(&[("user", "alice"), ("cart", "9")]));
    assert!(matches!(c.get(&gone).await, Err(Error::NotFound)));
    assert!(matches!(c.get(&old).await, Err(Error::NotFound)));
    assert_eq!(c.get(&new).await.unwrap().fields, map(&[("user", "carol")]));
}

#[test]
fn the_blocking_client_does_everything_too() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.blocking();
    c.ping().unwrap();
    let key = c.create(fields(&[("a", "1")]), Expiry::IdleSecs(600)).unwrap().key;
    c.patch(&key, fields(&[("b", "2")]), Vec::new(), Some(1)).unwrap();
    assert_eq!(c.get(&key).unwrap().fields, map(&[("a", "1"), ("b", "2")]));
    let new = c.cycle(&key).unwrap().key;
    assert!(matches!(c.get(&key), Err(Error::NotFound)));
    assert!(c.delete(&new).unwrap());
    assert!(!c.exists(&new).unwrap());
}
