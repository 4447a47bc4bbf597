//! `GET /v1/event-types`: the catalog, grouped by component.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use crate::answers::{CatalogComponent, CatalogEntry, EventCatalog};
use crate::auth::Reader;
use crate::openapi::ErrorBody;
use crate::{ApiError, AppState};

/// Every event type, grouped by component, with code, name, description and example.
#[utoipa::path(get, path = "/v1/event-types", operation_id = "listEventTypes", tag = "event-types", summary = "The event catalog, grouped by component", security(("api_key" = [])), responses((status = 200, body = EventCatalog), (status = 401, description = "No valid API key", body = ErrorBody), (status = 403, description = "The key lacks the scope", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Reader(_caller): Reader,
) -> Result<Json<EventCatalog>, ApiError> {
    let mut components: BTreeMap<&str, Vec<CatalogEntry>> = BTreeMap::new();
    for event_type in state.catalog.iter() {
        components.entry(event_type.component.as_str()).or_default().push(CatalogEntry {
            code: event_type.code.clone(),
            name: event_type.name.clone(),
            description: event_type.description.clone(),
            example: event_type.example.clone(),
        });
    }
    let data = components
        .into_iter()
        .map(|(component, event_types)| CatalogComponent { component: component.to_owned(), event_types })
        .collect();
    Ok(Json(EventCatalog { data }))
}
