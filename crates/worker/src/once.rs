//! A job is sent once: the attempt is claimed (a lease on the delivery, taken atomically
//! with the check that the attempt is not recorded yet) before its request, and its
//! outcome, once sent, is recorded even if the database is away for a while, instead of
//! the job coming back to send again.
//!
//! Two copies of a job can then never both send; a copy meets the lease and waits in the
//! defer queue until the attempt is recorded, then is dropped as a duplicate. A second
//! request can only follow a worker killed between its request and its record, once its
//! lease has run out; it carries the same `webhook-id`.

use std::time::Duration;

use hookline_core::backoff;
use hookline_service::Error;
use hookline_store::repo::deliveries::{Settle, Settled};
use hookline_store::repo::jobs::JobContext;
use hookline_store::repo::leases::{self, Lease, Leased};
use hookline_telemetry::metrics::DuplicateJob;

use crate::Worker;

/// How much longer than the delivery timeout a lease lasts: room to record the attempt.
/// A worker that dies holding a lease delays that delivery's next copy by this much.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The longest wait between two tries at recording an attempt.
const RECORD_RETRY_CAP: Duration = Duration::from_secs(1);

/// What to do with a job once its attempt was asked for.
pub(crate) enum Claim {
    /// Send it: this worker holds the lease.
    Send,
    /// Another worker is sending this attempt now: wait in the defer queue.
    Wait,
    /// The attempt is recorded already (or the delivery is gone): nothing to do.
    Drop,
}

impl Worker {
    /// Claims the attempt after `context.attempts` of its delivery.
    pub(crate) async fn claim(&self, context: &JobContext) -> Result<Claim, Error> {
        let lease = Lease { delivery_id: context.delivery_id.clone(), attempts_before: context.attempts };
        Ok(match self.lease.submit(lease).await? {
            Leased::Granted => Claim::Send,
            Leased::Held => {
                self.metrics.duplicate_job(DuplicateJob::InFlight);
                tracing::debug!("another worker is sending this attempt; the job waits");
                Claim::Wait
            }
            Leased::Recorded => {
                self.metrics.duplicate_job(DuplicateJob::AlreadyRecorded);
                tracing::debug!("the attempt is recorded already; duplicate job dropped");
                Claim::Drop
            }
            Leased::Missing => {
                tracing::debug!("the delivery is gone; job dropped");
                Claim::Drop
            }
        })
    }

    /// Gives back the lease [`Worker::claim`] took, for a job sent round again unsent.
    pub(crate) async fn unlease(&self, context: &JobContext) -> Result<(), Error> {
        Ok(leases::release(&self.pool, &context.delivery_id).await?)
    }

    /// Records a sent attempt, trying again (within the shutdown grace, which bounds
    /// every job) while the database is away: the request went, so sending it again
    /// would be a duplicate, and only a record ends its lease.
    pub(crate) async fn record(&self, settle: Settle) -> Result<Settled, Error> {
        let mut failures = 0;
        loop {
            match self.settle.submit(settle.clone()).await {
                Ok(settled) => return Ok(settled),
                Err(err) if err.is_unavailable() => {
                    hookline_telemetry::warn_throttled!(error = %err, "an attempt was sent but cannot be recorded yet; trying again");
                    failures += 1;
                    tokio::time::sleep(backoff::after(failures).min(RECORD_RETRY_CAP)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}
