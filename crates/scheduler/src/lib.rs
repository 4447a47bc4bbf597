#![doc = include_str!("../README.md")]

mod reconcile;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hookline_bus::codec::{self, proto};
use hookline_bus::consumer::{self, ConsumerOptions, Incoming, Outcome};
use hookline_bus::{Bus, Publisher, Topology, route};
use hookline_core::RetryPolicy;
use hookline_core::envelope::UpstreamEvent;
use hookline_core::ids::DeliveryId;
use hookline_core::retry::retry_after_delay;
use hookline_store::Pool;
use hookline_store::repo::{deliveries, events, webhooks};
use hookline_telemetry::metrics::DeliveryOutcome;
use hookline_telemetry::{Metrics, Settings};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Why the scheduler stopped.
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

/// Decides what follows a failed attempt.
#[derive(Clone)]
pub struct Scheduler {
    pool: Pool,
    publisher: Publisher,
    topology: Topology,
    policy: RetryPolicy,
    /// Delay queues declared by this process; webhooks with their own policy may need
    /// delays the configuration does not list.
    declared: Arc<Mutex<HashSet<Duration>>>,
    /// The longest Retry-After honoured.
    max_retry_after: Duration,
    /// Final failures in a row that deactivate a webhook (0: never).
    auto_disable_after: u32,
    metrics: Metrics,
}

impl Scheduler {
    async fn handle(&self, message: Arc<Incoming>) -> Outcome {
        let failed: proto::FailedAttempt = match codec::decode(&message.data) {
            Ok(failed) => failed,
            Err(rejection) => return Outcome::Reject { reason: "malformed".into(), detail: rejection.message },
        };
        let Ok(delivery_id) = failed.delivery_id.parse::<DeliveryId>() else {
            return Outcome::Reject { reason: "malformed".into(), detail: format!("bad delivery id in {failed:?}") };
        };
        match self.schedule(&delivery_id, &failed).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(%delivery_id, error = %err, "could not schedule a retry; it will be retried");
                Outcome::Retry
            }
        }
    }

    #[tracing::instrument(
        name = "schedule",
        skip_all,
        fields(
            delivery_id = %delivery_id,
            attempt = failed.attempt,
            error_kind = %failed.error_kind,
            status_code = failed.status_code,
            retryable = failed.retryable,
            event_id,
            webhook_id,
            retry_delay,
        )
    )]
    async fn schedule(&self, delivery_id: &DeliveryId, failed: &proto::FailedAttempt) -> Result<Outcome, Error> {
        let Some(target) = deliveries::retry_target(&self.pool, delivery_id).await? else {
            return Ok(Outcome::Reject {
                reason: "unknown_delivery".into(),
                detail: format!("delivery {delivery_id} does not exist"),
            });
        };
        // Already settled, or a later attempt has been made: this report is stale.
        if target.status.is_final() || target.attempt_count > failed.attempt {
            return Ok(Outcome::Ack);
        }
        let span = tracing::Span::current();
        span.record("event_id", target.event_id.as_str());
        span.record("webhook_id", target.webhook_id.as_str());
        if !target.webhook_enabled {
            if deliveries::mark_failed(&self.pool, delivery_id).await? {
                self.metrics.delivery_completed(DeliveryOutcome::Closed, None);
            }
            return Ok(Outcome::Ack);
        }
        let policy = match &target.retry_delays_ms {
            Some(delays) => RetryPolicy::new(
                delays.iter().map(|ms| Duration::from_millis(u64::try_from(*ms).unwrap_or_default())).collect(),
            )
            .unwrap_or_else(|_| self.policy.clone()),
            None => self.policy.clone(),
        };
        let delay = if failed.retryable { policy.delay_after(failed.attempt) } else { None };
        // A receiver that asked for more time (429/503 with Retry-After) gets the later of the two.
        let delay = delay.map(|delay| match failed.retry_after_ms {
            Some(ms) => delay.max(retry_after_delay(Duration::from_millis(ms), self.max_retry_after)),
            None => delay,
        });
        let Some(delay) = delay else {
            if deliveries::mark_failed(&self.pool, delivery_id).await? {
                self.metrics.delivery_completed(DeliveryOutcome::Failed, None);
                tracing::info!(attempts = failed.attempt, "delivery failed for good");
                self.count_final_failure(delivery_id).await?;
            }
            return Ok(Outcome::Ack);
        };
        let delay_name = hookline_core::retry::format_delay(delay);
        span.record("retry_delay", delay_name.as_str());
        let next_at = chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        deliveries::schedule_retry(&self.pool, delivery_id, next_at).await?;
        let queue = self.delay_queue(delay).await?;
        let job = proto::DeliveryJob {
            delivery_id: delivery_id.to_string(),
            attempt: failed.attempt + 1,
            manual: false,
            ..Default::default()
        };
        self.publisher.send_to_queue(&queue, &job).await?;
        self.metrics.retry_scheduled(&delay_name);
        tracing::info!(next_attempt = failed.attempt + 1, "retry scheduled");
        Ok(Outcome::Ack)
    }

    /// Counts a final failure against the endpoint and, at `delivery.auto_disable_after`
    /// in a row, deactivates the webhook and publishes `webhook.disabled` for the
    /// organisation.
    async fn count_final_failure(&self, delivery_id: &DeliveryId) -> Result<(), Error> {
        if self.auto_disable_after == 0 {
            return Ok(());
        }
        let Some(failures) = deliveries::record_final_failure(&self.pool, delivery_id).await? else { return Ok(()) };
        if failures.consecutive < self.auto_disable_after {
            return Ok(());
        }
        let reason = format!("{} deliveries in a row to {} failed", failures.consecutive, failures.url);
        if !webhooks::disable(&self.pool, &failures.webhook_id, &reason).await? {
            return Ok(()); // already inactive: nothing to announce
        }
        tracing::warn!(webhook_id = %failures.webhook_id, %reason, "webhook auto-disabled");
        let event = UpstreamEvent {
            message_id: None,
            event_type: "webhook.disabled".into(),
            organization: failures.organization_id.clone(),
            environment: failures.environment,
            occurred_at: chrono::Utc::now(),
            actor: None,
            team: None,
            data: serde_json::json!({"webhookId": failures.webhook_id, "endpointUrl": failures.url, "reason": reason}),
        };
        let event_id = events::insert_synthetic(&self.pool, &event, "system").await?;
        let route = proto::RouteEvent {
            event_id: event_id.to_string(),
            organization_id: failures.organization_id.to_string(),
            event_type: event.event_type,
            environment: failures.environment.as_str().to_owned(),
            ..Default::default()
        };
        route::send(&self.publisher, &self.topology, vec![route::traced(route)]).await?;
        Ok(())
    }

    async fn delay_queue(&self, delay: Duration) -> Result<String, Error> {
        let mut declared = self.declared.lock().await;
        if !declared.contains(&delay) {
            self.topology.declare_delay_queue(self.publisher.channel(), delay).await?;
            declared.insert(delay);
        }
        Ok(self.topology.delay_queue(delay))
    }
}

