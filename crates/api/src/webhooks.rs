//! `/v1/webhooks`: create, list, get, update, delete, activate, deactivate, secret.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_core::RetryPolicy;
use hookline_core::apikey::Scope;
use hookline_core::envelope::Origin;
use hookline_core::ids::{EndpointId, WebhookId};
use hookline_store::repo::webhooks::changes;
use hookline_store::repo::webhooks::views::{self, EndpointView, WebhookView};

use crate::admin::{self, EndpointInput, WebhookInput, WebhookRules};
use crate::answers::{CreatedWebhook, RotatedSecret, SigningSecretAnswer, TestSent};
use crate::auth::{Admin, Caller, Reader, Writer};
use crate::json::{Body, Patch, Path, Query};
use crate::openapi::ErrorBody;
use crate::pagination::{Page, PageQuery, page};
use crate::versions::{IfMatch, Versioned, precondition_failed};
use crate::{ApiError, AppState, synthetic};

/// A webhook as sent in a create or update request. On update every field is optional
/// and only the fields given change; `null` clears the description, a filter or the
/// retry policy (back to the default).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[schema(max_length = 4096, value_type = Option<String>)]
    #[serde(default)]
    description: Patch<String>,
    #[schema(min_items = 1, max_items = 10)]
    endpoints: Option<Vec<EndpointBody>>,
    /// Event codes and `component.*` wildcards; duplicates are kept once.
    #[schema(min_items = 1)]
    events: Option<Vec<String>>,
    filters: Option<FiltersBody>,
    test: Option<bool>,
    active: Option<bool>,
    #[schema(value_type = Option<RetryPolicyBody>)]
    #[serde(default)]
    retry_policy: Patch<RetryPolicyBody>,
}

/// One endpoint; on update, `id` keeps an existing endpoint (and its history).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointBody {
    id: Option<String>,
    #[schema(max_length = 2048)]
    url: String,
    method: Option<String>,
    credential_id: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// `{actor, team}`
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FiltersBody {
    #[schema(max_length = 256, value_type = Option<String>)]
    #[serde(default)]
    actor: Patch<String>,
    #[schema(max_length = 256, value_type = Option<String>)]
    #[serde(default)]
    team: Patch<String>,
}

/// `{"delays": ["5m", "10m"]}`
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryPolicyBody {
    delays: Vec<String>,
}

/// Parses a webhook id from the path; a malformed one is simply not found.
pub(crate) fn webhook_id(id: &str) -> Result<WebhookId, ApiError> {
    id.parse().map_err(|_| not_found())
}

fn unprocessable(code: &'static str, field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, code, field, message)
}

/// A webhook's own retry policy as given: delays such as `"5m"`, within the lifecycle's
/// limits (`hookline_core::retry`).
fn retry_policy(body: &RetryPolicyBody) -> Result<RetryPolicy, ApiError> {
    let invalid = |message: String| unprocessable("invalid_retry_policy", "retry_policy.delays", message);
    let delays = body
        .delays
        .iter()
        .map(|text| humantime::parse_duration(text).map_err(|err| invalid(format!("`{text}`: {err}"))))
        .collect::<Result<_, _>>()?;
    RetryPolicy::new(delays).map_err(|err| invalid(err.to_string()))
}

fn endpoints(bodies: Vec<EndpointBody>) -> (Vec<EndpointInput>, Vec<Option<String>>) {
    bodies
        .into_iter()
        .map(|e| {
            (EndpointInput { url: e.url, method: e.method, headers: e.headers, credential_id: e.credential_id }, e.id)
        })
        .unzip()
}

async fn load(state: &AppState, caller: &Caller, id: &WebhookId) -> Result<WebhookView, ApiError> {
    views::get(&state.pool, &caller.organization_id, id)
        .await
        .map_err(|err| ApiError::internal(&err))?
        .ok_or_else(not_found)
}

