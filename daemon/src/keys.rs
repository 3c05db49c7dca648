//! Session keys: 256 bits from the operating system's CSPRNG, and the ids
//! the daemon keeps them under.
//!
//! The daemon never stores a key. It stores, indexes, logs and caches the
//! key's SHA-256, its id: whoever reads the database, the log, a backup or
//! the process's memory learns no key a browser could present, and a
//! 256-bit key's hash cannot be turned back into it. Inside the daemon
//! every `SessionKey` is an id, except a fresh key between [`generate`] and
//! the answer that hands it to the client; the service turns each key a
//! client sends into its id before anything else ([`id_of`]).

use sessiond_protocol::{HANDLE_BYTES, KEY_BYTES, SessionKey};
use sha2::{Digest, Sha256};

/// The id a session is kept under for the key a client holds.
pub fn id_of(key: &SessionKey) -> SessionKey {
    id_of_bytes(key.as_bytes())
}

fn id_of_bytes(key: &[u8]) -> SessionKey {
    SessionKey::from_bytes(Sha256::digest(key).into())
}

/// Shortest and longest key a client may hold, in bytes: keys the daemon
/// makes are 32 bytes; a framework may propose its own (CREATE_AS), of at
/// least 128 bits.
pub const MIN_KEY_BYTES: usize = 16;
pub const MAX_KEY_BYTES: usize = 64;

/// The id of a key as a client sends it: base64url without padding, in
/// canonical form, of 16 to 64 bytes.
pub fn id_of_text(text: &str) -> Result<SessionKey, String> {
    use base64::Engine;
    // Checked before decoding, so no long text is ever decoded.
    let chars = (MIN_KEY_BYTES * 4).div_ceil(3)..=(MAX_KEY_BYTES * 4).div_ceil(3);
    if !chars.contains(&text.len()) {
        return Err(format!("a session key is {} to {} characters of base64url", chars.start(), chars.end()));
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "a session key is canonical base64url without padding".to_owned())?;
    if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
        return Err(format!("a session key is {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"));
    }
    Ok(id_of_bytes(&bytes))
}

/// A fresh random key. Keys are made only here, by the daemon: a client can
/// never choose one (no session fixation).
pub fn generate() -> Result<SessionKey, getrandom::Error> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(SessionKey::from_bytes(bytes))
}

/// A fresh public handle, independent of any key.
pub fn handle() -> Result<[u8; HANDLE_BYTES], getrandom::Error> {
    let mut bytes = [0u8; HANDLE_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn an_id_is_the_sha256_of_the_key_and_never_the_key() {
        let key = SessionKey::from_bytes([0; 32]);
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            id_of(&key).as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        let fresh = generate().unwrap();
        assert_ne!(id_of(&fresh), fresh);
    }

    #[test]
    fn keys_of_16_to_64_bytes_are_read_and_others_refused() {
        let daemon_made = generate().unwrap();
        assert_eq!(id_of_text(&daemon_made.encode()), Ok(id_of(&daemon_made)));
        // tower-sessions' 128-bit ids, as 22 characters.
        assert!(id_of_text("AAECAwQFBgcICQoLDA0ODw").is_ok());
        assert!(id_of_text(&"A".repeat(86)).is_ok());
        for bad in ["", "short", "AAECAwQFBgcICQoLDA0OD", &"A".repeat(87), &"*".repeat(43), "AAECAwQFBgcICQoLDA0ODx"] {
            assert!(id_of_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_unique_and_canonical() {
        let mut seen = HashSet::new();
        let mut byte_counts = [0u64; 256];
        for _ in 0..100_000 {
            let key = generate().unwrap();
            for b in key.as_bytes() {
                byte_counts[usize::from(*b)] += 1;
            }
            let text = key.encode();
            assert_eq!(SessionKey::parse(&text), Ok(key));
            assert!(seen.insert(text));
        }
        // Chi-square smoke test over byte values: 255 degrees of freedom,
        // so a fair source stays far below 400.
        let expected = 100_000.0 * 32.0 / 256.0;
        let chi2: f64 = byte_counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        assert!(chi2 < 400.0, "chi-square {chi2}");
    }
}
