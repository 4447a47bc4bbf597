//! Receiver credentials, their values encrypted at rest.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::credential::CredentialValues;
use hookline_core::crypto::SecretBox;
use hookline_core::ids::{CredentialId, OrganizationId, WebhookId};

use crate::error::{Error, QueryContext as _, Result};

/// A credential as shown: which fields are set, never their values.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CredentialView {
    /// Credential id.
    #[schema(value_type = String)]
    pub id: CredentialId,
    /// Name people see.
    pub name: String,
    /// none, headers, basic, token, aws_sigv4, hmac_sha256.
    #[serde(rename = "type")]
    pub kind: String,
    /// Test credentials serve only test webhooks.
    pub test: bool,
    /// Fields set in the default value set.
    pub fields_set: Vec<String>,
    /// Organisations with their own value set.
    pub organizations: Vec<String>,
    /// The hosts it may be sent to (any, when empty); a SigV4 credential also only under
    /// its `base_endpoint`.
    pub allowed_hosts: Vec<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn seal(secrets: &SecretBox, values: &CredentialValues) -> Result<Vec<u8>> {
    let plaintext = serde_json::to_vec(values).map_err(|err| Error::Corrupt(err.to_string()))?;
    Ok(secrets.seal(&plaintext))
}

/// Decrypts a stored credential's values.
pub fn open(secrets: &SecretBox, sealed: &[u8]) -> Result<CredentialValues> {
    let plaintext = secrets.open(sealed)?;
    serde_json::from_slice(&plaintext).map_err(|err| Error::Corrupt(format!("credential values: {err}")))
}

fn view(secrets: &SecretBox, row: &tokio_postgres::Row) -> Result<CredentialView> {
    let sealed: Vec<u8> = row.try_get("secret")?;
    let values = open(secrets, &sealed)?;
    Ok(CredentialView {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        test: row.try_get("test")?,
        fields_set: values.default.as_ref().map(|c| c.fields_set()).unwrap_or_default(),
        organizations: values.per_organization.keys().cloned().collect(),
        allowed_hosts: values.allowed_hosts,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const COLUMNS: &str = "id, name, kind, test, secret, created_at, updated_at";

/// Stores a credential; its values are encrypted before they leave memory.
pub async fn create(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    name: &str,
    kind: &str,
    test: bool,
    values: &CredentialValues,
) -> Result<CredentialId> {
    let id = CredentialId::generate();
    let sealed = seal(secrets, values)?;
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO credentials (id, organization_id, name, kind, test, secret) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id, organization, &name, &kind, &test, &sealed],
        )
        .await
        .context("creating a credential")?;
    Ok(id)
}

/// An undeleted credential of the organisation.
pub async fn get(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    id: &CredentialId,
) -> Result<Option<CredentialView>> {
    let client = pool.get().await?;
    let sql =
        format!("SELECT {COLUMNS} FROM credentials WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL");
    let row = client.query_opt(&sql, &[id, organization]).await.context("loading a credential")?;
    row.map(|row| view(secrets, &row)).transpose()
}

/// The decrypted values of an undeleted credential (for updates that keep some of them).
pub async fn values(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    id: &CredentialId,
) -> Result<Option<(String, bool, CredentialValues)>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT kind, test, secret FROM credentials WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[id, organization],
        )
        .await
        .context("loading a credential")?;
    row.map(|row| {
        Ok((row.try_get("kind")?, row.try_get("test")?, open(secrets, &row.try_get::<_, Vec<u8>>("secret")?)?))
    })
    .transpose()
}

/// One page of the organisation's credentials, oldest first.
pub async fn list(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    after: &str,
    limit: i64,
) -> Result<Vec<CredentialView>> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM credentials WHERE organization_id = $1 AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = client.query(&sql, &[organization, &after, &limit]).await.context("listing credentials")?;
    rows.iter().map(|row| view(secrets, row)).collect()
}

/// Replaces a credential's name, test flag and values, if it is still at `version`
/// (its `updated_at`; any, when `None`). False when there is none at that version.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    id: &CredentialId,
    name: &str,
    kind: &str,
    test: bool,
    values: &CredentialValues,
    version: Option<DateTime<Utc>>,
) -> Result<bool> {
    let sealed = seal(secrets, values)?;
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE credentials SET name = $3, kind = $4, test = $5, secret = $6, updated_at = now()
             WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL
               AND ($7::timestamptz IS NULL OR updated_at = $7)",
            &[&id, organization, &name, &kind, &test, &sealed, &version],
        )
        .await
        .context("updating a credential")?;
    Ok(changed == 1)
}

/// Webhooks (undeleted) whose live endpoints use the credential.
pub async fn used_by(pool: &Pool, organization: &OrganizationId, id: &CredentialId) -> Result<Vec<WebhookId>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT w.id FROM endpoints e JOIN webhooks w ON w.id = e.webhook_id
             WHERE e.credential_id = $1 AND w.organization_id = $2 AND e.removed_at IS NULL AND w.deleted_at IS NULL
             ORDER BY w.id",
            &[id, organization],
        )
        .await
        .context("finding a credential's users")?;
    rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
}

/// The URLs of the live endpoints that use a credential, with their webhooks: where
/// its values are sent today.
pub async fn endpoints_using(
    pool: &Pool,
    organization: &OrganizationId,
    id: &CredentialId,
) -> Result<Vec<(WebhookId, String)>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT w.id, e.url FROM endpoints e JOIN webhooks w ON w.id = e.webhook_id
             WHERE e.credential_id = $1 AND w.organization_id = $2 AND e.removed_at IS NULL AND w.deleted_at IS NULL
             ORDER BY w.id, e.id",
            &[id, organization],
        )
        .await
        .context("finding where a credential is sent")?;
    rows.iter().map(|row| Ok((row.try_get("id")?, row.try_get("url")?))).collect()
}

/// Deletes an unused credential. False when there is none.
pub async fn delete(pool: &Pool, organization: &OrganizationId, id: &CredentialId) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE credentials SET deleted_at = now(), secret = NULL WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[id, organization],
        )
        .await
        .context("deleting a credential")?;
    Ok(changed == 1)
}
