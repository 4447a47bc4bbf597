//! Webhooks and their endpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use hookline_core::crypto::SecretBox;
use hookline_core::environment::Environment;
use hookline_core::ids::{CredentialId, EndpointId, OrganizationId, WebhookId};
use hookline_core::signing::SigningSecret;
use hookline_core::webhook::{HttpMethod, Subscription};
use tokio_postgres::types::Type;

use crate::config_watch::ConfigCache;
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
    /// Overrides the configured retry delays.
    pub retry_delays: Option<Vec<Duration>>,
    /// Label of the key (or "cli") that created it.
    pub created_by: Option<String>,
}

/// What the router needs of an active webhook.
#[derive(Debug, Clone)]
pub struct RoutableWebhook {
    /// The webhook.
    pub id: WebhookId,
    /// Which events it receives.
    pub subscription: Subscription,
    /// Its endpoints, in order; one delivery is made for each.
    pub endpoints: Vec<EndpointId>,
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
    let delays_ms = delays_ms(webhook.retry_delays.as_deref());
    let mut client = pool.get().await?;
    let tx = client.transaction().await.context("starting a transaction")?;
    tx.execute(
        "INSERT INTO webhooks (id, organization_id, name, description, events, filter_actor, filter_team,
             environment, active, signing_secret, retry_delays_ms, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &id.as_str(),
            &webhook.organization_id.as_str(),
            &webhook.name,
            &webhook.description,
            &webhook.events,
            &webhook.actor,
            &webhook.team,
            &webhook.environment.as_str(),
            &webhook.active,
            &sealed_secret,
            &delays_ms,
            &webhook.created_by,
        ],
    )
    .await
    .context("creating a webhook")?;
    let mut endpoint_ids = Vec::with_capacity(webhook.endpoints.len());
    for (position, endpoint) in webhook.endpoints.iter().enumerate() {
        let endpoint_id = EndpointId::generate();
        let headers = serde_json::to_value(&endpoint.headers).map_err(|err| Error::Corrupt(err.to_string()))?;
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO endpoints (id, webhook_id, organization_id, position, url, method, credential_id, headers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &endpoint_id.as_str(),
                &id.as_str(),
                &webhook.organization_id.as_str(),
                &position,
                &endpoint.url,
                &endpoint.method.as_str(),
                &endpoint.credential_id.as_ref().map(|c| c.as_str()),
                &headers,
            ],
        )
        .await
        .context("creating an endpoint")?;
        endpoint_ids.push(endpoint_id);
    }
    tx.commit().await.context("committing a webhook")?;
    Ok((id, endpoint_ids))
}

/// Turns a webhook on or off. Returns false when the organisation has no such webhook.
pub async fn set_active(pool: &Pool, organization: &OrganizationId, id: &WebhookId, active: bool) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE webhooks SET active = $3, updated_at = now()
             WHERE id = $1 AND organization_id = $2 AND deleted_at IS NULL",
            &[&id.as_str(), &organization.as_str(), &active],
        )
        .await
        .context("changing a webhook's active state")?;
    Ok(changed == 1)
}

/// Deactivates a webhook on hookline's own initiative and records why.
pub async fn disable(pool: &Pool, id: &WebhookId, reason: &str) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE webhooks SET active = false, disabled_reason = $2, updated_at = now()
             WHERE id = $1 AND active AND deleted_at IS NULL",
            &[&id.as_str(), &reason],
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
            &[&id.as_str(), &organization.as_str()],
        )
        .await
        .context("deleting a webhook")?;
    Ok(changed == 1)
}

/// Where a router looks for webhooks: one organisation's webhooks in one environment.
pub type RoutingScope = (OrganizationId, Environment);

/// Every active, undeleted webhook in each of `scopes`, with its endpoints, in one
/// query. Event-type and filter matching is left to the caller
/// ([`Subscription::matches`]) so the rule lives in one place.
pub async fn routable(pool: &Pool, scopes: &[RoutingScope]) -> Result<HashMap<RoutingScope, Vec<RoutableWebhook>>> {
    let client = pool.get().await?;
    let organizations: Vec<&str> = scopes.iter().map(|(organization, _)| organization.as_str()).collect();
    let environments: Vec<&str> = scopes.iter().map(|(_, environment)| environment.as_str()).collect();
    let rows = client
        .query_typed(
            "SELECT w.id, w.events, w.filter_actor, w.filter_team, array_agg(e.id ORDER BY e.position),
                    w.organization_id, w.environment
             FROM webhooks w JOIN endpoints e ON e.webhook_id = w.id AND e.removed_at IS NULL
             WHERE (w.organization_id, w.environment) IN (SELECT * FROM unnest($1::text[], $2::text[]))
               AND w.active AND w.deleted_at IS NULL
             GROUP BY w.id",
            &[(&organizations, Type::TEXT_ARRAY), (&environments, Type::TEXT_ARRAY)],
        )
        .await
        .context("loading routable webhooks")?;
    let mut found: HashMap<RoutingScope, Vec<RoutableWebhook>> =
        scopes.iter().map(|scope| (scope.clone(), Vec::new())).collect();
    for row in rows {
        let events: Vec<String> = row.get(1);
        let endpoints: Vec<String> = row.get(4);
        let environment: Environment =
            row.get::<_, &str>(6).parse().map_err(|_| Error::Corrupt("webhook environment".into()))?;
        let webhook = RoutableWebhook {
            id: parse_id(row.get(0))?,
            subscription: Subscription {
                selectors: events.iter().filter_map(|e| e.parse().ok()).collect(),
                environment,
                actor: row.get(2),
                team: row.get(3),
            },
            endpoints: endpoints.iter().map(|e| parse_id(e)).collect::<Result<_>>()?,
        };
        found.entry((parse_id(row.get(5))?, environment)).or_default().push(webhook);
    }
    Ok(found)
}

/// The routable webhooks of each scope as last read, kept until a webhook, endpoint or
/// credential changes.
pub type RoutableCache = ConfigCache<RoutingScope, Arc<Vec<RoutableWebhook>>>;

/// [`routable`], answered from `cache` where it can be: only the scopes it does not hold
/// are read, in one query.
pub async fn routable_cached(
    pool: &Pool,
    cache: &RoutableCache,
    scopes: &[RoutingScope],
) -> Result<HashMap<RoutingScope, Arc<Vec<RoutableWebhook>>>> {
    let mut found = HashMap::with_capacity(scopes.len());
    let mut missing = Vec::new();
    for scope in scopes {
        match cache.get(scope) {
            Some(webhooks) => {
                found.insert(scope.clone(), webhooks);
            }
            None => missing.push(scope.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    let version = cache.version();
    for (scope, webhooks) in routable(pool, &missing).await? {
        let webhooks = Arc::new(webhooks);
        cache.insert(version, scope.clone(), webhooks.clone());
        found.insert(scope, webhooks);
    }
    Ok(found)
}

/// A webhook's own retry delays as stored (milliseconds).
pub(crate) fn delays_ms(delays: Option<&[Duration]>) -> Option<Vec<i64>> {
    delays.map(|delays| delays.iter().map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).collect())
}

pub(crate) fn parse_id<T: std::str::FromStr>(value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|err: T::Err| Error::Corrupt(err.to_string()))
}