/// Where a credential may be sent is an admin's decision: attaching a credential to an
/// endpoint, changing the URL of an endpoint that has one, or moving one to another
/// endpoint needs an admin key (403 otherwise). A write key could else have hookline
/// send an admin-only secret (a password, a token, an HMAC signature over data it
/// chooses) to a URL it picks. Every (URL, credential) pair of `after` must be one of
/// `before`'s for a lesser key.
fn credentials_stay_put(caller: &Caller, before: &[EndpointView], after: &[EndpointInput]) -> Result<(), ApiError> {
    if caller.may(Scope::Admin) {
        return Ok(());
    }
    let kept = |input: &EndpointInput| {
        let Some(credential) = input.credential_id.as_deref().filter(|id| !id.is_empty()) else { return true };
        // Compared as stored: the parsed URL's text.
        let url = url::Url::parse(input.url.trim()).map_or_else(|_| input.url.clone(), |url| url.to_string());
        before.iter().any(|endpoint| {
            endpoint.url == url && endpoint.credential_id.as_ref().is_some_and(|id| id.as_str() == credential)
        })
    };
    if after.iter().all(kept) {
        Ok(())
    } else {
        Err(ApiError {
            retry_after: None,
            status: StatusCode::FORBIDDEN,
            code: "credential_needs_admin",
            field: Some("endpoints.credential_id".into()),
            message: "attaching a credential to an endpoint, or changing the URL of an endpoint that has one, \
                      needs an admin key"
                .into(),
        })
    }
}

/// `POST /v1/webhooks`: 201 with the webhook and its signing secret (shown here and to
/// admins through `GET /v1/webhooks/{id}/secret`).
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "createWebhook", tag = "webhooks", summary = "Create a webhook (inactive unless `active`)", security(("api_key" = [])), request_body = WebhookBody, responses((status = 201, description = "The webhook with its signing_secret", body = CreatedWebhook), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Body(body): Body<WebhookBody>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let (endpoint_inputs, _) = endpoints(body.endpoints.unwrap_or_default());
    credentials_stay_put(&caller, &[], &endpoint_inputs)?;
    let filters = body.filters.unwrap_or_default();
    let input = WebhookInput {
        organization_id: Some(caller.organization_id.clone()),
        name: body.name.unwrap_or_default(),
        description: body.description.given().unwrap_or_default(),
        endpoints: endpoint_inputs,
        events: body.events.unwrap_or_default(),
        actor: filters.actor.given(),
        team: filters.team.given(),
        test: body.test.unwrap_or(false),
        active: body.active.unwrap_or(false),
        basic: None,
        retry_policy: body.retry_policy.as_given().map(retry_policy).transpose()?,
        created_by: Some(caller.label.clone()),
    };
    let rules = WebhookRules { catalog: &state.catalog, allow_http: state.limits.allow_http };
    let created = admin::create_webhook(&state.pool, &state.secrets, rules, input).await?;
    if created.active {
        synthetic::ping(&state, &caller.organization_id, &created.id).await?;
    }
    let webhook = load(&state, &caller, &created.id).await?;
    Ok((StatusCode::CREATED, Json(CreatedWebhook { webhook, signing_secret: created.signing_secret })))
}

/// `GET /v1/webhooks`
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "listWebhooks", tag = "webhooks", summary = "List webhooks", security(("api_key" = [])), params(("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50"), ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_]{1,64}$", description = "next_cursor of the previous page")), responses((status = 200, body = Page<WebhookView>), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<WebhookView>>, ApiError> {
    let limit = query.limit()?;
    let webhooks = views::list(&state.pool, &caller.organization_id, query.after()?, limit + 1)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    Ok(Json(page(webhooks, limit, |w| w.id.to_string())))
}

/// `GET /v1/webhooks/{id}`
#[utoipa::path(get, path = "/v1/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks", summary = "Get a webhook", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = WebhookView, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> Result<Versioned<WebhookView>, ApiError> {
    let view = load(&state, &caller, &webhook_id(&id)?).await?;
    let version = view.updated_at;
    Ok(Versioned(view, version))
}

