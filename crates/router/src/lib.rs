#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::time::Duration;

use hookline_bus::codec::proto;
use hookline_bus::consumer::{Incoming, Outcome, RejectedPart};
use hookline_bus::{Publisher, Topology, Traced as _, jobs, route};
use hookline_core::Environment;
use hookline_core::envelope::{RejectReason, Rejection};
use hookline_core::ids::{DeliveryId, EndpointId, EventId, OrganizationId};
use hookline_core::lifecycle::Job;
use hookline_core::webhook::EventFacts;
use hookline_service::batch::{Batcher, Limits};
use hookline_service::{Error, Service};
use hookline_store::repo::deliveries;
use hookline_store::repo::webhooks::{RoutableCache, RoutingScope, routing};
use hookline_store::{ConfigWatch, Pool, config_watch};
use hookline_telemetry::{Metrics, Settings};
use tokio_util::sync::CancellationToken;

/// Turns route messages into deliveries and delivery jobs.
#[derive(Clone)]
pub struct Router {
    pool: Pool,
    publisher: Publisher,
    topology: Topology,
    metrics: Metrics,
    /// Finds the webhooks and creates the deliveries of all events being routed at the
    /// same moment, in one query and one statement.
    create: Batcher<Routing, Option<deliveries::Routed>, Error>,
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
    cache: &RoutableCache,
    events: &[Routing],
) -> Result<Vec<Option<deliveries::Routed>>, Error> {
    let mut scopes: Vec<RoutingScope> =
        events.iter().map(|event| (event.organization.clone(), event.environment)).collect();
    scopes.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    scopes.dedup();
    let routable = routing::routable_cached(pool, cache, &scopes).await?;
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
                .flat_map(|webhooks| webhooks.iter())
                .filter(|webhook| webhook.subscription.matches(&facts))
                .flat_map(|webhook| webhook.endpoints.iter().map(|endpoint| (webhook.id.clone(), endpoint.clone())))
                .collect();
            (event.event_id.clone(), event.organization.clone(), targets)
        })
        .collect();
    Ok(deliveries::create_for_events(pool, &targets).await?)
}

/// Reads the parts of a route message's event the router works with.
fn routing(event: &proto::RouteEvent) -> Result<Routing, Rejection> {
    match (
        event.event_id.parse::<EventId>(),
        event.organization_id.parse::<OrganizationId>(),
        event.environment.parse::<Environment>(),
    ) {
        (Ok(event_id), Ok(organization), Ok(environment)) => Ok(Routing {
            event_id,
            organization,
            environment,
            event_type: event.event_type.clone(),
            actor: event.actor.clone(),
            team: event.team.clone(),
        }),
        _ => Err(Rejection::whole(
            RejectReason::Malformed,
            format!(
                "route message with unusable ids: event `{}`, organization `{}`, environment `{}`",
                event.event_id, event.organization_id, event.environment
            ),
        )),
    }
}

/// The span of one event's routing: a child of the span that accepted the event, linked
/// to the route message it came in.
fn route_span(event: &proto::RouteEvent) -> tracing::Span {
    let span = tracing::info_span!(
        "route",
        service.name = "hookline-router",
        event_id = %event.event_id,
        organization = %event.organization_id,
        event_type = %event.event_type,
        deliveries = tracing::field::Empty,
    );
    event.work_span(span)
}

impl Router {
    /// A router reading webhooks from `pool`, publishing jobs through `publisher` and
    /// counting the deliveries it creates in `metrics`. Must be made inside a tokio
    /// runtime.
    ///
    /// Its statements never linger (`database.batch_linger`): route messages already
    /// carry the events ingest stored together, so waiting for the next one would mostly
    /// delay these (measured: 3 ms of the median at 1,000 events/s, for no CPU saved).
    pub fn new(pool: Pool, watch: ConfigWatch, publisher: Publisher, topology: Topology, metrics: Metrics) -> Self {
        let cache = Arc::new(RoutableCache::new(watch, config_watch::MAX_AGE, config_watch::CAPACITY));
        let create = {
            let (pool, metrics) = (pool.clone(), metrics.clone());
            Batcher::new(Limits::statement(Duration::ZERO), move |events: Arc<Vec<Routing>>| {
                let (pool, cache, metrics) = (pool.clone(), cache.clone(), metrics.clone());
                async move {
                    let creating = create_deliveries(&pool, &cache, &events);
                    metrics.timed_batch("create_deliveries", events.len(), creating).await
                }
            })
        };
        Self { pool, publisher, topology, metrics, create }
    }

