//! Deliveries (one per event × endpoint): created by routing, settled by the lifecycle's
//! transitions (with the attempt that caused them), resumed by the reconciliation sweep.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::delivery::{DeliveryStatus, ErrorKind, Trigger};
use hookline_core::environment::Environment;
use hookline_core::ids::{DeliveryId, EndpointId, EventId, OrganizationId, WebhookId};
use hookline_core::lifecycle::Transition;
use tokio_postgres::types::Type;

use crate::error::{Error, QueryContext as _, Result};
use crate::rows::count;

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

/// Marks the events routed and inserts the deliveries of those it found under the
/// organisation named, returning what the first attempts need of each event.
///
/// `$9` and `$10` are the least and greatest of the event ids: with them the planner
/// looks only at the daily partitions of events the batch can be in (a join alone
/// would have it plan every partition, on every statement).
const CREATE_DELIVERIES: &str = "WITH routed AS (
                 UPDATE events e SET routed_at = coalesce(e.routed_at, now())
                 FROM unnest($6::text[], $7::text[]) AS r (id, organization_id)
                 WHERE e.id = r.id AND e.organization_id = r.organization_id AND e.id BETWEEN $9 AND $10
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
             SELECT r.id AS event_id, r.organization_id, c.id AS delivery_id, c.endpoint_id, r.event_type,
                 r.environment, r.occurred_at, CASE WHEN octet_length(r.data) <= $8 THEN r.data END AS data
             FROM routed r LEFT JOIN created c ON c.event_id = r.id";

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
    let targets = events.iter().flat_map(|(event, organization, targets)| {
        targets.iter().map(move |(webhook, endpoint)| (event, organization, webhook, endpoint))
    });
    let (mut ids, mut event_ids, mut endpoints, mut webhooks, mut organizations) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (event, organization, webhook, endpoint) in targets {
        ids.push(DeliveryId::generate());
        event_ids.push(event);
        endpoints.push(endpoint);
        webhooks.push(webhook);
        organizations.push(organization);
    }
    let routed: Vec<&EventId> = events.iter().map(|(event, _, _)| event).collect();
    let routed_organizations: Vec<&OrganizationId> = events.iter().map(|(_, organization, _)| organization).collect();
    let (Some(least), Some(greatest)) = (routed.iter().min(), routed.iter().max()) else {
        return Ok(Vec::new());
    };
    let client = pool.get().await?;
    let rows = client
        .query_typed(
            CREATE_DELIVERIES,
            &[
                (&ids, Type::TEXT_ARRAY),
                (&event_ids, Type::TEXT_ARRAY),
                (&endpoints, Type::TEXT_ARRAY),
                (&webhooks, Type::TEXT_ARRAY),
                (&organizations, Type::TEXT_ARRAY),
                (&routed, Type::TEXT_ARRAY),
                (&routed_organizations, Type::TEXT_ARRAY),
                (&SNAPSHOT_MAX_BYTES, Type::INT4),
                (&least, Type::TEXT),
                (&greatest, Type::TEXT),
            ],
        )
        .await
        .context("creating deliveries")?;
    let found = routed_by_event(&rows)?;
    answer_each(events, found)
}

/// What the statement created, by event (and the organisation it was routed under).
fn routed_by_event(rows: &[tokio_postgres::Row]) -> Result<HashMap<(EventId, OrganizationId), Routed>> {
    let mut found: HashMap<(EventId, OrganizationId), Routed> = HashMap::new();
    for row in rows {
        let key = (row.try_get("event_id")?, row.try_get("organization_id")?);
        let routed = match found.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(Routed { deliveries: Vec::new(), event: snapshot_from(row)? }),
        };
        let created: Option<DeliveryId> = row.try_get("delivery_id")?;
        if let Some(delivery) = created {
            routed.deliveries.push((delivery, row.try_get("endpoint_id")?));
        }
    }
    Ok(found)
}

/// Each event's answer, in order. The same event twice in one call: the first answer
/// has what was created.
fn answer_each(
    events: &[EventTargets],
    mut found: HashMap<(EventId, OrganizationId), Routed>,
) -> Result<Vec<Option<Routed>>> {
    Ok(events
        .iter()
        .map(|(event, organization, _)| {
            let routed = found.get_mut(&(event.clone(), organization.clone()))?;
            Some(Routed { deliveries: std::mem::take(&mut routed.deliveries), event: routed.event.clone() })
        })
        .collect())
}

