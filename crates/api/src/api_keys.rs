//! `/v1/api-keys`: an organisation's keys (admin only).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hookline_core::apikey::Scope;
use hookline_core::ids::ApiKeyId;
use hookline_store::repo::api_keys::{self, ApiKeySummary};

use crate::auth::Admin;
use crate::json::Body;
use crate::pagination::{Page, PageQuery, page};
use crate::{ApiError, AppState};

/// Body of `POST /v1/api-keys`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// A name to tell the key apart.
    label: String,
    /// `admin`, `webhooks:write`, `webhooks:read`.
    scopes: Vec<String>,
}

fn not_found() -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, code: "not_found", field: None, message: "no such API key".into() }
}

/// Creates a key; the response holds the only copy of the secret.
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let label = body.label.trim();
    if label.is_empty() || label.len() > 100 {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_label",
            "label",
            "label must be 1 to 100 characters",
        ));
    }
    let mut scopes = Vec::new();
    for name in &body.scopes {
        let scope = Scope::parse(name).ok_or_else(|| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_scope",
                "scopes",
                format!("`{name}` is not a scope (admin, webhooks:write, webhooks:read)"),
            )
        })?;
        scopes.push(scope);
    }
    if scopes.is_empty() {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_scopes",
            "scopes",
            "at least one scope",
        ));
    }
    let (id, key) = api_keys::create(&state.pool, &caller.organization_id, label, &scopes)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({"id": id, "label": label, "prefix": key.prefix, "scopes": scope_names, "key": key.secret}),
        ),
    ))
}

/// Lists keys by label and prefix.
pub async fn list(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<ApiKeySummary>>, ApiError> {
    let limit = query.limit()?;
    let keys = api_keys::list(&state.pool, &caller.organization_id, query.after(), limit + 1)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    Ok(Json(page(keys, limit, |k| k.id.to_string())))
}

/// Revokes a key; it answers 401 from the next request on.
pub async fn revoke(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: ApiKeyId = id.parse().map_err(|_| not_found())?;
    if api_keys::revoke(&state.pool, &caller.organization_id, &id).await.map_err(|err| ApiError::internal(&err))? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
