//! Protocol version 2 ("1.1") against the real daemon: keys proposed by
//! the caller, to create a session or to move one (CYCLE_AS), never adopted
//! any other way, nor taken from a session that has them; data, expiry and owner in one
//! WRITE, the settings in HELLO_OK, listings a page at a time; and a
//! version 1 client still served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{Read, Write as _};
use std::os::unix::net::UnixStream;

use sessiond_client::{Error, Expiry};
use sessiond_protocol::{ErrorCode, Hello, Meta, Owner, Request, Response, Write, decode_frame};
use sessiond_tests::Daemon;

/// A tower-sessions id: 128 bits, 22 characters.
const PROPOSED: &str = "AAECAwQFBgcICQoLDA0ODw";

fn write(key: &str) -> Write {
    Write {
        key: key.into(),
        set: Vec::new(),
        remove: Vec::new(),
        replace: false,
        expected_version: None,
        expiry: None,
        owner: Owner::Keep,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposed_key_is_created_once_and_no_other_operation_adopts_one() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    // Unknown, well-formed proposed-length keys: every other operation is
    // NOT_FOUND and creates nothing.
    let unknown = "BBECAwQFBgcICQoLDA0ODw";
    assert!(matches!(c.get(unknown).await, Err(Error::NotFound)));
    assert!(matches!(c.patch(unknown, [("a", "b")], Vec::new(), None).await, Err(Error::NotFound)));
    assert!(matches!(c.write(write(unknown)).await, Err(Error::NotFound)));
    assert!(matches!(c.touch(unknown).await, Err(Error::NotFound)));
    assert!(matches!(c.cycle(unknown).await, Err(Error::NotFound)));
    assert!(!c.delete(unknown).await.unwrap());
    assert!(!c.exists(unknown).await.unwrap());

    let created = c.create_as(PROPOSED, [("cart", "3")], Expiry::IdleSecs(1800), Meta::default()).await.unwrap();
    assert_eq!(created.key, PROPOSED);
    assert_eq!(c.get(PROPOSED).await.unwrap().fields["cart"], b"3");
    // A collision is refused, and the first session is untouched.
    let again = c.create_as(PROPOSED, [("cart", "9")], Expiry::Default, Meta::default()).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::KeyExists), "{again:?}");
    assert_eq!(c.get(PROPOSED).await.unwrap().fields["cart"], b"3");
    // So is a key the daemon made, and one that is too short to carry
    // 128 bits.
    let made = c.create([("a", "1")], Expiry::Default).await.unwrap().key;
    let taken = c.create_as(&made, [("a", "2")], Expiry::Default, Meta::default()).await.unwrap_err();
    assert_eq!(taken.code(), Some(ErrorCode::KeyExists));
    let short = c.create_as("AAECAwQFBgcICQoLDA0O", [("a", "2")], Expiry::Default, Meta::default()).await.unwrap_err();
    assert_eq!(short.code(), Some(ErrorCode::BadKey));
    let sessions = c.stats().await.unwrap().into_iter().find(|s| s.name == "sessions").unwrap().value;
    assert_eq!(sessions, 2, "only the two creates made sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_changes_data_expiry_and_owner_in_one_step_and_never_resurrects() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let key = c.create([("cart", "3"), ("theme", "dark")], Expiry::Default).await.unwrap().key;
    let login = Write {
        set: vec![sessiond_protocol::Field { name: "_auth_user_id".into(), value: b"42".to_vec() }],
        remove: vec!["cart".into()],
        expiry: Some(Expiry::IdleSecs(600)),
        owner: Owner::Set("42".into()),
        ..write(&key)
    };
    let written = c.write(login).await.unwrap();
    assert_eq!(written.version, 2, "one write, one version");
    let s = c.get(&key).await.unwrap();
    assert_eq!((s.expiry, s.user.as_deref()), (Expiry::IdleSecs(600), Some("42")));
    assert!(s.fields.contains_key("_auth_user_id") && !s.fields.contains_key("cart") && s.fields.contains_key("theme"));
    assert!(s.expires_at_ms <= s.last_active_ms + 600_000, "the new policy holds at once");
    assert_eq!(c.list_user("42").await.unwrap().len(), 1);

    // Replace, and clear the owner (a logout that keeps the session).
    let logout = Write {
        set: vec![sessiond_protocol::Field { name: "a".into(), value: b"1".to_vec() }],
        replace: true,
        owner: Owner::Clear,
        expected_version: Some(2),
        ..write(&key)
    };
    c.write(logout).await.unwrap();
    let s = c.get(&key).await.unwrap();
    assert_eq!((s.fields.len(), s.user), (1, None));
    assert!(c.list_user("42").await.unwrap().is_empty());
    let stale = c.write(Write { expected_version: Some(2), ..write(&key) }).await.unwrap_err();
    assert!(matches!(stale, Error::VersionConflict { .. }), "{stale:?}");
    let bad = c.write(Write { replace: true, remove: vec!["a".into()], ..write(&key) }).await.unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::BadRequest));

    // Deleted elsewhere: the save is refused, the session stays gone.
    c.delete(&key).await.unwrap();
    assert!(matches!(c.write(write(&key)).await, Err(Error::NotFound)));
    assert!(matches!(c.get(&key).await, Err(Error::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_ok_announces_the_settings_and_a_version_1_client_is_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[expiry]\ndefault_idle_secs = 3600\nmax_lifetime_secs = 86400\ntouch_granularity_secs = 30\n\
                  [users]\nmax_user_agent = 200\nmax_sessions_per_user = 5\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let settings = daemon.client().await.settings().await.unwrap();
    assert_eq!(
        (settings.default_idle_secs, settings.max_lifetime_secs, settings.touch_granularity_secs),
        (3600, 86_400, 30)
    );
    assert_eq!((settings.max_user_agent, settings.max_sessions_per_user, settings.max_list_page), (200, 5, 1000));

    // A version 1 HELLO gets version 1's HELLO_OK: no settings after the
    // limits, so a version 1 decoder reads it whole.
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    let mut out = Vec::new();
    Request::Hello(Hello { version: 1, client: "v1".into() }).encode_frame(1, &mut out);
    s.write_all(&out).unwrap();
    let mut buf = vec![0; 4096];
    let n = s.read(&mut buf).unwrap();
    let frame = decode_frame(&buf[..n], 1 << 20).unwrap().unwrap();
    match Response::decode(frame.header.opcode, frame.body).unwrap() {
        Response::Hello(h) => assert_eq!((h.version, h.settings), (1, None)),
        other => panic!("{other:?}"),
    }
    let unsupported = Request::Hello(Hello { version: 3, client: "v3".into() });
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    let mut out = Vec::new();
    unsupported.encode_frame(1, &mut out);
    s.write_all(&out).unwrap();
    let n = s.read(&mut buf).unwrap();
    let frame = decode_frame(&buf[..n], 1 << 20).unwrap().unwrap();
    assert!(matches!(Response::decode(frame.header.opcode, frame.body).unwrap(),
        Response::Error(e) if e.code == ErrorCode::Unsupported as u16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_comes_a_page_at_a_time_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    for _ in 0..25 {
        let meta = Meta { user: Some("alice".into()), ..Default::default() };
        c.create_with_meta([("a", "1")], Expiry::Default, meta).await.unwrap();
    }
    let whole: Vec<String> = c.list_user("alice").await.unwrap().into_iter().map(|s| s.handle).collect();
    let mut paged = Vec::new();
    let mut after = None;
    let mut sizes = Vec::new();
    for _ in 0..10 {
        let page = c.list_user_page("alice", 10, after.as_deref()).await.unwrap();
        sizes.push(page.sessions.len());
        paged.extend(page.sessions.into_iter().map(|s| s.handle));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(paged, whole, "the pages, in order, are the listing");
    let bad = c.list_user_page("alice", 10, Some("nonsense")).await.unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::BadRequest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_to_a_proposed_key_moves_the_session_once_and_never_takes_a_key_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let first = c.create([("cart", "3")], Expiry::IdleSecs(1800)).await.unwrap();
    let cycled = c.cycle_as(&first.key, PROPOSED, None).await.unwrap();
    assert_eq!((cycled.key.as_str(), &cycled.handle, cycled.version), (PROPOSED, &first.handle, 2));
    assert_eq!(c.get(PROPOSED).await.unwrap().fields["cart"], b"3");
    assert!(matches!(c.get(&first.key).await, Err(Error::NotFound)), "the old key is gone");
    assert!(!c.exists(&first.key).await.unwrap());

    // A collision is refused and changes nothing, on either session; so is
    // the session's own key, and one too short to carry 128 bits.
    let other = c.create([("cart", "9")], Expiry::Default).await.unwrap();
    let taken = c.cycle_as(&other.key, PROPOSED, None).await.unwrap_err();
    assert_eq!(taken.code(), Some(ErrorCode::KeyExists), "{taken:?}");
    let own = c.cycle_as(&other.key, &other.key, None).await.unwrap_err();
    assert_eq!(own.code(), Some(ErrorCode::KeyExists), "{own:?}");
    let s = c.get(&other.key).await.unwrap();
    assert_eq!((s.fields["cart"].as_slice(), s.version), (&b"9"[..], 1));
    let s = c.get(PROPOSED).await.unwrap();
    assert_eq!((s.fields["cart"].as_slice(), s.version, s.handle), (&b"3"[..], 2, first.handle.clone()));
    let short = c.cycle_as(&other.key, "AAECAwQFBgcICQoLDA0O", None).await.unwrap_err();
    assert_eq!(short.code(), Some(ErrorCode::BadKey));

    // An unknown key: NOT_FOUND, and the proposed key is not created.
    let fresh = "CAECAwQFBgcICQoLDA0ODw";
    assert!(matches!(c.cycle_as("BBECAwQFBgcICQoLDA0ODw", fresh, None).await, Err(Error::NotFound)));
    assert!(!c.exists(fresh).await.unwrap());

    // With a user: login in the same step.
    let login = c.cycle_as(&other.key, fresh, Some("42")).await.unwrap();
    assert_eq!(login.key, fresh);
    assert_eq!(c.get(fresh).await.unwrap().user.as_deref(), Some("42"));
    assert_eq!(c.list_user("42").await.unwrap().len(), 1);
    let sessions = c.stats().await.unwrap().into_iter().find(|s| s.name == "sessions").unwrap().value;
    assert_eq!(sessions, 2, "cycles made no sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proposed_key_evicts_nobody_under_the_per_user_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[users]\nmax_sessions_per_user = 1\nlimit_policy = \"evict_oldest\"\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let c = daemon.client().await;
    let owned = c.create_with_meta([("a", "1")], Expiry::Default, Meta { user: Some("42".into()), ..Meta::default() });
    let owned = owned.await.unwrap();
    let anonymous = c.create([("b", "2")], Expiry::Default).await.unwrap();
    // A login into a key in use: refused before the limit would evict the
    // user's other session.
    let refused = c.cycle_as(&anonymous.key, &owned.key, Some("42")).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::KeyExists), "{refused:?}");
    assert!(c.exists(&owned.key).await.unwrap(), "nobody evicted");
    assert!(c.exists(&anonymous.key).await.unwrap());
    // With a free key, the limit does its work.
    c.cycle_as(&anonymous.key, PROPOSED, Some("42")).await.unwrap();
    assert!(!c.exists(&owned.key).await.unwrap(), "the older session made room");
    assert_eq!(c.list_user("42").await.unwrap().len(), 1);
}
