//! The log history: deliveries and their attempts as operators read them.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::delivery::{DeliveryStatus, ErrorKind, Trigger};
use hookline_core::ids::{DeliveryId, EventId, OrganizationId, WebhookId};

use crate::error::{QueryContext as _, Result};
use crate::rows::count;

/// Filters of a delivery listing.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

/// One line of a webhook's log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeliverySummary {
    /// Delivery id.
    #[schema(value_type = String)]
    pub id: DeliveryId,
    /// When the event arrived at hookline and the delivery was created.
    pub created_at: DateTime<Utc>,
    /// The event.
    #[schema(value_type = String)]
    pub event_id: EventId,
    /// Its type.
    pub event_type: String,
    /// `upstream`, `ping` (activation) or `test` (a test event an operator sent).
    pub origin: String,
    /// Where it is sent.
    pub endpoint_url: String,
    /// pending, retrying, succeeded, failed.
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    /// HTTP status of the latest attempt.
    pub latest_status_code: Option<i32>,
    /// Attempts made.
    pub attempt_count: i32,
    /// When the next scheduled attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One attempt in full.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// From 1.
    pub attempt_number: i32,
    /// `scheduled` or `manual`.
    #[schema(value_type = String)]
    pub trigger: Trigger,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i32,
    /// Method and URL sent.
    pub request_method: String,
    /// URL sent to.
    pub request_url: String,
    /// Headers sent, secrets redacted.
    pub request_headers: serde_json::Value,
    /// Receiver's status.
    pub status_code: Option<i32>,
    /// Receiver's headers.
    pub response_headers: Option<serde_json::Value>,
    /// First 64 KiB of the receiver's body.
    pub response_body: Option<String>,
    /// Whether the body was cut.
    pub response_body_truncated: bool,
    /// Why it failed.
    #[schema(value_type = Option<String>)]
    pub error_kind: Option<ErrorKind>,
    /// Details.
    pub error_message: Option<String>,
}

/// A delivery with its event payload and every attempt.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    /// The log line.
    #[serde(flatten)]
    pub summary: DeliverySummary,
    /// The webhook.
    #[schema(value_type = String)]
    pub webhook_id: WebhookId,
    /// The event's payload as published and delivered.
    #[schema(value_type = Object)]
    pub payload: hookline_core::payload::Payload,
    /// Every attempt, first to last.
    pub attempts: Vec<AttemptView>,
}

const SUMMARY: &str = "d.id, d.created_at, d.event_id, e.event_type, ep.url AS endpoint_url, d.status,
    d.last_status_code, d.attempt_count, d.next_attempt_at, e.origin";

fn summary(row: &tokio_postgres::Row) -> Result<DeliverySummary> {
    Ok(DeliverySummary {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        endpoint_url: row.try_get("endpoint_url")?,
        status: row.try_get("status")?,
        latest_status_code: row.try_get("last_status_code")?,
        attempt_count: row.try_get("attempt_count")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        origin: row.try_get("origin")?,
    })
}

fn attempt(row: &tokio_postgres::Row) -> Result<AttemptView> {
    Ok(AttemptView {
        attempt_number: row.try_get("attempt_number")?,
        trigger: row.try_get("trigger")?,
        started_at: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        request_method: row.try_get("request_method")?,
        request_url: row.try_get("request_url")?,
        request_headers: row.try_get("request_headers")?,
        status_code: row.try_get("status_code")?,
        response_headers: row.try_get("response_headers")?,
        response_body: row.try_get("response_body")?,
        response_body_truncated: row.try_get("response_body_truncated")?,
        error_kind: row.try_get("error_kind")?,
        error_message: row.try_get("error_message")?,
    })
}

/// A page of a webhook's deliveries, newest first, before the cursor id.
pub async fn list(
    pool: &Pool,
    organization: &OrganizationId,
    webhook: &WebhookId,
    filter: &LogFilter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliverySummary>> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {SUMMARY} FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints ep ON ep.id = d.endpoint_id
         WHERE d.organization_id = $1 AND d.webhook_id = $2
           AND ($3::delivery_status IS NULL OR d.status = $3) AND ($4::text IS NULL OR e.event_type = $4)
           AND ($5::timestamptz IS NULL OR d.created_at >= $5) AND ($6::timestamptz IS NULL OR d.created_at < $6)
           AND ($7::text IS NULL OR d.id < $7)
         ORDER BY d.id DESC LIMIT $8"
    );
    let rows = client
        .query(
            &sql,
            &[organization, webhook, &filter.status, &filter.event_type, &filter.since, &filter.until, &before, &limit],
        )
        .await
        .context("listing deliveries")?;
    rows.iter().map(summary).collect()
}

/// A delivery of the organisation with its payload and attempts.
pub async fn detail(pool: &Pool, organization: &OrganizationId, id: &DeliveryId) -> Result<Option<DeliveryDetail>> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {SUMMARY}, d.webhook_id, e.data FROM deliveries d JOIN events e ON e.id = d.event_id
         JOIN endpoints ep ON ep.id = d.endpoint_id WHERE d.id = $1 AND d.organization_id = $2"
    );
    let Some(row) = client.query_opt(&sql, &[id, organization]).await.context("loading a delivery")? else {
        return Ok(None);
    };
    let attempts = client
        .query(
            "SELECT attempt_number, trigger, started_at, duration_ms, request_method, request_url, request_headers,
                    status_code, response_headers, response_body, response_body_truncated, error_kind, error_message
             FROM attempts WHERE delivery_id = $1 ORDER BY attempt_number",
            &[id],
        )
        .await
        .context("loading attempts")?
        .iter()
        .map(attempt)
        .collect::<Result<_>>()?;
    Ok(Some(DeliveryDetail {
        summary: summary(&row)?,
        webhook_id: row.try_get("webhook_id")?,
        payload: row.try_get("data")?,
        attempts,
    }))
}

/// The attempts recorded for a delivery of the organisation whose webhook still exists:
/// what a manual attempt follows. `None` when there is no such delivery.
pub async fn redeliverable(pool: &Pool, organization: &OrganizationId, id: &DeliveryId) -> Result<Option<u32>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT d.attempt_count FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.id = $1 AND d.organization_id = $2 AND w.deleted_at IS NULL",
            &[id, organization],
        )
        .await
        .context("loading a delivery")?;
    row.map(|row| count(&row, "attempt_count")).transpose()
}

/// The webhook's deliveries in `status` created since `since`, with the attempts each has
/// recorded.
pub async fn in_status_since(
    pool: &Pool,
    organization: &OrganizationId,
    webhook: &WebhookId,
    status: DeliveryStatus,
    since: DateTime<Utc>,
) -> Result<Vec<(DeliveryId, u32)>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, attempt_count FROM deliveries
             WHERE organization_id = $1 AND webhook_id = $2 AND status = $3 AND created_at >= $4 ORDER BY id",
            &[organization, webhook, &status, &since],
        )
        .await
        .context("loading deliveries")?;
    rows.iter().map(|row| Ok((row.try_get("id")?, count(row, "attempt_count")?))).collect()
}
