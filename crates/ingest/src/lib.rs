#![doc = include_str!("../README.md")]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hookline_bus::codec::{self, proto};
use hookline_bus::consumer::{self, ConsumerOptions, Incoming, Outcome};
use hookline_bus::{Bus, Publisher, Topology, route};
use hookline_core::envelope::{RejectReason, Rejection};
use hookline_core::ids::{EventId, OrganizationId};
use hookline_core::{Catalog, UpstreamEvent};
use hookline_store::Pool;
use hookline_store::batch::{self, Batcher};
use hookline_store::repo::{catalog, events};
use hookline_telemetry::metrics::EventSource;
use hookline_telemetry::{Metrics, Settings};
use tokio_util::sync::CancellationToken;

/// Why the ingest service stopped.
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
}

/// Why one event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The event itself is unacceptable; sending it again will not help.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A dependency failed; the event may be accepted if sent again.
    #[error(transparent)]
    Store(#[from] hookline_store::Error),
    /// The broker did not take the event onward; it may be accepted if sent again.
    #[error(transparent)]
    Bus(#[from] hookline_bus::Error),
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
    /// Stores the events of all handlers waiting at the same moment in one statement.
    store: Batcher<UpstreamEvent, events::Stored>,
    /// Forwards the events stored at the same moment to the router in one message.
    forward: Batcher<proto::RouteEvent, Result<(), hookline_bus::Error>>,
}

impl Ingestor {
    /// An ingestor storing into `pool`, forwarding through `publisher` and counting
    /// accepted events in `metrics`. Must be made inside a tokio runtime.
    pub fn new(
        pool: Pool,
        catalog: Arc<Catalog>,
        (publisher, topology): (Publisher, Topology),
        max_event_size: usize,
        batch_linger: Duration,
        metrics: Metrics,
    ) -> Self {
        let store = {
            let metrics = metrics.clone();
            Batcher::new(batch::MAX_ROWS, batch::MAX_RUNNING, batch_linger, move |batch: Arc<Vec<UpstreamEvent>>| {
                let pool = pool.clone();
                metrics.batch_ran("store_events", batch.len());
                async move { events::insert_all(&pool, &batch, "upstream").await }
            })
        };
        // The events of one store batch reach this batcher together, so no linger: it
        // would only delay them.
        let forward = {
            let metrics = metrics.clone();
            Batcher::new(
                batch::MAX_ROWS,
                batch::MAX_RUNNING,
                Duration::ZERO,
                move |batch: Arc<Vec<proto::RouteEvent>>| {
                    let (publisher, topology) = (publisher.clone(), topology.clone());
                    metrics.batch_ran("route_message", batch.len());
                    async move {
                        // One publish carries every event, so its outcome is each event's.
                        let sent = route::send(&publisher, &topology, batch.to_vec()).await;
                        Ok(vec![sent; batch.len()])
                    }
                },
            )
        };
        Self { catalog, max_event_size, metrics, store, forward }
    }

    /// Decodes, validates, stores and forwards one event.
    ///
    /// `organization` is set for HTTP ingest, where the API key decides the
    /// organisation: a body naming another one is refused. `redelivered` says that an
    /// earlier attempt at this very message was interrupted, so a stored but unrouted
    /// duplicate is forwarded again instead of being taken for a publisher's repeat.
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
        let route = route_message(&event);
        let accepted = match self.store.submit(event).await? {
            events::Stored::UnknownOrganization => {
                return Err(Rejection::field(
                    RejectReason::UnknownOrganization,
                    "organization",
                    format!("organization `{}` does not exist", route.organization_id),
                )
                .into());
            }
            events::Stored::Inserted(event_id) => {
                self.forward(&event_id, route).await?;
                Accepted { event_id, duplicate: false }
            }
            events::Stored::Duplicate { id, routed } => {
                if redelivered && !routed {
                    self.forward(&id, route).await?;
                }
                Accepted { event_id: id, duplicate: true }
            }
        };
        span.record("event_id", accepted.event_id.as_str());
        if !accepted.duplicate {
            self.metrics.event_ingested(source);
        }
        tracing::debug!(duplicate = accepted.duplicate, "event accepted");
        Ok(accepted)
    }

    /// Sends the event on to the router, with the events stored alongside it.
    async fn forward(&self, event_id: &EventId, mut event: proto::RouteEvent) -> Result<(), AcceptError> {
        event.event_id = event_id.to_string();
        Ok(self.forward.submit(route::traced(event)).await??)
    }

    /// What the consumer does with one message from the ingest queue.
    async fn handle(&self, message: Arc<Incoming>) -> Outcome {
        match self.accept(&message.data, message.content_type(), None, message.redelivered).await {
            Ok(_) => Outcome::Ack,
            Err(AcceptError::Rejected(rejection)) => {
                Outcome::Reject { reason: rejection.reason.code().to_owned(), detail: rejection.message }
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not ingest an event; it will be retried");
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
    let pool = hookline_store::open(settings.database_url(), settings.database.pool_size).await?;
    catalog::sync(&pool, &catalog).await?;
    let delays = settings.retry_policy()?.delays().to_vec();
    let bus = Bus::open(settings.amqp_url(), &settings.amqp.prefix, "hookline-ingest", &delays).await?;
    bus.report_queue_depths(&metrics);
    let ingestor = Ingestor::new(
        pool,
        catalog,
        (bus.publisher.clone(), bus.topology.clone()),
        settings.ingest.max_event_size,
        settings.database.batch_linger,
        metrics.clone(),
    );
    let options = ConsumerOptions {
        service: "hookline-ingest",
        metrics,
        queue: bus.topology.ingest_queue(),
        tag: "hookline-ingest".into(),
        concurrency: settings.ingest.concurrency,
        shutdown_grace: settings.shutdown.grace,
    };
    tracing::info!(queue = %options.queue, "ingest consuming");
    consumer::consume(&bus.connection, options, bus.reject_target(), shutdown, move |message| {
        let ingestor = ingestor.clone();
        async move { ingestor.handle(message).await }
    })
    .await?;
    Ok(())
}
