//! Receiver credentials: how hookline authenticates to an endpoint.
//!
//! A credential is defined once and reused by many endpoints. Its secret fields are
//! stored encrypted and never shown again; responses say only which fields are set.

use std::collections::BTreeMap;

use crate::limits;

/// One set of authentication values.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credential {
    /// No authentication beyond the webhook signature.
    None,
    /// Custom request headers.
    Headers {
        /// Header name → value.
        headers: BTreeMap<String, String>,
    },
    /// HTTP Basic authentication (RFC 7617).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// One header carrying a token.
    Token {
        /// Header name.
        key: String,
        /// Header value.
        value: String,
    },
    /// AWS Signature Version 4.
    AwsSigv4 {
        /// Access key id.
        access_key: String,
        /// Secret access key.
        secret_key: String,
        /// Region, e.g. `eu-west-1`.
        region: String,
        /// Service, e.g. `execute-api` or `lambda`.
        service: String,
        /// The endpoint the signature is scoped to.
        base_endpoint: String,
    },
    /// HMAC-SHA256 of the timestamped body with a client secret.
    HmacSha256 {
        /// Client id, sent in clear.
        client_id: String,
        /// Client secret, the HMAC key.
        client_secret: String,
    },
}

/// A credential whose fields are unusable; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidCredential {
    /// The field concerned.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Credential {
    /// The type name stored and shown.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Headers { .. } => "headers",
            Credential::Basic { .. } => "basic",
            Credential::Token { .. } => "token",
            Credential::AwsSigv4 { .. } => "aws_sigv4",
            Credential::HmacSha256 { .. } => "hmac_sha256",
        }
    }

    /// Names of the fields that are set (what responses show instead of values).
    pub fn fields_set(&self) -> Vec<String> {
        let json = serde_json::to_value(self).unwrap_or_default();
        let mut fields: Vec<String> = json
            .as_object()
            .map(|map| {
                map.iter()
                    .filter(|(name, value)| *name != "type" && !is_empty(value))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        if let Credential::Headers { headers } = self {
            fields = headers.keys().map(|k| format!("headers.{k}")).collect();
        }
        fields
    }

    /// Checks that every required field is present and usable as an HTTP header.
    pub fn validate(&self) -> Result<(), InvalidCredential> {
        let header_name = |field: &str, name: &str| {
            let valid = !name.is_empty()
                && name.len() <= limits::HEADER_NAME
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if valid {
                Ok(())
            } else {
                Err(InvalidCredential { field: field.to_owned(), message: format!("`{name}` is not a header name") })
            }
        };
        match self {
            Credential::None => Ok(()),
            Credential::Headers { headers } => {
                if headers.is_empty() || headers.len() > limits::HEADERS {
                    let message = format!("1 to {} headers", limits::HEADERS);
                    return Err(InvalidCredential { field: "headers".into(), message });
                }
                for (name, value) in headers {
                    header_name("headers", name)?;
                    required_value(&format!("headers.{name}"), value)?;
                }
                Ok(())
            }
            Credential::Basic { username, password } => {
                required_value("username", username)?;
                if username.contains(':') {
                    return Err(InvalidCredential { field: "username".into(), message: "must not contain `:`".into() });
                }
                required_value("password", password)
            }
            Credential::Token { key, value } => {
                header_name("key", key)?;
                required_value("value", value)
            }
            Credential::AwsSigv4 { access_key, secret_key, region, service, base_endpoint } => {
                required_value("access_key", access_key)?;
                required_value("secret_key", secret_key)?;
                required_value("region", region)?;
                required_value("service", service)?;
                required_value("base_endpoint", base_endpoint)?;
                crate::destination::parse_base_endpoint(base_endpoint)
                    .map(drop)
                    .map_err(|message| InvalidCredential { field: "base_endpoint".into(), message })
            }
            Credential::HmacSha256 { client_id, client_secret } => {
                required_value("client_id", client_id)?;
                required_value("client_secret", client_secret)
            }
        }
    }
}

/// A field every value set of its type needs: present, free of control characters (it
/// goes into a header or a signature) and at most [`limits::VALUE`] bytes.
fn required_value(field: &str, value: &str) -> Result<(), InvalidCredential> {
    let refused = |message: String| Err(InvalidCredential { field: field.to_owned(), message });
    if value.trim().is_empty() {
        refused("is required".into())
    } else if value.chars().any(|c| c.is_control()) {
        refused("must not contain control characters".into())
    } else if value.len() > limits::VALUE {
        refused(format!("must be at most {} bytes", limits::VALUE))
    } else {
        Ok(())
    }
}

fn is_empty(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Object(map) => map.is_empty(),
        serde_json::Value::Null => true,
        _ => false,
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential::{}(…)", self.kind())
    }
}

