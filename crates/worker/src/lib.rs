#![doc = include_str!("../README.md")]

pub mod attempt;
pub mod client;
pub mod sigv4;
pub mod slots;

use std::sync::Arc;

use hookline_bus::codec::proto;
use hookline_bus::consumer::{self, ConsumerOptions, Incoming, Outcome, RejectedPart};
use hookline_bus::topology::DEFER_DELAY;
use hookline_bus::{Bus, Publisher, Topology};
use hookline_core::Catalog;
use hookline_core::ids::DeliveryId;
use hookline_store::batch::{self, Batcher};
use hookline_store::repo::deliveries::{self, AttemptRecord};
use hookline_store::repo::jobs::{self, TargetCache};
use hookline_store::repo::webhooks;
use hookline_store::{Pool, config_watch};
use hookline_telemetry::metrics::DeliveryOutcome;
use hookline_telemetry::propagation::link_to_current;
use hookline_telemetry::{Metrics, Settings};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::attempt::AttemptSettings;

/// Why the worker stopped.
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
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Performs delivery jobs.
#[derive(Clone)]
pub struct Worker {
    pool: Pool,
    catalog: Arc<Catalog>,
    publisher: Publisher,
    topology: Topology,
    client: reqwest::Client,
    address_policy: Arc<hookline_core::address::AddressPolicy>,
    slots: slots::EndpointSlots,
    settings: Arc<Settings>,
    metrics: Metrics,
    /// Loads the jobs of all handlers starting at the same moment in one query.
    load: Batcher<DeliveryId, Option<jobs::JobContext>>,
    /// Records the attempts of all handlers finishing at the same moment in one
    /// statement.
    record: Batcher<deliveries::AttemptRecord, bool>,
    /// Attempts running at once (`delivery.concurrency`): a batched message brings many
    /// jobs, which share these places with single ones.
    in_flight: Arc<Semaphore>,
    /// Cancelled when shutdown starts: jobs not yet started are then handed back.
    shutdown: CancellationToken,
}

impl Worker {
    /// What the consumer does with one delivery message: performs its job, or each job
    /// of a batch at the same time. A batch's job that can never be performed goes to
    /// the rejected queue alone; one that hit a transient failure waits in the short
    /// delay queue, so the rest of the batch is settled.
    async fn handle(&self, message: Arc<Incoming>) -> Outcome {
        let decoded = match hookline_bus::jobs::decode(&message) {
            Ok(decoded) => decoded,
            Err(rejection) => return Outcome::Reject { reason: "malformed".into(), detail: rejection.message },
        };
        if !decoded.batched {
            // One job, already in its trace through the message's headers.
            let Some(job) = decoded.jobs.into_iter().next() else { return Outcome::Ack };
            let span = deliver_span(&job);
            return self.perform(job).instrument(span).await;
        }
        let mut running = tokio::task::JoinSet::new();
        for (index, job) in decoded.jobs.into_iter().enumerate() {
            let span = deliver_span(&job);
            hookline_bus::jobs::continue_trace(&span, &job);
            link_to_current(&span);
            let worker = self.clone();
            running.spawn(
                async move {
                    let outcome = worker.perform(job.clone()).await;
                    let outcome = worker.settle_in_batch(&job, outcome).await;
                    (index, job, outcome)
                }
                .instrument(span),
            );
        }
        let mut settled = Vec::with_capacity(running.len());
        while let Some(done) = running.join_next().await {
            match done {
                Ok(done) => settled.push(done),
                // A job's task panicked: return the batch; jobs already done are skipped
                // as duplicates when it comes back.
                Err(err) => {
                    tracing::error!(error = %err, "a delivery job of a batch panicked; returning the batch");
                    return Outcome::Retry;
                }
            }
        }
        settled.sort_by_key(|(index, _, _)| *index);
        let mut rejected = Vec::new();
        for (_, job, outcome) in settled {
            match outcome {
                None | Some(Outcome::Ack) => {}
                Some(Outcome::Reject { reason, detail }) => {
                    rejected.push(RejectedPart { body: hookline_bus::jobs::encode(vec![job]), reason, detail })
                }
                Some(Outcome::AckRejecting(parts)) => rejected.extend(parts),
                Some(Outcome::Retry) => return Outcome::Retry,
            }
        }
        if rejected.is_empty() { Outcome::Ack } else { Outcome::AckRejecting(rejected) }
    }

