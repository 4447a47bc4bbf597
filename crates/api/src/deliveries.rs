//! The log history: `/v1/webhooks/{id}/deliveries`, `/v1/deliveries/{id}`, redelivery
//! and recovery.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hookline_bus::codec::proto::DeliveryJob;
use hookline_bus::{Traced as _, jobs};
use hookline_core::apikey::Scope;
use hookline_core::delivery::DeliveryStatus;
use hookline_core::ids::DeliveryId;
use hookline_core::lifecycle::Job;
use hookline_store::repo::delivery_log::{self, DeliveryDetail, DeliverySummary, LogFilter};
use hookline_store::repo::webhooks::views;

use crate::answers::{Recovered, Redelivered};
use crate::auth::{Reader, Writer};
use crate::json::{Body, Path, Query, rfc3339};
use crate::openapi::ErrorBody;
use crate::pagination::{Page, PageQuery, page};
use crate::webhooks::webhook_id;
use crate::{ApiError, AppState};

/// `?status=&event_type=&since=&until=&limit=&cursor=`
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct LogQuery {
    status: Option<String>,
    event_type: Option<String>,
    #[serde(default, deserialize_with = "rfc3339::option::deserialize")]
    since: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "rfc3339::option::deserialize")]
    until: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A webhook's deliveries, newest first (deleted webhooks' history included).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", operation_id = "listDeliveries", tag = "deliveries", summary = "A webhook's log history, newest first", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id"), ("status" = Option<String>, Query, pattern = "^(pending|retrying|succeeded|failed)$", description = "pending, retrying, succeeded or failed"), ("event_type" = Option<String>, Query, description = "Event type code"), ("since" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "RFC 3339"), ("until" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "RFC 3339"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50"), ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_]{1,64}$", description = "next_cursor of the previous page")), responses((status = 200, body = Page<DeliverySummary>), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Json<Page<DeliverySummary>>, ApiError> {
    let id = webhook_id(&id)?;
    if !views::exists_with_history(&state.pool, &caller.organization_id, &id)
        .await
        .map_err(|e| ApiError::internal(&e))?
    {
        return Err(ApiError::not_found("webhook"));
    }
    let status = query.status.as_deref().map(str::parse::<DeliveryStatus>).transpose().map_err(|_| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_status",
            "status",
            "status is one of pending, retrying, succeeded, failed",
        )
    })?;
    let limit = PageQuery { limit: query.limit, cursor: None }.limit()?;
    let cursor = crate::pagination::checked_cursor(query.cursor.as_deref())?;
    if query.event_type.as_deref().is_some_and(|code| code.chars().any(char::is_control)) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_event_type",
            "event_type",
            "event_type is an event type code",
        ));
    }
    let filter = LogFilter { status, event_type: query.event_type, since: query.since, until: query.until };
    let rows = delivery_log::list(&state.pool, &caller.organization_id, &id, &filter, cursor, limit + 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(page(rows, limit, |d| d.id.to_string())))
}

/// One delivery with its payload and every attempt (the signature of each request is
/// shown to admin keys only).
#[utoipa::path(get, path = "/v1/deliveries/{id}", operation_id = "getDelivery", tag = "deliveries", summary = "A delivery with its payload and every attempt", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = DeliveryDetail), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let id: DeliveryId = id.parse().map_err(|_| ApiError::not_found("delivery"))?;
    let mut detail = delivery_log::detail(&state.pool, &caller.organization_id, &id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    if !caller.may(Scope::Admin) {
        redact_replayable(&mut detail);
    }
    Ok(Json(detail))
}

/// Request headers only an admin sees: with the body and the id and timestamp beside
/// them, a signature would let its reader replay the request to the receiver within its
/// tolerance. (What a credential added is redacted for everyone when it is recorded.)
const REPLAYABLE: &[&str] = &[hookline_core::signing::HEADER_SIGNATURE];

fn redact_replayable(detail: &mut DeliveryDetail) {
    for attempt in &mut detail.attempts {
        if let Some(headers) = attempt.request_headers.as_object_mut() {
            for name in REPLAYABLE {
                if let Some(value) = headers.get_mut(*name) {
                    *value = "[redacted]".into();
                }
            }
        }
    }
}

/// Publishes an operator's attempt of each delivery (with the attempts it has recorded):
/// its next attempt, made now.
async fn publish_manual(state: &AppState, deliveries: &[(DeliveryId, u32)]) -> Result<(), ApiError> {
    let span = tracing::Span::current();
    let jobs = deliveries
        .iter()
        .map(|(delivery, attempts)| {
            let Job { attempt, manual } = Job::after(*attempts, true);
            DeliveryJob { delivery_id: delivery.to_string(), attempt, manual, ..Default::default() }.traced(&span)
        })
        .collect();
    jobs::to_workers(&state.publisher, &state.topology, jobs).await.map_err(|e| ApiError::unavailable(&e))
}

/// Makes a manual attempt now. It counts as the delivery's next attempt: on success the
/// delivery has succeeded; on failure the schedule goes on from it.
#[utoipa::path(post, path = "/v1/deliveries/{id}/redeliver", operation_id = "redeliverDelivery", tag = "deliveries", summary = "Make a manual attempt now", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 202, body = Redelivered), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    let id: DeliveryId = id.parse().map_err(|_| ApiError::not_found("delivery"))?;
    let attempts = delivery_log::redeliverable(&state.pool, &caller.organization_id, &id)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    publish_manual(&state, &[(id.clone(), attempts)]).await?;
    let attempt = Job::after(attempts, true).attempt;
    Ok((StatusCode::ACCEPTED, Json(Redelivered { delivery_id: id.to_string(), attempt })))
}

/// Body of `POST /v1/webhooks/{id}/recover`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoverBody {
    /// RFC 3339 time; failed deliveries created since then are re-queued.
    #[serde(with = "rfc3339")]
    since: DateTime<Utc>,
}

/// Re-queues every failed delivery of the webhook created since `since`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/recover", operation_id = "recoverDeliveries", tag = "deliveries", summary = "Re-queue every failed delivery since a time", security(("api_key" = [])), request_body = RecoverBody, params(("id" = String, Path, description = "Resource id")), responses((status = 202, body = Recovered), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn recover(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(body): Body<RecoverBody>,
) -> Result<(StatusCode, Json<Recovered>), ApiError> {
    let id = webhook_id(&id)?;
    if views::get(&state.pool, &caller.organization_id, &id).await.map_err(|e| ApiError::internal(&e))?.is_none() {
        return Err(ApiError::not_found("webhook"));
    }
    let failed =
        delivery_log::in_status_since(&state.pool, &caller.organization_id, &id, DeliveryStatus::Failed, body.since)
            .await
            .map_err(|e| ApiError::internal(&e))?;
    publish_manual(&state, &failed).await?;
    Ok((StatusCode::ACCEPTED, Json(Recovered { requeued: failed.len() })))
}
