//! W3C trace context over HTTP: continuing a caller's trace on `POST /v1/events`, and
//! handing ours to receivers so they can join it.

use std::collections::HashMap;

use axum::http::HeaderMap;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The trace-context headers (`traceparent`, and `tracestate` when there is one) that
/// make a receiver's work a child of `span`.
pub fn trace_headers(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut headers));
    headers
}

/// The headers that carry W3C trace context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Makes `span` a child of the trace context in `carried` (header name → value), if it
/// holds a `traceparent`. Every transport reads trace context through here.
pub fn continue_trace_from(span: &tracing::Span, carried: &HashMap<String, String>) {
    if carried.contains_key("traceparent") {
        let context = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(carried));
        let _ = span.set_parent(context);
    }
}

/// Links `span` to the span current now. For work on one item of a batch: its parent is
/// the item's own producer, and the link leads to the batch it was handled in.
pub fn link_to_current(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    let current = tracing::Span::current().context();
    let batch = current.span().span_context().clone();
    if batch.is_valid() {
        span.add_link(batch);
    }
}

/// Makes `span` a child of the trace context in HTTP `headers`, if they carry one.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let carried = TRACE_HEADERS
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), headers.get(name)?.to_str().ok()?.to_owned())))
        .collect();
    continue_trace_from(span, &carried);
}
