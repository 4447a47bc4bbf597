//! Everything that changes a webhook or its endpoints: creating, updating, activating,
//! deactivating (by an operator or by hookline), deleting and rotating its secret.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::RetryPolicy;
use hookline_core::crypto::SecretBox;
use hookline_core::environment::Environment;
use hookline_core::ids::{CredentialId, EndpointId, OrganizationId, WebhookId};
use hookline_core::signing::SigningSecret;
use hookline_core::webhook::HttpMethod;

use crate::error::{Error, QueryContext as _, Result};

/// One endpoint of a webhook being created.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// Where deliveries go.
    pub url: String,
    /// POST, PUT or PATCH.
    pub method: HttpMethod,
    /// How to authenticate to the receiver; `None` sends only the signature.
    pub credential_id: Option<CredentialId>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
}

/// A validated webhook to store.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Owner.
    pub organization_id: OrganizationId,
    /// Name people see.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Selected event codes and `component.*` wildcards, as written.
    pub events: Vec<String>,
    /// "For login" filter.
    pub actor: Option<String>,
    /// Team filter.
    pub team: Option<String>,
    /// Test webhooks receive only test events.
    pub environment: Environment,
    /// New webhooks start inactive unless asked otherwise.
    pub active: bool,
    /// At least one.
    pub endpoints: Vec<NewEndpoint>,
    /// Its own retry policy, instead of the configured one.
    pub retry_policy: Option<RetryPolicy>,
    /// Label of the key (or "cli") that created it.
    pub created_by: Option<String>,
}

fn headers_json(endpoint: &NewEndpoint) -> Result<serde_json::Value> {
    serde_json::to_value(&endpoint.headers).map_err(|err| Error::Corrupt(err.to_string()))
}

fn position(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// Stores a webhook with its endpoints in one transaction, its signing secret encrypted.
pub async fn create(
    pool: &Pool,
    secrets: &SecretBox,
    webhook: &NewWebhook,
    signing_secret: &SigningSecret,
) -> Result<(WebhookId, Vec<EndpointId>)> {
    let id = WebhookId::generate();
    let sealed_secret = secrets.seal(signing_secret.expose().as_bytes());
    let mut client = pool.get().await?;
    let tx = client.transaction().await.context("starting a transaction")?;
    tx.execute(
        "INSERT INTO webhooks (id, organization_id, name, description, events, filter_actor, filter_team,
             environment, active, signing_secret, retry_delays_ms, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &id,
            &webhook.organization_id,
            &webhook.name,
            &webhook.description,
            &webhook.events,
            &webhook.actor,
            &webhook.team,
            &webhook.environment,
            &webhook.active,
            &sealed_secret,
            &webhook.retry_policy,
            &webhook.created_by,
        ],
    )
    .await
    .context("creating a webhook")?;
    let mut endpoint_ids = Vec::with_capacity(webhook.endpoints.len());
    for (index, endpoint) in webhook.endpoints.iter().enumerate() {
        let endpoint_id = EndpointId::generate();
        tx.execute(
            "INSERT INTO endpoints (id, webhook_id, organization_id, position, url, method, credential_id, headers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &endpoint_id,
                &id,
                &webhook.organization_id,
                &position(index),
                &endpoint.url,
                &endpoint.method,
                &endpoint.credential_id,
                &headers_json(endpoint)?,
            ],
        )
        .await
        .context("creating an endpoint")?;
        endpoint_ids.push(endpoint_id);
    }
    tx.commit().await.context("committing a webhook")?;
    Ok((id, endpoint_ids))
}

/// Replaces a webhook's settings with `updated` (already validated): endpoints listed
/// with an id are changed in place, new ones added, unlisted ones removed (kept for
/// history, receiving nothing). Returns false when there is no such webhook.
pub async fn update(
    pool: &Pool,
    id: &WebhookId,
    updated: &NewWebhook,
    endpoint_ids: &[Option<EndpointId>],
    version: Option<DateTime<Utc>>,
) -> Result<bool> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.context("starting a transaction")?;
    let changed = tx
        .execute(
            "UPDATE webhooks SET name = $3, description = $4, events = $5, filter_actor = $6, filter_team = $7,
                 environment = $8, retry_delays_ms = $9, updated_at = now()
             WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL
               AND ($10::timestamptz IS NULL OR updated_at = $10)",
            &[
                id,
                &updated.organization_id,
                &updated.name,
                &updated.description,
                &updated.events,
                &updated.actor,
                &updated.team,
                &updated.environment,
                &updated.retry_policy,
                &version,
            ],
        )
        .await
        .context("updating a webhook")?;
    if changed == 0 {
        return Ok(false);
    }
    let kept: Vec<&EndpointId> = endpoint_ids.iter().flatten().collect();
    tx.execute(
        "UPDATE endpoints SET removed_at = now() WHERE webhook_id = $1 AND removed_at IS NULL AND NOT (id = ANY($2))",
        &[id, &kept],
    )
    .await
    .context("removing endpoints")?;
    // Park kept endpoints on negative positions so the new order cannot collide.
    tx.execute("UPDATE endpoints SET position = -1 - position WHERE webhook_id = $1 AND removed_at IS NULL", &[id])
        .await
        .context("reordering endpoints")?;
    for (index, (endpoint, existing)) in updated.endpoints.iter().zip(endpoint_ids).enumerate() {
        put_endpoint(&tx, id, &updated.organization_id, position(index), endpoint, existing.as_ref()).await?;
    }
    tx.commit().await.context("committing a webhook update")?;
    Ok(true)
}

