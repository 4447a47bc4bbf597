//! Connecting and migrating.

use std::str::FromStr as _;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::error::{Error, QueryContext as _, Result};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Lock key that serialises migrations when several services start at once.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6c69_6e65; // "hookline"

/// A pool of up to `max_size` connections to `url`.
pub fn connect(url: &str, max_size: usize) -> Result<Pool> {
    let config = tokio_postgres::Config::from_str(url).map_err(|err| Error::Config(format!("database.url: {err}")))?;
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(max_size).build().map_err(|err| Error::Config(err.to_string()))
}

/// Applies every pending migration. Safe to call from several processes at once: an
/// advisory lock makes them take turns.
pub async fn migrate(pool: &Pool) -> Result<()> {
    let mut client = pool.get().await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.context("taking the migration lock")?;
    let client: &mut tokio_postgres::Client = &mut client;
    let outcome = embedded::migrations::runner().run_async(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .context("releasing the migration lock")?;
    let report = outcome.map_err(|err| Error::Migration(err.to_string()))?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(())
}

/// Connects and applies pending migrations: what every service does at start-up.
pub async fn open(url: &str, max_size: usize) -> Result<Pool> {
    let pool = connect(url, max_size)?;
    migrate(&pool).await?;
    Ok(pool)
}
