//! Session key generation: 256 bits from the operating system's CSPRNG.

use sessiond_protocol::{HANDLE_BYTES, KEY_BYTES, SessionKey};

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
