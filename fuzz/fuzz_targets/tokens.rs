//! Transfer-token and sealed-cookie openers (`Tokens::open_transfer`,
//! `Tokens::open_cookie`) with a fixed key ring (one active key, one
//! retired 10 s ago), the default rules and fixed clock values.
//!
//! Input: byte 0 picks the mode and a valid token, byte 1 the clock,
//! byte 2 the host, cookie name and browser state; the rest is the token
//! text (mode 0), edits to a valid token (mode 1), claims (mode 2) or raw
//! envelope bytes (mode 3).
//!
//! Properties: no panic; whatever opens passed every check (destination,
//! hosts, times, binding) and its claims re-encode exactly; a valid token
//! sealed at start-up opens exactly when its claims' checks say so, and
//! any edit to its text, or another audience, is refused; for any claims
//! that decode, `decode(encode(c)) == c` byte for byte, and sealing then
//! opening them gives back the same claims exactly when their checks pass.
#![no_main]

#[path = "../common/tokens_fixture.rs"]
mod fixture;

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use sessiond::tokens::{CookieClaims, Reject, Tokens, TransferClaims};
use sessiond_protocol::Field;

use fixture::{CLOCKS, COOKIE_NAME, NOW, RETIRED_MS};

/// The browser state a bound token is bound to.
const STATE: &[u8] = b"state-cookie-value-0123456789";
const MAX_TOKEN_CHARS: usize = 512;

enum Claims {
    Transfer(TransferClaims),
    Cookie(CookieClaims),
}

struct Valid {
    text: String,
    claims: Claims,
    /// Sealed under the key the ring holds as retired.
    retired: bool,
}

struct Fixture {
    tokens: Tokens,
    sites: Vec<String>,
    skew_ms: u64,
    transfer_grace_ms: u64,
    valid: Vec<Valid>,
}

fn transfer(src: &str, dst: &str, bind: [u8; 32]) -> TransferClaims {
    TransferClaims {
        iat_ms: NOW,
        exp_ms: NOW + 30_000,
        src: src.into(),
        dst: dst.into(),
        session: core::array::from_fn(|i| i as u8),
        bind,
    }
}

