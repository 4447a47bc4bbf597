//! Organisation API keys: generated once, shown once, stored only as a hash.

use base64::Engine as _;
use rand::RngCore as _;
use sha2::Digest as _;

const KEY_PREFIX: &str = "hk_";
/// How much of a key is kept in clear so people can tell their keys apart in lists.
pub const DISPLAY_PREFIX_LEN: usize = 10;

named_enum! {
    /// What an API key may do.
    pub enum Scope {
        /// Everything in the organisation, keys and credentials included.
        #[serde(rename = "admin")]
        #[strum(serialize = "admin")]
        Admin,
        /// Create, change and delete webhooks; publish events.
        #[serde(rename = "webhooks:write")]
        #[strum(serialize = "webhooks:write")]
        WebhooksWrite,
        /// See webhooks and their logs, change nothing.
        #[serde(rename = "webhooks:read")]
        #[strum(serialize = "webhooks:read")]
        WebhooksRead,
    }
}

/// A newly generated key: the secret to hand out once, and what is stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The full key; never stored.
    pub secret: String,
    /// The first characters, stored in clear for display.
    pub prefix: String,
    /// SHA-256 of the key, hex: how a presented key is found.
    pub hash: String,
}

/// Generates a random 256-bit key.
pub fn generate() -> NewApiKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    NewApiKey { prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(), hash: hash(&secret), secret }
}

/// The stored form of a presented key. Keys carry 256 bits of randomness, so a fast
/// unsalted hash is enough: there is nothing to brute-force.
pub fn hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Operator tokens (the host platform's backend) start with this, so one is never
/// looked up as an organisation key, nor a key taken for one.
pub const OPERATOR_PREFIX: &str = "hlop_";

/// A new operator token: the secret, shown once, and its hash, which is what the
/// configuration holds (`api.operator_token_hashes`).
pub fn generate_operator_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{OPERATOR_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hashed = hash(&secret);
    (secret, hashed)
}

/// Whether `presented` is one of the operator tokens whose hashes are `configured`
/// (compared in constant time).
pub fn is_operator_token(presented: &str, configured: &[String]) -> bool {
    if !presented.starts_with(OPERATOR_PREFIX) {
        return false;
    }
    let presented = hash(presented);
    configured.iter().fold(false, |found, expected| {
        let same = expected.len() == presented.len()
            && expected.bytes().zip(presented.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0;
        found | same
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_deterministically() {
        let one = generate();
        let two = generate();
        assert_ne!(one.secret, two.secret);
        assert_eq!(hash(&one.secret), one.hash);
        assert_eq!(one.hash.len(), 64);
        assert!(one.secret.starts_with(&one.prefix));
        assert_eq!(Scope::WebhooksRead.as_str().parse(), Ok(Scope::WebhooksRead));
    }

    #[test]
    fn operator_tokens_are_known_by_their_hash_only() {
        let (token, hashed) = generate_operator_token();
        assert!(is_operator_token(&token, std::slice::from_ref(&hashed)));
        assert!(!is_operator_token(&token, &[]));
        assert!(!is_operator_token(&format!("{token}x"), std::slice::from_ref(&hashed)));
        // An organisation key is never an operator token, even if its hash were listed.
        let key = generate();
        assert!(!is_operator_token(&key.secret, &[key.hash]));
    }
}