/// Runs the scheduler (failed-attempt consumer and reconciliation sweep) until
/// `shutdown` is cancelled.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let policy = settings.retry_policy()?;
    let pool = hookline_store::open(settings.database_url(), settings.database.pool_size).await?;
    let bus = Bus::open(settings.amqp_url(), &settings.amqp.prefix, "hookline-scheduler", policy.delays()).await?;
    bus.report_queue_depths(&metrics);
    let scheduler = Scheduler {
        pool: pool.clone(),
        publisher: bus.publisher.clone(),
        topology: bus.topology.clone(),
        declared: Arc::new(Mutex::new(policy.delays().iter().copied().collect())),
        max_retry_after: settings.delivery.max_retry_after,
        auto_disable_after: settings.delivery.auto_disable_after,
        policy,
        metrics: metrics.clone(),
    };
    let sweeper = tokio::spawn(reconcile::run(
        pool,
        bus.publisher.clone(),
        bus.topology.clone(),
        settings.scheduler.reconcile_interval,
        settings.scheduler.reconcile_after,
        shutdown.clone(),
    ));
    let options = ConsumerOptions {
        service: "hookline-scheduler",
        metrics,
        queue: bus.topology.failed_queue(),
        tag: "hookline-scheduler".into(),
        concurrency: settings.scheduler.concurrency,
        shutdown_grace: settings.shutdown.grace,
    };
    tracing::info!(queue = %options.queue, "scheduler consuming");
    let consumed = consumer::consume(&bus.connection, options, bus.reject_target(), shutdown.clone(), move |message| {
        let scheduler = scheduler.clone();
        async move { scheduler.handle(message).await }
    })
    .await;
    shutdown.cancel();
    let _ = sweeper.await;
    consumed?;
    Ok(())
}
