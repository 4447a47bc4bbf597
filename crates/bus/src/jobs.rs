//! The router → worker hop. The first attempts of deliveries created at the same moment
//! travel together, up to [`MAX_JOBS_PER_MESSAGE`] in one `DeliveryJobs` message: the
//! broker persists, delivers and settles one message per batch instead of one per
//! delivery. Each job carries its own trace context. A single job still goes as a plain
//! `DeliveryJob` with its trace context in the headers, as the scheduler, the API and
//! earlier routers publish them.

use hookline_core::envelope::{RejectReason, Rejection};
use lapin::BasicProperties;
use prost::Message as _;

use crate::codec::{self, PROTOBUF, proto};
use crate::consumer::Incoming;
use crate::publisher::message_properties;
use crate::topology::JOB_ROUTING_KEY;
use crate::{Publisher, Result, Topology, trace};

/// AMQP `type` of a delivery message holding a batch (`DeliveryJobs`).
pub const DELIVERY_JOBS_TYPE: &str = "hookline.v1.DeliveryJobs";

/// Jobs in one message at most: enough to take most of the broker's per-message cost
/// away, few enough that competing workers still share a burst.
pub const MAX_JOBS_PER_MESSAGE: usize = 32;

/// The jobs a delivery message carries, and whether they came as a batch (whose items
/// carry their own trace context) or as one job (traced by the message's headers).
#[derive(Debug, PartialEq)]
pub struct Jobs {
    /// The jobs, in the order published.
    pub jobs: Vec<proto::DeliveryJob>,
    /// Whether the message was a `DeliveryJobs` batch.
    pub batched: bool,
}

/// Publishes `jobs`, each caused by the span given with it, to the delivery exchange in
/// messages of up to [`MAX_JOBS_PER_MESSAGE`], and waits for every confirm.
pub async fn publish(
    publisher: &Publisher,
    topology: &Topology,
    jobs: Vec<(proto::DeliveryJob, tracing::Span)>,
) -> Result<()> {
    let messages: Vec<(Vec<u8>, BasicProperties)> = jobs
        .chunks(MAX_JOBS_PER_MESSAGE)
        .map(|chunk| match chunk {
            [(job, span)] => (job.encode_to_vec(), message_properties(span)),
            batch => (encode(batch.iter().map(|(job, span)| traced(job.clone(), span)).collect()), properties()),
        })
        .collect();
    publisher.publish_encoded(&topology.delivery_exchange(), JOB_ROUTING_KEY, messages).await
}

/// `job`, stamped with `span`'s trace context.
fn traced(mut job: proto::DeliveryJob, span: &tracing::Span) -> proto::DeliveryJob {
    (job.traceparent, job.tracestate) = trace::carried_fields(span);
    job
}

/// The body of a delivery message holding `jobs`.
pub fn encode(jobs: Vec<proto::DeliveryJob>) -> Vec<u8> {
    proto::DeliveryJobs { jobs }.encode_to_vec()
}

/// Properties of a batched delivery message: protobuf, typed as a batch.
pub fn properties() -> BasicProperties {
    BasicProperties::default().with_content_type(PROTOBUF.into()).with_type(DELIVERY_JOBS_TYPE.into())
}

/// The jobs a delivery message carries.
pub fn decode(message: &Incoming) -> Result<Jobs, Rejection> {
    match message.properties.kind().as_ref().map(|kind| kind.as_str()) {
        Some(DELIVERY_JOBS_TYPE) => {
            Ok(Jobs { jobs: codec::decode::<proto::DeliveryJobs>(&message.data)?.jobs, batched: true })
        }
        None => Ok(Jobs { jobs: vec![codec::decode(&message.data)?], batched: false }),
        Some(other) => {
            Err(Rejection::whole(RejectReason::Malformed, format!("a delivery message of unknown type `{other}`")))
        }
    }
}

/// Makes `span` a child of the span that routed `job`, when the job says which.
pub fn continue_trace(span: &tracing::Span, job: &proto::DeliveryJob) {
    trace::continue_from_fields(span, &job.traceparent, &job.tracestate);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> proto::DeliveryJob {
        proto::DeliveryJob { delivery_id: id.into(), attempt: 1, ..Default::default() }
    }

    fn incoming(data: Vec<u8>, properties: BasicProperties) -> Incoming {
        Incoming { data, properties, redelivered: false, routing_key: String::new() }
    }

    #[test]
    fn a_batch_reads_back_in_order() {
        let jobs = vec![job("dlv_1"), job("dlv_2"), job("dlv_3")];
        let decoded = decode(&incoming(encode(jobs.clone()), properties())).unwrap();
        assert_eq!(decoded, Jobs { jobs, batched: true });
    }

    #[test]
    fn an_untyped_message_is_one_job() {
        let single = incoming(job("dlv_1").encode_to_vec(), BasicProperties::default());
        assert_eq!(decode(&single).unwrap(), Jobs { jobs: vec![job("dlv_1")], batched: false });
    }

    #[test]
    fn an_unknown_type_or_garbage_is_malformed() {
        let unknown = incoming(encode(vec![job("dlv_1")]), properties().with_type("hookline.v9.Other".into()));
        let rejection = decode(&unknown).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::Malformed);
        assert!(rejection.message.contains("hookline.v9.Other"), "{}", rejection.message);
        assert_eq!(decode(&incoming(vec![0xff, 0xff], properties())).unwrap_err().reason, RejectReason::Malformed);
    }
}
