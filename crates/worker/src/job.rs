//! One job: the delivery it names, the lifecycle's admission, the attempt, and what the
//! outcome asks for. Every decision is the lifecycle's (`hookline_core::lifecycle`);
//! this module does the I/O around them.

use std::time::Duration;

use chrono::Utc;
use hookline_bus::codec::proto;
use hookline_bus::{Traced as _, failed};
use hookline_core::delivery::Trigger;
use hookline_core::envelope::{RejectReason, Rejection};
use hookline_core::ids::{DeliveryId, EndpointId};
use hookline_core::lifecycle::{self, Admission, Ended, Failure, Job, Rules, Transition};
use hookline_service::Error;
use hookline_store::repo::deliveries::{AttemptRecord, Settle, Settled};
use hookline_store::repo::jobs::JobContext;
use hookline_telemetry::metrics::{DeliveryOutcome, DuplicateJob, ParkReason};

use crate::Worker;
use crate::attempt::{self, AttemptSettings};
use crate::circuits::Passage;
use crate::handle::Done;
use crate::once::Claim;

impl Worker {
    /// Performs one job, holding one of the worker's delivery places while it runs.
    /// `redelivered`: the broker delivered the job's message before, so what the job
    /// carries of its delivery may be out of date and the delivery is loaded instead.
    pub(crate) async fn perform(&self, job: &proto::DeliveryJob, redelivered: bool) -> Done {
        let Ok(delivery_id) = job.delivery_id.parse::<DeliveryId>() else {
            let detail = format!("`{}` is not a delivery id", job.delivery_id);
            return Done::Rejected(Rejection::whole(RejectReason::Malformed, detail));
        };
        // Once shutdown starts, a job still waiting for a place is handed back unstarted
        // rather than started inside the grace.
        let place = tokio::select! {
            biased;
            () = self.shutdown.cancelled() => None,
            place = self.in_flight.acquire() => place.ok(),
        };
        let Some(_place) = place else { return Done::Unstarted };
        let context = match self.context(&delivery_id, trusted_prepared(job, redelivered)).await {
            Ok(Some(context)) => context,
            Ok(None) => {
                let detail = format!("delivery {delivery_id} does not exist");
                return Done::Rejected(Rejection::whole(RejectReason::UnknownDelivery, detail));
            }
            Err(err) => return Done::Again(err),
        };
        record_context(&context);
        let asked = Job { attempt: job.attempt, manual: job.manual };
        let outcome = match lifecycle::admit(&context.delivery(), asked) {
            Admission::Duplicate => {
                self.metrics.duplicate_job(DuplicateJob::AlreadyRecorded);
                tracing::debug!(status = context.status.as_str(), recorded = context.attempts, "duplicate job skipped");
                Ok(())
            }
            Admission::Close => self.close(&context).await,
            Admission::Attempt => self.attempt(&context, job, asked).await,
        };
        outcome.map_or_else(Done::Again, |()| Done::Settled)
    }

    /// The delivery a job names: as the job describes it when it may be trusted and its
    /// endpoint's target is in memory, or as loaded from the database (`None` when it
    /// does not exist).
    async fn context(
        &self,
        delivery_id: &DeliveryId,
        prepared: Option<&proto::PreparedJob>,
    ) -> Result<Option<JobContext>, Error> {
        if let Some(context) = prepared.and_then(|prepared| self.prepared_context(delivery_id, prepared)) {
            return Ok(Some(context));
        }
        self.load.submit(delivery_id.clone()).await
    }

    /// The context of a delivery the router has just created (pending, unattempted) from
    /// what its job carries, with its endpoint's target from memory. `None` when the
    /// target is not in memory or a field does not parse: the delivery is then loaded,
    /// which also reads the target (in a batch) and keeps it.
    fn prepared_context(&self, delivery_id: &DeliveryId, prepared: &proto::PreparedJob) -> Option<JobContext> {
        let endpoint: EndpointId = prepared.endpoint_id.parse().ok()?;
        let target = self.targets.get(&endpoint)?;
        Some(JobContext {
            delivery_id: delivery_id.clone(),
            status: hookline_core::delivery::DeliveryStatus::Pending,
            attempts: 0,
            event_id: prepared.event_id.parse().ok()?,
            event_type: prepared.event_type.clone(),
            environment: prepared.environment.parse().ok()?,
            occurred_at: chrono::DateTime::from_timestamp_micros(prepared.occurred_at_micros)?,
            data: hookline_core::payload::Payload::stored(prepared.data.clone()).ok()?,
            organization_id: prepared.organization_id.parse().ok()?,
            target,
        })
    }

