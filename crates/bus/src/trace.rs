//! W3C trace context (`traceparent`, `tracestate`) on the bus. hookline's own messages
//! carry it in each item's fields ([`crate::message::Traced`]); upstream publishers may
//! put it in the headers of the events they publish, which ingest continues.

use std::collections::HashMap;

use hookline_telemetry::propagation::{TRACE_HEADERS, continue_trace_from, trace_headers};
use lapin::types::{AMQPValue, FieldTable};

/// Makes `span` a child of the context an upstream publisher put in `headers`, if any.
pub fn continue_from_headers(span: &tracing::Span, headers: Option<&FieldTable>) {
    let Some(headers) = headers else { return };
    let carried: HashMap<String, String> = TRACE_HEADERS
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), header_string(headers.inner().get(name)?)?)))
        .collect();
    continue_trace_from(span, &carried);
}

/// `span`'s context as the `traceparent` and `tracestate` fields an item carries.
pub fn carried_fields(span: &tracing::Span) -> (Option<String>, Option<String>) {
    let mut carried = trace_headers(span);
    (carried.remove("traceparent"), carried.remove("tracestate"))
}

/// Makes `span` a child of the context an item carries in its own fields.
pub fn continue_from_fields(span: &tracing::Span, traceparent: &Option<String>, tracestate: &Option<String>) {
    let carried: HashMap<String, String> = TRACE_HEADERS
        .into_iter()
        .zip([traceparent, tracestate])
        .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
        .collect();
    continue_trace_from(span, &carried);
}

/// A header's value as text, whichever string type the publisher used.
pub fn header_string(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