/// `PATCH /v1/webhooks/{id}`: changes the fields given; the whole result is validated
/// as on creation, and nothing is saved if any rule fails.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", operation_id = "updateWebhook", tag = "webhooks", summary = "Change the fields given", security(("api_key" = [])), request_body = WebhookBody, params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = WebhookView, headers(("ETag" = String, description = "The version, for If-Match"))), (status = 412, description = "Changed since the version in If-Match", body = ErrorBody), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    if_match: IfMatch,
    Body(body): Body<WebhookBody>,
) -> Result<Versioned<WebhookView>, ApiError> {
    let id = webhook_id(&id)?;
    let current = load(&state, &caller, &id).await?;
    if_match.check(current.updated_at)?;
    let (endpoint_inputs, kept) = updated_endpoints(body.endpoints, &current)?;
    credentials_stay_put(&caller, &current.endpoints, &endpoint_inputs)?;
    let filters = body.filters.unwrap_or_default();
    let filters = (filters.actor.applied_to(current.filters.actor), filters.team.applied_to(current.filters.team));
    let retry_policy = match &body.retry_policy {
        Patch::Set(policy) => Some(retry_policy(policy)?),
        Patch::Clear => None,
        Patch::Keep => current
            .retry_delays_ms
            .as_deref()
            .map(RetryPolicy::from_millis)
            .transpose()
            .map_err(|err| ApiError::internal(&format!("stored retry policy of {id}: {err}")))?,
    };
    let input = WebhookInput {
        organization_id: Some(caller.organization_id.clone()),
        name: body.name.unwrap_or(current.name),
        description: body.description.applied_to(Some(current.description)).unwrap_or_default(),
        endpoints: endpoint_inputs,
        events: body.events.unwrap_or(current.events),
        actor: filters.0,
        team: filters.1,
        test: body.test.unwrap_or(current.test),
        active: current.active,
        basic: None,
        retry_policy,
        created_by: current.created_by,
    };
    let rules = WebhookRules { catalog: &state.catalog, allow_http: state.limits.allow_http };
    let mut validated = admin::validate(&caller.organization_id, &input, rules).map_err(ApiError::from)?;
    admin::check_credentials(&state.pool, &state.secrets, &caller.organization_id, &mut validated).await?;
    let updated = changes::update(&state.pool, &id, &validated, &kept, if_match.0)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    if !updated {
        // It was there a moment ago: changed since (or deleted) under the client's feet.
        return Err(if if_match.0.is_some() { precondition_failed() } else { not_found() });
    }
    match body.active {
        Some(true) => activate_inner(&state, &caller, &id).await?,
        Some(false) => deactivate_inner(&state, &caller, &id).await?,
        None => {}
    }
    let view = load(&state, &caller, &id).await?;
    let version = view.updated_at;
    Ok(Versioned(view, version))
}

/// The endpoints an update leaves the webhook with (`given`, or the current ones), each
/// with the id of the current endpoint it keeps (`None` for a new one).
fn updated_endpoints(
    given: Option<Vec<EndpointBody>>,
    current: &WebhookView,
) -> Result<(Vec<EndpointInput>, Vec<Option<EndpointId>>), ApiError> {
    let Some(bodies) = given else {
        return Ok(current
            .endpoints
            .iter()
            .map(|e| {
                let input = EndpointInput {
                    url: e.url.clone(),
                    method: Some(e.method.as_str().to_owned()),
                    headers: e.headers.clone(),
                    credential_id: e.credential_id.as_ref().map(ToString::to_string),
                };
                (input, Some(e.id.clone()))
            })
            .unzip());
    };
    let (inputs, ids) = endpoints(bodies);
    let kept = ids
        .into_iter()
        .map(|id| {
            let Some(text) = id else { return Ok(None) };
            let parsed: Option<EndpointId> = text.parse().ok();
            match parsed.filter(|p| current.endpoints.iter().any(|e| &e.id == p)) {
                Some(kept) => Ok(Some(kept)),
                None => Err(unprocessable(
                    "unknown_endpoint",
                    "endpoints.id",
                    format!("`{text}` is not an endpoint of this webhook"),
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok((inputs, kept))
}

/// `DELETE /v1/webhooks/{id}`: stops deliveries at once (waiting retries included) and
/// keeps the delivery history readable.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "deleteWebhook", tag = "webhooks", summary = "Delete a webhook, keeping its history", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 204, description = "Deleted"), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = webhook_id(&id)?;
    match changes::soft_delete(&state.pool, &caller.organization_id, &id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(not_found()),
        Err(err) => Err(ApiError::internal(&err)),
    }
}

async fn activate_inner(state: &AppState, caller: &Caller, id: &WebhookId) -> Result<(), ApiError> {
    let enabled = hookline_store::repo::organizations::webhooks_enabled(&state.pool, &caller.organization_id)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    if !enabled {
        return Err(admin::webhooks_disabled());
    }
    match changes::activate(&state.pool, &caller.organization_id, id).await {
        Ok(None) => Err(not_found()),
        Ok(Some(true)) => synthetic::ping(state, &caller.organization_id, id).await,
        Ok(Some(false)) => Ok(()),
        Err(err) => Err(ApiError::internal(&err)),
    }
}

async fn deactivate_inner(state: &AppState, caller: &Caller, id: &WebhookId) -> Result<(), ApiError> {
    match changes::deactivate(&state.pool, &caller.organization_id, id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_found()),
        Err(err) => Err(ApiError::internal(&err)),
    }
}

/// `POST /v1/webhooks/{id}/activate`: turns the webhook on and pings its endpoints.
#[utoipa::path(post, path = "/v1/webhooks/{id}/activate", operation_id = "activateWebhook", tag = "webhooks", summary = "Activate and ping every endpoint", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = WebhookView), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn activate(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let id = webhook_id(&id)?;
    activate_inner(&state, &caller, &id).await?;
    Ok(Json(load(&state, &caller, &id).await?))
}

/// `POST /v1/webhooks/{id}/deactivate`: nothing more is delivered, waiting retries included.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deactivate", operation_id = "deactivateWebhook", tag = "webhooks", summary = "Deactivate; waiting retries are dropped", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = WebhookView), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn deactivate(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let id = webhook_id(&id)?;
    deactivate_inner(&state, &caller, &id).await?;
    Ok(Json(load(&state, &caller, &id).await?))
}

/// `GET /v1/webhooks/{id}/secret` (admin): the signing secret receivers verify with.
#[utoipa::path(get, path = "/v1/webhooks/{id}/secret", operation_id = "getWebhookSecret", tag = "webhooks", summary = "The signing secret (admin)", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = SigningSecretAnswer), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn secret(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<SigningSecretAnswer>, ApiError> {
    let id = webhook_id(&id)?;
    let secret = views::signing_secret(&state.pool, &state.secrets, &caller.organization_id, &id)
        .await
        .map_err(|err| ApiError::internal(&err))?
        .ok_or_else(not_found)?;
    Ok(Json(SigningSecretAnswer { signing_secret: secret.expose().to_owned() }))
}

