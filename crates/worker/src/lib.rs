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
use hookline_core::delivery::DeliveryStatus;
use hookline_core::ids::{DeliveryId, EndpointId};
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
    /// Endpoint targets kept in memory (shared with `load`), for jobs that carry their
    /// delivery.
    targets: Arc<TargetCache>,
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
            return self.perform(job, message.redelivered).instrument(span).await;
        }
        let mut running = tokio::task::JoinSet::new();
        for (index, job) in decoded.jobs.into_iter().enumerate() {
            let span = deliver_span(&job);
            hookline_bus::jobs::continue_trace(&span, &job);
            link_to_current(&span);
            let (worker, redelivered) = (self.clone(), message.redelivered);
            running.spawn(
                async move {
                    let outcome = worker.perform(job.clone(), redelivered).await;
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
    /// `redelivered`: the broker delivered the job's message before, so what the job
    /// carries of its delivery may be out of date and the delivery is loaded instead.
    async fn perform(&self, job: proto::DeliveryJob, redelivered: bool) -> Outcome {
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
        let prepared = trusted_prepared(&job, redelivered).cloned();
        match self.deliver(&delivery_id, job.attempt, job.manual, prepared).await {
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
        // Traced by the headers, from the current (deliver) span, like any single job; the
        // delivery is loaded when the job comes back, as it may have moved on.
        let single = proto::DeliveryJob { traceparent: None, tracestate: None, prepared: None, ..job.clone() };
        match self.publisher.send_to_queue(&self.topology.delay_queue(DEFER_DELAY), &single).await {
            Ok(()) => None,
            Err(err) => {
                tracing::warn!(error = %err, "could not set a delivery job of a batch aside; returning the batch");
                Some(Outcome::Retry)
            }
        }
    }

    /// Makes one attempt: with the delivery as `prepared` describes it when that is given
    /// and its endpoint's target is in memory, or as loaded from the database.
    async fn deliver(
        &self,
        delivery_id: &DeliveryId,
        attempt: u32,
        manual: bool,
        prepared: Option<proto::PreparedJob>,
    ) -> Result<Outcome, Error> {
        let context = match prepared.and_then(|prepared| self.prepared_context(delivery_id, prepared)) {
            Some(context) => context,
            None => match self.load.submit(delivery_id.clone()).await? {
                Some(context) => context,
                None => {
                    return Ok(Outcome::Reject {
                        reason: "unknown_delivery".into(),
                        detail: format!("delivery {delivery_id} does not exist"),
                    });
                }
            },
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

impl Worker {
    /// The context of a delivery the router has just created (pending, unattempted) from
    /// what its job carries, with its endpoint's target from memory. `None` when the
    /// target is not in memory or a field does not parse: the delivery is then loaded,
    /// which also reads the target (in a batch) and keeps it.
    fn prepared_context(&self, delivery_id: &DeliveryId, prepared: proto::PreparedJob) -> Option<jobs::JobContext> {
        let endpoint: EndpointId = prepared.endpoint_id.parse().ok()?;
        let target = self.targets.get(&endpoint)?;
        Some(jobs::JobContext {
            delivery_id: delivery_id.clone(),
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            event_id: prepared.event_id.parse().ok()?,
            event_type: prepared.event_type,
            environment: prepared.environment.parse().ok()?,
            occurred_at: chrono::DateTime::from_timestamp_micros(prepared.occurred_at_micros)?,
            data: serde_json::from_str(&prepared.data).ok()?,
            organization_id: prepared.organization_id.parse().ok()?,
            target,
        })
    }
}

/// What a job carries of its delivery, when that may stand in for the database: only a
/// first, scheduled attempt's, in a message the broker has not delivered before. A
/// redelivered message may have been worked on already (its attempt recorded, or the
/// delivery settled since), which only the database knows.
fn trusted_prepared(job: &proto::DeliveryJob, redelivered: bool) -> Option<&proto::PreparedJob> {
    job.prepared.as_ref().filter(|_| !redelivered && job.attempt == 1 && !job.manual)
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
        let (pool, secrets, metrics, targets) = (pool.clone(), secrets.clone(), metrics.clone(), targets.clone());
        Batcher::new(
            batch::MAX_ROWS,
            batch::MAX_RUNNING,
            settings.database.batch_linger,
            move |ids: Arc<Vec<DeliveryId>>| {
                let (pool, secrets, targets, metrics) =
                    (pool.clone(), secrets.clone(), targets.clone(), metrics.clone());
                async move {
                    let loading = jobs::job_contexts(&pool, &secrets, &targets, &ids);
                    metrics.timed_batch("load_jobs", ids.len(), loading).await
                }
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
                let (pool, metrics) = (pool.clone(), metrics.clone());
                async move {
                    metrics
                        .timed_batch("record_attempts", attempts.len(), deliveries::record_attempts(&pool, &attempts))
                        .await
                }
            },
        )
    };
    let worker = Worker {
        load,
        targets,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_job_carries_is_trusted_only_for_a_first_scheduled_attempt_never_delivered_before() {
        let job = proto::DeliveryJob {
            delivery_id: DeliveryId::generate().to_string(),
            attempt: 1,
            prepared: Some(proto::PreparedJob::default()),
            ..Default::default()
        };
        assert!(trusted_prepared(&job, false).is_some());
        assert!(trusted_prepared(&job, true).is_none(), "a redelivered message is loaded");
        let retry = proto::DeliveryJob { attempt: 2, ..job.clone() };
        assert!(trusted_prepared(&retry, false).is_none(), "a later attempt is loaded");
        let manual = proto::DeliveryJob { manual: true, ..job.clone() };
        assert!(trusted_prepared(&manual, false).is_none(), "a manual attempt is loaded");
        let plain = proto::DeliveryJob { prepared: None, ..job };
        assert!(trusted_prepared(&plain, false).is_none());
    }
}
