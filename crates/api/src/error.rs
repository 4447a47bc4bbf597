//! Errors as clients see them: a status, a stable machine code, the field concerned and
//! a message for people. Internal failures are logged with their cause and answered
//! with an opaque 500.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `unknown_type`.
    pub code: &'static str,
    /// The request field concerned, if one is: a name, or a path into the body
    /// (`endpoints[0].url`).
    pub field: Option<std::borrow::Cow<'static, str>>,
    /// What is wrong.
    pub message: String,
    /// Seconds to wait, sent as `Retry-After` (a rate limit's answer).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 4xx about one field.
    pub fn field(status: StatusCode, code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, field: Some(field.into()), message: message.into(), retry_after: None }
    }

    /// 404 for a `what` (webhook, credential, …) the caller's organisation does not
    /// have: the same answer whether it exists elsewhere or nowhere.
    pub fn not_found(what: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            field: None,
            message: format!("no such {what}"),
            retry_after: None,
        }
    }

    /// A missing or unusable API key.
    pub fn unauthorized() -> Self {
        Self {
            retry_after: None,
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            field: None,
            message: "a valid API key is required: `Authorization: Bearer <key>`".into(),
        }
    }

    /// A valid key without the needed scope.
    pub fn forbidden(scope: &str) -> Self {
        Self {
            retry_after: None,
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            field: None,
            message: format!("this API key lacks the `{scope}` scope"),
        }
    }

    /// An internal failure; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error answering a request");
        Self {
            retry_after: None,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            field: None,
            message: "internal error; it has been logged".into(),
        }
    }

    /// A dependency is down; the client may try again.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        hookline_telemetry::warn_throttled!(error = %cause, "dependency unavailable answering a request");
        Self {
            retry_after: None,
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            field: None,
            message: "temporarily unavailable; try again".into(),
        }
    }
}

impl ApiError {
    /// The same error, telling the client to wait `seconds` before trying again.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "field": self.field, "message": self.message }
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
