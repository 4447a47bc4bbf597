//! One delivery message: its jobs performed at once, each settled on its own.

use std::sync::Arc;

use hookline_bus::codec::proto;
use hookline_bus::consumer::{Incoming, Outcome, RejectedPart};
use hookline_bus::jobs;
use hookline_core::envelope::Rejection;
use hookline_service::Error;
use tracing::Instrument as _;

use crate::Worker;
use crate::job::deliver_span;

/// What became of one job.
#[derive(Debug)]
pub(crate) enum Done {
    /// Performed, skipped as a duplicate, or deferred: nothing more to do here.
    Settled,
    /// Can never be performed: it goes to the rejected queue.
    Rejected(Rejection),
    /// Hit a transient failure (database or broker unreachable): it is set aside, to be
    /// tried again in a moment.
    Again(Error),
    /// Shutdown came before it started: it is set aside too, for another worker.
    Unstarted,
}

impl Worker {
    /// What the consumer does with one delivery message: performs each of its jobs at the
    /// same time. A job that can never be performed goes to the rejected queue alone; one
    /// that hit a transient failure waits in the defer queue on its own, so the rest of
    /// the message is settled. Only when that fails does the whole message go back.
    pub(crate) async fn handle(self: &Arc<Self>, message: Arc<Incoming>) -> Outcome {
        let jobs = match jobs::decode(&message) {
            Ok(jobs) => jobs,
            Err(rejection) => return Outcome::Reject(rejection),
        };
        let Some(done) = self.perform_all(jobs, message.redelivered).await else { return Outcome::Retry };
        let mut rejected = Vec::new();
        let mut again = Vec::new();
        for (job, done) in done {
            match done {
                Done::Settled => {}
                Done::Rejected(rejection) => rejected.push(RejectedPart { body: jobs::alone(job), rejection }),
                Done::Again(err) if let Some(rejection) = err.refusal() => {
                    rejected.push(RejectedPart { body: jobs::alone(job), rejection });
                }
                Done::Again(err) => {
                    hookline_telemetry::warn_throttled!(delivery_id = %job.delivery_id, error = %err, "delivery job set aside; it will be tried again");
                    again.push(job);
                }
                Done::Unstarted => again.push(job),
            }
        }
        if let Err(err) = self.set_aside(again).await {
            hookline_telemetry::warn_throttled!(error = %err, "could not set delivery jobs aside; returning the message");
            return Outcome::Retry;
        }
        if rejected.is_empty() { Outcome::Ack } else { Outcome::AckRejecting(rejected) }
    }

    /// Performs `jobs` at once, each in its own trace and span; answers each job with
    /// what became of it, in order (`None` when one panicked).
    async fn perform_all(
        self: &Arc<Self>,
        jobs: Vec<proto::DeliveryJob>,
        redelivered: bool,
    ) -> Option<Vec<(proto::DeliveryJob, Done)>> {
        let mut running = tokio::task::JoinSet::new();
        for (index, job) in jobs.into_iter().enumerate() {
            let span = deliver_span(&job);
            let worker = self.clone();
            running.spawn(
                async move {
                    let done = worker.perform(&job, redelivered).await;
                    (index, job, done)
                }
                .instrument(span),
            );
        }
        let mut done = Vec::with_capacity(running.len());
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok(finished) => done.push(finished),
                // A job's task panicked: return the message; jobs already done are skipped
                // as duplicates when it comes back.
                Err(err) => {
                    tracing::error!(error = %err, "a delivery job panicked; returning its message");
                    return None;
                }
            }
        }
        done.sort_by_key(|(index, _, _)| *index);
        Some(done.into_iter().map(|(_, job, done)| (job, done)).collect())
    }

    /// Sends `jobs` round the defer queue, to be tried again a second from now. What a
    /// job carried of its delivery is dropped: it is loaded when the job comes back, as
    /// the delivery may have moved on.
    pub(crate) async fn set_aside(&self, jobs: Vec<proto::DeliveryJob>) -> Result<(), Error> {
        if jobs.is_empty() {
            return Ok(());
        }
        let jobs = jobs.into_iter().map(|job| proto::DeliveryJob { prepared: None, ..job }).collect();
        Ok(jobs::to_queue(&self.publisher, &self.topology.defer_queue(), jobs).await?)
    }
}
