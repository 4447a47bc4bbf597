//! Organisations: the tenants.

use deadpool_postgres::Pool;
use hookline_core::ids::OrganizationId;

use crate::error::{QueryContext as _, Result};

/// Creates an organisation.
pub async fn create(pool: &Pool, name: &str) -> Result<OrganizationId> {
    let id = OrganizationId::generate();
    let client = pool.get().await?;
    client
        .execute("INSERT INTO organizations (id, name) VALUES ($1, $2)", &[&id, &name])
        .await
        .context("creating an organization")?;
    Ok(id)
}

/// Whether the organisation exists.
pub async fn exists(pool: &Pool, id: &OrganizationId) -> Result<bool> {
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1) AS found", &[id])
        .await
        .context("looking up an organization")?;
    Ok(row.try_get("found")?)
}
