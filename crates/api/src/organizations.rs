//! `/v1/organizations`: the host platform's backend (the operator token) creates and
//! manages the organisations hookline serves, and mints each one's first API key.
//! Organisation keys never reach these routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_core::ids::OrganizationId;
use hookline_core::limits;
use hookline_store::repo::organizations::{self, OrganizationView};

use crate::api_keys::{CreateKey, CreatedKey, mint};
use crate::auth::Operator;
use crate::json::{Body, Path, Query};
use crate::openapi::ErrorBody;
use crate::pagination::{Page, PageQuery, page};
use crate::{ApiError, AppState};

/// Body of `POST /v1/organizations` and `PATCH /v1/organizations/{id}`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrganizationBody {
    /// Required on create.
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// Whether it may use webhooks (default true): off, none can be created or
    /// activated and its events are routed to none.
    webhooks_enabled: Option<bool>,
}

fn organization_id(id: &str) -> Result<OrganizationId, ApiError> {
    id.parse().map_err(|_| not_found())
}

fn name(given: &str) -> Result<String, ApiError> {
    limits::name(given).map(str::to_owned).ok_or_else(|| {
        let message = format!("name must be 1 to {} bytes", limits::NAME);
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "invalid_name", "name", message)
    })
}

fn internal(err: hookline_store::Error) -> ApiError {
    ApiError::internal(&err)
}

async fn load(state: &AppState, id: &OrganizationId) -> Result<OrganizationView, ApiError> {
    organizations::get(&state.pool, id).await.map_err(internal)?.ok_or_else(not_found)
}

/// `POST /v1/organizations` (operator)
#[utoipa::path(post, path = "/v1/organizations", operation_id = "createOrganization", tag = "organizations", summary = "Create an organisation (operator token)", security(("operator_token" = [])), request_body = OrganizationBody, responses((status = 201, body = OrganizationView)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    _: Operator,
    Body(body): Body<OrganizationBody>,
) -> Result<(StatusCode, Json<OrganizationView>), ApiError> {
    let name = name(body.name.as_deref().unwrap_or_default())?;
    let id = organizations::create(&state.pool, &name).await.map_err(internal)?;
    if body.webhooks_enabled == Some(false) {
        organizations::update(&state.pool, &id, &name, false).await.map_err(internal)?;
    }
    Ok((StatusCode::CREATED, Json(load(&state, &id).await?)))
}

/// `GET /v1/organizations` (operator)
#[utoipa::path(get, path = "/v1/organizations", operation_id = "listOrganizations", tag = "organizations", summary = "List organisations (operator token)", security(("operator_token" = [])), params(("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50"), ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_]{1,64}$", description = "next_cursor of the previous page")), responses((status = 200, body = Page<OrganizationView>)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: Operator,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<OrganizationView>>, ApiError> {
    let limit = query.limit()?;
    let rows = organizations::list(&state.pool, query.after()?, limit + 1).await.map_err(internal)?;
    Ok(Json(page(rows, limit, |o| o.id.to_string())))
}

/// `GET /v1/organizations/{id}` (operator)
#[utoipa::path(get, path = "/v1/organizations/{id}", operation_id = "getOrganization", tag = "organizations", summary = "Get an organisation (operator token)", security(("operator_token" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = OrganizationView)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<OrganizationView>, ApiError> {
    Ok(Json(load(&state, &organization_id(&id)?).await?))
}

/// `PATCH /v1/organizations/{id}` (operator): the name, and whether it may use
/// webhooks (routers are told at once).
#[utoipa::path(patch, path = "/v1/organizations/{id}", operation_id = "updateOrganization", tag = "organizations", summary = "Rename, or turn webhooks on or off (operator token)", security(("operator_token" = [])), request_body = OrganizationBody, params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = OrganizationView)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
    Body(body): Body<OrganizationBody>,
) -> Result<Json<OrganizationView>, ApiError> {
    let id = organization_id(&id)?;
    let current = load(&state, &id).await?;
    let name = match body.name.as_deref() {
        Some(given) => name(given)?,
        None => current.name,
    };
    let enabled = body.webhooks_enabled.unwrap_or(current.webhooks_enabled);
    if !organizations::update(&state.pool, &id, &name, enabled).await.map_err(internal)? {
        return Err(not_found());
    }
    Ok(Json(load(&state, &id).await?))
}

/// `DELETE /v1/organizations/{id}` (operator): revokes its keys and deactivates its
/// webhooks; its history is removed by retention like any other.
#[utoipa::path(delete, path = "/v1/organizations/{id}", operation_id = "deleteOrganization", tag = "organizations", summary = "Delete an organisation (operator token)", security(("operator_token" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = organization_id(&id)?;
    if organizations::delete(&state.pool, &id).await.map_err(internal)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

/// `POST /v1/organizations/{id}/api-keys` (operator): a key for the organisation,
/// typically its first admin key; shown once.
#[utoipa::path(post, path = "/v1/organizations/{id}/api-keys", operation_id = "createOrganizationApiKey", tag = "organizations", summary = "Mint an API key for an organisation (operator token)", security(("operator_token" = [])), request_body = CreateKey, params(("id" = String, Path, description = "Resource id")), responses((status = 201, description = "The key, with its secret", body = CreatedKey), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody)))]
pub(crate) async fn first_key(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let id = organization_id(&id)?;
    load(&state, &id).await?;
    Ok((StatusCode::CREATED, Json(mint(&state, &id, &body).await?)))
}

fn not_found() -> ApiError {
    ApiError::not_found("organization")
}
