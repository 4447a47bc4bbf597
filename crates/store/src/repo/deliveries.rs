//! Deliveries (one per event × endpoint) and their attempts.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::delivery::{DeliveryStatus, ErrorKind};
use hookline_core::environment::Environment;
use hookline_core::ids::{DeliveryId, EndpointId, EventId, OrganizationId, WebhookId};
use tokio_postgres::types::Type;

use crate::error::{Error, QueryContext as _, Result};
use crate::repo::webhooks::parse_id;

/// Where one event goes: the webhook and endpoint of each delivery to create.
pub type EventTargets = (EventId, OrganizationId, Vec<(WebhookId, EndpointId)>);

/// Creates one delivery per target for an event (targets that already have one are
/// skipped) and marks the event routed, in one statement. Returns the deliveries created
/// by this call; [`Error::UnknownEvent`] when the organisation has no such event.
///
/// Marking the event routed before its jobs are published is safe: a delivery created
/// but never published is pending and unattempted, which the reconciliation sweep
/// republishes (as does the router itself when the route message comes back).
pub async fn create_for_event(
    pool: &Pool,
    event: &EventId,
    organization: &OrganizationId,
    targets: &[(WebhookId, EndpointId)],
) -> Result<Vec<DeliveryId>> {
    let mut created = create_for_events(pool, &[(event.clone(), organization.clone(), targets.to_vec())]).await?;
    created.pop().flatten().map(|routed| routed.ids()).ok_or_else(|| Error::UnknownEvent(event.to_string()))
}

/// Event data at most this large (as JSON text) is returned with the deliveries created
/// for it, for the router to send with their jobs; larger data is left for the worker
/// to read, so jobs messages stay small. (Data stored compressed, or larger than this,
/// is not even turned into text: only its text would tell how large it is.)
pub const SNAPSHOT_MAX_BYTES: i32 = 8 * 1024;

/// What the first attempt of a new delivery needs of its event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSnapshot {
    /// Catalog code.
    pub event_type: String,
    /// Live or test.
    pub environment: Environment,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The event's data as JSON text.
    pub data: String,
}

/// What routing one event created.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// The deliveries this call created, each with its endpoint.
    pub deliveries: Vec<(DeliveryId, EndpointId)>,
    /// The event as stored, when its data is at most [`SNAPSHOT_MAX_BYTES`].
    pub event: Option<Arc<EventSnapshot>>,
}

impl Routed {
    /// The ids of the deliveries created.
    pub fn ids(&self) -> Vec<DeliveryId> {
        self.deliveries.iter().map(|(id, _)| id.clone()).collect()
    }
}

