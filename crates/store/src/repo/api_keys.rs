//! Organisation API keys, stored as SHA-256 hashes.

use deadpool_postgres::Pool;
use hookline_core::apikey::{self, NewApiKey, Scope};
use hookline_core::ids::{ApiKeyId, OrganizationId};

use crate::error::{QueryContext as _, Result};

/// A valid, unrevoked key as found by [`authenticate`].
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// The key's record id.
    pub id: ApiKeyId,
    /// The only organisation the key may act on.
    pub organization_id: OrganizationId,
    /// Name given at creation; recorded as `created_by` on what the key creates.
    pub label: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
}

/// Creates a key; the returned secret is the only time it exists in clear.
pub async fn create(
    pool: &Pool,
    organization: &OrganizationId,
    label: &str,
    scopes: &[Scope],
) -> Result<(ApiKeyId, NewApiKey)> {
    let id = ApiKeyId::generate();
    let key = apikey::generate();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO api_keys (id, organization_id, label, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id, organization, &label, &key.prefix, &key.hash, &scopes],
        )
        .await
        .context("creating an API key")?;
    Ok((id, key))
}

/// Finds the unrevoked key matching a presented secret.
pub async fn authenticate(pool: &Pool, presented: &str) -> Result<Option<ApiKeyRecord>> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT id, organization_id, label, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .await
        .context("preparing key lookup")?;
    let Some(row) = client.query_opt(&statement, &[&apikey::hash(presented)]).await.context("looking up an API key")?
    else {
        return Ok(None);
    };
    Ok(Some(ApiKeyRecord {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        label: row.try_get("label")?,
        scopes: row.try_get("scopes")?,
    }))
}

/// A key as listed: never the secret, only its label and prefix.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKeySummary {
    /// Record id.
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    /// Name given at creation.
    pub label: String,
    /// First characters of the key, to tell keys apart.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One page of an organisation's keys, oldest first, after the cursor id.
pub async fn list(pool: &Pool, organization: &OrganizationId, after: &str, limit: i64) -> Result<Vec<ApiKeySummary>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, label, prefix, scopes, created_at, revoked_at FROM api_keys
             WHERE organization_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[organization, &after, &limit],
        )
        .await
        .context("listing API keys")?;
    rows.iter()
        .map(|row| {
            Ok(ApiKeySummary {
                id: row.try_get("id")?,
                label: row.try_get("label")?,
                prefix: row.try_get("prefix")?,
                scopes: row.try_get("scopes")?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        })
        .collect()
}

/// What revoking a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// It is revoked: refused from the next request on.
    Revoked,
    /// The organisation has no such active key.
    NotFound,
    /// It is the organisation's last active admin key, which is kept: revoking it would
    /// lock the organisation out of its keys and credentials.
    LastAdmin,
}

/// Revokes the organisation's key `id`, unless it is its last active admin key. The
/// organisation's active admin keys are locked while this is decided, so two admins
/// revoking each other's keys at once cannot both succeed.
pub async fn revoke(pool: &Pool, organization: &OrganizationId, id: &ApiKeyId) -> Result<Revoked> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await.context("revoking an API key")?;
    let admins = transaction
        .query(
            "SELECT id FROM api_keys WHERE organization_id = $1 AND revoked_at IS NULL AND 'admin' = ANY (scopes)
             ORDER BY id FOR UPDATE",
            &[organization],
        )
        .await
        .context("locking the organisation's admin keys")?;
    let admins: Vec<ApiKeyId> = admins.iter().map(|row| row.try_get("id")).collect::<Result<_, _>>()?;
    if admins.len() == 1 && admins[0] == *id {
        return Ok(Revoked::LastAdmin);
    }
    let changed = transaction
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL",
            &[id, organization],
        )
        .await
        .context("revoking an API key")?;
    transaction.commit().await.context("revoking an API key")?;
    Ok(if changed == 1 { Revoked::Revoked } else { Revoked::NotFound })
}