/// `POST /v1/webhooks/{id}/rotate-secret` (admin): a new secret, returned once here; the
/// old one keeps signing alongside it for `signing.rotation_overlap`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", operation_id = "rotateWebhookSecret", tag = "webhooks", summary = "Rotate the signing secret; both sign during the overlap", security(("api_key" = [])), params(("id" = String, Path, description = "Resource id")), responses((status = 200, body = RotatedSecret), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let id = webhook_id(&id)?;
    let secret = hookline_core::signing::SigningSecret::generate();
    let overlap = state.limits.rotation_overlap;
    let rotated = changes::rotate_secret(&state.pool, &state.secrets, &caller.organization_id, &id, &secret, overlap)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    if !rotated {
        return Err(not_found());
    }
    let until = chrono::Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default();
    Ok(Json(RotatedSecret { signing_secret: secret.expose().to_owned(), previous_secret_valid_until: until }))
}

/// Body of `POST /v1/webhooks/{id}/test`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestBody {
    event_type: String,
}

/// `POST /v1/webhooks/{id}/test`: delivers the catalog's example payload of the event
/// type to this webhook's endpoints, logged as a test delivery (origin `test`); 409 for
/// an inactive webhook.
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", operation_id = "sendTestEvent", tag = "webhooks", summary = "Deliver the catalog example of an event type", security(("api_key" = [])), request_body = TestBody, params(("id" = String, Path, description = "Resource id")), responses((status = 202, body = TestSent), (status = 404, description = "Not found in the caller's organisation", body = ErrorBody), (status = 409, description = "The webhook is inactive", body = ErrorBody), (status = 422, description = "Invalid input; the error names the field", body = ErrorBody), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn send_test(
    State(state): State<AppState>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Body(body): Body<TestBody>,
) -> Result<(StatusCode, Json<TestSent>), ApiError> {
    let id = webhook_id(&id)?;
    let webhook = load(&state, &caller, &id).await?;
    // An inactive webhook's deliveries are closed unattempted: a test event would be
    // accepted only to fail with nothing to show for it.
    if !webhook.active {
        return Err(ApiError {
            retry_after: None,
            status: StatusCode::CONFLICT,
            code: "webhook_inactive",
            field: None,
            message: "the webhook is inactive: activate it before sending a test event".into(),
        });
    }
    let event_type = state.catalog.get(&body.event_type).ok_or_else(|| {
        unprocessable("unknown_event", "event_type", format!("`{}` is not in the catalog", body.event_type))
    })?;
    let event_id = synthetic::send(
        &state,
        &caller.organization_id,
        &id,
        &event_type.code,
        event_type.example.clone(),
        Origin::Test,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(TestSent { event_id: event_id.to_string() })))
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook")
}