/// [`create_for_event`] for several events in one statement (one commit); answers for
/// each event in order: what was created, or `None` when its organisation has no such
/// event stored.
///
/// Deliveries are inserted only for events the statement found (and marked routed)
/// under the organisation their route message names, so a route message can neither
/// make deliveries for an event that does not exist (which the foreign key would
/// refuse, failing the whole batch) nor send one organisation's event to another's
/// webhooks (which no foreign key checks). The event row the statement updates anyway
/// also gives what a first attempt needs of it ([`Routed::event`]).
pub async fn create_for_events(pool: &Pool, events: &[EventTargets]) -> Result<Vec<Option<Routed>>> {
    let mut ids = Vec::new();
    let mut event_ids = Vec::new();
    let mut endpoints = Vec::new();
    let mut webhooks = Vec::new();
    let mut organizations = Vec::new();
    for (event, organization, targets) in events {
        for (webhook, endpoint) in targets {
            ids.push(DeliveryId::generate().to_string());
            event_ids.push(event.as_str());
            endpoints.push(endpoint.as_str());
            webhooks.push(webhook.as_str());
            organizations.push(organization.as_str());
        }
    }
    let routed: Vec<&str> = events.iter().map(|(event, _, _)| event.as_str()).collect();
    let routed_organizations: Vec<&str> = events.iter().map(|(_, organization, _)| organization.as_str()).collect();
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            "WITH routed AS (
                 UPDATE events e SET routed_at = coalesce(e.routed_at, now())
                 FROM unnest($6::text[], $7::text[]) AS r (id, organization_id)
                 WHERE e.id = r.id AND e.organization_id = r.organization_id
                 RETURNING e.id, e.organization_id, e.event_type, e.environment, e.occurred_at,
                     CASE WHEN pg_column_compression(e.data) IS NULL AND pg_column_size(e.data) <= $8
                         THEN e.data::text END AS data),
             created AS (
                 INSERT INTO deliveries (id, event_id, endpoint_id, webhook_id, organization_id)
                 SELECT d.id, d.event_id, d.endpoint_id, d.webhook_id, d.organization_id
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                     AS d (id, event_id, endpoint_id, webhook_id, organization_id)
                 JOIN routed r ON r.id = d.event_id AND r.organization_id = d.organization_id
                 ON CONFLICT (event_id, endpoint_id) DO NOTHING
                 RETURNING id, event_id, endpoint_id)
             SELECT r.id, r.organization_id, c.id, c.endpoint_id, r.event_type, r.environment, r.occurred_at,
                 CASE WHEN octet_length(r.data) <= $8 THEN r.data END
             FROM routed r LEFT JOIN created c ON c.event_id = r.id",
            &[
                (&ids, Type::TEXT_ARRAY),
                (&event_ids, Type::TEXT_ARRAY),
                (&endpoints, Type::TEXT_ARRAY),
                (&webhooks, Type::TEXT_ARRAY),
                (&organizations, Type::TEXT_ARRAY),
                (&routed, Type::TEXT_ARRAY),
                (&routed_organizations, Type::TEXT_ARRAY),
                (&SNAPSHOT_MAX_BYTES, Type::INT4),
            ],
        )
        .await
        .context("creating deliveries")?;
    let mut found: HashMap<(String, String), Routed> = HashMap::new();
    for row in rows {
        let routed = match found.entry((row.get(0), row.get(1))) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(Routed { deliveries: Vec::new(), event: snapshot_from(&row)? }),
        };
        if let (Some(id), Some(endpoint)) = (row.get::<_, Option<&str>>(2), row.get::<_, Option<&str>>(3)) {
            routed.deliveries.push((parse_id(id)?, parse_id(endpoint)?));
        }
    }
    // The same event twice in one call: the first answer has what was created.
    Ok(events
        .iter()
        .map(|(event, organization, _)| {
            let routed = found.get_mut(&(event.to_string(), organization.to_string()))?;
            Some(Routed { deliveries: std::mem::take(&mut routed.deliveries), event: routed.event.clone() })
        })
        .collect())
}

/// The event columns of a row of [`create_for_events`]' statement (columns 4 to 7).
fn snapshot_from(row: &tokio_postgres::Row) -> Result<Option<Arc<EventSnapshot>>> {
    let Some(data) = row.get::<_, Option<String>>(7) else { return Ok(None) };
    let environment: &str = row.get(5);
    let environment = environment.parse().map_err(|_| Error::Corrupt(format!("event environment `{environment}`")))?;
    Ok(Some(Arc::new(EventSnapshot { event_type: row.get(4), environment, occurred_at: row.get(6), data })))
}

/// Deliveries of an event that no worker has attempted yet: what a router that was
/// interrupted before publishing must publish again.
pub async fn unattempted_for_event(pool: &Pool, event: &EventId) -> Result<Vec<DeliveryId>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id FROM deliveries WHERE event_id = $1 AND status = 'pending' AND attempt_count = 0 ORDER BY id",
            &[&event.as_str()],
        )
        .await
        .context("loading unattempted deliveries")?;
    rows.into_iter().map(|row| parse_id(row.get(0))).collect()
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// From 1.
    pub attempt_number: u32,
    /// Made on an operator's request rather than by the schedule.
    pub manual: bool,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// How long until the response (or the failure).
    pub duration_ms: u32,
    /// Method sent.
    pub request_method: String,
    /// URL sent to.
    pub request_url: String,
    /// Headers sent, secrets redacted.
    pub request_headers: BTreeMap<String, String>,
    /// Receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// Receiver's headers, if it answered.
    pub response_headers: Option<BTreeMap<String, String>>,
    /// The first bytes of the receiver's body (lossy UTF-8).
    pub response_body: Option<String>,
    /// Whether the body was cut at the limit.
    pub response_body_truncated: bool,
    /// Why it failed; `None` when it succeeded.
    pub error_kind: Option<ErrorKind>,
    /// Details of the failure.
    pub error_message: Option<String>,
}