    /// Performs one job, holding one of the worker's delivery places while it runs.
    async fn perform(&self, job: proto::DeliveryJob) -> Outcome {
        let Ok(delivery_id) = job.delivery_id.parse::<DeliveryId>() else {
            return Outcome::Reject { reason: "malformed".into(), detail: format!("bad delivery id in {job:?}") };
        };
        // Once shutdown starts, a job still waiting for a place is handed back unstarted
        // (a batch's through the delay queue) rather than started inside the grace.
        let place = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => return Outcome::Retry,
            place = self.in_flight.acquire() => place,
        };
        let Ok(_place) = place else { return Outcome::Retry };
        match self.deliver(&delivery_id, job.attempt, job.manual).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(%delivery_id, error = %err, "delivery job failed; it will be retried");
                Outcome::Retry
            }
        }
    }

    /// A batch's job that must be tried again waits in the short delay queue on its own
    /// (`None` once it is there); only when that fails does the whole batch go back.
    async fn settle_in_batch(&self, job: &proto::DeliveryJob, outcome: Outcome) -> Option<Outcome> {
        if !matches!(outcome, Outcome::Retry) {
            return Some(outcome);
        }
        // Traced by the headers, from the current (deliver) span, like any single job.
        let single = proto::DeliveryJob { traceparent: None, tracestate: None, ..job.clone() };
        match self.publisher.send_to_queue(&self.topology.delay_queue(DEFER_DELAY), &single).await {
            Ok(()) => None,
            Err(err) => {
                tracing::warn!(error = %err, "could not set a delivery job of a batch aside; returning the batch");
                Some(Outcome::Retry)
            }
        }
    }

    async fn deliver(&self, delivery_id: &DeliveryId, attempt: u32, manual: bool) -> Result<Outcome, Error> {
        let Some(context) = self.load.submit(delivery_id.clone()).await? else {
            return Ok(Outcome::Reject {
                reason: "unknown_delivery".into(),
                detail: format!("delivery {delivery_id} does not exist"),
            });
        };
        let span = tracing::Span::current();
        span.record("event_id", context.event_id.as_str());
        span.record("event_type", context.event_type.as_str());
        span.record("organization", context.organization_id.as_str());
        span.record("webhook_id", context.target.webhook_id.as_str());
        if let Ok(url) = url::Url::parse(&context.target.url) {
            span.record("endpoint_host", url.host_str().unwrap_or_default());
        }
        // A duplicate job (redelivered, or published twice by a recovery path) for an
        // attempt already made, or for a delivery already settled, sends nothing.
        if context.status.is_final() && !manual || attempt <= context.attempt_count {
            tracing::debug!(
                status = context.status.as_str(),
                recorded = context.attempt_count,
                "duplicate job skipped"
            );
            return Ok(Outcome::Ack);
        }
        if !context.target.webhook_enabled {
            // Closing the delivery (rather than just dropping the job) keeps the
            // reconciliation sweep from republishing it forever.
            if deliveries::mark_failed(&self.pool, delivery_id).await? {
                self.metrics.delivery_completed(DeliveryOutcome::Closed, None);
            }
            tracing::info!("webhook is inactive or deleted; delivery closed without an attempt");
            return Ok(Outcome::Ack);
        }
        // Over the endpoint's cap for longer than a healthy endpoint would be: wait in the
        // short delay queue instead of holding a place other endpoints could use.
        let Some(slot) = self.slots.take(context.target.endpoint_id.as_str()).await else {
            let job =
                proto::DeliveryJob { delivery_id: delivery_id.to_string(), attempt, manual, ..Default::default() };
            self.publisher.send_to_queue(&self.topology.delay_queue(DEFER_DELAY), &job).await?;
            return Ok(Outcome::Ack);
        };
        let event_name =
            self.catalog.get(&context.event_type).map_or(context.event_type.as_str(), |t| t.name.as_str()).to_owned();
        let settings = AttemptSettings {
            client: &self.client,
            max_response_body: self.settings.delivery.max_response_body,
            address_policy: &self.address_policy,
            allow_http: self.settings.delivery.allow_http,
        };
        let record = {
            let _in_flight = self.metrics.attempt_in_flight();
            attempt::perform(&context, &event_name, attempt, manual, &settings).await
        };
        // The cap is on requests to the endpoint: recording the attempt holds no slot.
        drop(slot);
        self.metrics
            .attempt_finished(record.status_code, std::time::Duration::from_millis(u64::from(record.duration_ms)));
        if let Some(code) = record.status_code {
            span.record("status_code", code);
        }
        if let Some(kind) = record.error_kind {
            span.record("error_kind", kind.as_str());
        }
        let retry_after_ms = retry_after(&record, self.settings.delivery.max_retry_after);
        let AttemptRecord { status_code, error_kind, ref error_message, started_at, duration_ms, .. } = record;
        let error_message = error_message.clone().unwrap_or_default();
        if !self.record.submit(record).await? {
            return Ok(Outcome::Ack);
        }
        if let Some(kind) = error_kind {
            tracing::info!(error = error_message, "attempt failed");
            // 410 Gone: the receiver says this endpoint is gone for good.
            let gone = status_code == Some(410);
            if gone {
                let reason = format!("{} answered 410 Gone at {}", context.target.url, started_at.to_rfc3339());
                webhooks::disable(&self.pool, &context.target.webhook_id, &reason).await?;
                tracing::warn!(%reason, "webhook deactivated");
            }
            let failed = proto::FailedAttempt {
                delivery_id: delivery_id.to_string(),
                attempt,
                error_kind: kind.as_str().to_owned(),
                retryable: kind.is_retryable() && !gone,
                status_code: status_code.map(u32::from),
                retry_after_ms,
            };
            self.publisher.send_to_queue(&self.topology.failed_queue(), &failed).await?;
        } else {
            let latency = (chrono::Utc::now() - context.occurred_at).to_std().ok();
            self.metrics.delivery_completed(DeliveryOutcome::Succeeded, latency);
            tracing::info!(duration_ms, "delivered");
        }
        Ok(Outcome::Ack)
    }
}