    /// What the consumer does with one route message: routes each of its events. An
    /// event that can never be routed goes to the rejected queue alone; a transient
    /// failure returns the whole message (routing again is idempotent).
    async fn handle(&self, message: Arc<Incoming>) -> Outcome {
        let events = match route::decode(&message) {
            Ok(events) => events,
            Err(rejection) => return Outcome::Reject(rejection),
        };
        let mut rejected = Vec::new();
        let mut routable = Vec::with_capacity(events.len());
        for event in events {
            match routing(&event) {
                Ok(routing) => routable.push((event, routing)),
                Err(rejection) => rejected.push(RejectedPart { body: route::alone(event), rejection }),
            }
        }
        match self.route(routable, message.redelivered).await {
            Ok(unknown) => rejected.extend(unknown),
            Err(err) => {
                if let Some(rejection) = err.refusal() {
                    return Outcome::Reject(rejection);
                }
                hookline_telemetry::warn_throttled!(error = %err, "could not route a route message's events; they will be retried");
                return Outcome::Retry;
            }
        }
        if rejected.is_empty() { Outcome::Ack } else { Outcome::AckRejecting(rejected) }
    }

    /// Creates the deliveries of `events` and publishes their jobs; answers with the
    /// events their organisations do not have, as rejected parts.
    async fn route(
        &self,
        events: Vec<(proto::RouteEvent, Routing)>,
        redelivered: bool,
    ) -> Result<Vec<RejectedPart>, Error> {
        let spans: Vec<tracing::Span> = events.iter().map(|(event, _)| route_span(event)).collect();
        let (events, routings): (Vec<_>, Vec<_>) = events.into_iter().unzip();
        let event_ids: Vec<EventId> = routings.iter().map(|routing| routing.event_id.clone()).collect();
        let created = self.create.submit_all(routings).await;
        let mut jobs = Vec::new();
        let mut unknown = Vec::new();
        for (((event, event_id), span), routed) in events.into_iter().zip(event_ids).zip(spans).zip(created) {
            let Some(routed) = routed? else {
                let detail = format!("event {event_id} is not stored for the organisation the route message names");
                let rejection = Rejection::whole(RejectReason::UnknownEvent, detail);
                unknown.push(RejectedPart { body: route::alone(event), rejection });
                continue;
            };
            self.metrics.deliveries_created(routed.deliveries.len());
            // A redelivered route message means an earlier run may have created
            // deliveries and died before publishing them: publish every one not yet
            // attempted (for the worker to load, as their state is not known here).
            let published = if redelivered {
                let unattempted = deliveries::unattempted_for_event(&self.pool, &event_id).await?;
                jobs.extend(unattempted.iter().map(|id| first_attempt(id).traced(&span)));
                unattempted.len()
            } else {
                jobs.extend(routed.deliveries.iter().map(|(id, endpoint)| {
                    let prepared = routed.event.as_deref().map(|snapshot| prepared(&event, endpoint, snapshot));
                    proto::DeliveryJob { prepared, ..first_attempt(id) }.traced(&span)
                }));
                routed.deliveries.len()
            };
            span.record("deliveries", published);
            span.in_scope(|| tracing::debug!(%event_id, deliveries = published, "event routed"));
        }
        jobs::to_workers(&self.publisher, &self.topology, jobs).await?;
        Ok(unknown)
    }
}

/// The job of a new delivery's first attempt.
fn first_attempt(delivery: &DeliveryId) -> proto::DeliveryJob {
    let Job { attempt, manual } = Job::after(0, false);
    proto::DeliveryJob { delivery_id: delivery.to_string(), attempt, manual, ..Default::default() }
}

/// What a worker needs for the first attempt of a delivery just created to `endpoint`
/// for `event`, so it need not read the delivery back.
fn prepared(
    event: &proto::RouteEvent,
    endpoint: &EndpointId,
    snapshot: &deliveries::EventSnapshot,
) -> proto::PreparedJob {
    proto::PreparedJob {
        organization_id: event.organization_id.clone(),
        endpoint_id: endpoint.to_string(),
        event_id: event.event_id.clone(),
        event_type: snapshot.event_type.clone(),
        environment: snapshot.environment.as_str().to_owned(),
        occurred_at_micros: snapshot.occurred_at.timestamp_micros(),
        data: snapshot.data.clone(),
    }
}

/// Runs the router until `shutdown` is cancelled.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let Some(service) = Service::start("hookline-router", &settings, metrics, shutdown).await? else { return Ok(()) };
    let watch = service.watch_config()?;
    let router = Router::new(
        service.pool.clone(),
        watch,
        service.bus.publisher.clone(),
        service.bus.topology.clone(),
        service.metrics.clone(),
    );
    service
        .consume(service.bus.topology.route_queue(), settings.router.concurrency, move |message| {
            let router = router.clone();
            async move { router.handle(message).await }
        })
        .await
}
