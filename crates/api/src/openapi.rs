//! The OpenAPI 3.1 document, generated from the handlers' annotations. It is served at
//! `/v1/openapi.json` and committed as `crates/api/openapi.json`; a test fails when the
//! two differ (run it with `UPDATE_OPENAPI=1` to rewrite the file).

use hookline_store::repo::api_keys::ApiKeySummary;
use hookline_store::repo::credentials::CredentialView;
use hookline_store::repo::delivery_log::{AttemptView, DeliveryDetail, DeliverySummary};
use hookline_store::repo::webhooks::views::{EndpointCircuit, EndpointView, Filters, WebhookView};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{api_keys, credentials, deliveries, event_types, events, webhooks};

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
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An organisation API key: `Authorization: Bearer hk_…`"))
                    .build(),
            ),
        );
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
    ),
    components(schemas(
        ErrorBody, ErrorDetail, WebhookView, EndpointView, EndpointCircuit, Filters, CredentialView, DeliverySummary, DeliveryDetail,
        AttemptView, ApiKeySummary,
    )),
    modifiers(&BearerKey),
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
