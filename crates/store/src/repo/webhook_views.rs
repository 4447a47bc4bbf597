//! Reading and changing webhooks as the management API shows them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::crypto::SecretBox;
use hookline_core::ids::{EndpointId, OrganizationId, WebhookId};
use hookline_core::signing::SigningSecret;
use tokio_postgres::Row;

use crate::error::{Error, QueryContext as _, Result};
use crate::repo::webhooks::{NewWebhook, delays_ms, parse_id};

/// An endpoint as shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EndpointView {
    /// Endpoint id.
    #[schema(value_type = String)]
    pub id: EndpointId,
    /// Receiver URL.
    pub url: String,
    /// POST, PUT or PATCH.
    pub method: String,
    /// Credential used, if any.
    pub credential_id: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
}

/// The "for login" and team filters.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Filters {
    /// Only events acted by this user.
    pub actor: Option<String>,
    /// Only events of this team.
    pub team: Option<String>,
}

/// A webhook as shown (never with its secret).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Webhook id.
    #[schema(value_type = String)]
    pub id: WebhookId,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Live endpoints, in order.
    pub endpoints: Vec<EndpointView>,
    /// Selected event codes and wildcards.
    pub events: Vec<String>,
    /// Filters.
    pub filters: Filters,
    /// Test webhook.
    pub test: bool,
    /// Receiving events now.
    pub active: bool,
    /// Why hookline deactivated it, if it did (410 Gone, too many failures in a row).
    pub disabled_reason: Option<String>,
    /// Own retry delays in milliseconds, when set.
    pub retry_delays_ms: Option<Vec<i64>>,
    /// Who created it.
    pub created_by: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "w.id, w.name, w.description, w.events, w.filter_actor, w.filter_team, w.environment, w.active,
    w.retry_delays_ms, w.created_by, w.created_at, w.updated_at, w.disabled_reason,
    COALESCE((SELECT json_agg(json_build_object('id', e.id, 'url', e.url, 'method', e.method,
        'credential_id', e.credential_id, 'headers', e.headers) ORDER BY e.position)
        FROM endpoints e WHERE e.webhook_id = w.id AND e.removed_at IS NULL), '[]'::json) AS endpoints";

fn view(row: &Row) -> Result<WebhookView> {
    let environment: String = row.get(6);
    let endpoints: serde_json::Value = row.get("endpoints");
    Ok(WebhookView {
        id: parse_id(row.get(0))?,
        name: row.get(1),
        description: row.get(2),
        events: row.get(3),
        filters: Filters { actor: row.get(4), team: row.get(5) },
        test: environment == "test",
        active: row.get(7),
        retry_delays_ms: row.get(8),
        created_by: row.get(9),
        created_at: row.get(10),
        updated_at: row.get(11),
        disabled_reason: row.get(12),
        endpoints: serde_json::from_value(endpoints).map_err(|err| Error::Corrupt(format!("endpoints: {err}")))?,
    })
}

/// An undeleted webhook of the organisation.
pub async fn get(pool: &Pool, organization: &OrganizationId, id: &WebhookId) -> Result<Option<WebhookView>> {
    let client = pool.get().await?;
    let sql =
        format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1 AND w.organization_id = $2 AND w.deleted_at IS NULL");
    let row = client.query_opt(&sql, &[&id.as_str(), &organization.as_str()]).await.context("loading a webhook")?;
    row.as_ref().map(view).transpose()
}

/// One page of the organisation's undeleted webhooks, oldest first.
pub async fn list(pool: &Pool, organization: &OrganizationId, after: &str, limit: i64) -> Result<Vec<WebhookView>> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM webhooks w WHERE w.organization_id = $1 AND w.deleted_at IS NULL AND w.id > $2
         ORDER BY w.id LIMIT $3"
    );
    let rows = client.query(&sql, &[&organization.as_str(), &after, &limit]).await.context("listing webhooks")?;
    rows.iter().map(view).collect()
}

/// Whether the webhook exists for the organisation, deleted ones included (their
/// delivery history stays readable).
pub async fn exists_with_history(pool: &Pool, organization: &OrganizationId, id: &WebhookId) -> Result<bool> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1 AND organization_id = $2)",
            &[&id.as_str(), &organization.as_str()],
        )
        .await
        .context("looking up a webhook")?;
    Ok(row.get(0))
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
             SELECT EXISTS (SELECT 1 FROM target), EXISTS (SELECT 1 FROM changed)",
            &[&id.as_str(), &organization.as_str()],
        )
        .await
        .context("activating a webhook")?;
    let (found, changed): (bool, bool) = (row.get(0), row.get(1));
    Ok(found.then_some(changed))
}

