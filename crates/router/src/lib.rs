#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::time::Duration;

use hookline_bus::codec::{self, proto};
use hookline_bus::consumer::{self, ConsumerOptions, Incoming, Outcome};
use hookline_bus::topology::JOB_ROUTING_KEY;
use hookline_bus::{Bus, Publisher, Topology};
use hookline_core::Environment;
use hookline_core::ids::{DeliveryId, EventId, OrganizationId};
use hookline_core::webhook::EventFacts;
use hookline_store::Pool;
use hookline_store::batch::{self, Batcher};
use hookline_store::repo::{deliveries, webhooks};
use hookline_telemetry::{Metrics, Settings};
use tokio_util::sync::CancellationToken;

/// Why the router stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration is unusable.
    #[error(transparent)]
    Settings(#[from] hookline_telemetry::SettingsError),
    /// PostgreSQL failed.
    #[error(transparent)]
    Store(#[from] hookline_store::Error),
    /// RabbitMQ failed.
    #[error(transparent)]
    Bus(#[from] hookline_bus::Error),
    /// The route message names an event its organisation does not have.
    #[error("event {0} is not stored for the organisation the route message names")]
    UnknownEvent(EventId),
}

/// Turns route messages into deliveries and delivery jobs.
#[derive(Clone)]
pub struct Router {
    pool: Pool,
    publisher: Publisher,
    topology: Topology,
    metrics: Metrics,
    /// Finds the webhooks and creates the deliveries of all events being routed at the
    /// same moment, in one query and one statement.
    create: Batcher<Routing, Option<Vec<DeliveryId>>>,
}

/// One event to route, as its route message describes it.
struct Routing {
    event_id: EventId,
    organization: OrganizationId,
    environment: Environment,
    event_type: String,
    actor: Option<String>,
    team: Option<String>,
}

/// Creates the deliveries of several events: one query for their webhooks, one
/// statement for their deliveries.
async fn create_deliveries(
    pool: &Pool,
    events: &[Routing],
) -> Result<Vec<Option<Vec<DeliveryId>>>, hookline_store::Error> {
    let mut scopes: Vec<webhooks::RoutingScope> =
        events.iter().map(|event| (event.organization.clone(), event.environment)).collect();
    scopes.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    scopes.dedup();
    let routable = webhooks::routable(pool, &scopes).await?;
    let targets: Vec<deliveries::EventTargets> = events
        .iter()
        .map(|event| {
            let facts = EventFacts {
                event_type: &event.event_type,
                environment: event.environment,
                actor: event.actor.as_deref(),
                team: event.team.as_deref(),
            };
            let targets = routable
                .get(&(event.organization.clone(), event.environment))
                .into_iter()
                .flatten()
                .filter(|webhook| webhook.subscription.matches(&facts))
                .flat_map(|webhook| webhook.endpoints.iter().map(|endpoint| (webhook.id.clone(), endpoint.clone())))
                .collect();
            (event.event_id.clone(), event.organization.clone(), targets)
        })
        .collect();
    deliveries::create_for_events(pool, &targets).await
}

/// A route message that does not describe an event.
fn malformed(detail: String) -> Outcome {
    Outcome::Reject { reason: "malformed".into(), detail }
}

impl Router {
    /// A router reading webhooks from `pool`, publishing jobs through `publisher` and
    /// counting the deliveries it creates in `metrics`. Must be made inside a tokio
    /// runtime.
    pub fn new(pool: Pool, publisher: Publisher, topology: Topology, batch_linger: Duration, metrics: Metrics) -> Self {
        let create = {
            let (pool, metrics) = (pool.clone(), metrics.clone());
            Batcher::new(batch::MAX_ROWS, batch::MAX_RUNNING, batch_linger, move |events: Arc<Vec<Routing>>| {
                let pool = pool.clone();
                metrics.batch_ran("create_deliveries", events.len());
                async move { create_deliveries(&pool, &events).await }
            })
        };
        Self { pool, publisher, topology, metrics, create }
    }

    async fn handle(&self, message: Arc<Incoming>) -> Outcome {
        let route: proto::RouteEvent = match codec::decode(&message.data) {
            Ok(route) => route,
            Err(rejection) => return malformed(rejection.message),
        };
        let (event_id, organization, environment) = match (
            route.event_id.parse::<EventId>(),
            route.organization_id.parse::<OrganizationId>(),
            route.environment.parse::<Environment>(),
        ) {
            (Ok(e), Ok(o), Ok(env)) => (e, o, env),
            _ => return malformed(format!("route message with unusable ids: {route:?}")),
        };
        let routing = Routing {
            event_id,
            organization,
            environment,
            event_type: route.event_type,
            actor: route.actor,
            team: route.team,
        };
        let event_id = routing.event_id.clone();
        match self.route(routing, message.redelivered).await {
            Ok(published) => {
                tracing::debug!(%event_id, deliveries = published, "event routed");
                Outcome::Ack
            }
            Err(err @ Error::UnknownEvent(_)) => {
                Outcome::Reject { reason: "unknown_event".into(), detail: err.to_string() }
            }
            Err(err) => {
                tracing::warn!(%event_id, error = %err, "could not route an event; it will be retried");
                Outcome::Retry
            }
        }
    }

    #[tracing::instrument(
        name = "route",
        skip_all,
        fields(
            event_id = %routing.event_id,
            organization = %routing.organization,
            event_type = %routing.event_type,
            deliveries,
        )
    )]
    async fn route(&self, routing: Routing, redelivered: bool) -> Result<usize, Error> {
        let event_id = routing.event_id.clone();
        let created = self.create.submit(routing).await?.ok_or_else(|| Error::UnknownEvent(event_id.clone()))?;
        self.metrics.deliveries_created(created.len());
        // A redelivered route message means an earlier run may have created deliveries
        // and died before publishing them: publish every one not yet attempted.
        let to_publish =
            if redelivered { deliveries::unattempted_for_event(&self.pool, &event_id).await? } else { created };
        let jobs: Vec<proto::DeliveryJob> = to_publish
            .iter()
            .map(|id| proto::DeliveryJob { delivery_id: id.to_string(), attempt: 1, manual: false })
            .collect();
        self.publisher.publish_all(&self.topology.delivery_exchange(), JOB_ROUTING_KEY, &jobs).await?;
        tracing::Span::current().record("deliveries", jobs.len());
        Ok(jobs.len())
    }
}

/// Runs the router until `shutdown` is cancelled.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let pool = hookline_store::open(settings.database_url(), settings.database.pool_size).await?;
    let delays = settings.retry_policy()?.delays().to_vec();
    let bus = Bus::open(settings.amqp_url(), &settings.amqp.prefix, "hookline-router", &delays).await?;
    bus.report_queue_depths(&metrics);
    let router =
        Router::new(pool, bus.publisher.clone(), bus.topology.clone(), settings.database.batch_linger, metrics.clone());
    let options = ConsumerOptions {
        service: "hookline-router",
        metrics,
        queue: bus.topology.route_queue(),
        tag: "hookline-router".into(),
        concurrency: settings.router.concurrency,
        shutdown_grace: settings.shutdown.grace,
    };
    tracing::info!(queue = %options.queue, "router consuming");
    consumer::consume(&bus.connection, options, bus.reject_target(), shutdown, move |message| {
        let router = router.clone();
        async move { router.handle(message).await }
    })
    .await?;
    Ok(())
}