impl AttemptRecord {
    /// Whether this attempt delivered the event.
    pub fn succeeded(&self) -> bool {
        self.error_kind.is_none()
    }
}

/// Records an attempt and updates its delivery in one statement. Returns false when
/// this attempt was already recorded (a duplicate job), in which case nothing changes.
pub async fn record_attempt(pool: &Pool, attempt: &AttemptRecord) -> Result<bool> {
    Ok(record_attempts(pool, std::slice::from_ref(attempt)).await?.pop().unwrap_or(false))
}

/// [`record_attempt`] for several attempts, in one statement (one commit) for each
/// attempt of a distinct delivery; answers for each attempt in order.
pub async fn record_attempts(pool: &Pool, attempts: &[AttemptRecord]) -> Result<Vec<bool>> {
    let client = pool.get().await?;
    let mut recorded = vec![false; attempts.len()];
    // An UPDATE changes a row once however many input rows match it, so two attempts of
    // one delivery go to separate statements.
    let mut rest: Vec<usize> = (0..attempts.len()).collect();
    while !rest.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let (now, later): (Vec<usize>, Vec<usize>) =
            rest.into_iter().partition(|&i| seen.insert(attempts[i].delivery_id.as_str()));
        let chosen: Vec<&AttemptRecord> = now.iter().map(|&i| &attempts[i]).collect();
        let inserted = insert_attempts(&client, &chosen).await?;
        for (i, inserted) in now.into_iter().zip(inserted) {
            recorded[i] = inserted;
        }
        rest = later;
    }
    Ok(recorded)
}

