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

/// Whether the organisation exists (and is not deleted).
pub async fn exists(pool: &Pool, id: &OrganizationId) -> Result<bool> {
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1 AND deleted_at IS NULL) AS found", &[id])
        .await
        .context("looking up an organization")?;
    Ok(row.try_get("found")?)
}

/// An organisation as the operator sees it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OrganizationView {
    /// Organisation id.
    #[schema(value_type = String)]
    pub id: OrganizationId,
    /// Name.
    pub name: String,
    /// Whether it may use webhooks: off, none can be created or activated and its events
    /// are routed to none.
    pub webhooks_enabled: bool,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, name, webhooks_enabled, created_at, updated_at";

fn view(row: &tokio_postgres::Row) -> Result<OrganizationView> {
    Ok(OrganizationView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        webhooks_enabled: row.try_get("webhooks_enabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// An undeleted organisation.
pub async fn get(pool: &Pool, id: &OrganizationId) -> Result<Option<OrganizationView>> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM organizations WHERE id = $1 AND deleted_at IS NULL");
    let row = client.query_opt(&sql, &[id]).await.context("loading an organization")?;
    row.as_ref().map(view).transpose()
}

/// One page of undeleted organisations, oldest first.
pub async fn list(pool: &Pool, after: &str, limit: i64) -> Result<Vec<OrganizationView>> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM organizations WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2");
    let rows = client.query(&sql, &[&after, &limit]).await.context("listing organizations")?;
    rows.iter().map(view).collect()
}

/// Changes an undeleted organisation's name and webhooks switch. False when there is
/// none. Turning webhooks off deactivates none of its webhooks: they stay as they are,
/// unrouted, until it is turned on again.
pub async fn update(pool: &Pool, id: &OrganizationId, name: &str, webhooks_enabled: bool) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE organizations SET name = $2, webhooks_enabled = $3, updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL",
            &[id, &name, &webhooks_enabled],
        )
        .await
        .context("updating an organization")?;
    Ok(changed == 1)
}

/// Whether the organisation may use webhooks (false for one that does not exist).
pub async fn webhooks_enabled(pool: &Pool, id: &OrganizationId) -> Result<bool> {
    let client = pool.get().await?;
    let row = client
        .query_opt("SELECT webhooks_enabled FROM organizations WHERE id = $1 AND deleted_at IS NULL", &[id])
        .await
        .context("looking up an organization")?;
    Ok(row.map(|row| row.try_get("webhooks_enabled")).transpose()?.unwrap_or(false))
}

/// Deletes an organisation: its keys are revoked, its webhooks deactivated and its
/// webhooks switch turned off, in one transaction. False when there is none.
pub async fn delete(pool: &Pool, id: &OrganizationId) -> Result<bool> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.context("starting a transaction")?;
    let changed = tx
        .execute(
            "UPDATE organizations SET deleted_at = now(), webhooks_enabled = false, updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL",
            &[id],
        )
        .await
        .context("deleting an organization")?;
    if changed == 0 {
        return Ok(false);
    }
    tx.execute("UPDATE api_keys SET revoked_at = now() WHERE organization_id = $1 AND revoked_at IS NULL", &[id])
        .await
        .context("revoking a deleted organization's keys")?;
    tx.execute("UPDATE webhooks SET active = false, updated_at = now() WHERE organization_id = $1 AND active", &[id])
        .await
        .context("deactivating a deleted organization's webhooks")?;
    tx.commit().await.context("committing an organization's deletion")?;
    Ok(true)
}
