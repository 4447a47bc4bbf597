//! One `service.name` per service, even when `hookline all` runs five services in one
//! process.
//!
//! OpenTelemetry puts `service.name` on the resource, and a tracer provider has one
//! resource. So spans are sorted by service on the way out instead: a span whose local
//! parent belongs to a service belongs to it too, and a span without a local parent (a
//! consumer's span continuing a trace from message headers, an API request, a sweep)
//! names its service in a `service.name` field. Each service's spans then go to their own
//! processor and exporter, whose resource carries that service's name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanId, TraceContextExt as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// The attribute (and tracing field) naming the service a span belongs to.
pub const SERVICE_NAME: &str = "service.name";

/// The services whose spans get their own resource.
pub const SERVICES: [&str; 5] =
    ["hookline-ingest", "hookline-router", "hookline-worker", "hookline-scheduler", "hookline-api"];

/// Routes each span to the processor of its service.
#[derive(Debug)]
pub(crate) struct PerServiceProcessor {
    /// Service names, in the order of `processors`; the last one is the process's own
    /// name, used for spans that belong to no service (CLI commands, tests).
    names: Vec<&'static str>,
    processors: Vec<Box<dyn SpanProcessor>>,
    /// Which service each span in flight belongs to, so its children can inherit it. A
    /// tracing span closes only after its children, so an entry outlives every lookup.
    owners: Mutex<HashMap<SpanId, usize>>,
}

impl PerServiceProcessor {
    /// One processor per service from `make`, plus one for the process's own name.
    pub(crate) fn new<E>(
        process: &'static str,
        make: impl Fn() -> Result<Box<dyn SpanProcessor>, E>,
    ) -> Result<Self, E> {
        let mut names: Vec<&'static str> = SERVICES.iter().copied().filter(|name| *name != process).collect();
        names.push(process);
        let processors = names.iter().map(|_| make()).collect::<Result<_, E>>()?;
        Ok(Self { names, processors, owners: Mutex::new(HashMap::new()) })
    }

    fn fallback(&self) -> usize {
        self.names.len() - 1
    }

    fn index_of(&self, name: &str) -> usize {
        self.names.iter().position(|known| *known == name).unwrap_or(self.fallback())
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<SpanId, usize>> {
        // The map holds plain ids; a panic elsewhere cannot leave it inconsistent.
        self.owners.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The service a starting span belongs to: its local parent's, else the one its own
    /// `service.name` attribute names, else the process's.
    fn service_of(&self, span: &Span, parent: &Context) -> usize {
        let parent_span = parent.span();
        let parent_context = parent_span.span_context();
        if parent_context.is_valid()
            && !parent_context.is_remote()
            && let Some(owner) = self.owners().get(&parent_context.span_id())
        {
            return *owner;
        }
        let named = span.exported_data().and_then(|data| {
            data.attributes.iter().find(|kv| kv.key.as_str() == SERVICE_NAME).map(|kv| kv.value.as_str().into_owned())
        });
        named.map_or(self.fallback(), |name| self.index_of(&name))
    }
}

impl SpanProcessor for PerServiceProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        let owner = self.service_of(span, cx);
        span.set_attribute(KeyValue::new(SERVICE_NAME, self.names[owner]));
        self.owners().insert(span.span_context().span_id(), owner);
        self.processors[owner].on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let owner = self.owners().remove(&span.span_context.span_id()).unwrap_or_else(|| {
            let named = span.attributes.iter().find(|kv| kv.key.as_str() == SERVICE_NAME).map(|kv| &kv.value);
            match named {
                Some(Value::String(name)) => self.index_of(name.as_str()),
                _ => self.fallback(),
            }
        });
        self.processors[owner].on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        first_error(self.processors.iter().map(|p| p.force_flush()))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        first_error(self.processors.iter().map(|p| p.shutdown_with_timeout(timeout)))
    }

