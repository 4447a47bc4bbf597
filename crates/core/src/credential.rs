//! Receiver credentials: how hookline authenticates to an endpoint.

/// The secret part of a credential, stored encrypted as JSON.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// No authentication beyond the webhook signature.
    None,
    /// HTTP Basic authentication (RFC 7617).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl Credential {
    /// The kind name stored next to the encrypted fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Basic { .. } => "basic",
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential::{}(…)", self.kind())
    }
}
