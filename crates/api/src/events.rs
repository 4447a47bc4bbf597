//! `POST /v1/events`: HTTP event ingest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use hookline_core::envelope::RejectReason;
use hookline_ingest::AcceptError;

use crate::answers::AcceptedEvent;
use crate::auth::Writer;
use crate::openapi::ErrorBody;
use crate::{ApiError, AppState};

/// The event envelope as `POST /v1/events` takes it (parsed by the ingest service's
/// own reader, `hookline_core::envelope`; this type describes it for the document, and
/// a test holds the two to the same fields).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "describes the body the ingestor reads; never built")]
pub(crate) struct EventBody {
    /// Your idempotency key: a second event with the same id is accepted once.
    #[schema(max_length = 256)]
    id: Option<String>,
    /// The event type's code, from the catalog (`GET /v1/event-types`).
    #[serde(rename = "type")]
    #[schema(min_length = 1)]
    event_type: String,
    /// The key's own organisation (optional; another organisation is refused).
    organization: Option<String>,
    /// `live` (default) or `test`.
    #[schema(pattern = "^(live|test)$")]
    environment: Option<String>,
    /// When it happened (default: when hookline received it).
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The user who caused it (matched by "for login" filters).
    #[schema(max_length = 256)]
    actor: Option<String>,
    /// The team it concerns (matched by team filters).
    #[schema(max_length = 256)]
    team: Option<String>,
    /// The payload, delivered exactly as written.
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
}

/// Accepts one event for the API key's organisation; 202 with the event id.
#[utoipa::path(post, path = "/v1/events", operation_id = "publishEvent", tag = "events", summary = "Publish an upstream event for the key's organisation", security(("api_key" = [])), request_body = EventBody, responses((status = 202, description = "Accepted", body = AcceptedEvent), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 413, description = "Over ingest.max_event_size", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    Writer(caller): Writer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<AcceptedEvent>), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match state.ingestor.accept(&body, content_type, Some(&caller.organization_id), false).await {
        Ok(accepted) => Ok((
            StatusCode::ACCEPTED,
            Json(AcceptedEvent { id: accepted.event_id.to_string(), duplicate: accepted.duplicate }),
        )),
        Err(AcceptError::Rejected(rejection)) => {
            let status = match rejection.reason {
                RejectReason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                RejectReason::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Err(ApiError {
                retry_after: None,
                status,
                code: rejection.reason.as_str(),
                field: rejection.field,
                message: rejection.message,
            })
        }
        Err(AcceptError::Unavailable(err)) => Err(ApiError::unavailable(&err)),
    }
}
