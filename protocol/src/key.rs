//! Session keys: 32 random bytes, carried as 43 base64url characters.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const KEY_BYTES: usize = 32;
pub const KEY_CHARS: usize = 43;

/// A syntactically valid session key.
///
/// `Debug` is redacted and there is deliberately no `Display`: a key is a
/// bearer credential, and must not reach a log by accident. Use
/// [`SessionKey::encode`] where the text is really wanted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey([u8; KEY_BYTES]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session key is {KEY_CHARS} base64url characters")]
pub struct KeyError;

impl SessionKey {
    pub const fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// Parses the text form. Only the canonical encoding is accepted (the
    /// unused low bits of the last character must be zero), so text and bytes
    /// correspond one to one.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.len() != KEY_CHARS {
            return Err(KeyError);
        }
        let mut bytes = [0u8; KEY_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(KEY_BYTES) => Ok(Self(bytes)),
            _ => Err(KeyError),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

pub const HANDLE_BYTES: usize = 12;
pub const HANDLE_CHARS: usize = 16;

/// A session's public handle: 96 random bits, independent of the key, so
/// it can be shown in listings and used to revoke a session without
/// revealing (or being turned into) its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle([u8; HANDLE_BYTES]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session handle is {HANDLE_CHARS} base64url characters")]
pub struct HandleError;

impl SessionHandle {
    pub const fn from_bytes(bytes: [u8; HANDLE_BYTES]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; HANDLE_BYTES] {
        &self.0
    }

    pub fn parse(text: &str) -> Result<Self, HandleError> {
        let mut bytes = [0u8; HANDLE_BYTES];
        match text.len() == HANDLE_CHARS && URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) == Ok(HANDLE_BYTES) {
            true => Ok(Self(bytes)),
            false => Err(HandleError),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bytes_round_trip() {
        let key = SessionKey::from_bytes(core::array::from_fn(|i| (i * 37) as u8));
        let text = key.encode();
        assert_eq!(text.len(), KEY_CHARS);
        assert_eq!(SessionKey::parse(&text), Ok(key));
    }

    #[test]
    fn wrong_length_alphabet_or_padding_bits_are_rejected() {
        let good = SessionKey::from_bytes([0xAB; 32]).encode();
        assert!(SessionKey::parse(&good[..42]).is_err());
        assert!(SessionKey::parse(&format!("{good}A")).is_err());
        assert!(SessionKey::parse(&good.replace(|c: char| c.is_ascii_alphabetic(), "+")).is_err());
        // 43 chars carry 258 bits: the last 2 must be zero for a canonical key.
        let mut chars: Vec<char> = SessionKey::from_bytes([0; 32]).encode().chars().collect();
        chars[42] = 'B';
        assert!(SessionKey::parse(&chars.iter().collect::<String>()).is_err());
    }

    #[test]
    fn handles_round_trip_and_reject_other_text() {
        let h = SessionHandle::from_bytes([9; HANDLE_BYTES]);
        assert_eq!(h.encode().len(), HANDLE_CHARS);
        assert_eq!(SessionHandle::parse(&h.encode()), Ok(h));
        assert!(SessionHandle::parse(&SessionKey::from_bytes([9; 32]).encode()).is_err());
        assert!(SessionHandle::parse("!!!!!!!!!!!!!!!!").is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SessionKey::from_bytes([7; 32]);
        assert!(!format!("{key:?}").contains(&key.encode()));
    }
}
