//! The bodies of the API's answers that are not a stored resource's view: typed, so the
//! OpenAPI document describes exactly what is sent.

use chrono::{DateTime, Utc};
use hookline_store::repo::webhooks::views::WebhookView;

/// `POST /v1/webhooks`: the webhook and its signing secret.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedWebhook {
    /// The webhook as `GET /v1/webhooks/{id}` shows it.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…`: what receivers verify signatures with (again from `/secret`, admin).
    pub signing_secret: String,
}

/// `GET /v1/webhooks/{id}/secret`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SigningSecretAnswer {
    /// `whsec_…`
    pub signing_secret: String,
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RotatedSecret {
    /// The new secret, `whsec_…`; shown once here (and to admins from `/secret`).
    pub signing_secret: String,
    /// Until then the previous secret signs alongside the new one.
    pub previous_secret_valid_until: DateTime<Utc>,
}

/// `POST /v1/events`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct AcceptedEvent {
    /// The stored event's id (the first one's, for a duplicate).
    pub id: String,
    /// Whether an event with the same `id` had already been accepted.
    pub duplicate: bool,
}

/// `POST /v1/webhooks/{id}/test`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TestSent {
    /// The test event, delivered to this webhook only.
    pub event_id: String,
}

/// `POST /v1/deliveries/{id}/redeliver`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Redelivered {
    /// The delivery.
    pub delivery_id: String,
    /// The number the new attempt will have.
    pub attempt: u32,
}

/// `POST /v1/webhooks/{id}/recover`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Recovered {
    /// How many failed deliveries were queued again.
    pub requeued: usize,
}

/// `GET /v1/event-types`: the catalog by component.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct EventCatalog {
    /// Components in name order.
    pub data: Vec<CatalogComponent>,
}

/// One component's event types.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CatalogComponent {
    /// e.g. `job`.
    pub component: String,
    /// Its event types.
    pub event_types: Vec<CatalogEntry>,
}

/// One event type.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CatalogEntry {
    /// e.g. `job.created`.
    pub code: String,
    /// For people, e.g. "Job created".
    pub name: String,
    /// What it means.
    pub description: String,
    /// An example payload, also what a test event carries.
    #[schema(value_type = Object)]
    pub example: serde_json::Value,
}
