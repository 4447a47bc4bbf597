//! How large each field a client sets may be, in bytes: one place, enforced by the
//! validation the API and the CLI share and stated in the OpenAPI document (whose
//! test holds the two together). Without them a client could store a megabyte
//! description, a password no receiver takes, or a filter no event can ever match.

use crate::envelope::MAX_FIELD_LEN;

/// A webhook's or a credential's name, an API key's label.
pub const NAME: usize = 200;
/// A webhook's description.
pub const DESCRIPTION: usize = 4096;
/// An endpoint URL.
pub const URL: usize = 2048;
/// The "for login" and team filters: an event's actor and team are capped at this, so
/// a longer filter could never match.
pub const FILTER: usize = MAX_FIELD_LEN;
/// Event selectors of one webhook (after duplicates are removed).
pub const EVENTS: usize = 100;
/// Endpoints of one webhook.
pub const ENDPOINTS: usize = 10;
/// Headers of one endpoint, or of one `headers` credential.
pub const HEADERS: usize = 20;
/// A header's name.
pub const HEADER_NAME: usize = 256;
/// A header's value, and each secret field of a credential (password, token, key).
pub const VALUE: usize = 4096;
/// A host name in a credential's `allowed_hosts` (DNS's own limit).
pub const HOST: usize = 253;
/// Entries in a credential's `allowed_hosts`.
pub const ALLOWED_HOSTS: usize = 20;
/// Per-organisation value sets of one credential.
pub const ORGANIZATION_SETS: usize = 1000;

/// A name, label or similar as kept: trimmed, and `None` unless it is 1 to [`NAME`]
/// bytes. The one rule for every name a client gives.
pub fn name(given: &str) -> Option<&str> {
    let trimmed = given.trim();
    (!trimmed.is_empty() && trimmed.len() <= NAME).then_some(trimmed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_is_trimmed_and_one_to_name_bytes() {
        assert_eq!(super::name("  CRM "), Some("CRM"));
        assert_eq!(super::name("   "), None);
        assert_eq!(super::name(&"x".repeat(super::NAME)).map(str::len), Some(super::NAME));
        assert_eq!(super::name(&"x".repeat(super::NAME + 1)), None);
    }
}
