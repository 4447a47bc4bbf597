//! One endpoint's trouble stays its own: jobs of an endpoint whose circuit is open, or
//! that is at its cap, leave the shared delivery queue and are parked in the database
//! instead of going round it ahead of other endpoints' jobs; they are released when the
//! endpoint has room again. What opens and closes a circuit is `hookline_core::circuit`;
//! its state is shared by every worker (`hookline_store::repo::circuits`), and each
//! worker keeps a copy it reads every [`REFRESH`], so a healthy endpoint's job costs
//! nothing here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hookline_bus::codec::proto;
use hookline_bus::{Traced as _, failed, jobs};
use hookline_core::circuit::{self, Circuit, CircuitState, Gate, Verdict};
use hookline_core::delivery::ErrorKind;
use hookline_core::ids::EndpointId;
use hookline_core::lifecycle::{self, FailedBecause, Transition};
use hookline_service::Error;
use hookline_store::repo::circuits::{self, Parking};
use hookline_store::repo::jobs::JobContext;
use hookline_telemetry::metrics::{DeliveryOutcome, ParkReason};

use crate::Worker;

/// How often a worker reads every circuit and releases what waits for endpoints that
/// have room (or are due a probe).
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// This worker's copy of the circuits that are not closed with a clean run, and of the
/// endpoints with parked deliveries.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    circuits: HashMap<EndpointId, Circuit>,
    parked: HashSet<EndpointId>,
}

/// Whether a job goes on to its request.
pub(crate) enum Passage {
    /// Send it (`probe`: it is the open circuit's one probe).
    Send { probe: bool },
    /// It was parked, or its delivery moved on: nothing more to do with it.
    Done,
}

impl Worker {
    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the endpoint's circuit lets `context`'s job do: pass, be the probe, or be
    /// parked. An operator's redelivery (`manual`) always passes: someone asked for it.
    pub(crate) async fn pass(&self, context: &JobContext, manual: bool) -> Result<Passage, Error> {
        let endpoint = &context.target.endpoint_id;
        let gate = self.mirror().circuits.get(endpoint).map_or(Gate::Pass, |circuit| circuit.gate(Utc::now()));
        match gate {
            Gate::Pass => return Ok(Passage::Send { probe: false }),
            _ if manual => return Ok(Passage::Send { probe: false }),
            Gate::Probe if circuits::claim_probe(&self.pool, endpoint, self.lease_duration).await? => {
                tracing::info!("endpoint circuit open; sending this job as its probe");
                return Ok(Passage::Send { probe: true });
            }
            Gate::Probe | Gate::Park => {}
        }
        self.park(context, ParkReason::CircuitOpen).await?;
        Ok(Passage::Done)
    }

    /// Parks the job of `context` to wait for its endpoint. A job parked because its
    /// endpoint is busy holds the delivery's lease, which parking gives back; one parked
    /// because the circuit is open does not hold it (and leaves another's alone).
    pub(crate) async fn park(&self, context: &JobContext, why: ParkReason) -> Result<(), Error> {
        let parking = Parking {
            delivery_id: context.delivery_id.clone(),
            attempts_before: context.attempts,
            leased: why == ParkReason::EndpointBusy,
        };
        if self.park.submit(parking).await? {
            self.metrics.parked_job(why);
            self.mirror().parked.insert(context.target.endpoint_id.clone());
            tracing::debug!(?why, "job parked until its endpoint has room");
        } else {
            tracing::debug!("the delivery moved on since the job was admitted; job dropped");
        }
        Ok(())
    }

    /// Counts an attempt's outcome in its endpoint's circuit (`probe`: it was the open
    /// circuit's probe), and releases a parked job into the slot it leaves when the
    /// circuit lets jobs pass. Only the endpoint's trouble, or an answer ending a run of
    /// it, touches the database.
    ///
    /// A failed probe also fails for good the parked deliveries that have outlived their
    /// retry schedule meanwhile, as their attempts would have without the circuit: so
    /// they do not wait without end, and auto-disable comes as soon as it would have.
    pub(crate) async fn attempt_ended(
        &self,
        context: &JobContext,
        ended: (Option<ErrorKind>, Option<u16>),
        probe: bool,
    ) {
        let endpoint = &context.target.endpoint_id;
        let verdict = circuit::verdict(ended.0, ended.1);
        if let Err(err) = self.count(endpoint, verdict, probe).await {
            hookline_telemetry::warn_throttled!(error = %err, "could not count an attempt in its endpoint's circuit");
        }
        if probe
            && verdict == Verdict::Trouble
            && let Err(err) = self.expire_outlived(context, ended).await
        {
            hookline_telemetry::warn_throttled!(error = %err, "could not fail the parked deliveries that outlived their schedule");
        }
        let release = {
            let mirror = self.mirror();
            mirror.parked.contains(endpoint)
                && mirror.circuits.get(endpoint).is_none_or(|circuit| circuit.gate(Utc::now()) == Gate::Pass)
        };
        if release && let Err(err) = self.release(endpoint, 1).await {
            hookline_telemetry::warn_throttled!(error = %err, "could not release a parked delivery");
        }
    }

