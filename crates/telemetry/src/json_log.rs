//! JSON log lines that join traces: every line written inside a span carries the trace id
//! and span id, so a log search for one trace id finds every service's lines for one
//! event, and a line leads to its trace.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per line: `timestamp`, `level`, `target`, `message`, the event's other
/// fields under `fields`, the enclosing spans' names under `spans` and their fields
/// merged under `span`, and `trace_id` / `span_id` when inside a span.
#[derive(Debug, Default)]
pub(crate) struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        let mut fields = FieldsVisitor::default();
        event.record(&mut fields);
        if let Some(message) = fields.message {
            line.insert("message".into(), message.into());
        }
        if !fields.values.is_empty() {
            line.insert("fields".into(), Value::Object(fields.values));
        }
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            let mut span_fields = Map::new();
            let mut ids = None;
            for span in scope.from_root() {
                names.push(Value::from(span.name()));
                let extensions = span.extensions();
                if let Some(formatted) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(own)) = serde_json::from_str::<Value>(formatted.as_str())
                {
                    span_fields.extend(own);
                }
                if let Some(otel) = extensions.get::<OtelData>()
                    && let (Some(trace_id), Some(span_id)) = (otel.trace_id(), otel.span_id())
                {
                    ids = Some((trace_id, span_id));
                }
            }
            line.insert("spans".into(), Value::Array(names));
            if !span_fields.is_empty() {
                line.insert("span".into(), Value::Object(span_fields));
            }
            if let Some((trace_id, span_id)) = ids {
                line.insert("trace_id".into(), trace_id.to_string().into());
                line.insert("span_id".into(), span_id.to_string().into());
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields as JSON values, keeping `message` apart.
#[derive(Default)]
struct FieldsVisitor {
    message: Option<String>,
    values: Map<String, Value>,
}

impl FieldsVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(text) => text,
                other => other.to_string(),
            });
        } else {
            self.values.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for FieldsVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}
