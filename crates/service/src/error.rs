//! The one error every service stops with.

use hookline_core::envelope::{RejectReason, Rejection};

use crate::batch::BatchError;

/// Why a service stopped (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration is unusable.
    #[error(transparent)]
    Settings(#[from] hookline_telemetry::SettingsError),
    /// PostgreSQL failed.
    #[error(transparent)]
    Store(#[from] hookline_store::Error),
    /// RabbitMQ failed.
    #[error(transparent)]
    Bus(#[from] hookline_bus::Error),
    /// Batched work could not be answered (see [`crate::batch`]).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A listener or another resource of the operating system failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A part of the service could not be set up.
    #[error("{what}: {source}")]
    Start {
        /// What was being set up.
        what: &'static str,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the database or the broker was away: the same work may succeed later
    /// (rather than bad configuration or a refused statement, which fail the same way).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Store(err) => err.is_unavailable(),
            Error::Bus(_) => true,
            Error::Settings(_) | Error::Batch(_) | Error::Io(_) | Error::Start { .. } => false,
        }
    }
}

impl Error {
    /// The refusal to give work the database will never store (see
    /// [`hookline_store::Error::is_refused_value`]): such work goes to the rejected queue
    /// with this reason instead of being retried. `None` for every other error.
    pub fn refusal(&self) -> Option<Rejection> {
        match self {
            Error::Store(err) if err.is_refused_value() => {
                Some(Rejection::whole(RejectReason::Unstorable, format!("the database refuses a value in it: {err}")))
            }
            _ => None,
        }
    }
}

/// Result of service operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
