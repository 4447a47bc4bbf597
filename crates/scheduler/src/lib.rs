#![doc = include_str!("../README.md")]

mod reconcile;
mod retention;

use std::sync::Arc;
use std::time::Duration;

use hookline_bus::codec::proto;
use hookline_bus::consumer::{Incoming, Outcome};
use hookline_bus::{Publisher, Topology, Traced as _, failed, jobs, route};
use hookline_core::envelope::{Origin, RejectReason, Rejection, UpstreamEvent};
use hookline_core::ids::{DeliveryId, OrganizationId, WebhookId};
use hookline_core::lifecycle::Job;
use hookline_core::payload::Payload;
use hookline_core::retry::format_delay;
use hookline_service::{Error, Service};
use hookline_store::Pool;
use hookline_store::repo::events;
use hookline_store::repo::webhooks::changes;
use hookline_telemetry::{Metrics, Settings};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// Does what failed attempts ask for: puts retries in their delay queues and switches
/// off the webhooks hookline must disable. What follows an attempt was decided by the
/// lifecycle when the worker recorded it; the scheduler decides nothing of its own.
#[derive(Clone)]
pub struct Scheduler {
    pool: Pool,
    publisher: Publisher,
    topology: Topology,
    metrics: Metrics,
}

/// A failed attempt's report, read.
struct Report {
    delivery_id: DeliveryId,
    webhook_id: WebhookId,
    failed: proto::FailedAttempt,
}

impl Scheduler {
    async fn handle(&self, message: Arc<Incoming>) -> Outcome {
        let report = match failed::decode(&message).and_then(read) {
            Ok(report) => report,
            Err(rejection) => return Outcome::Reject(rejection),
        };
        let span = schedule_span(&report.failed);
        match self.schedule(&report).instrument(span).await {
            Ok(()) => Outcome::Ack,
            Err(err) => match err.refusal() {
                Some(rejection) => Outcome::Reject(rejection),
                None => {
                    hookline_telemetry::warn_throttled!(delivery_id = %report.delivery_id, error = %err, "could not schedule a retry; it will be retried");
                    Outcome::Retry
                }
            },
        }
    }

    async fn schedule(&self, report: &Report) -> Result<(), Error> {
        if let Some(delay) = report.failed.retry_delay_ms.map(Duration::from_millis) {
            self.queue_retry(report, delay).await?;
        }
        if let Some(disable) = &report.failed.disable {
            self.disable(&report.webhook_id, disable).await?;
        }
        Ok(())
    }

    /// Puts the next attempt in the delay queue of `delay`, declaring it if need be.
    async fn queue_retry(&self, report: &Report, delay: Duration) -> Result<(), Error> {
        let delay_name = format_delay(delay);
        let span = tracing::Span::current();
        span.record("retry_delay", delay_name.as_str());
        let queue = self.delay_queue(delay).await?;
        let Job { attempt, manual } = Job::after(report.failed.attempt, false);
        let job =
            proto::DeliveryJob { delivery_id: report.delivery_id.to_string(), attempt, manual, ..Default::default() };
        jobs::to_queue(&self.publisher, &queue, vec![job.traced(&span)]).await?;
        self.metrics.retry_scheduled(&delay_name);
        tracing::info!(next_attempt = attempt, "retry scheduled");
        Ok(())
    }

    /// Deactivates the webhook and, unless it was inactive already, publishes
    /// `webhook.disabled` for its organisation.
    async fn disable(&self, webhook: &WebhookId, disable: &proto::DisableWebhook) -> Result<(), Error> {
        if !changes::disable(&self.pool, webhook, &disable.reason).await? {
            return Ok(()); // already inactive: nothing to announce
        }
        tracing::warn!(webhook_id = %webhook, reason = %disable.reason, "webhook disabled");
        let (Ok(organization), Ok(environment)) =
            (disable.organization_id.parse::<OrganizationId>(), disable.environment.parse())
        else {
            tracing::error!(?disable, "a disabled webhook's organisation or environment does not parse; not announced");
            return Ok(());
        };
        let data =
            serde_json::json!({"webhookId": webhook, "endpointUrl": disable.endpoint_url, "reason": disable.reason});
        let data = match Payload::from_value(&data) {
            Ok(data) => data,
            Err(err) => {
                tracing::error!(?disable, %err, "a disabled webhook's announcement cannot be stored; not announced");
                return Ok(());
            }
        };
        let event = UpstreamEvent {
            message_id: None,
            event_type: "webhook.disabled".into(),
            organization: organization.clone(),
            environment,
            occurred_at: chrono::Utc::now(),
            actor: None,
            team: None,
            data,
        };
        let event_id = events::insert_synthetic(&self.pool, &event, Origin::System).await?;
        let announcement = proto::RouteEvent {
            event_id: event_id.to_string(),
            organization_id: organization.to_string(),
            event_type: event.event_type,
            environment: environment.as_str().to_owned(),
            ..Default::default()
        };
        route::send(&self.publisher, &self.topology, vec![announcement.traced(&tracing::Span::current())]).await?;
        Ok(())
    }

    async fn delay_queue(&self, delay: Duration) -> Result<String, Error> {
        Ok(self.publisher.ensure_delay_queue(delay).await?)
    }
}

/// The ids a report names, or why it can never be acted on.
fn read(failed: proto::FailedAttempt) -> Result<Report, Rejection> {
    match (failed.delivery_id.parse(), failed.webhook_id.parse()) {
        (Ok(delivery_id), Ok(webhook_id)) => Ok(Report { delivery_id, webhook_id, failed }),
        _ => Err(Rejection::whole(
            RejectReason::Malformed,
            format!(
                "a failed attempt with unusable ids: delivery `{}`, webhook `{}`",
                failed.delivery_id, failed.webhook_id
            ),
        )),
    }
}

/// The span of one report: a child of the attempt that failed, linked to the span
/// processing the message it came in.
fn schedule_span(failed: &proto::FailedAttempt) -> tracing::Span {
    let span = tracing::info_span!(
        "schedule",
        service.name = "hookline-scheduler",
        delivery_id = %failed.delivery_id,
        attempt = failed.attempt,
        error_kind = %failed.error_kind,
        status_code = failed.status_code,
        event_id = %failed.event_id,
        webhook_id = %failed.webhook_id,
        retry_delay = tracing::field::Empty,
    );
    failed.work_span(span)
}

/// Runs the scheduler (failed-attempt consumer, reconciliation sweep, retention) until
/// `shutdown` is cancelled.
pub async fn run(settings: Settings, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let Some(service) = Service::start("hookline-scheduler", &settings, metrics, shutdown).await? else {
        return Ok(());
    };
    let scheduler = Scheduler {
        pool: service.pool.clone(),
        publisher: service.bus.publisher.clone(),
        topology: service.bus.topology.clone(),
        metrics: service.metrics.clone(),
    };
    let sweeper = tokio::spawn(reconcile::run(
        service.pool.clone(),
        reconcile::Bus {
            publisher: service.bus.publisher.clone(),
            topology: service.bus.topology.clone(),
            depths: service.bus.queue_depths(),
        },
        settings.scheduler.clone(),
        service.shutdown.clone(),
    ));
    let keeper =
        tokio::spawn(retention::run(service.pool.clone(), settings.retention.clone(), service.shutdown.clone()));
    let consumed = service
        .consume(service.bus.topology.failed_queue(), settings.scheduler.concurrency, move |message| {
            let scheduler = scheduler.clone();
            async move { scheduler.handle(message).await }
        })
        .await;
    service.shutdown.cancel();
    let _ = sweeper.await;
    let _ = keeper.await;
    consumed
}
