//! Encryption of secrets at rest (credential passwords, signing secrets).
//!
//! ChaCha20-Poly1305 with a random 96-bit nonce per value; the stored form is
//! `nonce || ciphertext+tag`. The key comes from configuration (`secrets.key`, 32 bytes
//! in base64) and never from the database, so a database dump alone reveals nothing.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;

const NONCE_LEN: usize = 12;

/// The key that encrypts and decrypts secrets at rest.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

/// Why a key or a stored secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The configured key is not 32 bytes of base64.
    #[error("secrets.key must be 32 bytes encoded as base64 (generate one with `openssl rand -base64 32`)")]
    InvalidKey,
    /// A stored value was not made with this key, or was altered.
    #[error("a stored secret could not be decrypted: wrong secrets.key or corrupted data")]
    Undecryptable,
}

impl SecretBox {
    /// Builds the box from the configured base64 key.
    pub fn from_base64(key: &str) -> Result<Self, CryptoError> {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| CryptoError::InvalidKey)?;
        let key = Key::try_from(bytes.as_slice()).map_err(|_| CryptoError::InvalidKey)?;
        Ok(Self { cipher: ChaCha20Poly1305::new(&key) })
    }

    /// A random key in the configured form, for `hookline` to suggest and tests to use.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// Encrypts one value.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext)
            .expect("ChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Decrypts a value made by [`SecretBox::seal`] with the same key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Undecryptable)?;
        self.cipher.decrypt(&nonce, ciphertext).map_err(|_| CryptoError::Undecryptable)
    }

    /// Decrypts a value that was UTF-8 text when sealed.
    pub fn open_string(&self, sealed: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| CryptoError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let one = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        let other = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        let sealed = one.seal(b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(one.open_string(&sealed).unwrap(), "hunter2");
        assert_eq!(other.open(&sealed), Err(CryptoError::Undecryptable));
        assert_ne!(one.seal(b"hunter2"), sealed, "nonces are random");
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert_eq!(SecretBox::from_base64("short").unwrap_err(), CryptoError::InvalidKey);
        assert_eq!(SecretBox::from_base64("c2hvcnQ=").unwrap_err(), CryptoError::InvalidKey);
    }
}
