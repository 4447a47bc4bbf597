//! `hookline-ingest`: the ingest service alone (also available as `hookline ingest`).

fn main() -> std::process::ExitCode {
    hookline_telemetry::service_main("hookline-ingest", hookline_ingest::run)
}
