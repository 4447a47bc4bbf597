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
use hookline_bus::jobs;
use hookline_core::circuit::{self, Circuit, CircuitState, Gate, Verdict};
use hookline_core::delivery::ErrorKind;
use hookline_core::ids::EndpointId;
use hookline_service::Error;
use hookline_store::repo::circuits::{self, Parking};
use hookline_store::repo::jobs::JobContext;
use hookline_telemetry::metrics::ParkReason;

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
    pub(crate) async fn attempt_ended(
        &self,
        endpoint: &EndpointId,
        ended: (Option<ErrorKind>, Option<u16>),
        probe: bool,
    ) {
        if let Err(err) = self.count(endpoint, circuit::verdict(ended.0, ended.1), probe).await {
            hookline_telemetry::warn_throttled!(error = %err, "could not count an attempt in its endpoint's circuit");
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
