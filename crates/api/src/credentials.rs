//! `/v1/credentials`: reusable receiver credentials. Values are write-only: responses
//! say which fields are set, never what they are.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_core::credential::{Credential, CredentialValues};
use hookline_core::ids::{CredentialId, OrganizationId};
use hookline_core::limits;
use hookline_store::repo::credentials::{self, CredentialView};

use crate::auth::{Admin, Reader};
use crate::json::{Body, Patch, Path, Query};
use crate::openapi::ErrorBody;
use crate::pagination::{Page, PageQuery, page};
use crate::versions::{IfMatch, Versioned, precondition_failed};
use crate::{ApiError, AppState};

/// A credential as sent. `values` holds the type's fields; `per_organization` maps
/// organisation ids to value sets of the same type, picked by the event's organisation.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialBody {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// `none`, `headers`, `basic`, `token`, `aws_sigv4` or `hmac_sha256` (required on create).
    #[serde(rename = "type")]
    #[schema(pattern = "^(none|headers|basic|token|aws_sigv4|hmac_sha256)$")]
    kind: Option<String>,
    test: Option<bool>,
    #[schema(value_type = Option<Object>)]
    values: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    per_organization: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
    /// The only hosts endpoints using it may point to: names (`api.example.com`), IP
    /// addresses, or `*.example.com` for the names under one (any, when empty; a PATCH
    /// without it keeps them, `null` clears them).
    #[schema(max_items = 20, value_type = Option<Vec<String>>)]
    #[serde(default)]
    allowed_hosts: Patch<Vec<String>>,
}

fn unprocessable(code: &'static str, field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, code, field, message)
}

fn credential_id(id: &str) -> Result<CredentialId, ApiError> {
    id.parse().map_err(|_| not_found())
}

/// The host patterns as given, checked and deduplicated.
fn allowed_hosts(given: Vec<String>) -> Result<Vec<String>, ApiError> {
    if given.len() > limits::ALLOWED_HOSTS {
        let message = format!("at most {} host patterns", limits::ALLOWED_HOSTS);
        return Err(unprocessable("invalid_allowed_hosts", "allowed_hosts", message));
    }
    let mut kept: Vec<String> = Vec::with_capacity(given.len());
    for pattern in given {
        hookline_core::destination::check_pattern(&pattern)
            .map_err(|message| unprocessable("invalid_allowed_hosts", "allowed_hosts", message))?;
        if !kept.contains(&pattern) {
            kept.push(pattern);
        }
    }
    Ok(kept)
}

/// Every endpoint that uses the credential must still be a place its new `values` may
/// be sent to: a change of hosts or of a SigV4 `base_endpoint` is refused, naming the
/// webhook, rather than leave deliveries failing.
async fn still_fits_its_endpoints(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: &CredentialId,
    values: &CredentialValues,
) -> Result<(), ApiError> {
    let used = credentials::endpoints_using(&state.pool, &caller.organization_id, id)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    for (webhook, url) in used {
        if let Err(why) = values.may_be_sent_to(&url) {
            return Err(ApiError {
                retry_after: None,
                status: StatusCode::CONFLICT,
                code: "host_not_allowed",
                field: Some("allowed_hosts".into()),
                message: format!("webhook {webhook} sends it to {url}: {why}"),
            });
        }
    }
    Ok(())
}

/// Reads one value set of type `kind`, naming the field at fault.
fn value_set(
    kind: &str,
    fields: serde_json::Map<String, serde_json::Value>,
    field: &'static str,
) -> Result<Credential, ApiError> {
    let mut object = fields;
    object.insert("type".into(), serde_json::Value::String(kind.to_owned()));
    let credential: Credential = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|err| unprocessable("invalid_credential", field, err.to_string()))?;
    credential.validate().map_err(|err| unprocessable("invalid_credential", field, err.to_string()))?;
    Ok(credential)
}