/// The event columns of a row of [`create_for_events`]' statement.
fn snapshot_from(row: &tokio_postgres::Row) -> Result<Option<Arc<EventSnapshot>>> {
    let Some(data) = row.try_get::<_, Option<String>>("data")? else { return Ok(None) };
    Ok(Some(Arc::new(EventSnapshot {
        event_type: row.try_get("event_type")?,
        environment: row.try_get("environment")?,
        occurred_at: row.try_get("occurred_at")?,
        data,
    })))
}

/// Deliveries of an event that no worker has attempted yet: what a router that was
/// interrupted before publishing must publish again.
pub async fn unattempted_for_event(pool: &Pool, event: &EventId) -> Result<Vec<DeliveryId>> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT id FROM deliveries WHERE event_id = $1 AND open AND attempt_count = 0 ORDER BY id", &[event])
        .await
        .context("loading unattempted deliveries")?;
    rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// From 1.
    pub attempt_number: u32,
    /// Asked for by the schedule or by an operator.
    pub trigger: Trigger,
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

/// A transition of one delivery to persist, with the attempt that caused it (none when
/// a delivery is closed without one).
#[derive(Debug, Clone)]
pub struct Settle {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The attempts recorded when the transition was decided: it is persisted only if
    /// nothing has changed the delivery since.
    pub attempts_before: u32,
    /// What the lifecycle decided.
    pub transition: Transition,
    /// The attempt that led to it.
    pub attempt: Option<AttemptRecord>,
}

/// What persisting a [`Settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    /// Whether the attempt was recorded and the transition applied. False when another
    /// worker recorded this attempt first, or the delivery changed since the decision:
    /// nothing changed, and nothing should follow.
    pub applied: bool,
    /// For a final failure: the endpoint's deliveries in a row that have failed for good,
    /// this one included (what [`hookline_core::lifecycle::disable`] counts).
    pub consecutive_failures: u32,
}

/// Persists each transition with its attempt, in one statement (one commit) for the
/// settles of distinct deliveries; answers for each in order.
///
/// An endpoint's run of final failures is counted here too: reset by a success, raised
/// by a final failure (in a second statement, only when there is something to change).
pub async fn settle(pool: &Pool, settles: &[Settle]) -> Result<Vec<Settled>> {
    let client = pool.get().await?;
    let mut settled = vec![Settled::default(); settles.len()];
    // An UPDATE changes a row once however many input rows match it, so two settles of
    // one delivery go to separate statements.
    let mut rest: Vec<usize> = (0..settles.len()).collect();
    while !rest.is_empty() {
        let mut seen = HashSet::new();
        let (now, later): (Vec<usize>, Vec<usize>) =
            rest.into_iter().partition(|&i| seen.insert(&settles[i].delivery_id));
        let chosen: Vec<&Settle> = now.iter().map(|&i| &settles[i]).collect();
        for (i, answer) in now.into_iter().zip(settle_distinct(&client, &chosen).await?) {
            settled[i] = answer;
        }
        rest = later;
    }
    Ok(settled)
}

/// The columns of a settle statement, one vector per column.
#[derive(Default)]
struct Columns<'a> {
    delivery_ids: Vec<&'a DeliveryId>,
    attempts_before: Vec<i32>,
    statuses: Vec<Option<DeliveryStatus>>,
    next_attempt_at: Vec<Option<DateTime<Utc>>>,
    completes: Vec<bool>,
    attempt_numbers: Vec<Option<i32>>,
    triggers: Vec<Option<Trigger>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    durations: Vec<Option<i32>>,
    methods: Vec<Option<&'a str>>,
    urls: Vec<Option<&'a str>>,
    request_headers: Vec<Option<serde_json::Value>>,
    status_codes: Vec<Option<i32>>,
    response_headers: Vec<Option<serde_json::Value>>,
    response_bodies: Vec<Option<&'a str>>,
    truncated: Vec<Option<bool>>,
    error_kinds: Vec<Option<ErrorKind>>,
    error_messages: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn of(settles: &[&'a Settle]) -> Self {
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let json = |value: &BTreeMap<String, String>| serde_json::to_value(value).unwrap_or_default();
        let mut columns = Columns::default();
        for settle in settles {
            let transition = &settle.transition;
            columns.delivery_ids.push(&settle.delivery_id);
            columns.attempts_before.push(count(settle.attempts_before));
            columns.statuses.push(transition.status());
            columns.next_attempt_at.push(transition.next_attempt_at());
            columns.completes.push(transition.status().is_some_and(DeliveryStatus::is_final));
            let attempt = settle.attempt.as_ref();
            columns.attempt_numbers.push(attempt.map(|a| count(a.attempt_number)));
            columns.triggers.push(attempt.map(|a| a.trigger));
            columns.started_at.push(attempt.map(|a| a.started_at));
            columns.durations.push(attempt.map(|a| count(a.duration_ms)));
            columns.methods.push(attempt.map(|a| a.request_method.as_str()));
            columns.urls.push(attempt.map(|a| a.request_url.as_str()));
            columns.request_headers.push(attempt.map(|a| json(&a.request_headers)));
            columns.status_codes.push(attempt.and_then(|a| a.status_code).map(i32::from));
            columns.response_headers.push(attempt.and_then(|a| a.response_headers.as_ref()).map(json));
            columns.response_bodies.push(attempt.and_then(|a| a.response_body.as_deref()));
            columns.truncated.push(attempt.map(|a| a.response_body_truncated));
            columns.error_kinds.push(attempt.and_then(|a| a.error_kind));
            columns.error_messages.push(attempt.and_then(|a| a.error_message.as_deref()));
        }
        columns
    }
}

