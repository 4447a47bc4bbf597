//! hookline's own messages: one protobuf type per queue, named in the AMQP `type`
//! property, each item carrying its own trace context in its fields.

use hookline_core::envelope::{RejectReason, Rejection};
use lapin::BasicProperties;

use crate::codec::{PROTOBUF, proto};
use crate::consumer::Incoming;
use crate::trace;

/// A message one of hookline's queues carries.
pub trait BusMessage: prost::Message + Default {
    /// Its AMQP `type` property.
    const TYPE: &'static str;
}

impl BusMessage for proto::RouteEvents {
    const TYPE: &'static str = "hookline.v1.RouteEvents";
}

impl BusMessage for proto::DeliveryJobs {
    const TYPE: &'static str = "hookline.v1.DeliveryJobs";
}

impl BusMessage for proto::FailedAttempt {
    const TYPE: &'static str = "hookline.v1.FailedAttempt";
}

/// The properties every message of type `M` is published with.
pub fn properties<M: BusMessage>() -> BasicProperties {
    BasicProperties::default().with_content_type(PROTOBUF.into()).with_type(M::TYPE.into())
}

/// A message's body and properties, ready to publish.
pub fn encoded<M: BusMessage>(message: &M) -> (Vec<u8>, BasicProperties) {
    (message.encode_to_vec(), properties::<M>())
}

/// Reads a message of type `M`. A message typed as something else, or a body that is not
/// an `M`, is `malformed`: it can never be processed.
pub fn decode<M: BusMessage>(message: &Incoming) -> Result<M, Rejection> {
    match message.properties.kind().as_ref().map(|kind| kind.as_str()) {
        None => {}
        Some(kind) if kind == M::TYPE => {}
        Some(other) => {
            return Err(Rejection::whole(
                RejectReason::Malformed,
                format!("a message of type `{other}` where `{}` is expected", M::TYPE),
            ));
        }
    }
    M::decode(message.data.as_slice())
        .map_err(|err| Rejection::whole(RejectReason::Malformed, format!("not a valid {}: {err}", M::TYPE)))
}

/// An item that travels with others and keeps its own trace: it carries the W3C trace
/// context of the span that caused it.
pub trait Traced: Sized {
    /// The carried `traceparent` and `tracestate`.
    fn carried(&self) -> (&Option<String>, &Option<String>);

    /// Replaces the carried trace context.
    fn carry(&mut self, traceparent: Option<String>, tracestate: Option<String>);

    /// The item, stamped with `span`'s trace context.
    fn traced(mut self, span: &tracing::Span) -> Self {
        let (traceparent, tracestate) = trace::carried_fields(span);
        self.carry(traceparent, tracestate);
        self
    }

    /// Makes `span` a child of the span that caused the item, when the item says which.
    fn continue_trace(&self, span: &tracing::Span) {
        let (traceparent, tracestate) = self.carried();
        trace::continue_from_fields(span, traceparent, tracestate);
    }

    /// `span`, the span of the work on this item: a child of the span that caused the
    /// item, linked to the span current now (the one processing the message it came in).
    fn work_span(&self, span: tracing::Span) -> tracing::Span {
        self.continue_trace(&span);
        hookline_telemetry::propagation::link_to_current(&span);
        span
    }
}

macro_rules! traced {
    ($($message:ty),*) => {
        $(impl Traced for $message {
            fn carried(&self) -> (&Option<String>, &Option<String>) {
                (&self.traceparent, &self.tracestate)
            }

            fn carry(&mut self, traceparent: Option<String>, tracestate: Option<String>) {
                (self.traceparent, self.tracestate) = (traceparent, tracestate);
            }
        })*
    };
}

traced!(proto::RouteEvent, proto::DeliveryJob, proto::FailedAttempt);

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(data: Vec<u8>, properties: BasicProperties) -> Incoming {
        Incoming { data, properties, redelivered: false }
    }

    fn jobs(ids: &[&str]) -> proto::DeliveryJobs {
        let jobs =
            ids.iter().map(|id| proto::DeliveryJob { delivery_id: (*id).into(), attempt: 1, ..Default::default() });
        proto::DeliveryJobs { jobs: jobs.collect() }
    }

    #[test]
    fn a_message_reads_back_as_published() {
        let sent = jobs(&["dlv_1", "dlv_2", "dlv_3"]);
        let (body, properties) = encoded(&sent);
        assert_eq!(properties.kind().as_ref().map(|kind| kind.as_str()), Some("hookline.v1.DeliveryJobs"));
        assert_eq!(decode::<proto::DeliveryJobs>(&incoming(body, properties)).unwrap(), sent);
    }

    #[test]
    fn a_message_of_another_type_or_garbage_is_malformed() {
        let (body, _) = encoded(&jobs(&["dlv_1"]));
        let route = incoming(body, properties::<proto::RouteEvents>());
        let rejection = decode::<proto::DeliveryJobs>(&route).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::Malformed);
        assert!(rejection.message.contains("hookline.v1.RouteEvents"), "{}", rejection.message);
        let garbage = incoming(vec![0xff, 0xfe], BasicProperties::default());
        assert_eq!(decode::<proto::DeliveryJobs>(&garbage).unwrap_err().reason, RejectReason::Malformed);
    }
}
