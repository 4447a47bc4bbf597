//! W3C trace context (`traceparent`, `tracestate`) in AMQP message headers, so one
//! trace follows an event through every queue hop, delay queues included.

use std::collections::HashMap;

use hookline_telemetry::propagation::{TRACE_HEADERS, continue_trace_from, trace_headers};
use lapin::types::{AMQPValue, FieldTable};

/// Writes the current span's context into message headers.
pub fn inject_current(headers: &mut FieldTable) {
    inject(headers, &tracing::Span::current());
}

/// Writes `span`'s context into message headers.
pub fn inject(headers: &mut FieldTable, span: &tracing::Span) {
    for (name, value) in trace_headers(span) {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
}

/// Makes `span` a child of the context carried by `headers`, if any.
pub fn set_parent_from(span: &tracing::Span, headers: Option<&FieldTable>) {
    let Some(headers) = headers else { return };
    let carried: HashMap<String, String> = TRACE_HEADERS
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), header_string(headers.inner().get(name)?)?)))
        .collect();
    continue_trace_from(span, &carried);
}

/// `span`'s context as the `traceparent` and `tracestate` fields of a message that
/// travels in a batch (each item keeps its own trace).
pub fn carried_fields(span: &tracing::Span) -> (Option<String>, Option<String>) {
    let mut carried = trace_headers(span);
    (carried.remove("traceparent"), carried.remove("tracestate"))
}

/// Makes `span` a child of the context an item of a batch carries in its own fields.
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
