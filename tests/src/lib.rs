#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, missing_docs)]

mod env;
mod receiver;

pub use env::{ApiServer, Services, TestEnv, eventually};

/// Every span finished in this test process: the harness installs tracing with this
/// exporter, so a test can check the trace its event made.
pub fn spans() -> &'static hookline_telemetry::MemoryExporter {
    static SPANS: std::sync::OnceLock<hookline_telemetry::MemoryExporter> = std::sync::OnceLock::new();
    SPANS.get_or_init(hookline_telemetry::MemoryExporter::default)
}
pub use receiver::{Receiver, Recorded, Reply};
