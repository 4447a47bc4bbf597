//! Events hookline makes itself and delivers to one webhook only: the activation ping
//! and the test events operators send. They are stored and delivered like any other
//! event (same body, same signing, same log) but never offered to the router.

use chrono::Utc;
use hookline_bus::codec::proto;
use hookline_bus::{Traced as _, jobs};
use hookline_core::envelope::{Origin, UpstreamEvent};
use hookline_core::ids::{EventId, OrganizationId, WebhookId};
use hookline_core::lifecycle::Job;
use hookline_core::payload::Payload;
use hookline_store::repo::webhooks::views;
use hookline_store::repo::{deliveries, events};

use crate::{ApiError, AppState};

/// Event type of the activation ping.
pub(crate) const PING: &str = "webhook.ping";

/// Stores the event and one delivery per endpoint of `webhook`, and publishes their jobs.
pub(crate) async fn send(
    state: &AppState,
    organization: &OrganizationId,
    webhook: &WebhookId,
    event_type: &str,
    data: serde_json::Value,
    origin: Origin,
) -> Result<EventId, ApiError> {
    let internal = |err: &dyn std::fmt::Display| ApiError::internal(err);
    let view = views::get(&state.pool, organization, webhook)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| internal(&"webhook vanished while sending it an event"))?;
    let event = UpstreamEvent {
        message_id: None,
        event_type: event_type.to_owned(),
        organization: organization.clone(),
        environment: if view.test { hookline_core::Environment::Test } else { hookline_core::Environment::Live },
        occurred_at: Utc::now(),
        actor: None,
        team: None,
        data: Payload::from_value(&data).map_err(|e| internal(&e))?,
    };
    let event_id = events::insert_synthetic(&state.pool, &event, origin).await.map_err(|e| internal(&e))?;
    let targets: Vec<_> = view.endpoints.iter().map(|e| (webhook.clone(), e.id.clone())).collect();
    let created =
        deliveries::create_for_event(&state.pool, &event_id, organization, &targets).await.map_err(|e| internal(&e))?;
    let Job { attempt, manual } = Job::after(0, false);
    let span = tracing::Span::current();
    let jobs = created
        .iter()
        .map(|id| {
            proto::DeliveryJob { delivery_id: id.to_string(), attempt, manual, ..Default::default() }.traced(&span)
        })
        .collect();
    jobs::to_workers(&state.publisher, &state.topology, jobs).await.map_err(|e| ApiError::unavailable(&e))?;
    Ok(event_id)
}

/// The activation ping.
pub(crate) async fn ping(state: &AppState, organization: &OrganizationId, webhook: &WebhookId) -> Result<(), ApiError> {
    let data = serde_json::json!({"webhookId": webhook, "message": "hookline ping"});
    send(state, organization, webhook, PING, data, Origin::Ping).await.map(|_| ())
}
