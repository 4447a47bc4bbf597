//! Receiver credentials, their secret fields encrypted at rest.

use deadpool_postgres::Pool;
use hookline_core::credential::Credential;
use hookline_core::crypto::SecretBox;
use hookline_core::ids::{CredentialId, OrganizationId};

use crate::error::{Error, QueryContext as _, Result};

/// Stores a credential; its fields are encrypted with `secrets` before they leave memory.
pub async fn create(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    name: &str,
    test: bool,
    credential: &Credential,
) -> Result<CredentialId> {
    let id = CredentialId::generate();
    let plaintext = serde_json::to_vec(credential).map_err(|err| Error::Corrupt(err.to_string()))?;
    let sealed = secrets.seal(&plaintext);
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO credentials (id, organization_id, name, kind, test, secret) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id.as_str(), &organization.as_str(), &name, &credential.kind(), &test, &sealed],
        )
        .await
        .context("creating a credential")?;
    Ok(id)
}

/// Decrypts a stored credential's fields.
pub fn open(secrets: &SecretBox, sealed: &[u8]) -> Result<Credential> {
    let plaintext = secrets.open(sealed)?;
    serde_json::from_slice(&plaintext).map_err(|err| Error::Corrupt(format!("credential fields: {err}")))
}

/// What webhook validation needs to know of a credential: its kind and whether it is a
/// test credential. `None` when the organisation has no such (undeleted) credential.
pub async fn kind_and_test(
    pool: &Pool,
    organization: &OrganizationId,
    id: &CredentialId,
) -> Result<Option<(String, bool)>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT kind, test FROM credentials WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[&id.as_str(), &organization.as_str()],
        )
        .await
        .context("looking up a credential")?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}