    /// After a failed probe of `context`'s endpoint: its parked deliveries made longer
    /// ago than their retry schedule lasts fail for good with the probe's outcome, are
    /// counted in the endpoint's run of failures, and switch the webhook off when the
    /// run reaches `delivery.auto_disable_after`, as a last attempt failing would.
    async fn expire_outlived(
        &self,
        context: &JobContext,
        ended: (Option<ErrorKind>, Option<u16>),
    ) -> Result<(), Error> {
        let policy = context.target.retry_policy.as_ref().unwrap_or(&self.default_policy);
        let span = chrono::Duration::from_std(policy.span()).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let made_before = now.checked_sub_signed(span).unwrap_or(now);
        let Some(expired) =
            circuits::expire_parked(&self.pool, &context.target.endpoint_id, made_before, ended).await?
        else {
            return Ok(());
        };
        for _ in 0..expired.deliveries {
            self.metrics.delivery_completed(DeliveryOutcome::Failed, None);
        }
        tracing::warn!(
            deliveries = expired.deliveries,
            "parked deliveries outlived their retry schedule while the endpoint's circuit stayed open; failed for good"
        );
        let failed = Transition::Failed(FailedBecause::Exhausted);
        let Some(disable) = lifecycle::disable(&failed, expired.consecutive_failures, self.delivery.auto_disable_after)
        else {
            return Ok(());
        };
        let report = proto::FailedAttempt {
            delivery_id: context.delivery_id.to_string(),
            event_id: context.event_id.to_string(),
            webhook_id: context.target.webhook_id.to_string(),
            error_kind: ended.0.map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
            status_code: ended.1.map(u32::from),
            disable: Some(crate::job::disable_webhook(context, disable, now)),
            ..Default::default()
        }
        .traced(&tracing::Span::current());
        Ok(failed::send(&self.publisher, &self.topology, &report).await?)
    }

    async fn count(&self, endpoint: &EndpointId, verdict: Verdict, probe: bool) -> Result<(), Error> {
        match verdict {
            Verdict::Trouble => {
                let mut counted = circuits::failed(&self.pool, &[(endpoint.clone(), probe)], &self.breaker).await?;
                let Some(counted) = counted.remove(endpoint) else { return Ok(()) };
                if counted.opened {
                    self.metrics.circuit_changed(true);
                    let failures = counted.circuit.failures;
                    tracing::warn!(failures, "endpoint circuit opened: its jobs are parked, and probed one at a time");
                }
                self.mirror().circuits.insert(endpoint.clone(), counted.circuit);
            }
            Verdict::Answered if self.mirror().circuits.contains_key(endpoint) => {
                let was_open = !circuits::succeeded(&self.pool, std::slice::from_ref(endpoint)).await?.is_empty();
                self.mirror().circuits.remove(endpoint);
                if was_open {
                    self.metrics.circuit_changed(false);
                    tracing::info!("endpoint answered; its circuit is closed and its parked jobs are released");
                    self.release(endpoint, self.slots.free(endpoint.as_str()).max(1)).await?;
                }
            }
            Verdict::Answered | Verdict::Neither => {}
        }
        Ok(())
    }

    /// Puts up to `limit` of the endpoint's parked deliveries back in the delivery queue.
    async fn release(&self, endpoint: &EndpointId, limit: usize) -> Result<(), Error> {
        let released = circuits::release(&self.pool, endpoint, limit).await?;
        if released.len() < limit {
            self.mirror().parked.remove(endpoint);
        }
        if released.is_empty() {
            return Ok(());
        }
        let span = tracing::Span::current();
        let count = released.len();
        let jobs = released.iter().map(|(delivery, attempts)| jobs::resume(delivery, *attempts, &span)).collect();
        jobs::to_workers(&self.publisher, &self.topology, jobs).await?;
        self.metrics.released_jobs(count);
        Ok(())
    }

    /// Reads every circuit and the endpoints with parked deliveries, and releases what
    /// may go now: for an endpoint whose circuit passes, as many as this worker has free
    /// slots for; for one due a probe, one (which claims the probe when it comes).
    async fn refresh(&self) -> Result<(), Error> {
        let circuits = circuits::troubled(&self.pool).await?;
        let parked = circuits::with_parked(&self.pool).await?;
        let now = Utc::now();
        let open = circuits.values().filter(|circuit| circuit.state(now) != CircuitState::Closed).count();
        self.metrics.set_open_circuits(open);
        let due: Vec<(EndpointId, usize)> = parked
            .iter()
            .filter_map(|endpoint| match circuits.get(endpoint).map_or(Gate::Pass, |circuit| circuit.gate(now)) {
                Gate::Pass => Some((endpoint.clone(), self.slots.free(endpoint.as_str()))),
                Gate::Probe => Some((endpoint.clone(), 1)),
                Gate::Park => None,
            })
            .filter(|(_, limit)| *limit > 0)
            .collect();
        *self.mirror() = Mirror { circuits, parked: parked.into_iter().collect() };
        for (endpoint, limit) in due {
            self.release(&endpoint, limit).await?;
        }
        Ok(())
    }
}

/// Refreshes `worker`'s circuits every [`REFRESH`] until shutdown.
pub(crate) async fn keep_refreshed(worker: Arc<Worker>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = worker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = worker.refresh().await {
            hookline_telemetry::warn_throttled!(error = %err, "could not read endpoint circuits");
        }
    }
}
