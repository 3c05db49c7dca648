//! Transfer tokens and sealed cookies through the service, with a manual
//! clock: every check of SECURITY.md's TT v1 and SC v1 that can fail.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond_protocol::{
    ErrorCode, Expiry, Field, IssueTransfer, RedeemTransfer, Request, Response, Seal, SealedCookie, SessionBody,
};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::testkit::{Kit, T0, code};

const A: &str = "www.example.com";
const B: &str = "www.example.org";
const C: &str = "www.example.net";
const REJECTED: Option<u16> = Some(ErrorCode::TokenRejected as u16);

fn kit() -> Kit {
    let mut config = Config::default();
    config.transfer.sites = vec![A.into(), B.into(), C.into()];
    Kit::with_config(&config)
}

fn issue(kit: &Kit, key: &str, from: &str, to: &[&str], state_hash: Option<[u8; 32]>) -> Vec<(String, String)> {
    let request = Request::IssueTransfer(IssueTransfer {
        key: key.into(),
        source_host: from.into(),
        destinations: to.iter().map(|s| s.to_string()).collect(),
        state_hash: state_hash.map(|h| h.to_vec()),
    });
    match kit.call(request) {
        Response::TransferIssued(t) => t.tokens.into_iter().map(|t| (t.host, t.token)).collect(),
        other => panic!("issue failed: {other:?}"),
    }
}

fn redeem(kit: &Kit, token: &str, host: &str, current: Option<&str>, state: Option<&[u8]>) -> Response {
    kit.call(Request::RedeemTransfer(RedeemTransfer {
        token: token.into(),
        host: host.into(),
        current_key: current.map(str::to_owned),
        always_replace: false,
        state: state.map(<[u8]>::to_vec),
    }))
}

fn redeemed_key(r: Response) -> (String, bool) {
    match r {
        Response::Redeemed(r) => (r.key, r.replaced),
        other => panic!("redeem failed: {other:?}"),
    }
}

fn session(r: Response) -> SessionBody {
    match r {
        Response::Session(s) => s,
        other => panic!("expected a session: {other:?}"),
    }
}

fn stat(kit: &Kit, name: &str) -> u64 {
    let Response::Stats(s) = kit.call(Request::Stats(sessiond_protocol::Empty {})) else { panic!() };
    s.counters.iter().find(|c| c.name == name).unwrap().value
}

/// Every single-bit flip, truncation and one-byte extension of a token.
fn mutations(token: &str) -> Vec<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
    let mut out = Vec::new();
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        out.push(URL_SAFE_NO_PAD.encode(b));
    }
    for len in 0..bytes.len() {
        out.push(URL_SAFE_NO_PAD.encode(&bytes[..len]));
    }
    for at in 0..=bytes.len() {
        let mut b = bytes.clone();
        b.insert(at, 0x5A);
        out.push(URL_SAFE_NO_PAD.encode(b));
    }
    out
}

#[test]
fn a_redeemed_token_gives_the_destination_its_own_key_to_the_same_session() {
    let kit = kit();
    let source = kit.create(&[("cart", "3")], Expiry::Default);
    let tokens = issue(&kit, &source, A, &[], None);
    let hosts: Vec<_> = tokens.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, [B, C], "every other site by default");
    assert!(tokens.iter().all(|(_, t)| t.len() <= 512 && !t.contains(&source)));

    let (b_key, replaced) = redeemed_key(redeem(&kit, &tokens[0].1, B, None, None));
    assert!(replaced);
    assert_ne!(b_key, source, "the same secret is never set on two sites");
    assert_eq!(session(kit.get(&b_key, false)).fields[0].value, b"3");
    // One session: a change through either key is seen through the other.
    kit.patch(&b_key, "cart", "4");
    assert_eq!(session(kit.get(&source, false)).fields[0].value, b"4");
    // Rotating the destination's key keeps the family together.
    let Response::Cycled(b2) = kit.cycle(&b_key, None) else { panic!() };
    assert_eq!(code(&kit.get(&b_key, false)), Some(ErrorCode::NotFound as u16));
    assert_eq!(session(kit.get(&b2.key, false)).fields[0].value, b"4");
    // Logout anywhere ends every key of the session.
    assert!(matches!(kit.key_op(Request::Delete, &b2.key), Response::Deleted(d) if d.existed));
    assert_eq!(code(&kit.get(&source, false)), Some(ErrorCode::NotFound as u16));
    assert_eq!(stat(&kit, "tokens_issued"), 2);
}