/// Records the attempts and applies the transitions of distinct deliveries. A
/// transition applies only when the delivery still has the attempts it was decided on
/// and, with an attempt, when that attempt was recorded by this statement.
const SETTLE: &str = "WITH i AS (
         SELECT * FROM unnest($1::text[], $2::int[], $3::text[]::delivery_status[], $4::timestamptz[], $5::bool[],
             $6::int[], $7::text[]::attempt_trigger[], $8::timestamptz[], $9::int[], $10::text[], $11::text[],
             $12::jsonb[], $13::int[], $14::jsonb[], $15::text[], $16::bool[], $17::text[]::error_kind[], $18::text[])
         AS i (delivery_id, attempts_before, status, next_attempt_at, completes, attempt_number,
             trigger, started_at, duration_ms, request_method, request_url, request_headers, status_code,
             response_headers, response_body, response_body_truncated, error_kind, error_message)),
     recorded AS (
         INSERT INTO attempts (delivery_id, attempt_number, trigger, started_at, duration_ms, request_method,
             request_url, request_headers, status_code, response_headers, response_body, response_body_truncated,
             error_kind, error_message)
         SELECT delivery_id, attempt_number, trigger, started_at, duration_ms, request_method, request_url,
             request_headers, status_code, response_headers, response_body, response_body_truncated, error_kind,
             error_message
         FROM i WHERE attempt_number IS NOT NULL
         ON CONFLICT (delivery_id, attempt_number) DO NOTHING
         RETURNING delivery_id)
     UPDATE deliveries d SET
         attempt_count = coalesce(i.attempt_number, d.attempt_count),
         last_status_code = CASE WHEN i.attempt_number IS NULL THEN d.last_status_code ELSE i.status_code END,
         last_error_kind = CASE WHEN i.attempt_number IS NULL THEN d.last_error_kind ELSE i.error_kind END,
         status = coalesce(i.status, d.status),
         next_attempt_at = i.next_attempt_at,
         completed_at = CASE WHEN i.completes THEN now() ELSE d.completed_at END,
         leased_until = NULL,
         parked_at = NULL,
         updated_at = now()
     FROM i
     WHERE d.id = i.delivery_id AND d.attempt_count = i.attempts_before
       AND (i.attempt_number IS NULL OR i.delivery_id IN (SELECT delivery_id FROM recorded))
     RETURNING d.id, d.endpoint_id,
         (SELECT e.consecutive_failures FROM endpoints e WHERE e.id = d.endpoint_id) AS consecutive_failures";

