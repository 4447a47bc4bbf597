//! Loading what a worker needs to make an attempt: the delivery with its event, read
//! each time, and its endpoint's target (URL, method, headers, credential, signing
//! secrets), which changes rarely and is kept in a [`TargetCache`] until it does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::RetryPolicy;
use hookline_core::credential::CredentialValues;
use hookline_core::crypto::SecretBox;
use hookline_core::delivery::DeliveryStatus;
use hookline_core::environment::Environment;
use hookline_core::ids::{DeliveryId, EndpointId, EventId, OrganizationId, WebhookId};
use hookline_core::lifecycle::Delivery;
use hookline_core::payload::Payload;
use hookline_core::signing::SigningSecret;
use hookline_core::webhook::HttpMethod;
use tokio_postgres::types::Type;

use crate::config_watch::ConfigCache;
use crate::error::{Error, QueryContext as _, Result};
use crate::repo::credentials;
use crate::rows::count;

/// Everything a worker needs to make one attempt.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Where it stands now.
    pub status: DeliveryStatus,
    /// Attempts recorded so far.
    pub attempts: u32,
    /// The event: its id is the `messageId` and `webhook-id`.
    pub event_id: EventId,
    /// Catalog code.
    pub event_type: String,
    /// Live or test.
    pub environment: Environment,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Payload, as published.
    pub data: Payload,
    /// Owner of event and webhook.
    pub organization_id: OrganizationId,
    /// Where and how the delivery is sent; shared by every delivery to the endpoint.
    pub target: Arc<EndpointTarget>,
}

impl JobContext {
    /// The delivery as the lifecycle sees it.
    pub fn delivery(&self) -> Delivery {
        Delivery { status: self.status, attempts: self.attempts, webhook_enabled: self.target.webhook_enabled }
    }
}

/// What every delivery to one endpoint has in common.
#[derive(Debug)]
pub struct EndpointTarget {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// False once the webhook was deactivated or deleted, or the endpoint removed:
    /// waiting jobs are then dropped.
    pub webhook_enabled: bool,
    /// Decrypted signing secret.
    pub signing_secret: SigningSecret,
    /// The secret before the last rotation and when its overlap ends.
    previous_signing_secret: Option<(SigningSecret, DateTime<Utc>)>,
    /// The webhook's own retry policy, when it has one (else the configured default).
    pub retry_policy: Option<RetryPolicy>,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// Endpoint URL.
    pub url: String,
    /// Endpoint method.
    pub method: HttpMethod,
    /// Extra headers configured on the endpoint.
    pub headers: BTreeMap<String, String>,
    /// The endpoint's credential: `None` when it has none, `Some(None)` when it names
    /// one that no longer exists (the attempt must then fail, not go out unauthenticated).
    pub credential: Option<Option<CredentialValues>>,
}

impl EndpointTarget {
    /// The secret before the last rotation, while its overlap lasts at `now`:
    /// deliveries are then signed with both.
    pub fn previous_signing_secret(&self, now: DateTime<Utc>) -> Option<&SigningSecret> {
        self.previous_signing_secret.as_ref().filter(|(_, expires_at)| *expires_at > now).map(|(secret, _)| secret)
    }
}

/// Endpoint targets as last read (secrets decrypted), kept until a webhook, endpoint or
/// credential changes.
pub type TargetCache = ConfigCache<EndpointId, Arc<EndpointTarget>>;

/// Loads several deliveries with their events in one query, and the targets of their
/// endpoints from `cache` or, for those it does not hold, in a second one. Answers for
/// each id in order (`None` for one that does not exist).
pub async fn job_contexts(
    pool: &Pool,
    secrets: &SecretBox,
    cache: &TargetCache,
    ids: &[DeliveryId],
) -> Result<Vec<Option<JobContext>>> {
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            "SELECT d.id, d.status, d.attempt_count, d.organization_id, d.endpoint_id,
                    e.id AS event_id, e.event_type, e.environment, e.occurred_at, e.data
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id = ANY($1::text[])",
            &[(&ids, Type::TEXT_ARRAY)],
        )
        .await
        .context("loading deliveries")?;
    let mut targets: HashMap<EndpointId, Arc<EndpointTarget>> = HashMap::new();
    let mut missing = HashSet::new();
    for row in &rows {
        let endpoint: EndpointId = row.try_get("endpoint_id")?;
        if targets.contains_key(&endpoint) || missing.contains(&endpoint) {
            continue;
        }
        match cache.get(&endpoint) {
            Some(target) => {
                targets.insert(endpoint, target);
            }
            None => {
                missing.insert(endpoint);
            }
        }
    }
    if !missing.is_empty() {
        let version = cache.version();
        let missing: Vec<EndpointId> = missing.into_iter().collect();
        for target in endpoint_targets(&client, secrets, &missing).await? {
            let target = Arc::new(target);
            cache.insert(version, target.endpoint_id.clone(), target.clone());
            targets.insert(target.endpoint_id.clone(), target);
        }
    }
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let context = job_context_from(&row, &targets)?;
        found.insert(context.delivery_id.clone(), context);
    }
    // The same id twice gets the same context twice.
    Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
}