/// One statement recording attempts of distinct deliveries, then (only when needed) the
/// failure-count reset of the endpoints that answered.
async fn insert_attempts(client: &deadpool_postgres::Client, attempts: &[&AttemptRecord]) -> Result<Vec<bool>> {
    let to_json = |value: &BTreeMap<String, String>| serde_json::to_value(value).unwrap_or_default();
    let column = |get: fn(&AttemptRecord) -> &str| attempts.iter().map(|a| get(a)).collect::<Vec<_>>();
    let delivery_ids = column(|a| a.delivery_id.as_str());
    let attempt_numbers =
        attempts.iter().map(|a| i32::try_from(a.attempt_number).unwrap_or(i32::MAX)).collect::<Vec<_>>();
    let triggers = column(|a| if a.manual { "manual" } else { "scheduled" });
    let started_at = attempts.iter().map(|a| a.started_at).collect::<Vec<_>>();
    let durations = attempts.iter().map(|a| i32::try_from(a.duration_ms).unwrap_or(i32::MAX)).collect::<Vec<_>>();
    let methods = column(|a| a.request_method.as_str());
    let urls = column(|a| a.request_url.as_str());
    let request_headers = attempts.iter().map(|a| to_json(&a.request_headers)).collect::<Vec<_>>();
    let status_codes = attempts.iter().map(|a| a.status_code.map(i32::from)).collect::<Vec<_>>();
    let response_headers = attempts.iter().map(|a| a.response_headers.as_ref().map(to_json)).collect::<Vec<_>>();
    let response_bodies = attempts.iter().map(|a| a.response_body.as_deref()).collect::<Vec<_>>();
    let truncated = attempts.iter().map(|a| a.response_body_truncated).collect::<Vec<_>>();
    let error_kinds = attempts.iter().map(|a| a.error_kind.map(|k| k.as_str())).collect::<Vec<_>>();
    let error_messages = attempts.iter().map(|a| a.error_message.as_deref()).collect::<Vec<_>>();
    let rows = client
        .query_typed(
            "WITH a AS (
                 INSERT INTO attempts (delivery_id, attempt_number, trigger, started_at, duration_ms, request_method,
                     request_url, request_headers, status_code, response_headers, response_body,
                     response_body_truncated, error_kind, error_message)
                 SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::int[], $6::text[],
                     $7::text[], $8::jsonb[], $9::int[], $10::jsonb[], $11::text[], $12::bool[], $13::text[], $14::text[])
                 ON CONFLICT (delivery_id, attempt_number) DO NOTHING
                 RETURNING delivery_id, attempt_number, status_code, error_kind)
             UPDATE deliveries d SET
                 attempt_count = GREATEST(d.attempt_count, a.attempt_number),
                 last_status_code = a.status_code,
                 last_error_kind = a.error_kind,
                 status = CASE WHEN a.error_kind IS NULL THEN 'succeeded' ELSE d.status END,
                 completed_at = CASE WHEN a.error_kind IS NULL THEN now() ELSE d.completed_at END,
                 next_attempt_at = NULL,
                 updated_at = now()
             FROM a WHERE d.id = a.delivery_id
             RETURNING d.id, d.endpoint_id, a.error_kind IS NULL,
                       (SELECT e.consecutive_failures FROM endpoints e WHERE e.id = d.endpoint_id)",
            &[
                (&delivery_ids, Type::TEXT_ARRAY),
                (&attempt_numbers, Type::INT4_ARRAY),
                (&triggers, Type::TEXT_ARRAY),
                (&started_at, Type::TIMESTAMPTZ_ARRAY),
                (&durations, Type::INT4_ARRAY),
                (&methods, Type::TEXT_ARRAY),
                (&urls, Type::TEXT_ARRAY),
                (&request_headers, Type::JSONB_ARRAY),
                (&status_codes, Type::INT4_ARRAY),
                (&response_headers, Type::JSONB_ARRAY),
                (&response_bodies, Type::TEXT_ARRAY),
                (&truncated, Type::BOOL_ARRAY),
                (&error_kinds, Type::TEXT_ARRAY),
                (&error_messages, Type::TEXT_ARRAY),
            ],
        )
        .await
        .context("recording attempts")?;
    // A success resets the endpoint's run of failures; most of the time there is none.
    let to_reset: Vec<String> = rows
        .iter()
        .filter(|row| row.get::<_, bool>(2) && row.get::<_, Option<i32>>(3).unwrap_or_default() > 0)
        .map(|row| row.get(1))
        .collect();
    if !to_reset.is_empty() {
        // Prepared once per connection: under a recovering endpoint this runs often.
        let reset = client
            .prepare_cached(
                "UPDATE endpoints SET consecutive_failures = 0 WHERE id = ANY($1::text[]) AND consecutive_failures > 0",
            )
            .await
            .context("preparing the failure count reset")?;
        client.execute(&reset, &[&to_reset]).await.context("resetting endpoints' failure counts")?;
    }
    let inserted: std::collections::HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
    Ok(attempts.iter().map(|a| inserted.contains(a.delivery_id.as_str())).collect())
}

/// What `record_final_failure` found out about the delivery's endpoint.
#[derive(Debug, Clone)]
pub struct EndpointFailures {
    /// Deliveries in a row that failed for good, this one included.
    pub consecutive: u32,
    /// The endpoint's webhook.
    pub webhook_id: WebhookId,
    /// The endpoint's URL.
    pub url: String,
    /// Owner.
    pub organization_id: OrganizationId,
    /// The webhook's environment.
    pub environment: Environment,
}

/// Counts a delivery that failed for good against its endpoint.
pub async fn record_final_failure(pool: &Pool, id: &DeliveryId) -> Result<Option<EndpointFailures>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE endpoints ep SET consecutive_failures = ep.consecutive_failures + 1
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.id = $1 AND ep.id = d.endpoint_id
             RETURNING ep.consecutive_failures, w.id, ep.url, w.organization_id, w.environment",
            &[&id.as_str()],
        )
        .await
        .context("counting an endpoint failure")?;
    row.map(|row| {
        let environment: String = row.get(4);
        Ok(EndpointFailures {
            consecutive: u32::try_from(row.get::<_, i32>(0)).unwrap_or_default(),
            webhook_id: parse_id(row.get(1))?,
            url: row.get(2),
            organization_id: parse_id(row.get(3))?,
            environment: environment.parse().map_err(|_| Error::Corrupt("environment".into()))?,
        })
    })
    .transpose()
}