#[test]
fn tokens_are_bound_to_their_destination_and_purpose() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    let token = issue(&kit, &source, A, &[B], None).remove(0).1;
    assert_eq!(code(&redeem(&kit, &token, C, None, None)), REJECTED, "meant for B, presented at C");
    assert_eq!(code(&redeem(&kit, &token, A, None, None)), REJECTED, "presented at its source");
    assert_eq!(stat(&kit, "token_rejected_auth"), 2);
    // A sealed cookie is not a transfer token, nor the reverse.
    let cookie = seal(&kit, &[("a", "1")], "s", B);
    assert_eq!(code(&redeem(&kit, &cookie, B, None, None)), REJECTED);
    assert_eq!(code(&unseal(&kit, &token, "s", B)), REJECTED);
    assert_eq!(stat(&kit, "token_rejected_version"), 2);
    // Unconfigured hosts can be neither source nor destination.
    let bad = Request::IssueTransfer(IssueTransfer {
        key: source.clone(),
        source_host: "evil.example".into(),
        destinations: vec![B.into()],
        state_hash: None,
    });
    assert_eq!(code(&kit.call(bad)), Some(ErrorCode::BadRequest as u16));
    let (key, _) = redeemed_key(redeem(&kit, &token, B, None, None));
    assert!(matches!(kit.get(&key, false), Response::Session(_)));
}

#[test]
fn every_mutation_of_a_token_or_cookie_is_rejected() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    let token = issue(&kit, &source, A, &[B], None).remove(0).1;
    let cookie = seal(&kit, &[("cart", "3")], "s", A);
    let mut tried = 0;
    for bad in mutations(&token) {
        assert_eq!(code(&redeem(&kit, &bad, B, None, None)), REJECTED);
        tried += 1;
    }
    for bad in mutations(&cookie) {
        assert_eq!(code(&unseal(&kit, &bad, "s", A)), REJECTED);
        tried += 1;
    }
    assert!(tried > 2_000, "{tried}");
    // The originals still work: nothing above was consumed.
    assert!(matches!(redeem(&kit, &token, B, None, None), Response::Redeemed(_)));
    assert!(matches!(unseal(&kit, &cookie, "s", A), Response::Unsealed(_)));
}

#[test]
fn the_time_window_is_enforced_at_each_boundary() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    // Valid until exp (T0 + 30 s) plus the 5 s skew.
    let late = issue(&kit, &source, A, &[B], None).remove(0).1;
    let in_time = issue(&kit, &source, A, &[B], None).remove(0).1;
    kit.clock.set(T0 + 35_000);
    assert!(matches!(redeem(&kit, &in_time, B, None, None), Response::Redeemed(_)));
    kit.clock.set(T0 + 35_001);
    assert_eq!(code(&redeem(&kit, &late, B, None, None)), REJECTED);
    // Issued in the future by more than the skew.
    kit.clock.set(T0 + 100_000);
    let future = issue(&kit, &source, A, &[B], None).remove(0).1;
    let ok = issue(&kit, &source, A, &[B], None).remove(0).1;
    kit.clock.set(T0 + 100_000 - 5_001);
    assert_eq!(code(&redeem(&kit, &future, B, None, None)), REJECTED);
    kit.clock.set(T0 + 100_000 - 5_000);
    assert!(matches!(redeem(&kit, &ok, B, None, None), Response::Redeemed(_)));
    assert_eq!(stat(&kit, "token_rejected_time"), 2);
}

#[test]
fn a_token_is_redeemed_once_even_across_a_restart() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    let tokens = issue(&kit, &source, A, &[B], None);
    let again = issue(&kit, &source, A, &[B], None);
    assert!(matches!(redeem(&kit, &tokens[0].1, B, None, None), Response::Redeemed(_)));
    assert_eq!(code(&redeem(&kit, &tokens[0].1, B, None, None)), REJECTED);
    assert_eq!(stat(&kit, "token_rejected_replay"), 1);
    assert!(matches!(redeem(&kit, &again[0].1, B, None, None), Response::Redeemed(_)));
    let kit = kit.restart(T0 + 1_000);
    assert_eq!(code(&redeem(&kit, &tokens[0].1, B, None, None)), REJECTED, "replayed after restart");
    assert_eq!(stat(&kit, "token_rejected_replay"), 1, "refused as a replay, not for another reason");
}

