//! Delivery jobs, to the workers. The router sends the first attempts of deliveries
//! created at the same moment together, up to [`MAX_JOBS_PER_MESSAGE`] in one
//! `DeliveryJobs` message: the broker persists, delivers and settles one message per
//! batch instead of one per delivery. Everyone else (scheduler, API, a worker setting a
//! job aside) sends the same message with fewer jobs in it. Each job carries its own
//! trace context.

use hookline_core::envelope::Rejection;
use hookline_core::ids::DeliveryId;
use hookline_core::lifecycle::Job;
use prost::Message as _;

use crate::codec::proto;
use crate::consumer::Incoming;
use crate::message;
use crate::topology::JOB_ROUTING_KEY;
use crate::{Publisher, Result, Topology, Traced as _};

/// Jobs in one message at most: enough to take most of the broker's per-message cost
/// away, few enough that competing workers still share a burst.
pub const MAX_JOBS_PER_MESSAGE: usize = 32;

/// The job that resumes a delivery with `attempts` recorded: the next scheduled attempt,
/// traced as a child of `span`. What the reconciliation sweep publishes for a lost job
/// and a worker for a parked one.
pub fn resume(delivery: &DeliveryId, attempts: u32, span: &tracing::Span) -> proto::DeliveryJob {
    let Job { attempt, manual } = Job::after(attempts, false);
    proto::DeliveryJob { delivery_id: delivery.to_string(), attempt, manual, ..Default::default() }.traced(span)
}

/// Publishes `jobs` to the workers, in messages of up to [`MAX_JOBS_PER_MESSAGE`], and
/// waits for every confirm.
pub async fn to_workers(publisher: &Publisher, topology: &Topology, jobs: Vec<proto::DeliveryJob>) -> Result<()> {
    publish(publisher, &topology.delivery_exchange(), JOB_ROUTING_KEY, jobs).await
}

/// Publishes `jobs` into `queue` (a delay queue, which hands them to the workers once
/// its delay has passed), and waits for every confirm.
pub async fn to_queue(publisher: &Publisher, queue: &str, jobs: Vec<proto::DeliveryJob>) -> Result<()> {
    publish(publisher, "", queue, jobs).await
}

async fn publish(publisher: &Publisher, exchange: &str, key: &str, jobs: Vec<proto::DeliveryJob>) -> Result<()> {
    let messages = jobs
        .chunks(MAX_JOBS_PER_MESSAGE)
        .map(|chunk| message::encoded(&proto::DeliveryJobs { jobs: chunk.to_vec() }))
        .collect();
    publisher.publish_encoded(exchange, key, messages).await
}

/// The jobs a delivery message carries.
pub fn decode(message: &Incoming) -> Result<Vec<proto::DeliveryJob>, Rejection> {
    Ok(message::decode::<proto::DeliveryJobs>(message)?.jobs)
}

/// The body of a delivery message holding only `job`: how one job of a batch goes to
/// the rejected queue.
pub fn alone(job: proto::DeliveryJob) -> Vec<u8> {
    proto::DeliveryJobs { jobs: vec![job] }.encode_to_vec()
}
