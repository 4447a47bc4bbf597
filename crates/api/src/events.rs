//! `POST /v1/events`: HTTP event ingest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use hookline_core::envelope::RejectReason;
use hookline_ingest::AcceptError;

use crate::auth::Writer;
use crate::openapi::ErrorBody;
use crate::{ApiError, AppState};

/// Accepts one event for the API key's organisation; 202 with the event id.
#[utoipa::path(post, path = "/v1/events", tag = "events", summary = "Publish an upstream event for the key's organisation", security(("api_key" = [])), request_body = Object, responses((status = 202, description = "Accepted", body = Object), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 413, description = "Over ingest.max_event_size", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    Writer(caller): Writer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match state.ingestor.accept(&body, content_type, Some(&caller.organization_id), false).await {
        Ok(accepted) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "id": accepted.event_id, "duplicate": accepted.duplicate })),
        )),
        Err(AcceptError::Rejected(rejection)) => {
            let status = match rejection.reason {
                RejectReason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                RejectReason::UnsupportedContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Err(ApiError {
                status,
                code: rejection.reason.as_str(),
                field: rejection.field,
                message: rejection.message,
            })
        }
        Err(AcceptError::Unavailable(err)) => Err(ApiError::unavailable(&err)),
    }
}
