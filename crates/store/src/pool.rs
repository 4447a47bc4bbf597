//! Connecting and migrating.

use std::str::FromStr as _;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::error::{Error, QueryContext as _, Result};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Lock key that serialises migrations when several services start at once.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6c69_6e65; // "hookline"

/// A statement whose result has a column of each of hookline's own types (migration
/// V8). Preparing it makes a connection look them up: tokio-postgres otherwise looks an
/// unknown type up in the middle of a `query_typed` result, on the same connection, with
/// the rows waiting behind the lookup, and a result larger than its buffers then waits
/// for ever (rust-postgres#1348). A type added to the schema is added here.
pub const OWN_TYPES: &str = "SELECT NULL::delivery_status, NULL::error_kind, NULL::attempt_trigger";

fn config(url: &str) -> Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(url).map_err(|err| Error::Config(format!("database.url: {err}")))
}

/// A pool of up to `max_size` connections to `url`, a migrated database: each
/// connection knows hookline's own types before it runs a statement.
pub fn connect(url: &str, max_size: usize) -> Result<Pool> {
    let manager = Manager::from_config(config(url)?, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let learn_types = Hook::async_fn(|client, _| {
        Box::pin(async move {
            client.prepare(OWN_TYPES).await.map_err(HookError::Backend)?;
            Ok(())
        })
    });
    Pool::builder(manager)
        .max_size(max_size)
        .post_create(learn_types)
        .build()
        .map_err(|err| Error::Config(err.to_string()))
}

/// Applies every pending migration, on a connection of its own. Safe to call from
/// several processes at once: an advisory lock makes them take turns.
pub async fn migrate(url: &str) -> Result<()> {
    let (mut client, connection) = config(url)?.connect(NoTls).await.context("connecting to migrate")?;
    let connection = tokio::spawn(connection);
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.context("taking the migration lock")?;
    let outcome = embedded::migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .context("releasing the migration lock")?;
    drop(client);
    let _ = connection.await;
    let report = outcome.map_err(|err| Error::Migration(err.to_string()))?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(())
}

/// Applies pending migrations and connects: what every service does at start-up.
pub async fn open(url: &str, max_size: usize) -> Result<Pool> {
    migrate(url).await?;
    connect(url, max_size)
}