async fn settle_distinct(client: &deadpool_postgres::Client, settles: &[&Settle]) -> Result<Vec<Settled>> {
    let c = Columns::of(settles);
    let rows = client
        .query_typed(
            SETTLE,
            &[
                (&c.delivery_ids, Type::TEXT_ARRAY),
                (&c.attempts_before, Type::INT4_ARRAY),
                (&c.statuses, Type::TEXT_ARRAY),
                (&c.next_attempt_at, Type::TIMESTAMPTZ_ARRAY),
                (&c.completes, Type::BOOL_ARRAY),
                (&c.attempt_numbers, Type::INT4_ARRAY),
                (&c.triggers, Type::TEXT_ARRAY),
                (&c.started_at, Type::TIMESTAMPTZ_ARRAY),
                (&c.durations, Type::INT4_ARRAY),
                (&c.methods, Type::TEXT_ARRAY),
                (&c.urls, Type::TEXT_ARRAY),
                (&c.request_headers, Type::JSONB_ARRAY),
                (&c.status_codes, Type::INT4_ARRAY),
                (&c.response_headers, Type::JSONB_ARRAY),
                (&c.response_bodies, Type::TEXT_ARRAY),
                (&c.truncated, Type::BOOL_ARRAY),
                (&c.error_kinds, Type::TEXT_ARRAY),
                (&c.error_messages, Type::TEXT_ARRAY),
            ],
        )
        .await
        .context("settling deliveries")?;
    let transitions: HashMap<&DeliveryId, &Transition> =
        settles.iter().map(|s| (&s.delivery_id, &s.transition)).collect();
    let mut applied: HashMap<DeliveryId, Settled> = HashMap::with_capacity(rows.len());
    let (mut to_reset, mut to_count) = (Vec::new(), Vec::new());
    for row in &rows {
        let (delivery, endpoint): (DeliveryId, EndpointId) = (row.try_get("id")?, row.try_get("endpoint_id")?);
        let running = row.try_get::<_, Option<i32>>("consecutive_failures")?.unwrap_or_default();
        match transitions.get(&delivery) {
            Some(Transition::Succeeded) if running > 0 => to_reset.push(endpoint),
            Some(transition) if transition.is_final_failure() => to_count.push((delivery.clone(), endpoint)),
            _ => {}
        }
        applied.insert(delivery, Settled { applied: true, consecutive_failures: 0 });
    }
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
    for (delivery, failures) in count_final_failures(client, &to_count).await? {
        if let Some(settled) = applied.get_mut(&delivery) {
            settled.consecutive_failures = failures;
        }
    }
    Ok(settles.iter().map(|s| applied.get(&s.delivery_id).copied().unwrap_or_default()).collect())
}

/// Raises the run of final failures of each delivery's endpoint (twice for an endpoint
/// named twice) and answers each delivery with its endpoint's new count.
async fn count_final_failures(
    client: &deadpool_postgres::Client,
    failed: &[(DeliveryId, EndpointId)],
) -> Result<Vec<(DeliveryId, u32)>> {
    if failed.is_empty() {
        return Ok(Vec::new());
    }
    let endpoints: Vec<&EndpointId> = failed.iter().map(|(_, endpoint)| endpoint).collect();
    let rows = client
        .query(
            "UPDATE endpoints ep SET consecutive_failures = ep.consecutive_failures + n.failures
             FROM (SELECT id, count(*)::int AS failures FROM unnest($1::text[]) AS id GROUP BY id) n
             WHERE ep.id = n.id
             RETURNING ep.id, ep.consecutive_failures",
            &[&endpoints],
        )
        .await
        .context("counting endpoints' final failures")?;
    let mut counts: HashMap<EndpointId, u32> = HashMap::with_capacity(rows.len());
    for row in rows {
        counts.insert(row.try_get("id")?, count(&row, "consecutive_failures")?);
    }
    Ok(failed
        .iter()
        .map(|(delivery, endpoint)| (delivery.clone(), counts.get(endpoint).copied().unwrap_or_default()))
        .collect())
}

/// An open delivery whose next step is overdue: its message was probably lost.
#[derive(Debug, Clone)]
pub struct Overdue {
    /// The delivery.
    pub id: DeliveryId,
    /// Attempts recorded so far: the lost job is for the one after.
    pub attempts: u32,
}

/// Claims up to `limit` open deliveries that have made no progress for `after`, and
/// pushes their deadline forward so the next sweep (of this or another scheduler)
/// does not claim them again at once. A delivery whose job is leased (being sent) or
/// parked (waiting for its endpoint, in `circuits`) is not lost and is skipped, and so
/// is one whose job went into the delivery queue at or after `queued_before` (it may
/// still wait there).
pub async fn claim_overdue(
    pool: &Pool,
    after: std::time::Duration,
    queued_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Overdue>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE deliveries d SET updated_at = now(),
                 next_attempt_at = CASE WHEN d.next_attempt_at IS NULL THEN NULL ELSE now() END
             WHERE d.id IN (
                 SELECT id FROM deliveries
                 WHERE open
                   AND updated_at < now() - make_interval(secs => $1)
                   AND (leased_until IS NULL OR leased_until < now())
                   AND parked_at IS NULL
                   AND (next_attempt_at IS NULL OR next_attempt_at < now() - make_interval(secs => $1))
                   AND coalesce(next_attempt_at, updated_at) < $3
                 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.attempt_count",
            &[&after.as_secs_f64(), &limit, &queued_before],
        )
        .await
        .context("claiming overdue deliveries")?;
    rows.iter().map(|row| Ok(Overdue { id: row.try_get("id")?, attempts: count(row, "attempt_count")? })).collect()
}
