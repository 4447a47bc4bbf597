//! `Idempotency-Key` on management POSTs, as Stripe and Svix have it: a retry with the
//! same key within 24 hours gets the first request's answer instead of doing the work
//! twice (a second webhook, a second key). The same key with a different request is
//! refused 422, and while the first is still being answered, 409. Answers of 5xx are not
//! kept, so a retry after a failure runs again. `POST /v1/events` has its own
//! idempotency, the event's `id`.

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hookline_store::repo::idempotency::{self, Claim};
use sha2::Digest as _;

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";
/// Set on a replayed answer.
const REPLAYED: &str = "idempotent-replayed";
/// Bodies of management requests are small; larger ones are refused by the routes.
const BODY_LIMIT: usize = 2 << 20;

/// Wraps every route: acts only on POSTs that carry the header.
pub(crate) async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = request.headers().get(HEADER).cloned() else { return next.run(request).await };
    if request.method() != Method::POST || request.uri().path() == "/v1/events" {
        return next.run(request).await;
    }
    match keyed(&state, key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn keyed(state: &AppState, key: HeaderValue, request: Request, next: Next) -> Result<Response, Response> {
    let key = key
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            let message = "Idempotency-Key must be 1 to 255 visible ASCII characters";
            ApiError::field(StatusCode::BAD_REQUEST, "invalid_idempotency_key", "Idempotency-Key", message)
                .into_response()
        })?;
    let (parts, body) = request.into_parts();
    answer_once(state, &key, parts, body, next).await
}

/// Claims the key for this request and runs it, or answers from what the key holds.
async fn answer_once(
    state: &AppState,
    key: &str,
    mut parts: axum::http::request::Parts,
    body: Body,
    next: Next,
) -> Result<Response, Response> {
    // Who is asking decides whose keys these are; without a valid key, the route
    // answers (401) as it would anyway.
    let Ok(caller) = Caller::from_request_parts(&mut parts, state).await else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let body = to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        ApiError::field(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "body", "the body is over 2 MiB")
            .into_response()
    })?;
    let mut hash = sha2::Sha256::new();
    hash.update(parts.method.as_str());
    hash.update([0]);
    hash.update(parts.uri.path());
    hash.update([0]);
    hash.update(&body);
    let request_hash = hash.finalize().to_vec();
    let organization = &caller.organization_id;
    let unavailable = |err: hookline_store::Error| ApiError::unavailable(&err).into_response();
    match idempotency::claim(&state.pool, &state.secrets, organization, key, &request_hash)
        .await
        .map_err(unavailable)?
    {
        Claim::Mine => {}
        Claim::OtherRequest => {
            let message = "this Idempotency-Key was used for a different request; use a new key";
            return Err(refusal(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message));
        }
        Claim::InFlight => {
            let message = "the first request with this Idempotency-Key is still being answered; retry shortly";
            return Err(refusal(StatusCode::CONFLICT, "idempotency_key_in_flight", message));
        }
        Claim::Answered { status, content_type, body } => return Ok(replay(status, content_type, body)),
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (mut parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    if parts.status.is_server_error() {
        let _ = idempotency::release(&state.pool, organization, key).await;
    } else {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let recorded = idempotency::record(
            &state.pool,
            &state.secrets,
            organization,
            key,
            parts.status.as_u16(),
            content_type,
            &body,
        )
        .await;
        if let Err(err) = recorded {
            // The work is done and answered; only a retry's replay is lost.
            tracing::warn!(error = %err, "recording an idempotent answer");
        }
    }
    parts.headers.insert(REPLAYED, HeaderValue::from_static("false"));
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn refusal(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError { status, code, field: Some(HEADER.into()), message: message.into(), retry_after: None }.into_response()
}

fn replay(status: u16, content_type: Option<String>, body: Vec<u8>) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
