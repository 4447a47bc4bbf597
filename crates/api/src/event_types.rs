//! `GET /v1/event-types`: the catalog, grouped by component.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use crate::auth::Reader;
use crate::openapi::ErrorBody;
use crate::{ApiError, AppState};

/// Every event type, grouped by component, with code, name, description and example.
#[utoipa::path(get, path = "/v1/event-types", tag = "event-types", summary = "The event catalog, grouped by component", security(("api_key" = [])), responses((status = 200, body = Object, description = "{data: [{component, event_types: [{code, name, description, example}]}]}"), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Reader(_caller): Reader,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut components: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for event_type in state.catalog.iter() {
        components.entry(event_type.component.as_str()).or_default().push(serde_json::json!({
            "code": event_type.code,
            "name": event_type.name,
            "description": event_type.description,
            "example": event_type.example,
        }));
    }
    let data: Vec<_> = components
        .into_iter()
        .map(|(component, event_types)| serde_json::json!({"component": component, "event_types": event_types}))
        .collect();
    Ok(Json(serde_json::json!({ "data": data })))
}
