//! What routers read of webhooks: the active ones of an organisation and environment,
//! with their endpoints, kept in memory until a change is notified.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use hookline_core::environment::Environment;
use hookline_core::ids::{EndpointId, OrganizationId, WebhookId};
use hookline_core::webhook::Subscription;
use tokio_postgres::types::Type;

use crate::config_watch::ConfigCache;
use crate::error::{QueryContext as _, Result};

/// What the router needs of an active webhook.
#[derive(Debug, Clone)]
pub struct RoutableWebhook {
    /// The webhook.
    pub id: WebhookId,
    /// Which events it receives.
    pub subscription: Subscription,
    /// Its endpoints, in order; one delivery is made for each.
    pub endpoints: Vec<EndpointId>,
}

/// Where a router looks for webhooks: one organisation's webhooks in one environment.
pub type RoutingScope = (OrganizationId, Environment);

/// Every active, undeleted webhook in each of `scopes` whose organisation may use
/// webhooks, with its endpoints, in one query. Event-type and filter matching is left to the caller
/// ([`Subscription::matches`]) so the rule lives in one place.
pub async fn routable(pool: &Pool, scopes: &[RoutingScope]) -> Result<HashMap<RoutingScope, Vec<RoutableWebhook>>> {
    let client = pool.get().await?;
    let organizations: Vec<&OrganizationId> = scopes.iter().map(|(organization, _)| organization).collect();
    let environments: Vec<Environment> = scopes.iter().map(|(_, environment)| *environment).collect();
    let rows = client
        .query_typed(
            "SELECT w.id, w.events, w.filter_actor, w.filter_team, array_agg(e.id ORDER BY e.position) AS endpoints,
                    w.organization_id, w.environment
             FROM webhooks w
             JOIN organizations o ON o.id = w.organization_id AND o.webhooks_enabled
             JOIN endpoints e ON e.webhook_id = w.id AND e.removed_at IS NULL
             WHERE (w.organization_id, w.environment) IN (SELECT * FROM unnest($1::text[], $2::text[]))
               AND w.active AND w.deleted_at IS NULL
             GROUP BY w.id",
            &[(&organizations, Type::TEXT_ARRAY), (&environments, Type::TEXT_ARRAY)],
        )
        .await
        .context("loading routable webhooks")?;
    let mut found: HashMap<RoutingScope, Vec<RoutableWebhook>> =
        scopes.iter().map(|scope| (scope.clone(), Vec::new())).collect();
    for row in rows {
        let events: Vec<String> = row.try_get("events")?;
        let environment: Environment = row.try_get("environment")?;
        let webhook = RoutableWebhook {
            id: row.try_get("id")?,
            subscription: Subscription {
                selectors: events.iter().filter_map(|e| e.parse().ok()).collect(),
                environment,
                actor: row.try_get("filter_actor")?,
                team: row.try_get("filter_team")?,
            },
            endpoints: row.try_get("endpoints")?,
        };
        found.entry((row.try_get("organization_id")?, environment)).or_default().push(webhook);
    }
    Ok(found)
}

/// The routable webhooks of each scope as last read, kept until a webhook, endpoint or
/// credential changes.
pub type RoutableCache = ConfigCache<RoutingScope, Arc<Vec<RoutableWebhook>>>;

/// [`routable`], answered from `cache` where it can be: only the scopes it does not hold
/// are read, in one query.
pub async fn routable_cached(
    pool: &Pool,
    cache: &RoutableCache,
    scopes: &[RoutingScope],
) -> Result<HashMap<RoutingScope, Arc<Vec<RoutableWebhook>>>> {
    let mut found = HashMap::with_capacity(scopes.len());
    let mut missing = Vec::new();
    for scope in scopes {
        match cache.get(scope) {
            Some(webhooks) => {
                found.insert(scope.clone(), webhooks);
            }
            None => missing.push(scope.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    let version = cache.version();
    for (scope, webhooks) in routable(pool, &missing).await? {
        let webhooks = Arc::new(webhooks);
        cache.insert(version, scope.clone(), webhooks.clone());
        found.insert(scope, webhooks);
    }
    Ok(found)
}