fn values(
    kind: &str,
    default: Option<serde_json::Map<String, serde_json::Value>>,
    per_organization: Option<BTreeMap<String, serde_json::Map<String, serde_json::Value>>>,
) -> Result<CredentialValues, ApiError> {
    const KINDS: [&str; 6] = ["none", "headers", "basic", "token", "aws_sigv4", "hmac_sha256"];
    if !KINDS.contains(&kind) {
        return Err(unprocessable("invalid_type", "type", format!("`{kind}` is not one of {}", KINDS.join(", "))));
    }
    let default = match default {
        Some(fields) => Some(value_set(kind, fields, "values")?),
        None if kind == "none" => Some(Credential::None),
        None => None,
    };
    let per_organization = per_organization.unwrap_or_default();
    if per_organization.len() > limits::ORGANIZATION_SETS {
        let message = format!("at most {} organisations' value sets", limits::ORGANIZATION_SETS);
        return Err(unprocessable("too_many_organizations", "per_organization", message));
    }
    let mut per_org = BTreeMap::new();
    for (organization, fields) in per_organization {
        if organization.parse::<OrganizationId>().is_err() {
            return Err(unprocessable(
                "invalid_organization",
                "per_organization",
                format!("`{organization}` is not an organisation id"),
            ));
        }
        per_org.insert(organization, value_set(kind, fields, "per_organization")?);
    }
    if default.is_none() && per_org.is_empty() {
        return Err(unprocessable("missing_values", "values", "give `values`, `per_organization`, or both"));
    }
    Ok(CredentialValues { default, per_organization: per_org, allowed_hosts: Vec::new() })
}

fn name(name: Option<String>) -> Result<String, ApiError> {
    let name = name.unwrap_or_default();
    let kept = limits::name(&name)
        .ok_or_else(|| unprocessable("invalid_name", "name", format!("name must be 1 to {} bytes", limits::NAME)))?;
    Ok(kept.to_owned())
}

/// `POST /v1/credentials` (admin)
#[utoipa::path(post, path = "/v1/credentials", operation_id = "createCredential", tag = "credentials", summary = "Create a credential (values are write-only)", security(("api_key" = [])), request_body = CredentialBody, responses((status = 201, body = CredentialView), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Body(body): Body<CredentialBody>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let name = name(body.name)?;
    let kind = body.kind.ok_or_else(|| unprocessable("missing_type", "type", "type is required"))?;
    let mut values = values(&kind, body.values, body.per_organization)?;
    values.allowed_hosts = allowed_hosts(body.allowed_hosts.given().unwrap_or_default())?;
    let test = body.test.unwrap_or(false);
    let internal = |err: hookline_store::Error| ApiError::internal(&err);
    let id = credentials::create(&state.pool, &state.secrets, &caller.organization_id, &name, &kind, test, &values)
        .await
        .map_err(internal)?;
    let view = credentials::get(&state.pool, &state.secrets, &caller.organization_id, &id).await.map_err(internal)?;
    Ok((StatusCode::CREATED, Json(view.ok_or_else(not_found)?)))
}

/// `GET /v1/credentials`
#[utoipa::path(get, path = "/v1/credentials", operation_id = "listCredentials", tag = "credentials", summary = "List credentials", security(("api_key" = [])), params(("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50"), ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_]{1,64}$", description = "next_cursor of the previous page")), responses((status = 200, body = Page<CredentialView>), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<CredentialView>>, ApiError> {
    let limit = query.limit()?;
    let rows = credentials::list(&state.pool, &state.secrets, &caller.organization_id, query.after()?, limit + 1)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(page(rows, limit, |c| c.id.to_string())))
}

/// `GET /v1/credentials/{id}`
#[utoipa::path(get, path = "/v1/credentials/{id}", operation_id = "getCredential", tag = "credentials", summary = "Get a credential (which fields are set, never their values)", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = CredentialView, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> Result<Versioned<CredentialView>, ApiError> {
    credentials::get(&state.pool, &state.secrets, &caller.organization_id, &credential_id(&id)?)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map(|view| {
            let version = view.updated_at;
            Versioned(view, version)
        })
        .ok_or_else(not_found)
}

