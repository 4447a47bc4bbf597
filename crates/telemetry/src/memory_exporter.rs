//! A span exporter that keeps finished spans in memory, so tests can check a whole trace
//! (which spans, which parents, which services) without a collector.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::service_spans::SERVICE_NAME;

/// Keeps every exported span. Clones share the spans.
#[derive(Debug, Clone, Default)]
pub struct MemoryExporter {
    spans: Arc<Mutex<Vec<SpanData>>>,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl MemoryExporter {
    /// Every span exported so far, oldest first.
    pub fn spans(&self) -> Vec<SpanData> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The `service.name` of the resource this exporter was last given.
    pub fn resource_service(&self) -> Option<String> {
        let resource = self.resource.lock().unwrap_or_else(PoisonError::into_inner);
        resource.as_ref()?.get(&Key::from_static_str(SERVICE_NAME)).map(|value| value.as_str().into_owned())
    }
}

impl SpanExporter for MemoryExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).extend(batch);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap_or_else(PoisonError::into_inner) = Some(resource.clone());
    }
}

/// The value of a span's attribute as text, if it has it.
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv: &&KeyValue| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
}
