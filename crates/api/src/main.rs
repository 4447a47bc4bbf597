//! `hookline-api`: the management API and HTTP event ingest alone (also available as
//! `hookline api`).

fn main() -> std::process::ExitCode {
    hookline_telemetry::service_main("hookline-api", |settings, metrics, shutdown| async move {
        let listener = tokio::net::TcpListener::bind(settings.api.listen).await.map_err(hookline_service::Error::Io)?;
        hookline_api::run(settings, metrics, listener, shutdown).await
    })
}