/// `PATCH /v1/credentials/{id}` (admin): values given replace the stored ones; a type
/// change needs new values.
#[utoipa::path(patch, path = "/v1/credentials/{id}", operation_id = "updateCredential", tag = "credentials", summary = "Change a credential", security(("api_key" = [])), request_body = CredentialBody, params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = CredentialView, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 412, description = "Changed since the version in If-Match", body = ErrorBody), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 409, description = "An endpoint using it points where it may not be sent", body = ErrorBody), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    if_match: IfMatch,
    Body(body): Body<CredentialBody>,
) -> Result<Versioned<CredentialView>, ApiError> {
    let id = credential_id(&id)?;
    let internal = |err: hookline_store::Error| ApiError::internal(&err);
    let current =
        credentials::get(&state.pool, &state.secrets, &caller.organization_id, &id).await.map_err(internal)?;
    let current = current.ok_or_else(not_found)?;
    if_match.check(current.updated_at)?;
    let (_, _, stored) = credentials::values(&state.pool, &state.secrets, &caller.organization_id, &id)
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let kind = body.kind.unwrap_or(current.kind.clone());
    let kept_hosts = stored.allowed_hosts.clone();
    let mut new_values = if body.values.is_some() || body.per_organization.is_some() {
        let mut merged = values(&kind, body.values, body.per_organization.clone())?;
        if body.per_organization.is_none() {
            merged.per_organization = stored.per_organization;
        }
        merged
    } else if kind != current.kind {
        return Err(unprocessable("missing_values", "values", "changing the type needs the new type's values"));
    } else {
        stored
    };
    new_values.allowed_hosts = allowed_hosts(body.allowed_hosts.applied_to(Some(kept_hosts)).unwrap_or_default())?;
    still_fits_its_endpoints(&state, &caller, &id, &new_values).await?;
    let test = body.test.unwrap_or(current.test);
    if test != current.test
        && !credentials::used_by(&state.pool, &caller.organization_id, &id).await.map_err(internal)?.is_empty()
    {
        return Err(unprocessable(
            "credential_in_use",
            "test",
            "a credential in use cannot switch between test and live",
        ));
    }
    let name = match body.name {
        Some(given) => self::name(Some(given))?,
        None => current.name,
    };
    let organization = &caller.organization_id;
    let version = if_match.0;
    let updated =
        credentials::update(&state.pool, &state.secrets, organization, &id, &name, &kind, test, &new_values, version)
            .await
            .map_err(internal)?;
    if !updated {
        return Err(if version.is_some() { precondition_failed() } else { not_found() });
    }
    let view = credentials::get(&state.pool, &state.secrets, organization, &id).await.map_err(internal)?;
    let view = view.ok_or_else(not_found)?;
    let version = view.updated_at;
    Ok(Versioned(view, version))
}

/// `DELETE /v1/credentials/{id}` (admin): refused with 409, naming the webhooks, while
/// any webhook uses it.
#[utoipa::path(delete, path = "/v1/credentials/{id}", operation_id = "deleteCredential", tag = "credentials", summary = "Delete an unused credential", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 204, description = "Deleted"), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 409, description = "In use; the message names the webhooks", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = credential_id(&id)?;
    let internal = |err: hookline_store::Error| ApiError::internal(&err);
    let users = credentials::used_by(&state.pool, &caller.organization_id, &id).await.map_err(internal)?;
    if !users.is_empty() {
        return Err(ApiError {
            retry_after: None,
            status: StatusCode::CONFLICT,
            code: "credential_in_use",
            field: None,
            message: format!(
                "the credential is used by webhooks {}",
                users.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    if credentials::delete(&state.pool, &caller.organization_id, &id).await.map_err(internal)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("credential")
}
