//! The OpenAPI 3.1 document, generated from the handlers' annotations. It is served at
//! `/v1/openapi.json` and committed as `crates/api/openapi.json`; a test fails when the
//! two differ (run it with `UPDATE_OPENAPI=1` to rewrite the file).

use hookline_store::repo::api_keys::ApiKeySummary;
use hookline_store::repo::credentials::CredentialView;
use hookline_store::repo::delivery_log::{AttemptView, DeliveryDetail, DeliverySummary};
use hookline_store::repo::webhooks::views::{EndpointCircuit, EndpointView, Filters, WebhookView};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{answers, api_keys, credentials, deliveries, event_types, events, organizations, webhooks};

/// Every error answer: `{"error": {"code", "field", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `https_required`.
    code: String,
    /// The request field concerned, when one is.
    field: Option<String>,
    /// What is wrong, for people.
    message: String,
}

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("operator_token", "The platform operator's token: `Authorization: Bearer hlop_…`"),
            ("api_key", "An organisation API key: `Authorization: Bearer hk_…`"),
        ] {
            let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// The answers every route can give from the layers it shares, added to each
/// operation so the document lists every status a client can see: the key check (401,
/// 403), rate limits (429), the database or broker away (503), a path id (404), query strings (400) and
/// JSON bodies (400, 413, 415, 422). Route-specific answers (409) are in the handlers'
/// annotations.
struct SharedAnswers;

impl SharedAnswers {
    fn error(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))),
            )
            .build()
            .into()
    }
}

impl SharedAnswers {
    /// A management POST takes `Idempotency-Key` (`crate::idempotency`), and answers
    /// a malformed one 400, one used for another request 422, one in flight 409.
    fn idempotency_key(post: &mut utoipa::openapi::path::Operation) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::ObjectBuilder;
        let schema = ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some("^[!-~]+$"));
        let parameter = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .description(Some("A retry with the same key within 24 hours gets the first answer"))
            .schema(Some(schema))
            .build();
        post.parameters.get_or_insert_with(Vec::new).push(parameter);
        for (status, description) in [
            ("400", "A malformed header or body; the error names it"),
            ("409", "The first request with this Idempotency-Key is still being answered"),
            ("422", "Invalid input, or an Idempotency-Key used for another request; the error names the field"),
        ] {
            post.responses.responses.entry(status.to_owned()).or_insert_with(|| Self::error(description));
        }
    }
}

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let has_id = path.contains('{');
            if let Some(post) = item.post.as_mut().filter(|_| path != "/v1/events") {
                Self::idempotency_key(post);
            }
            let operations = [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put];
            for operation in operations.into_iter().flatten() {
                let has_query = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
                let has_body = operation.request_body.is_some();
                let answers = [
                    (true, "401", "No valid API key"),
                    (true, "429", "Over the key's rate, or too many failed sign-ins from the address; see Retry-After"),
                    (true, "403", "The key lacks the scope"),
                    (true, "503", "The database or broker is unavailable; try again"),
                    (has_id, "404", "Not found in the caller's organisation"),
                    (
                        has_query || has_body,
                        "400",
                        "A query string or body that does not parse; the error names the field",
                    ),
                    (has_body, "413", "The body is over the size limit"),
                    (has_body, "415", "The body is not application/json"),
                    (has_body, "422", "Invalid input; the error names the field"),
                ];
                for (applies, status, description) in answers {
                    if applies {
                        operation
                            .responses
                            .responses
                            .entry(status.to_owned())
                            .or_insert_with(|| Self::error(description));
                    }
                }
            }
        }
    }
}

/// Links from what names a resource to the operations on it: a created resource's
/// `id` to every operation under its path, and a log page's first delivery to the
/// delivery's own operations. Generators (and schemathesis's stateful phase) follow
/// them to reach real resources.
struct ResourceLinks;

impl ResourceLinks {
    fn operations_under(openapi: &utoipa::openapi::OpenApi, prefix: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for (path, item) in &openapi.paths.paths {
            if !path.starts_with(prefix) {
                continue;
            }
            for operation in [&item.get, &item.post, &item.patch, &item.delete].into_iter().flatten() {
                ids.extend(operation.operation_id.clone());
            }
        }
        ids
    }

    fn link(openapi: &mut utoipa::openapi::OpenApi, path: &str, status: &str, targets: &[String], id_at: &str) {
        let Some(item) = openapi.paths.paths.get_mut(path) else { return };
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            let Some(utoipa::openapi::RefOr::T(response)) = operation.responses.responses.get_mut(status) else {
                continue;
            };
            for target in targets {
                // utoipa 5 writes the builder's `operation_id` in snake case, which no
                // reader knows; the key is set as the specification spells it.
                let spelled = utoipa::openapi::extensions::Extensions::from_iter([("operationId", target.as_str())]);
                let link =
                    utoipa::openapi::link::LinkBuilder::new().parameter("id", id_at).extensions(Some(spelled)).build();
                response.links.insert(target.clone(), link.into());
            }
        }
    }
}

impl Modify for ResourceLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for collection in ["/v1/webhooks", "/v1/credentials", "/v1/api-keys"] {
            let targets = Self::operations_under(openapi, &format!("{collection}/{{id}}"));
            Self::link(openapi, collection, "201", &targets, "$response.body#/id");
        }
        let deliveries = Self::operations_under(openapi, "/v1/deliveries/{id}");
        Self::link(openapi, "/v1/webhooks/{id}/deliveries", "200", &deliveries, "$response.body#/data/0/id");
    }
}

/// A create takes the same body as its PATCH (every field optional, so a PATCH keeps
/// what it does not name), but some fields are required to create: the create
/// operations get `New…` schemas that say so (validation names a missing one in a 422).
struct RequiredOnCreate;