#[test]
fn thirty_two_concurrent_redeems_of_one_token_have_one_winner() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    let token = issue(&kit, &source, A, &[B], None).remove(0).1;
    let service = &kit.service;
    let request = || {
        Request::RedeemTransfer(RedeemTransfer {
            token: token.clone(),
            host: B.into(),
            current_key: None,
            always_replace: false,
            state: None,
        })
    };
    let wins = std::thread::scope(|s| {
        let threads: Vec<_> = (0..32).map(|_| s.spawn(|| crate::testkit::call(service, request()))).collect();
        threads.into_iter().map(|t| t.join().unwrap()).filter(|r| matches!(r, Response::Redeemed(_))).count()
    });
    assert_eq!(wins, 1);
    assert_eq!(stat(&kit, "token_rejected_replay"), 31);
}

#[test]
fn browser_binding_requires_the_right_state() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    let state = b"random state from the destination's cookie";
    let hash: [u8; 32] = Sha256::digest(state).into();
    let tokens: Vec<_> = (0..3).map(|_| issue(&kit, &source, A, &[B], Some(hash)).remove(0).1).collect();
    assert_eq!(code(&redeem(&kit, &tokens[0], B, None, None)), REJECTED, "no state");
    assert_eq!(code(&redeem(&kit, &tokens[1], B, None, Some(b"another state"))), REJECTED, "wrong state");
    assert!(matches!(redeem(&kit, &tokens[2], B, None, Some(state)), Response::Redeemed(_)));
    // And an unbound token is refused where binding is required.
    let mut config = Config::default();
    config.transfer.sites = vec![A.into(), B.into()];
    config.transfer.require_binding = true;
    let strict = Kit::with_config(&config);
    let s = strict.create(&[("a", "1")], Expiry::Default);
    let unbound = issue(&strict, &s, A, &[B], None).remove(0).1;
    assert_eq!(code(&redeem(&strict, &unbound, B, None, None)), REJECTED);
}

#[test]
fn a_non_empty_destination_session_is_kept_unless_told_to_replace_it() {
    let kit = kit();
    let source = kit.create(&[("cart", "3")], Expiry::Default);
    let empty = kit.create(&[], Expiry::Default);
    let busy = kit.create(&[("lang", "fr")], Expiry::Default);
    let t: Vec<_> = (0..3).map(|_| issue(&kit, &source, A, &[B], None).remove(0).1).collect();
    assert_eq!(redeemed_key(redeem(&kit, &t[0], B, Some(&busy), None)), (busy.clone(), false));
    let (key, replaced) = redeemed_key(redeem(&kit, &t[1], B, Some(&empty), None));
    assert!(replaced && key != empty);
    assert_eq!(code(&kit.get(&empty, false)), Some(ErrorCode::NotFound as u16), "the replaced session ends");
    let forced = kit.call(Request::RedeemTransfer(RedeemTransfer {
        token: t[2].clone(),
        host: B.into(),
        current_key: Some(busy.clone()),
        always_replace: true,
        state: None,
    }));
    assert!(redeemed_key(forced).1);
}

#[test]
fn key_rotation_keeps_old_tokens_valid_for_their_grace_only() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    let before = issue(&kit, &source, A, &[B], None).remove(0).1;
    let cookie = seal(&kit, &[("a", "1")], "s", A);
    let old_kid = kid(&before);
    let Response::KeysRotated(rotated) = kit.call(Request::RotateKeys(sessiond_protocol::Empty {})) else { panic!() };
    assert_ne!(rotated.active_kid, old_kid);
    let after = issue(&kit, &source, A, &[B], None).remove(0).1;
    assert_eq!(kid(&after), rotated.active_kid, "new tokens use the new key");
    assert_eq!(kid(&seal(&kit, &[("a", "1")], "s", A)), rotated.active_kid);
    assert!(matches!(redeem(&kit, &before, B, None, None), Response::Redeemed(_)), "in flight during rotation");
    assert!(matches!(unseal(&kit, &cookie, "s", A), Response::Unsealed(_)));
    // A transfer key's grace is the token lifetime plus twice the skew.
    let late = issue(&kit, &source, A, &[B], None).remove(0).1;
    kit.call(Request::RotateKeys(sessiond_protocol::Empty {}));
    kit.clock.set(T0 + 40_000);
    assert_eq!(code(&redeem(&kit, &late, B, None, None)), REJECTED);
    assert_eq!(stat(&kit, "token_rejected_key"), 1, "refused for its key, before its time was even read");
}

fn kid(token: &str) -> u32 {
    let bytes = URL_SAFE_NO_PAD.decode(token).unwrap();
    u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]])
}

fn seal_with(
    kit: &Kit,
    fields: &[(&str, &str)],
    expiry: Expiry,
    user: Option<&str>,
    name: &str,
    host: &str,
) -> Response {
    kit.call(Request::Seal(Seal {
        fields: fields.iter().map(|(n, v)| Field { name: n.to_string(), value: v.as_bytes().to_vec() }).collect(),
        expiry,
        user: user.map(str::to_owned),
        cookie_name: name.into(),
        host: host.into(),
    }))
}

