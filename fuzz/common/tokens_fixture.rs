//! The fixed key ring, rules and clock the `tokens` target and the seed
//! generator share. The keys are constants, so a token sealed once by
//! `seedgen` (and checked in as a seed) opens in every fuzzing run.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond::Config;
use sessiond::tokens::{Keyring, TokenConfig, Tokens};

/// The fixed "now" every token is sealed at.
pub const NOW: u64 = 1_800_000_000_000;
pub const ACTIVE_KID: u32 = 0x00c0_ffee;
/// A key retired 10 s before `NOW`: transfer tokens under it open until
/// `NOW + 30 s` (grace: timeout plus twice the skew), cookies for 14 days.
pub const RETIRED_KID: u32 = 0x0bad_f00d;
pub const RETIRED_MS: u64 = NOW - 10_000;
pub const COOKIE_NAME: &str = "__Host-s";

/// The clock values a fuzz input chooses from: around every window edge of
/// the default rules (30 s timeout, 5 s skew, 14 days for cookies).
pub const CLOCKS: [u64; 16] = [
    NOW,
    NOW + 1_000,
    NOW + 29_999,
    NOW + 30_000,
    NOW + 35_000,
    NOW + 35_001,
    NOW + 60_000,
    NOW - 5_000,
    NOW - 5_001,
    NOW + 1_209_599_999,
    NOW + 1_209_600_000,
    NOW + 1_209_610_000,
    0,
    1,
    u64::MAX - 1,
    u64::MAX,
];

fn key_text(byte: u8) -> String {
    URL_SAFE_NO_PAD.encode([byte; 32])
}

/// The key ring file: `ACTIVE_KID` active and `RETIRED_KID` retired, or
/// (`swap`) the other way round, which is how `seedgen` seals a token under
/// the key the fuzzer's ring holds as retired.
pub fn ring_text(swap: bool) -> String {
    let (active, retired) = if swap { (RETIRED_KID, ACTIVE_KID) } else { (ACTIVE_KID, RETIRED_KID) };
    let byte = |kid| if kid == ACTIVE_KID { 0x11 } else { 0x22 };
    format!(
        "sessiond-keyring v1\n{active:08x} active {} {}\n{retired:08x} verify {RETIRED_MS} {}\n",
        NOW - 3_600_000,
        key_text(byte(active)),
        key_text(byte(retired)),
    )
}

/// The token rules: the daemon's defaults (30 s transfer timeout, 5 s
/// skew, binding optional, 14-day cookies) with the two sites of the
/// README's sample configuration.
pub const CONFIG_TOML: &str = "[transfer]\nsites = [\"www.example.com\", \"www.example.org\"]\n";

pub fn config() -> Config {
    let config = Config::from_toml(CONFIG_TOML).expect("fixed configuration parses");
    config.validate().expect("fixed configuration is valid");
    config
}

/// The fixed rules over the fixed key ring. The ring is written to a
/// private temporary directory, loaded with `Keyring::open_or_create`, and
/// the directory removed again.
pub fn tokens(swap: bool) -> Tokens {
    let dir = std::env::temp_dir().join(format!("sessiond-fuzz-keyring-{}-{swap}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("keyring");
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).expect("keyring file");
    file.write_all(ring_text(swap).as_bytes()).expect("keyring written");
    drop(file);
    let ring = Keyring::open_or_create(&path, NOW).expect("fixed key ring loads");
    let _ = std::fs::remove_dir_all(&dir);
    let config = TokenConfig { keyring: path, ..config().token_config() };
    Tokens::new(ring, config)
}

pub fn sites() -> Vec<String> {
    config().token_config().sites
}
