#![doc = include_str!("../README.md")]

mod entry;
pub mod health;
mod json_log;
pub mod memory_exporter;
pub mod metrics;
mod metrics_endpoint;
pub mod propagation;
pub mod service_spans;
mod settings;
mod shutdown;
pub mod throttle;
mod tracing_setup;

pub use entry::service_main;
pub use health::{Health, Watchdog};
pub use memory_exporter::MemoryExporter;
pub use metrics::Metrics;
pub use metrics_endpoint::{serve_metrics, start_metrics_endpoint};
pub use settings::{
    AmqpSettings, ApiSettings, DatabaseSettings, DeliverySettings, IngestSettings, LogFormat, RetentionSettings,
    RetrySettings, RouterSettings, SchedulerSettings, Settings, SettingsError, SigningSettings, TelemetrySettings,
};
pub use shutdown::shutdown_on_signals;
pub use throttle::Throttle;
pub use tracing_setup::{flush_traces, init_tracing, init_tracing_in_memory};