    fn set_resource(&mut self, resource: &Resource) {
        for (name, processor) in self.names.iter().zip(self.processors.iter_mut()) {
            let own = Resource::builder_empty()
                .with_attributes(resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
                .with_attribute(KeyValue::new(SERVICE_NAME, *name))
                .build();
            processor.set_resource(&own);
        }
    }
}

/// Runs every step (one processor failing must not keep the others from flushing) and
/// reports the first failure.
fn first_error(results: impl Iterator<Item = OTelSdkResult>) -> OTelSdkResult {
    let mut outcome = Ok(());
    for result in results {
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};

    use super::*;
    use crate::memory_exporter::MemoryExporter;

    fn provider(exporter: &MemoryExporter) -> SdkTracerProvider {
        let exporter = exporter.clone();
        SdkTracerProvider::builder()
            .with_span_processor(
                PerServiceProcessor::new("hookline", move || {
                    Ok::<_, ()>(Box::new(SimpleSpanProcessor::new(exporter.clone())) as Box<dyn SpanProcessor>)
                })
                .unwrap(),
            )
            .build()
    }

    fn service(data: &SpanData) -> String {
        data.attributes.iter().find(|kv| kv.key.as_str() == SERVICE_NAME).unwrap().value.as_str().into_owned()
    }

    #[test]
    fn children_inherit_their_local_parents_service_and_roots_name_their_own() {
        let exporter = MemoryExporter::default();
        let provider = provider(&exporter);
        let tracer = provider.tracer("test");
        let root = tracer
            .span_builder("consume")
            .with_attributes([KeyValue::new(SERVICE_NAME, "hookline-worker")])
            .start(&tracer);
        let parent = Context::current_with_span(root);
        tracer.start_with_context("store query", &parent).end();
        parent.span().end();
        tracer.start("cli command").end();
        let spans = exporter.spans();
        let by_name = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        assert_eq!(service(by_name("consume")), "hookline-worker");
        assert_eq!(service(by_name("store query")), "hookline-worker");
        assert_eq!(service(by_name("cli command")), "hookline");
    }

    #[test]
    fn a_remote_parent_does_not_decide_the_service() {
        let exporter = MemoryExporter::default();
        let provider = provider(&exporter);
        let tracer = provider.tracer("test");
        let upstream = tracer
            .span_builder("ingest")
            .with_attributes([KeyValue::new(SERVICE_NAME, "hookline-ingest")])
            .start(&tracer);
        let remote = Context::new().with_remote_span_context(upstream.span_context().clone());
        tracer
            .span_builder("route")
            .with_attributes([KeyValue::new(SERVICE_NAME, "hookline-router")])
            .start_with_context(&tracer, &remote)
            .end();
        drop(upstream);
        let spans = exporter.spans();
        let route = spans.iter().find(|s| s.name == "route").unwrap();
        assert_eq!(service(route), "hookline-router");
    }

    #[test]
    fn each_service_exports_with_its_own_resource() {
        let exporters: Vec<MemoryExporter> = (0..SERVICES.len() + 1).map(|_| MemoryExporter::default()).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let all = exporters.clone();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                PerServiceProcessor::new("hookline", move || {
                    let exporter = all[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)].clone();
                    Ok::<_, ()>(Box::new(SimpleSpanProcessor::new(exporter)) as Box<dyn SpanProcessor>)
                })
                .unwrap(),
            )
            .build();
        let tracer = provider.tracer("test");
        tracer
            .span_builder("attempt")
            .with_attributes([KeyValue::new(SERVICE_NAME, "hookline-scheduler")])
            .start(&tracer)
            .end();
        let holder = exporters.iter().find(|e| !e.spans().is_empty()).unwrap();
        assert_eq!(holder.spans().len(), 1);
        assert_eq!(holder.resource_service().as_deref(), Some("hookline-scheduler"));
        let others = exporters.iter().filter(|e| e.spans().is_empty()).count();
        assert_eq!(others, SERVICES.len());
    }
}
