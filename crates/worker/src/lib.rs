#![doc = include_str!("../README.md")]

pub mod attempt;
pub mod client;
mod handle;
mod job;
mod once;
pub mod sigv4;
pub mod slots;

use std::sync::Arc;

use hookline_bus::{Publisher, Topology};
use hookline_core::address::AddressPolicy;
use hookline_core::ids::DeliveryId;
use hookline_core::{Catalog, RetryPolicy};
use hookline_service::batch::{Batcher, Limits};
use hookline_service::{Error, Service};
use hookline_store::config_watch;
use hookline_store::repo::deliveries::{self, Settle, Settled};
use hookline_store::repo::jobs::{self, JobContext, TargetCache};
use hookline_store::repo::leases::{self, Lease, Leased};
use hookline_telemetry::{DeliverySettings, Metrics, Settings};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Performs delivery jobs. Shared (behind an `Arc`) by every job in flight.
pub struct Worker {
    catalog: Arc<Catalog>,
    publisher: Publisher,
    topology: Topology,
    client: reqwest::Client,
    address_policy: AddressPolicy,
    slots: slots::EndpointSlots,
    /// The `[delivery]` settings: timeouts, caps, limits, auto-disable.
    delivery: DeliverySettings,
    /// The configured retry policy, for webhooks without their own.
    default_policy: RetryPolicy,
    metrics: Metrics,
    /// Loads the jobs of all handlers starting at the same moment in one query.
    load: Batcher<DeliveryId, Option<JobContext>, Error>,
    /// Endpoint targets kept in memory (shared with `load`), for jobs that carry their
    /// delivery.
    targets: Arc<TargetCache>,
    /// Claims the attempts of all handlers about to send at the same moment in one
    /// statement (see the `once` module).
    lease: Batcher<Lease, Leased, Error>,
    /// Persists the attempts and transitions of all handlers finishing at the same
    /// moment in one statement.
    settle: Batcher<Settle, Settled, Error>,
    /// Attempts running at once (`delivery.concurrency`): a message brings many jobs,
    /// which share these places.
    in_flight: Semaphore,
    /// Cancelled when shutdown starts: jobs not yet started are then handed back.
    shutdown: CancellationToken,
}

impl Worker {
    /// A worker on `service`'s connections, delivering as `delivery` says, retrying on
    /// `default_policy` where a webhook has none of its own; its statements linger
    /// `batch_linger`. Must be made inside a tokio runtime.
    async fn new(
        service: &Service,
        secrets: hookline_core::crypto::SecretBox,
        catalog: Catalog,
        delivery: &DeliverySettings,
        default_policy: RetryPolicy,
        batch_linger: std::time::Duration,
    ) -> Result<Self, Error> {
        let address_policy = delivery.address_policy()?;
        let client = client::build(delivery.timeout, &address_policy, delivery.concurrency)
            .map_err(|err| Error::Start { what: "building the HTTP client", source: err.into() })?;
        let watch = service.watch_config()?;
        let targets = Arc::new(TargetCache::new(watch, config_watch::MAX_AGE, config_watch::CAPACITY));
        let (pool, metrics) = (service.pool.clone(), service.metrics.clone());
        let load = {
            let (pool, metrics, targets) = (pool.clone(), metrics.clone(), targets.clone());
            Batcher::new(Limits::statement(batch_linger), move |ids: Arc<Vec<DeliveryId>>| {
                let (pool, secrets, targets, metrics) =
                    (pool.clone(), secrets.clone(), targets.clone(), metrics.clone());
                async move {
                    let loading = jobs::job_contexts(&pool, &secrets, &targets, &ids);
                    Ok(metrics.timed_batch("load_jobs", ids.len(), loading).await?)
                }
            })
        };
        let lease = {
            let (pool, metrics) = (pool.clone(), metrics.clone());
            let duration = delivery.timeout + once::LEASE_MARGIN;
            Batcher::new(Limits::statement(batch_linger), move |asked: Arc<Vec<Lease>>| {
                let (pool, metrics) = (pool.clone(), metrics.clone());
                async move {
                    let leasing = leases::lease(&pool, &asked, duration);
                    Ok(metrics.timed_batch("lease_deliveries", asked.len(), leasing).await?)
                }
            })
        };
        let settle = {
            let (pool, metrics) = (pool.clone(), metrics.clone());
            Batcher::new(Limits::statement(batch_linger), move |settles: Arc<Vec<Settle>>| {
                let (pool, metrics) = (pool.clone(), metrics.clone());
                async move {
                    let settling = deliveries::settle(&pool, &settles);
                    Ok(metrics.timed_batch("settle_deliveries", settles.len(), settling).await?)
                }
            })
        };
        Ok(Self {
            catalog: Arc::new(catalog),
            publisher: service.bus.publisher.clone(),
            topology: service.bus.topology.clone(),
            client,
            address_policy,
            slots: slots::EndpointSlots::new(delivery.max_in_flight_per_endpoint, delivery.endpoint_slot_wait),
            delivery: delivery.clone(),
            default_policy,
            metrics,
            load,
            targets,
            lease,
            settle,
            in_flight: Semaphore::new(delivery.concurrency.max(1)),
            shutdown: service.shutdown.clone(),
        })
    }
}

/// Runs a worker until `shutdown` is cancelled: in-flight attempts then get
/// `shutdown.grace` to finish, and unfinished jobs return to the queue.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let catalog = settings.catalog()?;
    let Some(service) = Service::start("hookline-worker", &settings, metrics, shutdown).await? else { return Ok(()) };
    let secrets = service.secrets(&settings).await?;
    let policy = settings.retry_policy()?;
    let worker = Arc::new(
        Worker::new(&service, secrets, catalog, &settings.delivery, policy, settings.database.batch_linger).await?,
    );
    service
        .consume(service.bus.topology.delivery_queue(), settings.delivery.concurrency, move |message| {
            let worker = worker.clone();
            async move { worker.handle(message).await }
        })
        .await
}
