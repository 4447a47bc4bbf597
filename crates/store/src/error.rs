//! Store errors.

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be taken from the pool.
    #[error("PostgreSQL connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("PostgreSQL: {context}: {source}")]
    Query {
        /// What hookline was doing.
        context: &'static str,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The database URL or pool settings are unusable.
    #[error("database configuration: {0}")]
    Config(String),
    /// The connection listening for configuration changes ended before it listened.
    #[error("listening for webhook changes: {0}")]
    Listen(&'static str),
    /// Applying migrations failed.
    #[error("migrating the database: {0}")]
    Migration(String),
    /// A stored secret could not be decrypted with the configured key.
    #[error(transparent)]
    Crypto(#[from] hookline_core::crypto::CryptoError),
    /// The organisation has no stored event with this id.
    #[error("event {0} is not stored for its organisation")]
    UnknownEvent(String),
    /// A stored value does not have the shape hookline writes.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A column could not be read as the type it holds (a corrupt or unexpected value).
    #[error("reading a row: {0}")]
    Row(#[from] tokio_postgres::Error),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait QueryContext<T> {
    fn context(self, context: &'static str) -> Result<T>;
}

impl<T> QueryContext<T> for std::result::Result<T, tokio_postgres::Error> {
    fn context(self, context: &'static str) -> Result<T> {
        self.map_err(|source| Error::Query { context, source })
    }
}
