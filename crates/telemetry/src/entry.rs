//! The shared body of every service's thin `main.rs`.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::{Metrics, Settings, flush_traces, init_tracing, shutdown_on_signals, start_metrics_endpoint};

/// Parses `--config PATH` (or `HOOKLINE_CONFIG`), loads and validates the settings,
/// sets up logging, tracing, the `/metrics` endpoint and signal handling, and runs
/// `service` until it returns. Any error is printed and turned into a failing exit code.
pub fn service_main<F, Fut, E>(name: &'static str, service: F) -> ExitCode
where
    F: FnOnce(Settings, Metrics, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut config = std::env::var_os("HOOKLINE_CONFIG").map(PathBuf::from);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--config", Some(path)) => config = Some(PathBuf::from(path)),
            _ => {
                eprintln!("usage: {name} [--config PATH]");
                return ExitCode::from(2);
            }
        }
    }
    let settings = match Settings::load(config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{name}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        init_tracing(name, &settings.telemetry);
        let shutdown = shutdown_on_signals();
        let metrics = Metrics::new();
        if let Err(err) = start_metrics_endpoint(&settings, &metrics, &shutdown).await {
            eprintln!("{name}: {err}");
            return ExitCode::FAILURE;
        }
        let code = match service(settings, metrics, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "{name} stopped");
                eprintln!("{name}: {err}");
                ExitCode::FAILURE
            }
        };
        flush_traces();
        code
    })
}
