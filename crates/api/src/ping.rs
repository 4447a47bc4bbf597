//! The activation ping: a `webhook.ping` event delivered to every endpoint of the
//! activated webhook only, recorded like any other delivery.

use chrono::Utc;
use hookline_bus::codec::proto;
use hookline_bus::topology::JOB_ROUTING_KEY;
use hookline_core::envelope::UpstreamEvent;
use hookline_core::ids::{OrganizationId, WebhookId};
use hookline_store::repo::{deliveries, events, webhook_views};

use crate::{ApiError, AppState};

/// Event type of the ping.
pub const PING: &str = "webhook.ping";

/// Creates the ping event and one delivery per endpoint, and publishes their jobs.
pub async fn send(state: &AppState, organization: &OrganizationId, webhook: &WebhookId) -> Result<(), ApiError> {
    let internal = |err: &dyn std::fmt::Display| ApiError::internal(err);
    let view = webhook_views::get(&state.pool, organization, webhook)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| internal(&"webhook vanished while activating"))?;
    let event = UpstreamEvent {
        message_id: None,
        event_type: PING.into(),
        organization: organization.clone(),
        environment: if view.test { hookline_core::Environment::Test } else { hookline_core::Environment::Live },
        occurred_at: Utc::now(),
        actor: None,
        team: None,
        data: serde_json::json!({"webhookId": webhook, "message": "hookline ping"}),
    };
    let events::Stored::Inserted(event_id) = events::insert(&state.pool, &event).await.map_err(|e| internal(&e))?
    else {
        return Err(internal(&"a ping event could not be stored"));
    };
    // The ping is for this webhook alone: it is never offered to the router.
    events::mark_routed(&state.pool, &event_id).await.map_err(|e| internal(&e))?;
    let targets: Vec<_> = view.endpoints.iter().map(|e| (webhook.clone(), e.id.clone())).collect();
    let created =
        deliveries::create_for_event(&state.pool, &event_id, organization, &targets).await.map_err(|e| internal(&e))?;
    let jobs: Vec<_> = created
        .iter()
        .map(|id| proto::DeliveryJob { delivery_id: id.to_string(), attempt: 1, manual: false })
        .collect();
    state
        .publisher
        .publish_all(&state.topology.delivery_exchange(), JOB_ROUTING_KEY, &jobs)
        .await
        .map_err(|e| ApiError::unavailable(&e))
}
