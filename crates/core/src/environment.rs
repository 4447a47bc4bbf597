//! Live and test environments.

use std::fmt;
use std::str::FromStr;

/// Which world an event or webhook belongs to: test webhooks receive only test
/// events (and use only test credentials), live webhooks only live events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production traffic; the default when a publisher does not say.
    #[default]
    Live,
    /// Traffic from an upstream test or staging system.
    Test,
}

impl Environment {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an environment (expected `live` or `test`)")]
pub struct UnknownEnvironment(pub String);

impl FromStr for Environment {
    type Err = UnknownEnvironment;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            other => Err(UnknownEnvironment(other.to_owned())),
        }
    }
}
