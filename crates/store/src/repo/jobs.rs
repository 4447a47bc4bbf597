//! Loading what a worker needs to make an attempt: the delivery with its event, read
//! each time, and its endpoint's target (URL, method, headers, credential, signing
//! secrets), which changes rarely and is kept in a [`TargetCache`] until it does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::credential::CredentialValues;
use hookline_core::crypto::SecretBox;
use hookline_core::delivery::DeliveryStatus;
use hookline_core::environment::Environment;
use hookline_core::ids::{DeliveryId, EndpointId, EventId, OrganizationId, WebhookId};
use hookline_core::signing::SigningSecret;
use hookline_core::webhook::HttpMethod;
use tokio_postgres::types::Type;

use crate::config_watch::ConfigCache;
use crate::error::{Error, QueryContext as _, Result};
use crate::repo::credentials;
use crate::repo::webhooks::parse_id;

/// Everything a worker needs to make one attempt.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Where it stands now.
    pub status: DeliveryStatus,
    /// Attempts recorded so far.
    pub attempt_count: u32,
    /// The event: its id is the `messageId` and `webhook-id`.
    pub event_id: EventId,
    /// Catalog code.
    pub event_type: String,
    /// Live or test.
    pub environment: Environment,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Payload.
    pub data: serde_json::Value,
    /// Owner of event and webhook.
    pub organization_id: OrganizationId,
    /// Where and how the delivery is sent; shared by every delivery to the endpoint.
    pub target: Arc<EndpointTarget>,
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
    let wanted: Vec<&str> = ids.iter().map(DeliveryId::as_str).collect();
    let rows = client
        .query_typed(
            "SELECT d.id, d.status, d.attempt_count, d.organization_id, d.endpoint_id,
                    e.id, e.event_type, e.environment, e.occurred_at, e.data
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.id = ANY($1::text[])",
            &[(&wanted, Type::TEXT_ARRAY)],
        )
        .await
        .context("loading deliveries")?;
    let mut targets: HashMap<EndpointId, Arc<EndpointTarget>> = HashMap::new();
    let mut missing = HashSet::new();
    for row in &rows {
        let endpoint: EndpointId = parse_id(row.get(4))?;
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
    let id: DeliveryId = parse_id(row.get(0))?;
    let corrupt = |what: &str| Error::Corrupt(format!("delivery {id}: {what}"));
    let status: String = row.get(1);
    let attempt_count: i32 = row.get(2);
    let endpoint: EndpointId = parse_id(row.get(4))?;
    let environment: String = row.get(7);
    Ok(JobContext {
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attempt_count: u32::try_from(attempt_count).map_err(|_| corrupt("attempt count"))?,
        organization_id: parse_id(row.get(3))?,
        target: targets.get(&endpoint).cloned().ok_or_else(|| corrupt("its endpoint does not exist"))?,
        event_id: parse_id(row.get(5))?,
        event_type: row.get(6),
        environment: environment.parse().map_err(|_| corrupt("environment"))?,
        occurred_at: row.get(8),
        data: row.get(9),
        delivery_id: id,
    })
}

/// Reads and decrypts the targets of `endpoints` in one query.
async fn endpoint_targets(
    client: &tokio_postgres::Client,
    secrets: &SecretBox,
    endpoints: &[EndpointId],
) -> Result<Vec<EndpointTarget>> {
    let wanted: Vec<&str> = endpoints.iter().map(EndpointId::as_str).collect();
    let rows = client
        .query_typed(
            "SELECT ep.id, w.id, (w.active AND w.deleted_at IS NULL AND ep.removed_at IS NULL), w.signing_secret,
                    w.previous_signing_secret, w.previous_secret_expires_at,
                    ep.url, ep.method, ep.headers, ep.credential_id IS NOT NULL, c.secret
             FROM endpoints ep
             JOIN webhooks w ON w.id = ep.webhook_id
             LEFT JOIN credentials c ON c.id = ep.credential_id AND c.deleted_at IS NULL
             WHERE ep.id = ANY($1::text[])",
            &[(&wanted, Type::TEXT_ARRAY)],
        )
        .await
        .context("loading endpoints")?;
    rows.iter().map(|row| endpoint_target_from(row, secrets)).collect()
}

fn endpoint_target_from(row: &tokio_postgres::Row, secrets: &SecretBox) -> Result<EndpointTarget> {
    let id: EndpointId = parse_id(row.get(0))?;
    let corrupt = |what: &str| Error::Corrupt(format!("endpoint {id}: {what}"));
    let open_secret = |sealed: &[u8], what: &str| -> Result<SigningSecret> {
        SigningSecret::parse(&secrets.open_string(sealed)?).map_err(|_| corrupt(what))
    };
    let sealed_secret: Vec<u8> = row.get(3);
    let previous: Option<Vec<u8>> = row.get(4);
    let previous_expires_at: Option<DateTime<Utc>> = row.get(5);
    let method: String = row.get(7);
    let headers: serde_json::Value = row.get(8);
    let credential: Option<Vec<u8>> = row.get(10);
    Ok(EndpointTarget {
        webhook_id: parse_id(row.get(1))?,
        webhook_enabled: row.get(2),
        signing_secret: open_secret(&sealed_secret, "secret")?,
        previous_signing_secret: match (previous, previous_expires_at) {
            (Some(sealed), Some(expires_at)) => Some((open_secret(&sealed, "previous secret")?, expires_at)),
            _ => None,
        },
        url: row.get(6),
        method: method.parse().map_err(|_| corrupt("method"))?,
        headers: serde_json::from_value(headers).map_err(|_| corrupt("headers"))?,
        credential: if row.get::<_, bool>(9) {
            Some(credential.map(|sealed| credentials::open(secrets, &sealed)).transpose()?)
        } else {
            None
        },
        endpoint_id: id,
    })
}
