//! A JSON body extractor whose refusals are machine-readable like every other error.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::ApiError;

/// Like `axum::Json`, but a body that is not the expected JSON is answered 400 (syntax)
/// or 422 (shape) with code `invalid_body` and serde's description, which names the
/// field; and a body holding a NUL character (U+0000) anywhere, which PostgreSQL can
/// store in neither text nor JSON, is refused with 422 naming where it is.
pub(crate) struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => {
                // 415 without a JSON content type, 413 over the body limit, 400 otherwise.
                let status = match rejection {
                    JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "invalid_body" };
                return Err(ApiError { status, code, field: None, message: rejection.body_text() });
            }
        };
        if let Some(path) = hookline_core::envelope::nul_at(&value, "") {
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_body",
                message: format!("`{path}` holds a NUL character (U+0000), which cannot be stored"),
                field: Some(path.into()),
            });
        }
        serde_path_to_error::deserialize(value).map(Body).map_err(|err| ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            field: None,
            message: format!("Failed to deserialize the JSON body into the target type: {err}"),
        })
    }
}
