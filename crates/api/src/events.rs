//! `POST /v1/events`: HTTP event ingest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use hookline_core::envelope::RejectReason;
use hookline_ingest::AcceptError;

use crate::auth::Writer;
use crate::{ApiError, AppState};

/// Accepts one event for the API key's organisation; 202 with the event id.
pub async fn publish(
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
            Err(ApiError { status, code: rejection.reason.code(), field: rejection.field, message: rejection.message })
        }
        Err(err) => Err(ApiError::unavailable(&err)),
    }
}