fn job_context_from(
    row: &tokio_postgres::Row,
    targets: &HashMap<EndpointId, Arc<EndpointTarget>>,
) -> Result<JobContext> {
    let id: DeliveryId = row.try_get("id")?;
    let endpoint: EndpointId = row.try_get("endpoint_id")?;
    let target = targets.get(&endpoint).cloned();
    Ok(JobContext {
        status: row.try_get("status")?,
        attempts: count(row, "attempt_count")?,
        organization_id: row.try_get("organization_id")?,
        target: target.ok_or_else(|| Error::Corrupt(format!("delivery {id}: its endpoint does not exist")))?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        environment: row.try_get("environment")?,
        occurred_at: row.try_get("occurred_at")?,
        data: row.try_get("data")?,
        delivery_id: id,
    })
}

/// Reads and decrypts the targets of `endpoints` in one query.
async fn endpoint_targets(
    client: &tokio_postgres::Client,
    secrets: &SecretBox,
    endpoints: &[EndpointId],
) -> Result<Vec<EndpointTarget>> {
    let rows = client
        .query_typed(
            "SELECT ep.id, w.id AS webhook_id, (w.active AND w.deleted_at IS NULL AND ep.removed_at IS NULL) AS enabled,
                    w.signing_secret, w.previous_signing_secret, w.previous_secret_expires_at, w.retry_delays_ms,
                    ep.url, ep.method, ep.headers, ep.credential_id IS NOT NULL AS has_credential,
                    c.secret AS credential
             FROM endpoints ep
             JOIN webhooks w ON w.id = ep.webhook_id
             LEFT JOIN credentials c ON c.id = ep.credential_id AND c.deleted_at IS NULL
             WHERE ep.id = ANY($1::text[])",
            &[(&endpoints, Type::TEXT_ARRAY)],
        )
        .await
        .context("loading endpoints")?;
    rows.iter().map(|row| endpoint_target_from(row, secrets)).collect()
}

fn endpoint_target_from(row: &tokio_postgres::Row, secrets: &SecretBox) -> Result<EndpointTarget> {
    let id: EndpointId = row.try_get("id")?;
    let corrupt = |what: &str| Error::Corrupt(format!("endpoint {id}: {what}"));
    let open_secret = |sealed: &[u8], what: &str| -> Result<SigningSecret> {
        SigningSecret::parse(&secrets.open_string(sealed)?).map_err(|_| corrupt(what))
    };
    let sealed_secret: Vec<u8> = row.try_get("signing_secret")?;
    let previous: Option<Vec<u8>> = row.try_get("previous_signing_secret")?;
    let previous_expires_at: Option<DateTime<Utc>> = row.try_get("previous_secret_expires_at")?;
    let headers: serde_json::Value = row.try_get("headers")?;
    let credential: Option<Vec<u8>> = row.try_get("credential")?;
    Ok(EndpointTarget {
        webhook_id: row.try_get("webhook_id")?,
        webhook_enabled: row.try_get("enabled")?,
        signing_secret: open_secret(&sealed_secret, "secret")?,
        previous_signing_secret: match (previous, previous_expires_at) {
            (Some(sealed), Some(expires_at)) => Some((open_secret(&sealed, "previous secret")?, expires_at)),
            _ => None,
        },
        retry_policy: row.try_get("retry_delays_ms")?,
        url: row.try_get("url")?,
        method: row.try_get("method")?,
        headers: serde_json::from_value(headers).map_err(|_| corrupt("headers"))?,
        credential: if row.try_get("has_credential")? {
            Some(credential.map(|sealed| credentials::open(secrets, &sealed)).transpose()?)
        } else {
            None
        },
        endpoint_id: id,
    })
}
