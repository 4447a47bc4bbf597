//! Typed identifiers.
//!
//! Every identifier is a newtype around a ULID rendered with a short type prefix
//! (`evt_01J…`), so an identifier of one kind cannot be passed where another is
//! expected, a stray id in a log says what it names, and ids sort by creation time.

use std::fmt;
use std::str::FromStr;

/// An identifier string that does not have the expected prefix or body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}` followed by a ULID)")]
pub struct InvalidId {
    /// The kind of id that was expected, e.g. `organization`.
    pub kind: &'static str,
    /// The prefix that was expected.
    pub prefix: &'static str,
    /// The value that was given.
    pub value: String,
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, ordered after every id made before it.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, ulid::Ulid::new().to_string().to_lowercase()))
            }

            /// The id as stored and sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                let body = value.strip_prefix($prefix).filter(|body| ulid::Ulid::from_string(body).is_ok());
                match body {
                    Some(_) => Ok(Self(value.to_ascii_lowercase())),
                    None => Err(InvalidId { kind: $kind, prefix: $prefix, value: value.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                value.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// An organisation: the tenant every other record belongs to.
    OrganizationId, "org_", "organization"
);
prefixed_id!(
    /// An API key (the record, not the secret key itself).
    ApiKeyId, "key_", "api key"
);
prefixed_id!(
    /// A webhook subscription.
    WebhookId, "wh_", "webhook"
);
prefixed_id!(
    /// One endpoint (URL, method, credential) of a webhook.
    EndpointId, "ep_", "endpoint"
);
prefixed_id!(
    /// A reusable receiver credential.
    CredentialId, "cred_", "credential"
);
prefixed_id!(
    /// An accepted upstream event.
    EventId, "evt_", "event"
);
prefixed_id!(
    /// One event to be delivered to one endpoint.
    DeliveryId, "dlv_", "delivery"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_and_sort_by_creation() {
        let first = EventId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = EventId::generate();
        assert!(first < second);
        assert_eq!(first.as_str().parse::<EventId>(), Ok(first.clone()));
        assert!(first.as_str().starts_with("evt_"));
    }

    #[test]
    fn wrong_prefix_or_body_is_refused() {
        let webhook = WebhookId::generate();
        let err = webhook.as_str().parse::<EventId>().unwrap_err();
        assert_eq!(err.kind, "event");
        assert!("evt_not-a-ulid".parse::<EventId>().is_err());
    }
}