impl Modify for RequiredOnCreate {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder};
        use utoipa::openapi::{Ref, RefOr};
        let required: [(&str, &str, &[&str]); 2] = [
            ("/v1/webhooks", "WebhookBody", &["name", "endpoints", "events"]),
            ("/v1/credentials", "CredentialBody", &["name", "type"]),
        ];
        for (path, schema, fields) in required {
            let name = format!("New{schema}");
            let with_required = fields.iter().fold(ObjectBuilder::new(), |object, field| object.required(*field));
            let composed = AllOfBuilder::new().item(Ref::from_schema_name(schema)).item(with_required).build();
            openapi
                .components
                .get_or_insert_with(Default::default)
                .schemas
                .insert(name.clone(), RefOr::T(composed.into()));
            let body = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|op| op.request_body.as_mut());
            if let Some(content) = body.and_then(|body| body.content.get_mut("application/json")) {
                content.schema = Some(Ref::from_schema_name(name).into());
            }
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "hookline management API", description = "Manage webhooks, credentials, API keys and delivery logs; publish events over HTTP."),
    paths(
        events::publish,
        event_types::list,
        api_keys::create, api_keys::list, api_keys::revoke,
        credentials::create, credentials::list, credentials::get, credentials::update, credentials::delete,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::activate, webhooks::deactivate, webhooks::secret, webhooks::rotate_secret, webhooks::send_test,
        deliveries::list, deliveries::get, deliveries::redeliver, deliveries::recover,
        organizations::create, organizations::list, organizations::get, organizations::update, organizations::delete,
        organizations::first_key,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, WebhookView, EndpointView, EndpointCircuit, Filters, CredentialView, DeliverySummary, DeliveryDetail,
        AttemptView, ApiKeySummary, events::EventBody, answers::AcceptedEvent, answers::CreatedWebhook,
        answers::SigningSecretAnswer, answers::RotatedSecret, answers::TestSent, answers::Redelivered, answers::Recovered,
        answers::EventCatalog, answers::CatalogComponent, answers::CatalogEntry, organizations::OrganizationBody,
        hookline_store::repo::organizations::OrganizationView,
    )),
    modifiers(&BearerKey, &SharedAnswers, &ResourceLinks, &RequiredOnCreate),
)]
pub struct ApiDoc;

/// The document as served and committed: pretty JSON with a trailing newline.
pub fn document() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let generated = document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "crates/api/openapi.json is out of date; run `UPDATE_OPENAPI=1 cargo test -p hookline-api openapi` and commit it"
        );
        let parsed: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert!(parsed["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(parsed["paths"]["/v1/webhooks/{id}/rotate-secret"]["post"].is_object());
    }

    /// A contract generators can use: every operation has its own id, and every route
    /// states the answers its shared layers give.
    #[test]
    fn operations_have_unique_ids_and_every_shared_status() {
        let parsed: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in parsed["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "operationId `{id}` is used twice");
                let statuses = operation["responses"].as_object().unwrap();
                let mut expected = vec!["401", "403", "429", "503"];
                if path.contains('{') {
                    expected.push("404");
                }
                if operation.get("requestBody").is_some() {
                    expected.extend(["400", "413", "415", "422"]);
                }
                for status in expected {
                    assert!(statuses.contains_key(status), "{method} {path} does not state {status}");
                }
            }
        }
        assert_eq!(ids.len(), 30);
    }

    /// The scope names the document offers are the ones keys are made with.
    #[test]
    fn the_documented_scopes_are_the_scopes() {
        let parsed: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let names = parsed["components"]["schemas"]["ScopeName"]["enum"].as_array().unwrap();
        assert_eq!(names.len(), 3);
        for name in names {
            name.as_str().unwrap().parse::<hookline_core::apikey::Scope>().unwrap();
        }
    }

    /// The document's event body has exactly the envelope's fields: every one it names
    /// is read by `hookline_core::envelope`, which refuses any other.
    #[test]
    fn the_documented_event_body_is_the_envelope() {
        let parsed: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let properties = parsed["components"]["schemas"]["EventBody"]["properties"].as_object().unwrap();
        let every_field: serde_json::Map<String, serde_json::Value> =
            properties.keys().map(|name| (name.clone(), serde_json::Value::Null)).collect();
        let body = serde_json::to_vec(&every_field).unwrap();
        hookline_core::envelope::RawUpstreamEvent::from_json(&body, 1 << 20).unwrap();
        assert_eq!(properties.len(), 8, "{properties:?}");
    }

    /// The limits the document states are the ones validation enforces
    /// (`hookline_core::limits`), so the two cannot drift apart.
    #[test]
    fn the_documented_limits_are_the_enforced_ones() {
        use hookline_core::limits;
        let parsed: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let schemas = &parsed["components"]["schemas"];
        for (schema, field, key, limit) in [
            ("WebhookBody", "name", "maxLength", limits::NAME),
            ("WebhookBody", "description", "maxLength", limits::DESCRIPTION),
            ("WebhookBody", "endpoints", "maxItems", limits::ENDPOINTS),
            ("EndpointBody", "url", "maxLength", limits::URL),
            ("FiltersBody", "actor", "maxLength", limits::FILTER),
            ("FiltersBody", "team", "maxLength", limits::FILTER),
            ("CredentialBody", "name", "maxLength", limits::NAME),
            ("CreateKey", "label", "maxLength", limits::NAME),
        ] {
            let stated = &schemas[schema]["properties"][field][key];
            assert_eq!(stated.as_u64(), Some(limit as u64), "{schema}.{field}.{key}: {}", schemas[schema]);
        }
    }
}
