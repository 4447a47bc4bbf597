//! `hookline-scheduler`: the scheduler service alone (also available as `hookline scheduler`).

fn main() -> std::process::ExitCode {
    hookline_telemetry::service_main("hookline-scheduler", hookline_scheduler::run)
}