/// The span of one attempt; the caller decides its parent.
fn deliver_span(job: &proto::DeliveryJob) -> tracing::Span {
    tracing::info_span!(
        "deliver",
        service.name = "hookline-worker",
        delivery_id = %job.delivery_id,
        attempt = job.attempt,
        manual = job.manual,
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        organization = tracing::field::Empty,
        webhook_id = tracing::field::Empty,
        endpoint_host = tracing::field::Empty,
        status_code = tracing::field::Empty,
        error_kind = tracing::field::Empty,
    )
}

/// The receiver's Retry-After on a 429 or 503, capped, in milliseconds.
fn retry_after(record: &AttemptRecord, cap: std::time::Duration) -> Option<u64> {
    if !matches!(record.status_code, Some(429 | 503)) {
        return None;
    }
    let value = record.response_headers.as_ref()?.get("retry-after")?;
    let wanted = hookline_core::retry::parse_retry_after(value, chrono::Utc::now())?;
    u64::try_from(wanted.min(cap).as_millis()).ok()
}

/// Runs a worker until `shutdown` is cancelled: in-flight attempts then get
/// `shutdown.grace` to finish, and unfinished jobs return to the queue.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let secrets = settings.secret_box()?;
    let catalog = Arc::new(settings.catalog()?);
    let pool = hookline_store::open(settings.database_url(), settings.database.pool_size).await?;
    hookline_store::repo::key_check::verify(&pool, &secrets).await?;
    let delays = settings.retry_policy()?.delays().to_vec();
    let bus = Bus::open(settings.amqp_url(), &settings.amqp.prefix, "hookline-worker", &delays).await?;
    bus.report_queue_depths(&metrics);
    let address_policy = Arc::new(settings.address_policy()?);
    let client = client::build(settings.delivery.timeout, &address_policy, settings.delivery.concurrency)?;
    let options = ConsumerOptions {
        service: "hookline-worker",
        metrics: metrics.clone(),
        queue: bus.topology.delivery_queue(),
        tag: format!("hookline-worker-{}", std::process::id()),
        concurrency: settings.delivery.concurrency,
        shutdown_grace: settings.shutdown.grace,
    };
    let watch = hookline_store::ConfigWatch::listen(settings.database_url()).await?;
    let targets = Arc::new(TargetCache::new(watch, config_watch::MAX_AGE, config_watch::CAPACITY));
    let load = {
        let (pool, secrets, metrics) = (pool.clone(), secrets.clone(), metrics.clone());
        Batcher::new(
            batch::MAX_ROWS,
            batch::MAX_RUNNING,
            settings.database.batch_linger,
            move |ids: Arc<Vec<DeliveryId>>| {
                let (pool, secrets, targets) = (pool.clone(), secrets.clone(), targets.clone());
                metrics.batch_ran("load_jobs", ids.len());
                async move { jobs::job_contexts(&pool, &secrets, &targets, &ids).await }
            },
        )
    };
    let record = {
        let (pool, metrics) = (pool.clone(), metrics.clone());
        Batcher::new(
            batch::MAX_ROWS,
            batch::MAX_RUNNING,
            settings.database.batch_linger,
            move |attempts: Arc<Vec<AttemptRecord>>| {
                let pool = pool.clone();
                metrics.batch_ran("record_attempts", attempts.len());
                async move { deliveries::record_attempts(&pool, &attempts).await }
            },
        )
    };
    let worker = Worker {
        load,
        record,
        in_flight: Arc::new(Semaphore::new(settings.delivery.concurrency.max(1))),
        shutdown: shutdown.clone(),
        pool,
        catalog,
        publisher: bus.publisher.clone(),
        topology: bus.topology.clone(),
        client,
        address_policy,
        slots: slots::EndpointSlots::new(
            settings.delivery.max_in_flight_per_endpoint,
            settings.delivery.endpoint_slot_wait,
        ),
        settings: Arc::new(settings),
        metrics,
    };
    tracing::info!(queue = %options.queue, concurrency = options.concurrency, "worker consuming");
    consumer::consume(&bus.connection, options, bus.reject_target(), shutdown, move |message| {
        let worker = worker.clone();
        async move { worker.handle(message).await }
    })
    .await?;
    Ok(())
}
