//! Optimistic concurrency for webhooks and credentials: each answer carries an `ETag`
//! (the resource's `updated_at`, in microseconds), and a PATCH with `If-Match` is
//! applied only to that version; the store checks it in the same statement that
//! writes, so of two clients that read the same version, the second gets 412 instead
//! of silently undoing the first's change.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::ApiError;

/// The `ETag` of the version last changed at `updated_at`.
pub(crate) fn etag(updated_at: DateTime<Utc>) -> HeaderValue {
    let tag = format!("\"{}\"", updated_at.timestamp_micros());
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// `If-Match`: the version a change is meant for (`None` when absent or `*`).
pub(crate) struct IfMatch(pub Option<DateTime<Utc>>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else { return Ok(Self(None)) };
        let text = value.to_str().unwrap_or_default().trim();
        if text == "*" {
            return Ok(Self(None));
        }
        // Strong comparison (RFC 9110 §13.1.1): a weak or foreign tag never matches.
        text.strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .and_then(|micros| micros.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_micros)
            .map(|version| Self(Some(version)))
            .ok_or_else(precondition_failed)
    }
}

impl IfMatch {
    /// 412 unless the version asked for is `current` (or none was asked for).
    pub(crate) fn check(&self, current: DateTime<Utc>) -> Result<(), ApiError> {
        match self.0 {
            Some(version) if version != current => Err(precondition_failed()),
            _ => Ok(()),
        }
    }
}

/// The answer when the resource changed since the version the client names.
pub(crate) fn precondition_failed() -> ApiError {
    ApiError {
        retry_after: None,
        status: StatusCode::PRECONDITION_FAILED,
        code: "precondition_failed",
        field: None,
        message: "the resource changed since the version in If-Match; fetch it again and reapply the change".into(),
    }
}

/// A resource's view with its `ETag`.
pub(crate) struct Versioned<T>(pub T, pub DateTime<Utc>);

impl<T: serde::Serialize> IntoResponse for Versioned<T> {
    fn into_response(self) -> Response {
        ([(header::ETAG, etag(self.1))], axum::Json(self.0)).into_response()
    }
}
