//! User-owned sessions through the real binary: listing, revoking one, all,
//! or all but the current one, the per-user limit in both policies, the
//! IP and user-agent mismatch flags, GeoIP locations, and revocation that
//! survives a SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeSet;
use std::time::Instant;

use sessiond_client::{Client, Error, ErrorCode, Expiry, Meta};
use sessiond_tests::mmdb::{Place, city_database};
use sessiond_tests::{Daemon, sessionctl};

fn meta(user: &str, ip: &str, ua: &str) -> Meta {
    Meta { user: Some(user.into()), ip: Some(ip.into()), user_agent: Some(ua.into()) }
}

async fn login(c: &Client, user: &str, ip: &str, ua: &str) -> sessiond_client::Created {
    c.create_with_meta([("cart", "1")], Expiry::Default, meta(user, ip, ua)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_shows_handles_and_origins_never_keys() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let laptop = login(&c, "alice", "192.0.2.1", "Firefox").await;
    let phone = login(&c, "alice", "2001:db8:0:0::7", "Safari").await;
    login(&c, "bob", "192.0.2.9", "Chrome").await;
    let anonymous = c.create([("x", "1")], Expiry::Default).await.unwrap();

    c.touch(&laptop.key).await.unwrap();
    let list = c.list_user("alice").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].handle, laptop.handle, "most recently active first");
    assert_eq!((list[0].ip.as_deref(), list[0].user_agent.as_deref()), (Some("192.0.2.1"), Some("Firefox")));
    assert_eq!(list[1].ip.as_deref(), Some("2001:db8::7"), "IPs are stored in canonical form");
    assert!(list[0].last_active_ms >= list[0].created_ms);
    assert!(list[0].location.is_none(), "no GeoIP database configured");
    for info in &list {
        assert_ne!(info.handle, laptop.key);
        assert_ne!(info.handle, phone.key);
        assert_eq!(info.handle.len(), 16);
    }
    assert!(c.list_user("nobody").await.unwrap().is_empty());
    assert!(c.get(&anonymous.key).await.unwrap().user.is_none());

    // Ended and expired sessions never appear.
    c.delete(&phone.key).await.unwrap();
    let short =
        c.create_with_meta([("a", "1")], Expiry::IdleSecs(1), meta("alice", "192.0.2.2", "Edge")).await.unwrap();
    assert_eq!(c.list_user("alice").await.unwrap().len(), 2);
    while c.exists(&short.key).await.unwrap() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let handles: Vec<_> = c.list_user("alice").await.unwrap().into_iter().map(|i| i.handle).collect();
    assert_eq!(handles, vec![laptop.handle]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_survives_every_code_path() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let s = login(&c, "alice", "192.0.2.1", "Firefox").await;
    c.patch(&s.key, [("b", "2")], Vec::new(), None).await.unwrap();
    c.replace(&s.key, [("c", "3")], None).await.unwrap();
    c.set_expiry(&s.key, Expiry::IdleSecs(600)).await.unwrap();
    c.touch(&s.key).await.unwrap();
    let cycled = c.cycle(&s.key).await.unwrap();
    assert_eq!(cycled.handle, s.handle, "the handle survives a key rotation");
    let got = c.get_touch(&cycled.key).await.unwrap();
    assert_eq!(
        (got.user.as_deref(), got.ip.as_deref(), got.user_agent.as_deref(), got.handle.as_str()),
        (Some("alice"), Some("192.0.2.1"), Some("Firefox"), s.handle.as_str())
    );
    c.set_meta(&cycled.key, Some("198.51.100.4"), None).await.unwrap();
    let got = c.get(&cycled.key).await.unwrap();
    assert_eq!((got.ip.as_deref(), got.user_agent.as_deref()), (Some("198.51.100.4"), Some("Firefox")));
    assert_eq!(c.list_user("alice").await.unwrap()[0].ip.as_deref(), Some("198.51.100.4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_binds_the_user_atomically_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let visitor = c
        .create_with_meta(
            [("cart", "3")],
            Expiry::Default,
            Meta { user: None, ip: Some("192.0.2.1".into()), user_agent: Some("Firefox".into()) },
        )
        .await
        .unwrap();
    let logged_in = c.cycle_bind(&visitor.key, "alice").await.unwrap();
    assert!(matches!(c.get(&visitor.key).await, Err(Error::NotFound)));
    let s = c.get(&logged_in.key).await.unwrap();
    assert_eq!((s.user.as_deref(), s.fields["cart"].as_slice()), (Some("alice"), &b"3"[..]));
    assert_eq!(c.list_user("alice").await.unwrap()[0].handle, logged_in.handle);
    // Logging in as someone else moves the session between users.
    let switched = c.cycle_bind(&logged_in.key, "bob").await.unwrap();
    assert!(c.list_user("alice").await.unwrap().is_empty());
    assert_eq!(c.list_user("bob").await.unwrap()[0].handle, switched.handle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_one_all_or_all_but_the_current_session() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let mut alice = Vec::new();
    for i in 0..5 {
        alice.push(login(&c, "alice", &format!("192.0.2.{i}"), "Firefox").await);
    }
    let bob = login(&c, "bob", "192.0.2.50", "Chrome").await;

    assert_eq!(c.revoke(&alice[0].handle).await.unwrap(), 1);
    assert_eq!(c.revoke(&alice[0].handle).await.unwrap(), 0, "already ended");
    assert!(matches!(c.get(&alice[0].key).await, Err(Error::NotFound)));

    let current = &alice[1];
    assert_eq!(c.revoke_user("alice", Some(&current.handle)).await.unwrap(), 3);
    for s in &alice[2..] {
        assert!(matches!(c.get(&s.key).await, Err(Error::NotFound)), "revoked sessions are gone at once");
    }
    assert!(c.get(&current.key).await.is_ok(), "the current session is kept");
    assert_eq!(c.list_user("alice").await.unwrap().len(), 1);

    assert_eq!(c.revoke_user("alice", None).await.unwrap(), 1);
    assert!(matches!(c.get(&current.key).await, Err(Error::NotFound)));
    assert!(c.list_user("alice").await.unwrap().is_empty());
    assert!(c.get(&bob.key).await.is_ok(), "other users are untouched");
    assert_eq!(c.revoke_user("nobody", None).await.unwrap(), 0);
    let bad = c.revoke("not-a-handle").await.unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::BadRequest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let a = login(&c, "alice", "192.0.2.1", "Firefox").await;
    let b = login(&c, "alice", "192.0.2.2", "Firefox").await;
    let kept = login(&c, "alice", "192.0.2.3", "Firefox").await;
    let single = login(&c, "carol", "192.0.2.4", "Firefox").await;
    c.revoke_user("alice", Some(&kept.handle)).await.unwrap();
    c.revoke(&single.handle).await.unwrap();
    daemon.restart();
    for key in [&a.key, &b.key, &single.key] {
        assert!(matches!(c.get(key).await, Err(Error::NotFound)), "a revoked session came back");
    }
    assert!(c.get(&kept.key).await.is_ok());
    let handles: Vec<_> = c.list_user("alice").await.unwrap().into_iter().map(|i| i.handle).collect();
    assert_eq!(handles, vec![kept.handle]);
    assert!(c.list_user("carol").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_refuses_or_evicts_the_least_recently_active() {
    let dir = tempfile::tempdir().unwrap();
    let refuse = Daemon::start(&dir.path().join("r"), Some("[users]\nmax_sessions_per_user = 3\n"));
    let c = refuse.client().await;
    let mut first = Vec::new();
    for i in 0..3 {
        first.push(login(&c, "alice", &format!("192.0.2.{i}"), "Firefox").await);
    }
    let err = c.create_with_meta([("a", "1")], Expiry::Default, meta("alice", "192.0.2.9", "x")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooManySessions));
    let visitor = c.create([("a", "1")], Expiry::Default).await.unwrap();
    assert_eq!(c.cycle_bind(&visitor.key, "alice").await.unwrap_err().code(), Some(ErrorCode::TooManySessions));
    assert!(c.get(&visitor.key).await.is_ok(), "a refused login changes nothing");
    login(&c, "bob", "192.0.2.9", "x").await; // other users are not counted
    c.revoke(&first[0].handle).await.unwrap();
    login(&c, "alice", "192.0.2.9", "x").await; // room again
    // Rotating a session the user already owns does not need room.
    c.cycle_bind(&first[1].key, "alice").await.unwrap();

    let evict = Daemon::start(
        &dir.path().join("e"),
        Some("[users]\nmax_sessions_per_user = 3\nlimit_policy = \"evict_oldest\"\n"),
    );
    let c = evict.client().await;
    let mut sessions = Vec::new();
    for i in 0..3 {
        sessions.push(login(&c, "alice", &format!("192.0.2.{i}"), "Firefox").await);
    }
    // Activity order, least recent first: 1, 0, 2.
    c.touch(&sessions[0].key).await.unwrap();
    c.touch(&sessions[2].key).await.unwrap();
    let newest = login(&c, "alice", "192.0.2.9", "Firefox").await;
    assert!(matches!(c.get(&sessions[1].key).await, Err(Error::NotFound)), "the least recently active ended");
    let live: BTreeSet<_> = c.list_user("alice").await.unwrap().into_iter().map(|i| i.handle).collect();
    let expected: BTreeSet<_> = [&sessions[0], &sessions[2], &newest].iter().map(|s| s.handle.clone()).collect();
    assert_eq!(live, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_ip_or_user_agent_is_reported_not_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let c = daemon.client().await;
    let s = login(&c, "alice", "192.0.2.1", "Firefox/120").await;
    let same = c.get_from(&s.key, false, Some("192.0.2.1"), Some("Firefox/120")).await.unwrap();
    assert!(!same.ip_changed && !same.user_agent_changed);
    let moved = c.get_from(&s.key, true, Some("203.0.113.5"), Some("Firefox/120")).await.unwrap();
    assert!(moved.ip_changed && !moved.user_agent_changed);
    let other = c.get_from(&s.key, false, Some("192.0.2.1"), Some("curl/8")).await.unwrap();
    assert!(!other.ip_changed && other.user_agent_changed);
    assert!(c.get(&s.key).await.is_ok(), "the session stays valid");
    // The canonical form is compared, not the text.
    let v6 = login(&c, "bob", "2001:db8::1", "x").await;
    assert!(!c.get_from(&v6.key, false, Some("2001:0db8:0::1"), None).await.unwrap().ip_changed);
    let bad = c.get_from(&s.key, false, Some("not an ip"), None).await.unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::BadRequest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_carry_the_geoip_location() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    std::fs::write(
        &db,
        city_database(&[
            Place {
                network: "192.0.2.0".parse().unwrap(),
                prefix: 24,
                country_code: "FR",
                country: "France",
                city: "Paris",
            },
            Place {
                network: "198.51.100.0".parse().unwrap(),
                prefix: 24,
                country_code: "JP",
                country: "Japan",
                city: "Tokyo",
            },
        ]),
    )
    .unwrap();
    let config = format!("[users]\ngeoip_db = {:?}\n", db.display().to_string());
    let daemon = Daemon::start(&dir.path().join("d"), Some(&config));
    let c = daemon.client().await;
    login(&c, "alice", "192.0.2.77", "Firefox").await;
    login(&c, "alice", "198.51.100.1", "Safari").await;
    login(&c, "alice", "203.0.113.1", "Edge").await;
    let mut places: Vec<_> = c
        .list_user("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.location.map(|l| (l.country_code.unwrap(), l.country.unwrap(), l.city.unwrap())))
        .collect();
    places.sort();
    assert_eq!(
        places,
        vec![
            None,
            Some(("FR".into(), "France".into(), "Paris".into())),
            Some(("JP".into(), "Japan".into(), "Tokyo".into()))
        ]
    );
    // A file that is not a GeoIP database stops start-up with a clear message.
    std::fs::write(&db, b"not a database").unwrap();
    let out = std::process::Command::new(sessiond_tests::binary("sessiond"))
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .arg("--config")
        .arg(dir.path().join("d.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GeoIP database"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_user_with_a_thousand_sessions_among_a_hundred_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[durability]\nmode = \"relaxed\"\nflush_interval_ms = 100\n";
    let daemon = Daemon::start(&dir.path().join("d"), Some(config));
    let mut tasks = Vec::new();
    for t in 0..50u32 {
        let c = daemon.client().await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..2_000u32 {
                let user = format!("user{}", (t * 2_000 + i) % 5_000);
                let m = Meta { user: Some(user), ip: Some("192.0.2.1".into()), user_agent: Some("x".into()) };
                c.create_with_meta([("i", i.to_string())], Expiry::Default, m).await.unwrap();
            }
            for i in 0..20 {
                let m = Meta { user: Some("target".into()), ip: Some("192.0.2.2".into()), user_agent: None };
                mine.push(c.create_with_meta([("i", i.to_string())], Expiry::Default, m).await.unwrap().key);
            }
            mine
        }));
    }
    let mut target = Vec::new();
    for t in tasks {
        target.extend(t.await.unwrap());
    }
    assert_eq!(target.len(), 1_000);
    let c = daemon.client().await;
    let sessions = |s: Vec<sessiond_client::Counter>| s.into_iter().find(|c| c.name == "sessions").unwrap().value;
    assert_eq!(sessions(c.stats().await.unwrap()), 101_000);

    let started = Instant::now();
    let listed = c.list_user("target").await.unwrap();
    let list_time = started.elapsed();
    assert_eq!(listed.len(), 1_000);

    let started = Instant::now();
    let revoked = c.revoke_user("target", None).await.unwrap();
    let revoke_time = started.elapsed();
    assert_eq!(revoked, 1_000);
    let mut survivors = 0;
    for key in &target {
        if c.get(key).await.is_ok() {
            survivors += 1;
        }
    }
    assert_eq!(survivors, 0);
    assert_eq!(sessions(c.stats().await.unwrap()), 100_000, "no collateral losses");
    assert_eq!(c.list_user("user42").await.unwrap().len(), 20);
    eprintln!("LIST_USER of 1,000 sessions: {list_time:?}; REVOKE_USER of 1,000 among 101,000: {revoke_time:?}");
}

#[test]
fn sessionctl_lists_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("d"), None);
    let ctl = |args: &[&str]| sessionctl(&daemon.socket, args);
    let (code, out, _) = ctl(&["--json", "create", "--user", "alice", "--ip", "192.0.2.1", "--ua", "Firefox"]);
    assert_eq!(code, 0);
    let handle = out.split("\"handle\":\"").nth(1).unwrap()[..16].to_owned();
    let (_, second, _) = ctl(&["create", "--user", "alice", "--ip", "192.0.2.2", "--ua", "Safari"]);
    let (code, out, _) = ctl(&["list", "--user", "alice"]);
    assert_eq!((code, out.lines().count()), (0, 2));
    assert!(out.contains("192.0.2.1") && out.contains("Safari") && !out.contains(&second), "{out}");
    assert!(ctl(&["--json", "list", "--user", "alice"]).1.starts_with("[{\"created_ms\""));
    assert_eq!(ctl(&["revoke", "--user", "alice", "--keep", &handle]).1, "revoked 1");
    let (code, out, err) = ctl(&["get", &second]);
    assert_eq!(code, 3, "the revoked session: stdout {out:?}, stderr {err:?}");
    assert_eq!(ctl(&["--json", "revoke", "--handle", &handle]).1, "{\"revoked\":1}");
    assert_eq!(ctl(&["list", "--user", "alice"]).1, "");
    assert_eq!(ctl(&["revoke"]).0, 2, "--user or --handle is required");
    assert_eq!(ctl(&["create", "--user", "", "--ip", "x"]).0, 1);
}
