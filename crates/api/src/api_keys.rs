//! `/v1/api-keys`: an organisation's keys (admin only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_core::apikey::Scope;
use hookline_core::ids::ApiKeyId;
use hookline_store::repo::api_keys::{self, ApiKeySummary};

use crate::auth::Admin;
use crate::json::{Body, Path, Query};
use crate::openapi::ErrorBody;
use crate::pagination::{Page, PageQuery, page};
use crate::{ApiError, AppState};

/// Body of `POST /v1/api-keys`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// A name to tell the key apart.
    #[schema(min_length = 1, max_length = 200)]
    label: String,
    /// `admin`, `webhooks:write`, `webhooks:read`.
    #[schema(min_items = 1, value_type = Vec<ScopeName>)]
    scopes: Vec<String>,
}

/// The scopes' names, for the document (`hookline_core::apikey::Scope` reads them).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "names the scopes for the document; never built")]
enum ScopeName {
    #[schema(rename = "admin")]
    Admin,
    #[schema(rename = "webhooks:write")]
    WebhooksWrite,
    #[schema(rename = "webhooks:read")]
    WebhooksRead,
}

/// A new key: the only response that carries its secret.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedKey {
    id: String,
    label: String,
    prefix: String,
    scopes: Vec<String>,
    /// The secret key, shown this once.
    key: String,
}

/// Creates a key; the response holds the only copy of the secret.
#[utoipa::path(post, path = "/v1/api-keys", operation_id = "createApiKey", tag = "api-keys", summary = "Create an API key (shown once)", security(("api_key" = [])), request_body = CreateKey, responses((status = 201, description = "The key, with its secret", body = CreatedKey), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    Ok((StatusCode::CREATED, Json(mint(&state, &caller.organization_id, &body).await?)))
}

/// Makes a key for `organization` as `body` asks (its own admins' request, or the
/// operator's for an organisation's first key).
pub(crate) async fn mint(
    state: &AppState,
    organization: &hookline_core::ids::OrganizationId,
    body: &CreateKey,
) -> Result<CreatedKey, ApiError> {
    let unprocessable =
        |code, field, message: String| ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, code, field, message);
    let label = hookline_core::limits::name(&body.label).ok_or_else(|| {
        unprocessable("invalid_label", "label", format!("label must be 1 to {} bytes", hookline_core::limits::NAME))
    })?;
    let mut scopes = Vec::new();
    for name in &body.scopes {
        let scope = name.parse::<Scope>().map_err(|_| {
            unprocessable(
                "invalid_scope",
                "scopes",
                format!("`{name}` is not a scope (admin, webhooks:write, webhooks:read)"),
            )
        })?;
        scopes.push(scope);
    }
    if scopes.is_empty() {
        return Err(unprocessable("missing_scopes", "scopes", "at least one scope".into()));
    }
    let (id, key) =
        api_keys::create(&state.pool, organization, label, &scopes).await.map_err(|err| ApiError::internal(&err))?;
    let scopes = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    Ok(CreatedKey { id: id.to_string(), label: label.to_owned(), prefix: key.prefix, scopes, key: key.secret })
}

/// Lists keys by label and prefix.
#[utoipa::path(get, path = "/v1/api-keys", operation_id = "listApiKeys", tag = "api-keys", summary = "List API keys by label and prefix", security(("api_key" = [])), params(("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50"), ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_]{1,64}$", description = "next_cursor of the previous page")), responses((status = 200, body = Page<ApiKeySummary>), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<ApiKeySummary>>, ApiError> {
    let limit = query.limit()?;
    let keys = api_keys::list(&state.pool, &caller.organization_id, query.after()?, limit + 1)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    Ok(Json(page(keys, limit, |k| k.id.to_string())))
}

/// Revokes a key; it answers 401 from the next request on. The organisation's last
/// active admin key is kept (409): without it, nobody could manage its keys again.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", operation_id = "revokeApiKey", tag = "api-keys", summary = "Revoke an API key at once", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 204, description = "Revoked"), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 409, description = "The organisation's last active admin key", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: ApiKeyId = id.parse().map_err(|_| not_found())?;
    match api_keys::revoke(&state.pool, &caller.organization_id, &id).await.map_err(|err| ApiError::internal(&err))? {
        api_keys::Revoked::Revoked => Ok(StatusCode::NO_CONTENT),
        api_keys::Revoked::NotFound => Err(not_found()),
        api_keys::Revoked::LastAdmin => Err(ApiError {
            retry_after: None,
            status: StatusCode::CONFLICT,
            code: "last_admin_key",
            field: None,
            message: "this is the organisation's last active admin key: create another admin key before revoking it"
                .into(),
        }),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("API key")
}
