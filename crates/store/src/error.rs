//! Store errors.

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be taken from the pool.
    #[error("PostgreSQL connection pool: {}", pool_described(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("PostgreSQL: {context}: {}", described(source))]
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
    #[error("reading a row: {}", described(.0))]
    Row(#[from] tokio_postgres::Error),
}

impl Error {
    /// Whether PostgreSQL could not be reached, or went away during the work: trying
    /// again later may succeed (rather than a refused statement, a corrupt row or bad
    /// configuration, which will fail the same way).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Pool(deadpool_postgres::PoolError::Backend(source)) => unreachable(source),
            Error::Pool(_) | Error::Listen(_) => true,
            Error::Query { source, .. } => unreachable(source),
            Error::Config(_)
            | Error::Migration(_)
            | Error::Crypto(_)
            | Error::UnknownEvent(_)
            | Error::Corrupt(_)
            | Error::Row(_) => false,
        }
    }
}

impl Error {
    /// Whether PostgreSQL refused a value the statement carried (SQLSTATE class 22, data
    /// exception: a NUL in text, an invalid byte sequence, a number out of range): the
    /// same values will be refused every time, so the work that holds them is to be
    /// refused, never retried.
    pub fn is_refused_value(&self) -> bool {
        match self {
            Error::Query { source, .. } | Error::Row(source) => {
                source.as_db_error().is_some_and(|db| db.code().code().starts_with("22"))
            }
            _ => false,
        }
    }
}

/// What a driver error says, with the server's SQLSTATE and message when the server
/// answered (the driver's own text is only "db error"): what an operator needs in the
/// log, and never shown to an API client.
pub(crate) fn described(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// [`described`] for the pool's errors, whose own text of a refused connection is only
/// "db error" too.
fn pool_described(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(source) => format!("connecting: {}", described(source)),
        other => other.to_string(),
    }
}

/// Whether a driver error means the server was not there to answer: the connection
/// failed or closed, or the server is starting up or shutting down (SQLSTATE class 08,
/// 57P01–57P03).
fn unreachable(error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
    }
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