/// Changes the `existing` endpoint of a webhook in place, or adds a new one, at `position`.
async fn put_endpoint(
    tx: &deadpool_postgres::Transaction<'_>,
    webhook: &WebhookId,
    organization: &OrganizationId,
    position: i32,
    endpoint: &NewEndpoint,
    existing: Option<&EndpointId>,
) -> Result<()> {
    let headers = headers_json(endpoint)?;
    let rows = match existing {
        Some(endpoint_id) => tx
            .execute(
                "UPDATE endpoints SET position = $3, url = $4, method = $5, credential_id = $6, headers = $7
                 WHERE id = $1 AND webhook_id = $2 AND removed_at IS NULL",
                &[endpoint_id, webhook, &position, &endpoint.url, &endpoint.method, &endpoint.credential_id, &headers],
            )
            .await
            .context("updating an endpoint")?,
        None => tx
            .execute(
                "INSERT INTO endpoints (id, webhook_id, organization_id, position, url, method, credential_id, headers)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &EndpointId::generate(),
                    webhook,
                    organization,
                    &position,
                    &endpoint.url,
                    &endpoint.method,
                    &endpoint.credential_id,
                    &headers,
                ],
            )
            .await
            .context("adding an endpoint")?,
    };
    if rows != 1 {
        return Err(Error::Corrupt(format!("endpoint {existing:?} is not one of webhook {webhook}'s endpoints")));
    }
    Ok(())
}

/// Activates an inactive webhook. Returns `None` when there is no such webhook, and
/// whether this call turned it on (false when it was already active).
pub async fn activate(pool: &Pool, organization: &OrganizationId, id: &WebhookId) -> Result<Option<bool>> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "WITH target AS (SELECT id, active FROM webhooks WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL),
             changed AS (UPDATE webhooks w SET active = true, disabled_reason = NULL, updated_at = now() FROM target
                         WHERE w.id = target.id AND NOT target.active RETURNING w.id)
             SELECT EXISTS (SELECT 1 FROM target) AS found, EXISTS (SELECT 1 FROM changed) AS changed",
            &[id, organization],
        )
        .await
        .context("activating a webhook")?;
    let (found, changed): (bool, bool) = (row.try_get("found")?, row.try_get("changed")?);
    Ok(found.then_some(changed))
}

/// Turns a webhook off at its owner's request. Returns false when the organisation has
/// no such webhook.
pub async fn deactivate(pool: &Pool, organization: &OrganizationId, id: &WebhookId) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE webhooks SET active = false, updated_at = now()
             WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[id, organization],
        )
        .await
        .context("deactivating a webhook")?;
    Ok(changed == 1)
}

/// Deactivates a webhook on hookline's own initiative and records why. Returns false
/// when it was inactive already (so nothing needs announcing).
pub async fn disable(pool: &Pool, id: &WebhookId, reason: &str) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE webhooks SET active = false, disabled_reason = $2, updated_at = now()
             WHERE id = $1 AND active AND deleted_at IS NULL",
            &[id, &reason],
        )
        .await
        .context("disabling a webhook")?;
    Ok(changed == 1)
}

/// Deletes a webhook, keeping its history. Returns false when there was none to delete.
pub async fn soft_delete(pool: &Pool, organization: &OrganizationId, id: &WebhookId) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE webhooks SET deleted_at = now(), active = false, updated_at = now()
             WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[id, organization],
        )
        .await
        .context("deleting a webhook")?;
    Ok(changed == 1)
}

/// Replaces the signing secret; the old one keeps signing (alongside) until
/// `overlap` has passed. Returns false when there is no such webhook.
pub async fn rotate_secret(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    id: &WebhookId,
    new_secret: &SigningSecret,
    overlap: std::time::Duration,
) -> Result<bool> {
    let sealed = secrets.seal(new_secret.expose().as_bytes());
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE webhooks SET previous_signing_secret = signing_secret,
                 previous_secret_expires_at = now() + make_interval(secs => $4),
                 signing_secret = $3, updated_at = now()
             WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[id, organization, &sealed, &overlap.as_secs_f64()],
        )
        .await
        .context("rotating a signing secret")?;
    Ok(changed == 1)
}
