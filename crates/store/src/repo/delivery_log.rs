//! The log history: deliveries and their attempts as operators read them.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::ids::{DeliveryId, OrganizationId, WebhookId};

use crate::error::{QueryContext as _, Result};
use crate::repo::webhooks::parse_id;

/// Filters of a delivery listing.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only deliveries in this status.
    pub status: Option<String>,
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
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// `upstream`, `ping` (activation) or `test` (a test event an operator sent).
    pub origin: String,
    /// Where it is sent.
    pub endpoint_url: String,
    /// pending, retrying, succeeded, failed.
    pub status: String,
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
    pub trigger: String,
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
    pub error_kind: Option<String>,
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
    pub webhook_id: String,
    /// The event's payload as delivered.
    pub payload: serde_json::Value,
    /// Every attempt, first to last.
    pub attempts: Vec<AttemptView>,
}

const SUMMARY: &str =
    "d.id, d.created_at, d.event_id, e.event_type, ep.url, d.status, d.last_status_code, d.attempt_count,
    d.next_attempt_at, e.origin";

fn summary(row: &tokio_postgres::Row) -> Result<DeliverySummary> {
    Ok(DeliverySummary {
        id: parse_id(row.get(0))?,
        created_at: row.get(1),
        event_id: row.get(2),
        event_type: row.get(3),
        endpoint_url: row.get(4),
        status: row.get(5),
        latest_status_code: row.get(6),
        attempt_count: row.get(7),
        next_attempt_at: row.get(8),
        origin: row.get(9),
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
           AND ($3::text IS NULL OR d.status = $3) AND ($4::text IS NULL OR e.event_type = $4)
           AND ($5::timestamptz IS NULL OR d.created_at >= $5) AND ($6::timestamptz IS NULL OR d.created_at < $6)
           AND ($7::text IS NULL OR d.id < $7)
         ORDER BY d.id DESC LIMIT $8"
    );
    let rows = client
        .query(
            &sql,
            &[
                &organization.as_str(),
                &webhook.as_str(),
                &filter.status,
                &filter.event_type,
                &filter.since,
                &filter.until,
                &before,
                &limit,
            ],
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
    let Some(row) =
        client.query_opt(&sql, &[&id.as_str(), &organization.as_str()]).await.context("loading a delivery")?
    else {
        return Ok(None);
    };
    let attempts = client
        .query(
            "SELECT attempt_number, trigger, started_at, duration_ms, request_method, request_url, request_headers,
                    status_code, response_headers, response_body, response_body_truncated, error_kind, error_message
             FROM attempts WHERE delivery_id = $1 ORDER BY attempt_number",
            &[&id.as_str()],
        )
        .await
        .context("loading attempts")?
        .iter()
        .map(|a| AttemptView {
            attempt_number: a.get(0),
            trigger: a.get(1),
            started_at: a.get(2),
            duration_ms: a.get(3),
            request_method: a.get(4),
            request_url: a.get(5),
            request_headers: a.get(6),
            status_code: a.get(7),
            response_headers: a.get(8),
            response_body: a.get(9),
            response_body_truncated: a.get(10),
            error_kind: a.get(11),
            error_message: a.get(12),
        })
        .collect();
    Ok(Some(DeliveryDetail { summary: summary(&row)?, webhook_id: row.get(10), payload: row.get(11), attempts }))
}

/// The attempt number a manual attempt of this delivery would take, if the organisation
/// has the delivery and its webhook still exists.
pub async fn next_attempt(pool: &Pool, organization: &OrganizationId, id: &DeliveryId) -> Result<Option<u32>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT d.attempt_count FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.id = $1 AND d.organization_id = $2 AND w.deleted_at IS NULL",
            &[&id.as_str(), &organization.as_str()],
        )
        .await
        .context("loading a delivery")?;
    Ok(row.map(|row| u32::try_from(row.get::<_, i32>(0)).unwrap_or_default() + 1))
}

/// Failed deliveries of a webhook created since `since`, with their next attempt number.
pub async fn failed_since(
    pool: &Pool,
    organization: &OrganizationId,
    webhook: &WebhookId,
    since: DateTime<Utc>,
) -> Result<Vec<(DeliveryId, u32)>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, attempt_count FROM deliveries
             WHERE organization_id = $1 AND webhook_id = $2 AND status = 'failed' AND created_at >= $3 ORDER BY id",
            &[&organization.as_str(), &webhook.as_str(), &since],
        )
        .await
        .context("loading failed deliveries")?;
    rows.iter()
        .map(|row| Ok((parse_id(row.get(0))?, u32::try_from(row.get::<_, i32>(1)).unwrap_or_default() + 1)))
        .collect()
}