/// What the scheduler needs to decide on a failed attempt.
#[derive(Debug, Clone)]
pub struct RetryTarget {
    /// Where the delivery stands.
    pub status: DeliveryStatus,
    /// Attempts recorded so far.
    pub attempt_count: u32,
    /// The webhook's own retry delays, overriding the configured ones.
    pub retry_delays_ms: Option<Vec<i64>>,
    /// False once the webhook was deactivated or deleted.
    pub webhook_enabled: bool,
    /// The delivered event's id, as stored (for spans and logs).
    pub event_id: String,
    /// The webhook's id, as stored (for spans and logs).
    pub webhook_id: String,
}

/// Loads what the scheduler needs about a delivery.
pub async fn retry_target(pool: &Pool, id: &DeliveryId) -> Result<Option<RetryTarget>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT d.status, d.attempt_count, w.retry_delays_ms, (w.active AND w.deleted_at IS NULL),
                    d.event_id, d.webhook_id
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = $1",
            &[&id.as_str()],
        )
        .await
        .context("loading a delivery for retry")?;
    row.map(|row| {
        let status: String = row.get(0);
        let attempt_count: i32 = row.get(1);
        Ok(RetryTarget {
            status: DeliveryStatus::parse(&status).ok_or_else(|| Error::Corrupt(format!("delivery {id}: status")))?,
            attempt_count: u32::try_from(attempt_count).unwrap_or_default(),
            retry_delays_ms: row.get(2),
            webhook_enabled: row.get(3),
            event_id: row.get(4),
            webhook_id: row.get(5),
        })
    })
    .transpose()
}

/// Marks a delivery as waiting for its next attempt at `next_attempt_at`.
pub async fn schedule_retry(pool: &Pool, id: &DeliveryId, next_attempt_at: DateTime<Utc>) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE deliveries SET status = 'retrying', next_attempt_at = $2, updated_at = now()
             WHERE id = $1 AND status IN ('pending', 'retrying')",
            &[&id.as_str(), &next_attempt_at],
        )
        .await
        .context("scheduling a retry")?;
    Ok(changed == 1)
}

/// Marks a delivery as failed for good.
pub async fn mark_failed(pool: &Pool, id: &DeliveryId) -> Result<bool> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, completed_at = now(), updated_at = now()
             WHERE id = $1 AND status IN ('pending', 'retrying')",
            &[&id.as_str()],
        )
        .await
        .context("marking a delivery failed")?;
    Ok(changed == 1)
}

/// An open delivery whose next step is overdue: its message was probably lost.
#[derive(Debug, Clone)]
pub struct Overdue {
    /// The delivery.
    pub id: DeliveryId,
    /// Pending or retrying.
    pub status: DeliveryStatus,
    /// Attempts recorded so far.
    pub attempt_count: u32,
    /// Error kind of the last attempt, if any failed.
    pub last_error_kind: Option<ErrorKind>,
}

/// Claims up to `limit` open deliveries that have made no progress for `after`, and
/// pushes their deadline forward so the next sweep (of this or another scheduler)
/// does not claim them again at once.
pub async fn claim_overdue(pool: &Pool, after: std::time::Duration, limit: i64) -> Result<Vec<Overdue>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE deliveries d SET updated_at = now(),
                 next_attempt_at = CASE WHEN d.status = 'retrying' THEN now() ELSE d.next_attempt_at END
             WHERE d.id IN (
                 SELECT id FROM deliveries
                 WHERE status IN ('pending', 'retrying')
                   AND updated_at < now() - make_interval(secs => $1)
                   AND (next_attempt_at IS NULL OR next_attempt_at < now() - make_interval(secs => $1))
                 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.status, d.attempt_count, d.last_error_kind",
            &[&after.as_secs_f64(), &limit],
        )
        .await
        .context("claiming overdue deliveries")?;
    rows.into_iter()
        .map(|row| {
            let status: String = row.get(1);
            let attempt_count: i32 = row.get(2);
            let kind: Option<String> = row.get(3);
            Ok(Overdue {
                id: parse_id(row.get(0))?,
                status: DeliveryStatus::parse(&status).ok_or_else(|| Error::Corrupt("delivery status".into()))?,
                attempt_count: u32::try_from(attempt_count).unwrap_or_default(),
                last_error_kind: kind.as_deref().and_then(ErrorKind::parse),
            })
        })
        .collect()
}