    /// Closes a delivery whose webhook is gone, without an attempt.
    async fn close(&self, context: &JobContext) -> Result<(), Error> {
        let settle = Settle {
            delivery_id: context.delivery_id.clone(),
            attempts_before: context.attempts,
            transition: Transition::Closed,
            attempt: None,
        };
        if self.settle.submit(settle).await?.applied {
            self.metrics.delivery_completed(DeliveryOutcome::Closed, None);
            tracing::info!("webhook is inactive or deleted; delivery closed without an attempt");
        }
        Ok(())
    }

    /// Makes the attempt `job` asks for, persists it with the transition the lifecycle
    /// decides, and does what that transition asks for.
    async fn attempt(&self, context: &JobContext, job: &proto::DeliveryJob, asked: Job) -> Result<(), Error> {
        let endpoint = &context.target.endpoint_id;
        let Passage::Send { probe } = self.pass(context, asked.manual).await? else { return Ok(()) };
        // The lease comes before the endpoint's slot: a slot is held only for the request.
        match self.claim(context).await? {
            Claim::Send => {}
            Claim::Wait => return self.set_aside(vec![job.clone()]).await,
            Claim::Drop => return Ok(()),
        }
        // Over the endpoint's cap for longer than a healthy endpoint would be: leave the
        // delivery queue instead of holding a place other endpoints could use, giving the
        // lease back (an operator's redelivery goes round the defer queue: it is not to
        // wait long, and a released job would no longer be the operator's).
        let Some(slot) = self.slots.take(endpoint.as_str()).await else {
            if asked.manual {
                self.unlease(context).await?;
                return self.set_aside(vec![job.clone()]).await;
            }
            return self.park(context, ParkReason::EndpointBusy).await;
        };
        let record = self.send(context, asked).await;
        // The cap is on requests to the endpoint: recording the attempt holds no slot.
        drop(slot);
        let verdict = (record.error_kind, record.status_code);
        let now = Utc::now();
        let ended = ended(&record, now);
        let policy = context.target.retry_policy.as_ref().unwrap_or(&self.default_policy);
        let rules = Rules { policy, max_retry_after: self.delivery.max_retry_after };
        let transition = lifecycle::next(&context.delivery(), asked.attempt, &ended, &rules, now);
        let sent = Sent::of(&record);
        let settle = Settle {
            delivery_id: context.delivery_id.clone(),
            attempts_before: context.attempts,
            transition,
            attempt: Some(record),
        };
        let settled = self.record(settle).await?;
        if !settled.applied {
            // Another worker recorded this attempt first: this one's lease ran out
            // before its record (a database away for longer than the lease).
            self.metrics.duplicate_job(DuplicateJob::AlreadyRecorded);
            tracing::warn!("an attempt was sent twice: another copy was recorded first");
            return Ok(());
        }
        // The attempt and its transition are recorded: a job coming back would be a
        // duplicate, so a follow-up that cannot be sent is not tried again from here.
        // A retry due is resumed by the reconciliation sweep once it is overdue.
        if let Err(err) = self.follow(context, &sent, &transition, settled, job).await {
            hookline_telemetry::warn_throttled!(error = %err, ?transition, "attempt recorded, but what follows it could not be sent to the scheduler");
        }
        self.attempt_ended(context, verdict, probe).await;
        Ok(())
    }

    /// Sends the attempt's request and describes what happened.
    async fn send(&self, context: &JobContext, asked: Job) -> AttemptRecord {
        let event_name = self.catalog.get(&context.event_type).map_or(context.event_type.as_str(), |t| t.name.as_str());
        let settings = AttemptSettings {
            client: &self.client,
            max_response_body: self.delivery.max_response_body,
            address_policy: &self.address_policy,
            allow_http: self.delivery.allow_http,
        };
        let record = {
            let _in_flight = self.metrics.attempt_in_flight();
            attempt::perform(context, event_name, asked.attempt, Trigger::of(asked.manual), &settings).await
        };
        self.metrics.attempt_finished(record.status_code, Duration::from_millis(u64::from(record.duration_ms)));
        let span = tracing::Span::current();
        if let Some(code) = record.status_code {
            span.record("status_code", code);
        }
        if let Some(kind) = record.error_kind {
            span.record("error_kind", kind.as_str());
        }
        record
    }

