//! `POST /v1/events`: HTTP event ingest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use hookline_core::apikey::Scope;
use hookline_core::envelope::RejectReason;
use hookline_ingest::AcceptError;

use crate::{ApiError, AppState};

/// Accepts one event for the API key's organisation; 202 with the event id.
pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let key = authenticate(&state, &headers).await?;
    if !key.scopes.iter().any(|s| matches!(s, Scope::Admin | Scope::WebhooksWrite)) {
        return Err(ApiError::forbidden(Scope::WebhooksWrite.as_str()));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    match state.ingestor.accept(&body, content_type, Some(&key.organization_id), false).await {
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

/// Finds the organisation API key presented as `Authorization: Bearer …`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<hookline_store::repo::api_keys::ApiKeyRecord, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    hookline_store::repo::api_keys::authenticate(&state.pool, presented)
        .await
        .map_err(|err| ApiError::unavailable(&err))?
        .ok_or_else(ApiError::unauthorized)
}