/// The webhook's signing secret (for admins).
pub async fn signing_secret(
    pool: &Pool,
    secrets: &SecretBox,
    organization: &OrganizationId,
    id: &WebhookId,
) -> Result<Option<SigningSecret>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT signing_secret FROM webhooks WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[&id.as_str(), &organization.as_str()],
        )
        .await
        .context("loading a signing secret")?;
    row.map(|row| {
        let sealed: Vec<u8> = row.get(0);
        SigningSecret::parse(&secrets.open_string(&sealed)?).map_err(|_| Error::Corrupt("signing secret".into()))
    })
    .transpose()
}

/// Replaces a webhook's settings with `updated` (already validated): endpoints listed
/// with an id are changed in place, new ones added, unlisted ones removed (kept for
/// history, receiving nothing). Returns false when there is no such webhook.
pub async fn update(
    pool: &Pool,
    id: &WebhookId,
    updated: &NewWebhook,
    endpoint_ids: &[Option<EndpointId>],
) -> Result<bool> {
    let delays_ms = delays_ms(updated.retry_delays.as_deref());
    let mut client = pool.get().await?;
    let tx = client.transaction().await.context("starting a transaction")?;
    let changed = tx
        .execute(
            "UPDATE webhooks SET name = $3, description = $4, events = $5, filter_actor = $6, filter_team = $7,
                 environment = $8, retry_delays_ms = $9, updated_at = now()
             WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[
                &id.as_str(),
                &updated.organization_id.as_str(),
                &updated.name,
                &updated.description,
                &updated.events,
                &updated.actor,
                &updated.team,
                &updated.environment.as_str(),
                &delays_ms,
            ],
        )
        .await
        .context("updating a webhook")?;
    if changed == 0 {
        return Ok(false);
    }
    let kept: Vec<&str> = endpoint_ids.iter().flatten().map(|e| e.as_str()).collect();
    tx.execute(
        "UPDATE endpoints SET removed_at = now() WHERE webhook_id = $1 AND removed_at IS NULL AND NOT (id = ANY($2))",
        &[&id.as_str(), &kept],
    )
    .await
    .context("removing endpoints")?;
    // Park kept endpoints on negative positions so the new order cannot collide.
    tx.execute(
        "UPDATE endpoints SET position = -1 - position WHERE webhook_id = $1 AND removed_at IS NULL",
        &[&id.as_str()],
    )
    .await
    .context("reordering endpoints")?;
    for (position, (endpoint, existing)) in updated.endpoints.iter().zip(endpoint_ids).enumerate() {
        let headers = serde_json::to_value(&endpoint.headers).map_err(|err| Error::Corrupt(err.to_string()))?;
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        let credential = endpoint.credential_id.as_ref().map(|c| c.as_str());
        let rows = match existing {
            Some(endpoint_id) => tx
                .execute(
                    "UPDATE endpoints SET position = $3, url = $4, method = $5, credential_id = $6, headers = $7
                     WHERE id = $1 AND webhook_id = $2 AND removed_at IS NULL",
                    &[&endpoint_id.as_str(), &id.as_str(), &position, &endpoint.url, &endpoint.method.as_str(), &credential, &headers],
                )
                .await
                .context("updating an endpoint")?,
            None => tx
                .execute(
                    "INSERT INTO endpoints (id, webhook_id, organization_id, position, url, method, credential_id, headers)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &EndpointId::generate().as_str(),
                        &id.as_str(),
                        &updated.organization_id.as_str(),
                        &position,
                        &endpoint.url,
                        &endpoint.method.as_str(),
                        &credential,
                        &headers,
                    ],
                )
                .await
                .context("adding an endpoint")?,
        };
        if rows != 1 {
            return Err(Error::Corrupt(format!("endpoint {existing:?} is not one of webhook {id}'s endpoints")));
        }
    }
    tx.commit().await.context("committing a webhook update")?;
    Ok(true)
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
            &[&id.as_str(), &organization.as_str(), &sealed, &overlap.as_secs_f64()],
        )
        .await
        .context("rotating a signing secret")?;
    Ok(changed == 1)
}
