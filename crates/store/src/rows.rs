//! Reading the values of a row that Rust types do not say on their own.

use tokio_postgres::Row;

use crate::error::{Error, Result};

/// A count stored as `integer` (attempts, failures in a row): never negative.
pub(crate) fn count(row: &Row, column: &str) -> Result<u32> {
    let value: i32 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| Error::Corrupt(format!("{column} is {value}")))
}