fn seal(kit: &Kit, fields: &[(&str, &str)], name: &str, host: &str) -> String {
    match seal_with(kit, fields, Expiry::Default, None, name, host) {
        Response::Sealed(s) => s.value,
        other => panic!("seal failed: {other:?}"),
    }
}

fn unseal(kit: &Kit, value: &str, name: &str, host: &str) -> Response {
    kit.call(Request::Unseal(SealedCookie { value: value.into(), cookie_name: name.into(), host: host.into() }))
}

#[test]
fn sealed_cookies_are_encrypted_and_bound_to_name_and_host() {
    let kit = kit();
    let value = seal(&kit, &[("cart", "secret-cart-contents")], "__Host-s", A);
    let raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"secret"), "the client cannot read the data");
    let Response::Unsealed(u) = unseal(&kit, &value, "__Host-s", A) else { panic!() };
    assert_eq!(u.fields[0].value, b"secret-cart-contents");
    assert_eq!(u.reseal, None, "fresh cookies need no re-seal");
    assert_eq!(code(&unseal(&kit, &value, "__Host-s", B)), REJECTED, "another host");
    assert_eq!(code(&unseal(&kit, &value, "other", A)), REJECTED, "another cookie name");
}

#[test]
fn sealed_cookies_expire_when_idle_or_at_their_absolute_age_and_are_resealed() {
    let mut config = Config::default();
    config.cookies.max_age_secs = 3_600;
    let kit = Kit::with_config(&config);
    let value = match seal_with(&kit, &[("a", "1")], Expiry::IdleSecs(600), None, "s", A) {
        Response::Sealed(s) => s.value,
        other => panic!("{other:?}"),
    };
    kit.clock.set(T0 + 599_999);
    let Response::Unsealed(u) = unseal(&kit, &value, "s", A) else { panic!("alive before its idle limit") };
    let resealed = u.reseal.expect("a minute old: re-sealed with the idle time restarted");
    assert_ne!(resealed, value);
    kit.clock.set(T0 + 600_000);
    assert_eq!(code(&unseal(&kit, &value, "s", A)), REJECTED, "the old value is idle-expired");
    // The re-sealed value lives on, until the absolute age.
    let mut current = resealed;
    for t in (1_100_000..3_600_000).step_by(500_000) {
        kit.clock.set(T0 + t);
        let Response::Unsealed(u) = unseal(&kit, &current, "s", A) else { panic!("alive at {t}") };
        current = u.reseal.unwrap_or(current);
    }
    kit.clock.set(T0 + 3_600_000);
    assert_eq!(code(&unseal(&kit, &current, "s", A)), REJECTED, "past the absolute age");
}

#[test]
fn a_cookie_at_the_size_limit_seals_and_one_byte_more_is_too_large() {
    let kit = kit();
    let name = "__Host-s";
    // Find the largest value that fits, then check the limit is exact.
    let fits = |n: usize| {
        matches!(seal_with(&kit, &[("d", &"x".repeat(n))], Expiry::Default, None, name, A), Response::Sealed(_))
    };
    let (mut lo, mut hi) = (0, 4096);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    let Response::Sealed(s) = seal_with(&kit, &[("d", &"x".repeat(lo))], Expiry::Default, None, name, A) else {
        panic!()
    };
    let size = name.len() + 1 + s.value.len();
    assert!(size <= 4096 && size > 4090, "the largest cookie is {size} bytes");
    let over = seal_with(&kit, &[("d", &"x".repeat(lo + 1))], Expiry::Default, None, name, A);
    let Response::Error(e) = over else { panic!("one byte more must be refused") };
    assert_eq!(e.code, ErrorCode::TooLarge as u16);
    assert!(e.message.contains("4096"), "{}", e.message);
}

