//! `hookline-router`: the router service alone (also available as `hookline router`).

fn main() -> std::process::ExitCode {
    hookline_telemetry::service_main("hookline-router", hookline_router::run)
}
