//! Live and test environments.

named_enum! {
    /// Which world an event or webhook belongs to: test webhooks receive only test
    /// events (and use only test credentials), live webhooks only live events.
    #[derive(Default)]
    #[derive(strum::Display)]
    #[serde(rename_all = "lowercase")]
    #[strum(serialize_all = "lowercase", parse_err_ty = UnknownEnvironment, parse_err_fn = UnknownEnvironment::from)]
    pub enum Environment {
        /// Production traffic; the default when a publisher does not say.
        #[default]
        Live,
        /// Traffic from an upstream test or staging system.
        Test,
    }
}

/// A string that names no environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an environment (expected `live` or `test`)")]
pub struct UnknownEnvironment(pub String);

impl From<&str> for UnknownEnvironment {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}