    /// What a persisted transition asks for: counting how the delivery ended, and
    /// telling the scheduler of a retry to queue or a webhook to switch off.
    async fn follow(
        &self,
        context: &JobContext,
        record: &Sent,
        transition: &Transition,
        settled: Settled,
        job: &proto::DeliveryJob,
    ) -> Result<(), Error> {
        let disable = lifecycle::disable(transition, settled.consecutive_failures, self.delivery.auto_disable_after);
        let retry_delay = match transition {
            Transition::Succeeded => {
                let latency = (Utc::now() - context.occurred_at).to_std().ok();
                self.metrics.delivery_completed(DeliveryOutcome::Succeeded, latency);
                tracing::info!(duration_ms = record.duration_ms, "delivered");
                return Ok(());
            }
            Transition::RetryAt { delay, .. } => Some(*delay),
            Transition::Failed(because) => {
                self.metrics.delivery_completed(DeliveryOutcome::Failed, None);
                tracing::info!(?because, error = record.error_message.as_deref(), "delivery failed for good");
                None
            }
            Transition::Closed | Transition::Kept => return Ok(()),
        };
        if retry_delay.is_none() && disable.is_none() {
            return Ok(());
        }
        let target = &context.target;
        let report = proto::FailedAttempt {
            delivery_id: context.delivery_id.to_string(),
            attempt: job.attempt,
            event_id: context.event_id.to_string(),
            webhook_id: target.webhook_id.to_string(),
            error_kind: record.error_kind.map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
            status_code: record.status_code.map(u32::from),
            retry_delay_ms: retry_delay.map(|delay| u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            disable: disable.map(|disable| disable_webhook(context, disable, record.started_at)),
            ..Default::default()
        }
        .traced(&tracing::Span::current());
        tracing::info!(error = record.error_message.as_deref(), "attempt failed");
        Ok(failed::send(&self.publisher, &self.topology, &report).await?)
    }
}

/// Asks the scheduler to switch `context`'s webhook off, for `disable`, decided at `at`.
pub(crate) fn disable_webhook(
    context: &JobContext,
    disable: lifecycle::Disable,
    at: chrono::DateTime<Utc>,
) -> proto::DisableWebhook {
    let target = &context.target;
    proto::DisableWebhook {
        reason: disable.reason(&target.url, at),
        organization_id: context.organization_id.to_string(),
        environment: context.environment.as_str().to_owned(),
        endpoint_url: target.url.clone(),
    }
}

/// What follows an attempt needs to know of it, once its record is handed to the store.
struct Sent {
    status_code: Option<u16>,
    error_kind: Option<hookline_core::delivery::ErrorKind>,
    error_message: Option<String>,
    started_at: chrono::DateTime<Utc>,
    duration_ms: u32,
}

impl Sent {
    fn of(record: &AttemptRecord) -> Self {
        Self {
            status_code: record.status_code,
            error_kind: record.error_kind,
            error_message: record.error_message.clone(),
            started_at: record.started_at,
            duration_ms: record.duration_ms,
        }
    }
}

/// How an attempt ended, as the lifecycle reads it.
fn ended(record: &AttemptRecord, now: chrono::DateTime<Utc>) -> Ended {
    let Some(kind) = record.error_kind else { return Ended::Succeeded };
    let retry_after = record.status_code.and_then(|status| {
        let header = record.response_headers.as_ref().and_then(|headers| headers.get("retry-after"));
        lifecycle::retry_after(status, header.map(String::as_str), now)
    });
    Ended::Failed(Failure { kind, status_code: record.status_code, retry_after })
}

/// Records the delivery's identifiers on the current (deliver) span.
fn record_context(context: &JobContext) {
    let span = tracing::Span::current();
    span.record("event_id", context.event_id.as_str());
    span.record("event_type", context.event_type.as_str());
    span.record("organization", context.organization_id.as_str());
    span.record("webhook_id", context.target.webhook_id.as_str());
    if let Ok(url) = url::Url::parse(&context.target.url) {
        span.record("endpoint_host", url.host_str().unwrap_or_default());
    }
}

/// What a job carries of its delivery, when that may stand in for the database: only a
/// first, scheduled attempt's, in a message the broker has not delivered before. A
/// redelivered message may have been worked on already (its attempt recorded, or the
/// delivery settled since), which only the database knows.
fn trusted_prepared(job: &proto::DeliveryJob, redelivered: bool) -> Option<&proto::PreparedJob> {
    job.prepared.as_ref().filter(|_| !redelivered && job.attempt == 1 && !job.manual)
}

/// The span of one attempt: a child of the span that asked for it (the job's trace
/// context), linked to the span processing the message it came in (the current one).
pub(crate) fn deliver_span(job: &proto::DeliveryJob) -> tracing::Span {
    let span = tracing::info_span!(
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
    );
    job.work_span(span)
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