#[test]
fn revoked_cookies_stay_revoked_across_a_restart() {
    let kit = kit();
    let one = seal(&kit, &[("a", "1")], "s", A);
    let other = seal(&kit, &[("a", "2")], "s", A);
    let alice = |kit: &Kit| match seal_with(kit, &[("a", "1")], Expiry::Default, Some("alice"), "s", A) {
        Response::Sealed(s) => s.value,
        other => panic!("{other:?}"),
    };
    let alice_old = alice(&kit);
    let revoke = Request::RevokeSealed(SealedCookie { value: one.clone(), cookie_name: "s".into(), host: A.into() });
    assert!(matches!(kit.call(revoke), Response::SealedRevoked(_)));
    let revoke_all = Request::RevokeUser(sessiond_protocol::RevokeUser { user: "alice".into(), keep: None });
    assert!(matches!(kit.call(revoke_all), Response::UserRevoked(_)));
    let alice_new = alice(&kit);
    let kit = kit.restart(T0 + 1_000);
    assert_eq!(code(&unseal(&kit, &one, "s", A)), REJECTED, "logout of one cookie session");
    assert_eq!(code(&unseal(&kit, &alice_old, "s", A)), REJECTED, "log out everywhere");
    assert!(matches!(unseal(&kit, &other, "s", A), Response::Unsealed(_)));
    assert!(matches!(unseal(&kit, &alice_new, "s", A), Response::Unsealed(_)), "cookies after the revocation work");
    assert_eq!(stat(&kit, "token_rejected_revoked"), 2);
}

#[test]
fn nonces_do_not_repeat() {
    nonce_check(100_000);
}

/// `cargo test --release -p sessiond -- --ignored nonces`
#[test]
#[ignore = "a million tokens: run in release"]
fn nonces_do_not_repeat_in_a_million_tokens() {
    nonce_check(1_000_000);
}

fn nonce_check(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ring = super::Keyring::open_or_create(&dir.path().join("k"), 0).unwrap();
    let mut config = Config::default();
    config.transfer.sites = vec![A.into(), B.into()];
    let tokens = super::Tokens::new(ring, config.token_config());
    let claims = super::TransferClaims {
        iat_ms: 0,
        exp_ms: 30_000,
        src: A.into(),
        dst: B.into(),
        session: [7; 32],
        bind: [0; 32],
    };
    let mut seen = std::collections::HashSet::with_capacity(n);
    for _ in 0..n {
        let token = URL_SAFE_NO_PAD.decode(tokens.issue_transfer(&claims).unwrap()).unwrap();
        let nonce: [u8; 24] = token[6..30].try_into().unwrap();
        assert!(seen.insert(nonce), "a nonce repeated");
    }
}

#[test]
fn a_redeem_checked_before_a_purge_and_applied_after_it_is_refused() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    // The service accepted a token valid until T0 + 35 s; by the time the
    // writer applies it the clock is past that, and the sweeper's purge in
    // the same or an earlier batch has forgotten that the token was used.
    kit.clock.set(T0 + 35_001);
    assert!(matches!(kit.call(Request::Sweep(sessiond_protocol::Empty {})), Response::Swept(_)));
    let (tx, rx) = std::sync::mpsc::channel();
    let op = crate::writer::Op::Redeem {
        nonce: [7; 24],
        exp_ms: T0 + 30_000,
        valid_until_ms: T0 + 35_000,
        source: crate::testkit::id(&source),
        current: None,
        always_replace: false,
    };
    kit.service.writer.submit_wait(crate::writer::Job { op, reply: crate::reply::ReplyTo::Channel(tx) }).unwrap();
    let answer = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(answer, Err(crate::answer::Refusal::TokenRejected));
    assert_eq!(stat(&kit, "token_rejected_time"), 1);
}

#[test]
fn a_wall_clock_excursion_neither_reopens_a_revoked_cookie_nor_a_used_token() {
    let kit = kit();
    let source = kit.create(&[("a", "1")], Expiry::Default);
    let token = issue(&kit, &source, A, &[B], None).remove(0).1;
    assert!(matches!(redeem(&kit, &token, B, None, None), Response::Redeemed(_)));
    let cookie = seal(&kit, &[("a", "1")], "s", A);
    let revoke = Request::RevokeSealed(SealedCookie { value: cookie.clone(), cookie_name: "s".into(), host: A.into() });
    assert!(matches!(kit.call(revoke), Response::SealedRevoked(_)));
    let sweep = || kit.call(Request::Sweep(sessiond_protocol::Empty {}));
    assert!(matches!(sweep(), Response::Swept(_)), "the guard has seen a steady clock");

    // +2 h in an instant, a sweep round on it, then the clock set right.
    kit.clock.jump(2 * 3600 * 1000);
    assert!(matches!(sweep(), Response::Swept(_)));
    kit.clock.jump(-2 * 3600 * 1000);
    assert_eq!(code(&unseal(&kit, &cookie, "s", A)), REJECTED, "the revoked cookie reopened");
    assert_eq!(code(&redeem(&kit, &token, B, None, None)), REJECTED, "the used token redeemed again");
    assert_eq!(stat(&kit, "token_rejected_replay"), 1, "refused as a replay");
    assert!(stat(&kit, "sweeps_held") >= 1);
}
