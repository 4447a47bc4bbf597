//! Logging and tracing, set up once per process.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider, SimpleSpanProcessor, SpanProcessor};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::json_log::JsonLines;
use crate::memory_exporter::MemoryExporter;
use crate::service_spans::PerServiceProcessor;
use crate::settings::{LogFormat, TelemetrySettings};

/// Where finished spans go.
enum Export {
    /// Nowhere: trace ids still travel in headers and appear in log lines.
    Nowhere,
    /// To an OTLP/HTTP collector at this URL.
    Otlp(String),
    /// Into memory, for tests.
    Memory(MemoryExporter),
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber: an env-style filter, JSON or compact log lines, and an
/// OpenTelemetry layer so spans have W3C trace ids that travel in message headers. When
/// `telemetry.otlp_endpoint` is set, spans are exported there, each under its own
/// service's `service.name` (`service` names the process; spans of no service get it).
/// Calling it again (tests start many services in one process) is harmless.
pub fn init_tracing(service: &'static str, settings: &TelemetrySettings) {
    let export = match settings.otlp_endpoint.trim() {
        "" => Export::Nowhere,
        endpoint => Export::Otlp(endpoint.to_owned()),
    };
    install(service, settings, export);
}

/// As [`init_tracing`], keeping every finished span in `exporter` (for tests).
pub fn init_tracing_in_memory(service: &'static str, settings: &TelemetrySettings, exporter: MemoryExporter) {
    install(service, settings, Export::Memory(exporter));
}

/// Exports the spans still buffered; call before the process exits.
pub fn flush_traces() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}

fn install(service: &'static str, settings: &TelemetrySettings, export: Export) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = provider(service, settings, export);
        let tracer = provider.tracer("hookline");
        opentelemetry::global::set_tracer_provider(provider.clone());
        let _ = PROVIDER.set(provider);
        // The log level decides which lines are written, not which spans exist: traces
        // (and the trace ids in message headers) need hookline's spans at any log level.
        let log_filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
        let fmt = match settings.log_format {
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonLines)
                .with_filter(log_filter)
                .boxed(),
            LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().with_filter(log_filter).boxed(),
        };
        let span_filter = Targets::new().with_default(Level::WARN).with_target("hookline", Level::INFO);
        let _ = tracing_subscriber::registry()
            .with(fmt)
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_threads(false)
                    // Busy and idle time per span would cost work on every poll of every
                    // instrumented future; the span's own start and end say enough.
                    .with_tracked_inactivity(false)
                    .with_filter(span_filter),
            )
            .try_init();
    });
}

fn provider(service: &'static str, settings: &TelemetrySettings, export: Export) -> SdkTracerProvider {
    // A trace started upstream keeps its publisher's decision; new ones are sampled.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sampling_ratio)));
    let builder = SdkTracerProvider::builder().with_sampler(sampler);
    let processors = match export {
        Export::Nowhere => return builder.build(),
        Export::Otlp(endpoint) => {
            let endpoint = traces_url(&endpoint);
            PerServiceProcessor::new(service, move || {
                let exporter =
                    opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(endpoint.clone()).build()?;
                Ok::<_, opentelemetry_otlp::ExporterBuildError>(
                    Box::new(BatchSpanProcessor::builder(exporter).build()) as Box<dyn SpanProcessor>
                )
            })
        }
        Export::Memory(exporter) => PerServiceProcessor::new(service, move || {
            Ok(Box::new(SimpleSpanProcessor::new(exporter.clone())) as Box<dyn SpanProcessor>)
        }),
    };
    match processors {
        Ok(processors) => builder.with_span_processor(processors).build(),
        Err(err) => {
            // Logging is not up yet; say it where the operator starting the process looks.
            eprintln!("{service}: traces will not be exported: {err}");
            builder.build()
        }
    }
}

/// The OTLP/HTTP traces URL for a collector base URL (the path is added unless given).
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") { endpoint.to_owned() } else { format!("{endpoint}/v1/traces") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn traces_url_adds_the_signal_path_once() {
        assert_eq!(super::traces_url("http://collector:4318"), "http://collector:4318/v1/traces");
        assert_eq!(super::traces_url("http://collector:4318/"), "http://collector:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