/// What is stored (encrypted) for one credential: a default value set and, optionally,
/// value sets per organisation, picked by the event's organisation.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialValues {
    /// Used when the event's organisation has no value set of its own.
    pub default: Option<Credential>,
    /// Organisation id → value set.
    #[serde(default)]
    pub per_organization: BTreeMap<String, Credential>,
    /// The hosts requests carrying this credential may go to (any, when empty): see
    /// `crate::destination`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl CredentialValues {
    /// The value set for an event of `organization`: its own, else the default.
    pub fn for_organization(&self, organization: &str) -> Option<&Credential> {
        self.per_organization.get(organization).or(self.default.as_ref())
    }
}

impl std::fmt::Debug for CredentialValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CredentialValues({} organisations, …)", self.per_organization.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Credential {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_type_reads_from_json_and_reports_fields_without_values() {
        let aws = parse(serde_json::json!({"type": "aws_sigv4", "access_key": "AK", "secret_key": "SK",
            "region": "eu-west-1", "service": "execute-api", "base_endpoint": "https://x.example.com"}));
        assert_eq!(aws.kind(), "aws_sigv4");
        assert!(aws.validate().is_ok());
        let fields = aws.fields_set();
        assert!(fields.contains(&"secret_key".to_owned()));
        assert!(!format!("{fields:?} {aws:?}").contains("SK"));
        let headers = parse(serde_json::json!({"type": "headers", "headers": {"X-Api-Key": "v"}}));
        assert_eq!(headers.fields_set(), vec!["headers.X-Api-Key"]);
        assert!(parse(serde_json::json!({"type": "none"})).validate().is_ok());
    }

    #[test]
    fn missing_or_bad_fields_are_named() {
        let basic = parse(serde_json::json!({"type": "basic", "username": "u", "password": ""}));
        assert_eq!(basic.validate().unwrap_err().field, "password");
        let token = parse(serde_json::json!({"type": "token", "key": "Bad Header", "value": "v"}));
        assert_eq!(token.validate().unwrap_err().field, "key");
        let hmac = parse(serde_json::json!({"type": "hmac_sha256", "client_id": "", "client_secret": "s"}));
        assert_eq!(hmac.validate().unwrap_err().field, "client_id");
        assert!(serde_json::from_value::<Credential>(serde_json::json!({"type": "kerberos"})).is_err());
        let huge =
            parse(serde_json::json!({"type": "basic", "username": "u", "password": "p".repeat(limits::VALUE + 1)}));
        assert_eq!(huge.validate().unwrap_err().field, "password");
        let headers: serde_json::Map<String, serde_json::Value> =
            (0..=limits::HEADERS).map(|i| (format!("x-{i}"), serde_json::json!("v"))).collect();
        let many = parse(serde_json::json!({"type": "headers", "headers": headers}));
        assert_eq!(many.validate().unwrap_err().field, "headers");
    }

    #[test]
    fn the_events_organisation_picks_its_value_set_else_the_default() {
        let values = CredentialValues {
            default: Some(Credential::Token { key: "X-Key".into(), value: "default".into() }),
            per_organization: [("org_a".to_owned(), Credential::Token { key: "X-Key".into(), value: "a".into() })]
                .into(),
            allowed_hosts: Vec::new(),
        };
        assert_eq!(
            values.for_organization("org_a"),
            Some(&Credential::Token { key: "X-Key".into(), value: "a".into() })
        );
        assert_eq!(values.for_organization("org_b"), values.default.as_ref());
        let none = CredentialValues::default();
        assert!(none.for_organization("org_a").is_none());
    }
}