fn cookie(user: Option<&str>, idle_secs: u32) -> CookieClaims {
    CookieClaims {
        sid: [0x5a; 16],
        iat_ms: NOW,
        seen_ms: NOW,
        abs_exp_ms: NOW + 1_209_600_000,
        idle_secs,
        epoch: 3,
        user: user.map(str::to_owned),
        fields: vec![
            Field { name: "cart".into(), value: b"3".to_vec() },
            Field { name: "theme".into(), value: vec![0, 0xff, 7] },
        ],
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tokens = fixture::tokens(false);
        let retired_signer = fixture::tokens(true);
        let sites = fixture::sites();
        let config = tokens.config();
        let (a, b) = (&sites[0].clone(), &sites[1].clone());
        let seal_t = |signer: &Tokens, claims: TransferClaims, retired| Valid {
            text: signer.issue_transfer(&claims).expect("sealed"),
            claims: Claims::Transfer(claims),
            retired,
        };
        let seal_c = |claims: CookieClaims| Valid {
            text: tokens.seal_cookie(&claims, COOKIE_NAME, a).expect("sealed"),
            claims: Claims::Cookie(claims),
            retired: false,
        };
        let valid = vec![
            seal_t(&tokens, transfer(a, b, [0; 32]), false),
            seal_t(&tokens, transfer(b, a, sha256(STATE)), false),
            seal_c(cookie(None, 1800)),
            seal_c(cookie(Some("42"), 0)),
            seal_t(&retired_signer, transfer(a, b, [0; 32]), true),
        ];
        let fixture = Fixture {
            skew_ms: config.skew_ms,
            transfer_grace_ms: config.transfer_ttl_ms + 2 * config.skew_ms,
            tokens,
            sites,
            valid,
        };
        // Sanity: every valid token opens where and when it should.
        for v in &fixture.valid {
            match &v.claims {
                Claims::Transfer(c) => {
                    let state = (c.bind != [0; 32]).then_some(STATE);
                    let (opened, _) =
                        fixture.tokens.open_transfer(&v.text, &c.dst, state, NOW + 1_000).expect("a valid token opens");
                    assert_eq!(&opened, c);
                    assert!(fixture.tokens.open_transfer(&v.text, &c.src, state, NOW + 1_000).is_err());
                }
                Claims::Cookie(c) => {
                    let opened = fixture.tokens.open_cookie(&v.text, COOKIE_NAME, a, NOW + 1_000).expect("opens");
                    assert_eq!(&opened, c);
                    assert!(fixture.tokens.open_cookie(&v.text, COOKIE_NAME, b, NOW + 1_000).is_err());
                }
            }
        }
        fixture
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What opening a transfer token with these claims must give at `host`.
fn expect_transfer(
    f: &Fixture,
    c: &TransferClaims,
    host: &str,
    state: Option<&[u8]>,
    now: u64,
) -> Result<TransferClaims, Reject> {
    c.check(&f.tokens, host, state, now).map(|()| c.clone())
}

/// Whatever opened must have passed every check, and re-encode exactly.
fn opened_transfer(f: &Fixture, r: Result<TransferClaims, Reject>, host: &str, state: Option<&[u8]>, now: u64) {
    if let Ok(c) = r {
        assert_eq!(c.dst, host, "opened at another destination");
        assert_eq!(c.check(&f.tokens, host, state, now), Ok(()));
        assert_eq!(TransferClaims::decode(&c.encode()), Ok(c));
    }
}

fn opened_cookie(f: &Fixture, r: Result<CookieClaims, Reject>, now: u64) {
    if let Ok(c) = r {
        assert_eq!(c.check_times(now, f.skew_ms), Ok(()));
        assert!(now < c.expires_at_ms(), "an expired cookie opened");
        assert_eq!(CookieClaims::decode(&c.encode()), Ok(c));
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let [sel, clock, flags, rest @ ..] = data else { return };
    let now = CLOCKS[usize::from(clock & 15)];
    let host = |choice: u8, input: &[u8]| match choice & 3 {
        0 => f.sites[0].clone(),
        1 => f.sites[1].clone(),
        2 => text(input),
        _ => "www.example.net".to_owned(),
    };
    let state = match (flags >> 4) & 3 {
        0 => None,
        1 => Some(STATE),
        2 => Some(&b"another state"[..]),
        _ => Some(&b""[..]),
    };
    match sel & 3 {
        // Token text and the other arguments, split at zero bytes.
        0 => {
            let parts: Vec<&[u8]> = rest.splitn(4, |&b| b == 0).collect();
            let part = |i: usize| parts.get(i).copied().unwrap_or_default();
            let token = text(part(0));
            let host = host(*flags, part(1));
            let name = match (flags >> 2) & 3 {
                0 => COOKIE_NAME.to_owned(),
                1 => text(part(2)),
                _ => "sessionid".to_owned(),
            };
            let state = state.or(parts.get(3).copied());
            let r = f.tokens.open_transfer(&token, &host, state, now).map(|(c, _)| c);
            opened_transfer(f, r, &host, state, now);
            let r = f.tokens.open_cookie(&token, &name, &host, now);
            opened_cookie(f, r, now);
        }
        // A valid token, edited by (op, position, byte) triples.
        1 => {
            let v = &f.valid[usize::from(sel >> 2) % f.valid.len()];
            let mut chars = v.text.as_bytes().to_vec();
            for edit in rest.chunks_exact(3).take(4) {
                let at = usize::from(u16::from_le_bytes([edit[1], edit[2] & 0x0f])) % (chars.len() + 1);
                let byte = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/."
                    [usize::from(edit[0] >> 2) % 68];
                match edit[0] & 3 {
                    0 if at < chars.len() => chars[at] = byte,
                    1 => chars.truncate(at),
                    2 => chars.insert(at, byte),
                    3 if at < chars.len() => {
                        chars.remove(at);
                    }
                    _ => {}
                }
            }
            let token = text(&chars);
            let edited = token != v.text;
            let wrong_audience = flags & 1 == 1;
            match &v.claims {
                Claims::Transfer(c) => {
                    let host = if wrong_audience { c.src.clone() } else { c.dst.clone() };
                    let r = f.tokens.open_transfer(&token, &host, state, now).map(|(c, _)| c);
                    if edited || wrong_audience {
                        assert!(r.is_err(), "an edited or misdirected transfer token opened: {token}");
                    } else if v.retired && now >= RETIRED_MS.saturating_add(f.transfer_grace_ms) {
                        assert_eq!(r, Err(Reject::Key), "a retired key past its grace still opens");
                    } else {
                        assert_eq!(r, expect_transfer(f, c, &host, state, now));
                    }
                }
                Claims::Cookie(c) => {
                    let name = if wrong_audience { "__Host-t" } else { COOKIE_NAME };
                    let r = f.tokens.open_cookie(&token, name, &f.sites[0], now);
                    if edited || wrong_audience {
                        assert!(r.is_err(), "an edited or misdirected cookie opened: {token}");
                    } else {
                        assert_eq!(r, c.check_times(now, f.skew_ms).map(|()| c.clone()));
                    }
                }
            }
        }
        // Claims: exact round trip, then seal and open.
        2 => {
            if let Ok(c) = TransferClaims::decode(rest) {
                assert_eq!(c.encode(), rest, "transfer claims do not re-encode exactly");
                let token = f.tokens.issue_transfer(&c).expect("sealed");
                let r = f.tokens.open_transfer(&token, &c.dst, state, now).map(|(c, _)| c);
                let expected = expect_transfer(f, &c, &c.dst, state, now);
                if token.len() <= MAX_TOKEN_CHARS {
                    assert_eq!(r, expected, "seal then open disagrees with the checks");
                } else {
                    assert!(r.is_err() && expected.is_err(), "the daemon issues a token too long to redeem");
                }
            }
            if let Ok(c) = CookieClaims::decode(rest) {
                assert_eq!(c.encode(), rest, "cookie claims do not re-encode exactly");
                let name = if flags & 4 == 0 { COOKIE_NAME } else { "s" };
                let host = host(*flags, b"h");
                match f.tokens.seal_cookie(&c, name, &host) {
                    Ok(value) => {
                        let r = f.tokens.open_cookie(&value, name, &host, now);
                        assert_eq!(r, c.check_times(now, f.skew_ms).map(|()| c.clone()), "seal then open disagrees");
                    }
                    Err(e) => assert!(rest.len() + 46 > 3000, "sealing a small cookie failed: {e}"),
                }
            }
        }
        // Raw envelope bytes, base64url-encoded for the openers.
        _ => {
            let token = URL_SAFE_NO_PAD.encode(rest);
            let host = host(*flags, b"www.example.com");
            let r = f.tokens.open_transfer(&token, &host, state, now).map(|(c, _)| c);
            opened_transfer(f, r, &host, state, now);
            let r = f.tokens.open_cookie(&token, COOKIE_NAME, &host, now);
            opened_cookie(f, r, now);
        }
    }
});
