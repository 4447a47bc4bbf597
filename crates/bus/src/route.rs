//! The ingest → router hop. Events stored at the same moment travel to the router
//! together, in one `RouteEvents` message: the broker then persists, delivers and
//! settles one message per batch instead of one per event, which was a fifth of the
//! pipeline's CPU. Each event carries its own trace context, so it stays in its own
//! trace.

use hookline_core::envelope::{RejectReason, Rejection};
use lapin::BasicProperties;
use prost::Message as _;

use crate::codec::{self, PROTOBUF, proto};
use crate::consumer::Incoming;
use crate::{Publisher, Result, Topology, trace};

/// AMQP `type` of a route message holding a batch (`RouteEvents`). A route message
/// without a type is a single `RouteEvent`, as earlier versions published them.
pub const ROUTE_EVENTS_TYPE: &str = "hookline.v1.RouteEvents";

/// `event`, stamped with the current span's trace context, so the router's work on it
/// continues the trace of the span that accepted it.
pub fn traced(mut event: proto::RouteEvent) -> proto::RouteEvent {
    (event.traceparent, event.tracestate) = trace::carried_fields(&tracing::Span::current());
    event
}

/// Publishes `events` to the route queue as one message and waits for its confirm.
pub async fn send(publisher: &Publisher, topology: &Topology, events: Vec<proto::RouteEvent>) -> Result<()> {
    publisher.publish("", &topology.route_queue(), &encode(events), properties()).await
}

/// The body of a route message holding `events`.
pub fn encode(events: Vec<proto::RouteEvent>) -> Vec<u8> {
    proto::RouteEvents { events }.encode_to_vec()
}

/// Properties of a route message: protobuf, typed as a batch.
pub fn properties() -> BasicProperties {
    BasicProperties::default().with_content_type(PROTOBUF.into()).with_type(ROUTE_EVENTS_TYPE.into())
}

/// The events a route message carries: a batch, or a single event from an earlier
/// version, which takes its trace context from the message headers.
pub fn decode(message: &Incoming) -> Result<Vec<proto::RouteEvent>, Rejection> {
    match message.properties.kind().as_ref().map(|kind| kind.as_str()) {
        Some(ROUTE_EVENTS_TYPE) => Ok(codec::decode::<proto::RouteEvents>(&message.data)?.events),
        None => {
            let mut event: proto::RouteEvent = codec::decode(&message.data)?;
            if let Some(headers) = message.properties.headers() {
                let header = |name: &str| headers.inner().get(name).and_then(trace::header_string);
                event.traceparent = event.traceparent.or_else(|| header("traceparent"));
                event.tracestate = event.tracestate.or_else(|| header("tracestate"));
            }
            Ok(vec![event])
        }
        Some(other) => {
            Err(Rejection::whole(RejectReason::Malformed, format!("a route message of unknown type `{other}`")))
        }
    }
}

/// Makes `span` a child of the span that accepted `event`, when the event says which.
pub fn continue_trace(span: &tracing::Span, event: &proto::RouteEvent) {
    trace::continue_from_fields(span, &event.traceparent, &event.tracestate);
}

#[cfg(test)]
mod tests {
    use lapin::types::{AMQPValue, FieldTable};

    use super::*;

    fn event(id: &str) -> proto::RouteEvent {
        proto::RouteEvent { event_id: id.into(), event_type: "job.created".into(), ..Default::default() }
    }

    fn incoming(data: Vec<u8>, properties: BasicProperties) -> Incoming {
        Incoming { data, properties, redelivered: false, routing_key: String::new() }
    }

    #[test]
    fn a_batch_reads_back_in_order() {
        let events = vec![event("evt_1"), event("evt_2"), event("evt_3")];
        let decoded = decode(&incoming(encode(events.clone()), properties())).unwrap();
        assert_eq!(decoded, events);
    }

    #[test]
    fn an_untyped_message_is_one_event_with_the_trace_context_of_its_headers() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(traceparent.into()));
        let legacy = incoming(event("evt_1").encode_to_vec(), BasicProperties::default().with_headers(headers));
        let decoded = decode(&legacy).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].event_id, "evt_1");
        assert_eq!(decoded[0].traceparent.as_deref(), Some(traceparent));
        assert_eq!(decoded[0].tracestate, None);
    }

    #[test]
    fn an_unknown_type_or_garbage_is_malformed() {
        let unknown = incoming(encode(vec![event("evt_1")]), properties().with_type("hookline.v9.Other".into()));
        let rejection = decode(&unknown).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::Malformed);
        assert!(rejection.message.contains("hookline.v9.Other"), "{}", rejection.message);
        assert_eq!(decode(&incoming(vec![0xff, 0xff], properties())).unwrap_err().reason, RejectReason::Malformed);
    }
}
