#![doc = include_str!("../README.md")]

mod entry;
mod settings;
mod shutdown;
mod tracing_setup;

pub use entry::service_main;
pub use settings::{
    AmqpSettings, ApiSettings, DatabaseSettings, DeliverySettings, IngestSettings, LogFormat, RetrySettings,
    RouterSettings, SchedulerSettings, Settings, SettingsError, SigningSettings,
};
pub use shutdown::shutdown_on_signals;
pub use tracing_setup::init_tracing;
