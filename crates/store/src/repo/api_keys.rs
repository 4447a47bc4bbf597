//! Organisation API keys, stored as SHA-256 hashes.

use deadpool_postgres::Pool;
use hookline_core::apikey::{self, NewApiKey, Scope};
use hookline_core::ids::{ApiKeyId, OrganizationId};

use crate::error::{Error, QueryContext as _, Result};

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
    let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO api_keys (id, organization_id, label, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id.as_str(), &organization.as_str(), &label, &key.prefix, &key.hash, &scope_names],
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
    let parse = |value: String| value.parse().map_err(|err| Error::Corrupt(format!("{err}")));
    let scopes: Vec<String> = row.get(3);
    Ok(Some(ApiKeyRecord {
        id: parse(row.get(0))?,
        organization_id: row.get::<_, String>(1).parse().map_err(|err| Error::Corrupt(format!("{err}")))?,
        label: row.get(2),
        scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
    }))
}
