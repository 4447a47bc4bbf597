#![doc = include_str!("../README.md")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hookline_bus::codec::{self, proto};
use hookline_bus::consumer::{Incoming, Outcome};
use hookline_bus::{Publisher, Topology, Traced as _, route};
use hookline_core::envelope::{Origin, RejectReason, Rejection};
use hookline_core::ids::{EventId, OrganizationId};
use hookline_core::{Catalog, UpstreamEvent};
use hookline_service::batch::{self, Batcher, Limits};
use hookline_service::{Error, Service};
use hookline_store::Pool;
use hookline_store::repo::{catalog, events};
use hookline_telemetry::metrics::EventSource;
use hookline_telemetry::{IngestSettings, Metrics, Settings};
use tokio_util::sync::CancellationToken;

/// Route messages waiting for their broker confirms at once.
const FORWARDS_AWAITING_CONFIRM: usize = 4;

/// Why one event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The event itself is unacceptable; sending it again will not help.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The database failed (the event is not stored); it may be accepted if sent again.
    /// A broker failure after the event is stored is not one: see [`Ingestor::accept`].
    #[error(transparent)]
    Unavailable(Error),
}

impl From<Error> for AcceptError {
    /// A value the database refuses is the event's fault: it is rejected, not retried.
    fn from(err: Error) -> Self {
        match err.refusal() {
            Some(rejection) => AcceptError::Rejected(rejection),
            None => AcceptError::Unavailable(err),
        }
    }
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The stored event (the first one, for a duplicate).
    pub event_id: EventId,
    /// Whether an event with the same idempotency key had already been accepted.
    pub duplicate: bool,
}

/// Accepts upstream events, from the bus or from the API.
#[derive(Clone)]
pub struct Ingestor {
    catalog: Arc<Catalog>,
    max_event_size: usize,
    metrics: Metrics,
    /// Stores the events of all handlers waiting at the same moment in one statement,
    /// and queues those to send on to the router together.
    store: Batcher<Storing, (events::Stored, Option<Forwarding>), Error>,
}

/// An event to store and, once stored, to send on to the router.
struct Storing {
    event: UpstreamEvent,
    /// Its entry in a route message, in the trace of the span that accepted it; the
    /// event id is filled in once it is stored.
    route: proto::RouteEvent,
    /// See [`Ingestor::accept`].
    redelivered: bool,
}

impl std::borrow::Borrow<UpstreamEvent> for Storing {
    fn borrow(&self) -> &UpstreamEvent {
        &self.event
    }
}

/// An event's route message entry, queued: resolves once the message carrying it is
/// confirmed by the broker (or not).
type Forwarding = Pin<Box<dyn Future<Output = Result<Result<(), hookline_bus::Error>, Error>> + Send>>;

/// Whether a stored event goes on to the router: a new one does, and so does a
/// duplicate that was never routed when the message bringing it again is one an
/// interrupted attempt left (a publisher's plain repeat does not).
fn to_forward(stored: &events::Stored, redelivered: bool) -> Option<&EventId> {
    match stored {
        events::Stored::Inserted(id) => Some(id),
        events::Stored::Duplicate { id, routed: false } if redelivered => Some(id),
        events::Stored::Duplicate { .. } | events::Stored::UnknownOrganization => None,
    }
}

impl Ingestor {
    /// An ingestor storing into `pool`, forwarding through `publisher` and counting
    /// accepted events in `metrics`, its store statements lingering `batch_linger`. Must
    /// be made inside a tokio runtime.
    pub fn new(
        pool: Pool,
        catalog: Arc<Catalog>,
        (publisher, topology): (Publisher, Topology),
        settings: &IngestSettings,
        batch_linger: Duration,
        metrics: Metrics,
    ) -> Self {
        let max_event_size = settings.max_event_size;
        // The events of one store batch are queued here together, so they go in one
        // message; no linger (it would only delay them), and several messages may wait
        // for their confirms at once, so a batch never waits for the one before it.
        let forward = {
            let metrics = metrics.clone();
            let limits =
                Limits { max_batch: batch::MAX_ROWS, max_running: FORWARDS_AWAITING_CONFIRM, linger: Duration::ZERO };
            Batcher::new(limits, move |batch: Arc<Vec<proto::RouteEvent>>| {
                let (publisher, topology) = (publisher.clone(), topology.clone());
                let metrics = metrics.clone();
                async move {
                    // One publish carries every event, so its outcome is each event's.
                    let sending = route::send(&publisher, &topology, batch.to_vec());
                    let sent = metrics.timed_batch("route_message", batch.len(), sending).await;
                    Ok(vec![sent; batch.len()])
                }
            })
        };
        let store = {
            let metrics = metrics.clone();
            Batcher::new(Limits::statement(batch_linger), move |batch: Arc<Vec<Storing>>| {
                let (pool, metrics, forward) = (pool.clone(), metrics.clone(), forward.clone());
                async move {
                    let storing = events::insert_all(&pool, &batch, Origin::Upstream);
                    let stored = metrics.timed_batch("store_events", batch.len(), storing).await?;
                    let answers = stored
                        .into_iter()
                        .zip(batch.iter())
                        .map(|(stored, item)| {
                            let forwarding = to_forward(&stored, item.redelivered).map(|id| {
                                let route = proto::RouteEvent { event_id: id.to_string(), ..item.route.clone() };
                                Box::pin(forward.enqueue(route)) as Forwarding
                            });
                            (stored, forwarding)
                        })
                        .collect();
                    Ok(answers)
                }
            })
        };
        Self { catalog, max_event_size, metrics, store }
    }

