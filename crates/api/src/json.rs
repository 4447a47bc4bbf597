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
                return Err(ApiError { retry_after: None, status, code, field: None, message: rejection.body_text() });
            }
        };
        // serde reads a struct from an array too (its fields in order): every body this
        // API takes is an object.
        if !value.is_object() {
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_body",
                field: None,
                message: "the body must be a JSON object".into(),
                retry_after: None,
            });
        }
        if let Some(path) = hookline_core::envelope::nul_at(&value, "") {
            return Err(ApiError {
                retry_after: None,
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_body",
                message: format!("`{path}` holds a NUL character (U+0000), which cannot be stored"),
                field: Some(path.into()),
            });
        }
        serde_path_to_error::deserialize(value)
            .map(Body)
            .map_err(|err| shape_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", &err))
    }
}

/// Like `axum::extract::Query`, but a query string that does not fit is answered 400
/// `invalid_query` in JSON, naming the parameter (axum's own answers plain text).
pub(crate) struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(pairs)
            .map(Query)
            .map_err(|err| shape_error(StatusCode::BAD_REQUEST, "invalid_query", &err))
    }
}

/// A body or query string that does not fit its type, naming the field.
fn shape_error<E: std::fmt::Display>(
    status: StatusCode,
    code: &'static str,
    err: &serde_path_to_error::Error<E>,
) -> ApiError {
    let field = field_at(err.path(), &err.inner().to_string());
    ApiError {
        retry_after: None,
        status,
        code,
        message: format!("`{}`: {}", field.as_deref().unwrap_or("(whole)"), err.inner()),
        field: field.map(Into::into),
    }
}

/// The field a deserialisation error concerns: the path serde was at (an unknown field
/// is in it already), and for a missing field, which serde reports at the enclosing
/// object, that field's name after it.
fn field_at(path: &serde_path_to_error::Path, message: &str) -> Option<String> {
    let at = path.to_string();
    let at = if at == "." { None } else { Some(at) };
    match (at, hookline_core::envelope::missing_field(message)) {
        (Some(at), Some(name)) => Some(format!("{at}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (at, None) => at,
    }
}

/// RFC 3339 times in bodies and query strings, refused with words that say so (chrono's
/// own say only "input contains invalid characters"): `#[serde(with = "rfc3339")]`.
pub(crate) mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::Deserialize as _;

    /// A required time.
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        parse(&String::deserialize(deserializer)?)
    }

    /// An optional time.
    pub(crate) mod option {
        use super::*;

        /// `None` when absent.
        pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(deserializer)?.map(|text| parse(&text)).transpose()
        }
    }

    fn parse<E: serde::de::Error>(text: &str) -> Result<DateTime<Utc>, E> {
        DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|err| E::custom(format!("`{text}` is not an RFC 3339 time such as 2026-12-01T09:30:00Z ({err})")))
    }
}

/// A field of a PATCH body, where absent and `null` differ: absent keeps what is
/// stored, `null` clears it (back to its default), a value replaces it. Declare with
/// `#[serde(default)]` so an absent field is [`Patch::Keep`].
#[derive(Debug, Default)]
pub(crate) enum Patch<T> {
    /// The field was not sent.
    #[default]
    Keep,
    /// `null`: clear it.
    Clear,
    /// A new value.
    Set(T),
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Patch<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Patch::Clear, Patch::Set))
    }
}

impl<T> Patch<T> {
    /// What the field becomes, given what it is.
    pub(crate) fn applied_to(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => current,
            Patch::Clear => None,
            Patch::Set(value) => Some(value),
        }
    }

    /// The value given, if one was (for a create, where there is nothing to keep).
    pub(crate) fn given(self) -> Option<T> {
        self.applied_to(None)
    }

    /// A reference to the value given, if one was.
    pub(crate) fn as_given(&self) -> Option<&T> {
        match self {
            Patch::Set(value) => Some(value),
            Patch::Keep | Patch::Clear => None,
        }
    }
}

/// Like `axum::extract::Path`, but a path segment that cannot be the id (not UTF-8 once
/// decoded) is a resource that does not exist: 404 in JSON, as for any unknown id.
pub(crate) struct Path<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(_) => Err(ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                field: Some("id".into()),
                message: "no such resource".into(),
                retry_after: None,
            }),
        }
    }
}

/// The last guard of the one error shape: an error answer that is not JSON (a
/// rejection from a layer below the routes' own extractors, e.g. a body over the
/// limit on `POST /v1/events`) is rewritten as `{"error": {code, field, message}}`.
pub(crate) async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        status if status.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("error").to_owned() } else { message };
    ApiError { status, code, field: None, message, retry_after: None }.into_response()
}
