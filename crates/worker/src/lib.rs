#![doc = include_str!("../README.md")]

pub mod attempt;
mod circuits;
pub mod client;
mod handle;
mod job;
mod once;
pub mod sigv4;
pub mod slots;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookline_bus::{Publisher, Topology};
use hookline_core::address::AddressPolicy;
use hookline_core::circuit::Breaker;
use hookline_core::ids::DeliveryId;
use hookline_core::{Catalog, RetryPolicy};
use hookline_service::batch::{Batcher, Limits};
use hookline_service::{Error, Service};
use hookline_store::config_watch;
use hookline_store::repo::circuits::{self as circuit_store, Parking};
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
    /// How long a lease (and an open circuit's probe) holds: the delivery timeout and
    /// room to record the attempt.
    lease_duration: Duration,
    /// When an endpoint's circuit opens and how often it is probed.
    breaker: Breaker,
    /// The circuits and parked endpoints as this worker last read them.
    mirror: Mutex<circuits::Mirror>,
    /// Parks the jobs of all handlers parking at the same moment in one statement.
    park: Batcher<Parking, bool, Error>,
    /// For the circuits' statements, which are not batched (they run on trouble only).
    pool: hookline_store::Pool,
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
        let proxy = delivery.egress_proxy()?;
        let client = client::build(delivery.timeout, &address_policy, delivery.concurrency, proxy.as_ref())
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
        let lease_duration = delivery.timeout + once::LEASE_MARGIN;
        let statement = |name| Statement { pool: pool.clone(), metrics: metrics.clone(), linger: batch_linger, name };
        let lease = statement("lease_deliveries")
            .batcher(move |pool, asked| async move { leases::lease(&pool, &asked, lease_duration).await });
        let settle = statement("settle_deliveries")
            .batcher(|pool, settles| async move { deliveries::settle(&pool, &settles).await });
        let park =
            statement("park_deliveries").batcher(|pool, jobs| async move { circuit_store::park(&pool, &jobs).await });
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
            lease_duration,
            breaker: delivery.breaker(),
            mirror: Mutex::default(),
            park,
            pool,
            in_flight: Semaphore::new(delivery.concurrency.max(1)),
            shutdown: service.shutdown.clone(),
        })
    }
}

/// A batched statement of the worker's: what it is called in the metrics, and where it
/// runs.
struct Statement {
    pool: hookline_store::Pool,
    metrics: Metrics,
    linger: Duration,
    name: &'static str,
}

impl Statement {
    /// A batcher running `run` on the items of all handlers asking at the same moment,
    /// timed as this statement.
    fn batcher<I, O, F, Fut>(self, run: F) -> Batcher<I, O, Error>
    where
        I: Send + Sync + 'static,
        O: Clone + Send + 'static,
        F: Fn(hookline_store::Pool, Arc<Vec<I>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = hookline_store::Result<Vec<O>>> + Send + 'static,
    {
        let Statement { pool, metrics, linger, name } = self;
        let run = Arc::new(run);
        Batcher::new(Limits::statement(linger), move |items: Arc<Vec<I>>| {
            let (pool, metrics, run) = (pool.clone(), metrics.clone(), run.clone());
            async move {
                let rows = items.len();
                Ok(metrics.timed_batch(name, rows, run(pool, items)).await?)
            }
        })
    }
}

/// Runs a worker until `shutdown` is cancelled: in-flight attempts then get
/// `shutdown.grace` to finish, and unfinished jobs return to the queue.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let catalog = settings.catalog()?;
    let Some(service) = Service::start("hookline-worker", &settings, metrics, shutdown).await? else { return Ok(()) };
    let Some(secrets) = service.secrets(&settings).await? else { return Ok(()) };
    let policy = settings.retry_policy()?;
    let worker = Arc::new(
        Worker::new(&service, secrets, catalog, &settings.delivery, policy, settings.database.batch_linger).await?,
    );
    tokio::spawn(circuits::keep_refreshed(worker.clone()));
    service
        .consume(service.bus.topology.delivery_queue(), settings.delivery.concurrency, move |message| {
            let worker = worker.clone();
            async move { worker.handle(message).await }
        })
        .await
}
