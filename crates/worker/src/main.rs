//! `hookline-worker`: the worker service alone (also available as `hookline worker`).

fn main() -> std::process::ExitCode {
    hookline_telemetry::service_main("hookline-worker", hookline_worker::run)
}