    /// Decodes, validates, stores and forwards one event.
    ///
    /// `organization` is set for HTTP ingest, where the API key decides the
    /// organisation: a body naming another one is refused. `redelivered` says that an
    /// earlier attempt at this very message was interrupted, so a stored but unrouted
    /// duplicate is forwarded again instead of being taken for a publisher's repeat.
    ///
    /// A stored event is accepted even when its route message cannot be sent (the
    /// broker is away): the stored event is the promise, and the reconciliation sweep
    /// routes it once the broker is back.
    #[tracing::instrument(name = "ingest", skip_all, fields(event_id, event_type, organization, environment))]
    pub async fn accept(
        &self,
        body: &[u8],
        content_type: Option<&str>,
        organization: Option<&OrganizationId>,
        redelivered: bool,
    ) -> Result<Accepted, AcceptError> {
        let source = if organization.is_some() { EventSource::Http } else { EventSource::Amqp };
        let mut raw = codec::decode_upstream(body, content_type, self.max_event_size)?;
        if let Some(organization) = organization {
            match raw.organization.as_deref() {
                None | Some("") => raw.organization = Some(organization.to_string()),
                Some(named) if named == organization.as_str() => {}
                Some(_) => {
                    return Err(Rejection::field(
                        RejectReason::UnknownOrganization,
                        "organization",
                        "`organization` must be the API key's organisation (or left out)",
                    )
                    .into());
                }
            }
        }
        let event = raw.validate(&self.catalog, Utc::now())?;
        let span = tracing::Span::current();
        span.record("event_type", event.event_type.as_str());
        span.record("organization", event.organization.as_str());
        span.record("environment", event.environment.as_str());
        let route = route_message(&event).traced(&span);
        let organization = event.organization.clone();
        let (stored, forwarding) = self.store.submit(Storing { event, route, redelivered }).await?;
        if let Some(forwarding) = forwarding
            && let Err(err) = forwarding.await?
        {
            // Stored is accepted: the reconciliation sweep routes a stored event whose
            // route message never went (the broker away, say), so a producer is not
            // refused, and does not send again, what hookline already holds.
            hookline_telemetry::warn_throttled!(error = %err, "event stored, but not sent on to the router yet; the reconciliation sweep will route it");
        }
        let accepted = match stored {
            events::Stored::UnknownOrganization => {
                return Err(Rejection::field(
                    RejectReason::UnknownOrganization,
                    "organization",
                    format!("organization `{organization}` does not exist"),
                )
                .into());
            }
            events::Stored::Inserted(event_id) => Accepted { event_id, duplicate: false },
            events::Stored::Duplicate { id, .. } => Accepted { event_id: id, duplicate: true },
        };
        span.record("event_id", accepted.event_id.as_str());
        if !accepted.duplicate {
            self.metrics.event_ingested(source);
        }
        tracing::debug!(duplicate = accepted.duplicate, "event accepted");
        Ok(accepted)
    }

    /// What the consumer does with one message from the ingest queue.
    async fn handle(&self, message: Arc<Incoming>) -> Outcome {
        match self.accept(&message.data, message.content_type(), None, message.redelivered).await {
            Ok(_) => Outcome::Ack,
            Err(AcceptError::Rejected(rejection)) => Outcome::Reject(rejection),
            Err(err) => {
                hookline_telemetry::warn_throttled!(error = %err, "could not ingest an event; it will be retried");
                Outcome::Retry
            }
        }
    }
}

/// What the router needs to know of an event, without its id (known once it is stored).
fn route_message(event: &UpstreamEvent) -> proto::RouteEvent {
    proto::RouteEvent {
        event_id: String::new(),
        organization_id: event.organization.to_string(),
        event_type: event.event_type.clone(),
        environment: event.environment.as_str().to_owned(),
        actor: event.actor.clone(),
        team: event.team.clone(),
        traceparent: None,
        tracestate: None,
    }
}

/// Runs the ingest service until `shutdown` is cancelled.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let catalog = Arc::new(settings.catalog()?);
    let Some(service) = Service::start("hookline-ingest", &settings, metrics, shutdown).await? else { return Ok(()) };
    catalog::sync(&service.pool, &catalog).await?;
    let bus = (service.bus.publisher.clone(), service.bus.topology.clone());
    let ingestor = Ingestor::new(
        service.pool.clone(),
        catalog,
        bus,
        &settings.ingest,
        settings.database.batch_linger,
        service.metrics.clone(),
    );
    service
        .consume(service.bus.topology.ingest_queue(), settings.ingest.concurrency, move |message| {
            let ingestor = ingestor.clone();
            async move { ingestor.handle(message).await }
        })
        .await
}
