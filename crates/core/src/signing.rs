//! Standard Webhooks signing (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
//!
//! The signature scheme itself comes from the `standardwebhooks` crate, so receivers
//! using any Standard Webhooks library verify hookline's requests.

use base64::Engine as _;
use rand::RngCore as _;

/// Header carrying the message id, identical across retries so receivers can dedupe.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the signing time in Unix seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying one or more space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing secret in its shareable form, `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(whsec_…)")
    }
}

/// A stored secret that is not `whsec_` followed by base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing secret is not `whsec_` followed by base64")]
pub struct InvalidSecret;

impl SigningSecret {
    /// A fresh random secret (24 bytes, as Standard Webhooks recommends at least).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
    }

    /// Wraps a stored secret, checking its form.
    pub fn parse(value: &str) -> Result<Self, InvalidSecret> {
        let body = value.strip_prefix(SECRET_PREFIX).ok_or(InvalidSecret)?;
        base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| InvalidSecret)?;
        Ok(Self(value.to_owned()))
    }

    /// The secret as shown once to the webhook's owner and as stored (encrypted).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `v1,<base64 HMAC-SHA256>` signature of `"{id}.{timestamp}.{body}"`.
    ///
    /// `standardwebhooks` refuses a body that is not UTF-8; every body hookline sends is
    /// JSON, so that is an error of the caller's, reported rather than papered over.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> Result<String, SigningError> {
        let webhook = standardwebhooks::Webhook::new(&self.0).map_err(|_| SigningError)?;
        webhook.sign(message_id, timestamp, body).map_err(|_| SigningError)
    }
}

/// A signature could not be made: the body was not UTF-8 (or the secret unusable, which
/// [`SigningSecret::parse`] rules out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the delivery body cannot be signed (it is not UTF-8)")]
pub struct SigningError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_standard_library() {
        let secret = SigningSecret::generate();
        let now = chrono::Utc::now().timestamp();
        let body = br#"{"messageId":"evt_1"}"#;
        let signature = secret.sign("evt_1", now, body).unwrap();
        assert!(signature.starts_with("v1,"));
        let mut headers = standardwebhooks_headers("evt_1", now, &signature);
        let verifier = standardwebhooks::Webhook::new(secret.expose()).unwrap();
        assert!(verifier.verify(body, &headers).is_ok());
        headers = standardwebhooks_headers("evt_2", now, &signature);
        assert!(verifier.verify(body, &headers).is_err());
    }

    fn standardwebhooks_headers(id: &str, ts: i64, sig: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER_ID, id.parse().unwrap());
        headers.insert(HEADER_TIMESTAMP, ts.to_string().parse().unwrap());
        headers.insert(HEADER_SIGNATURE, sig.parse().unwrap());
        headers
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_not_signed_empty() {
        assert_eq!(SigningSecret::generate().sign("evt_1", 0, &[0xff, 0xfe]), Err(SigningError));
    }

    #[test]
    fn secrets_have_the_whsec_form() {
        let secret = SigningSecret::generate();
        assert!(SigningSecret::parse(secret.expose()).is_ok());
        assert!(SigningSecret::parse("plain").is_err());
        assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
    }
}
