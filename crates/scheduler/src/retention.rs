//! Keeps the tables bounded: every `retention.interval`, makes the coming days' attempt
//! partitions and removes what is older than `retention.max_age` (and response bodies
//! older than `retention.response_bodies`). The first pass runs at start, so a new
//! installation has its partitions before its first delivery.

use hookline_store::Pool;
use hookline_store::repo::retention;
use hookline_telemetry::RetentionSettings;
use tokio_util::sync::CancellationToken;

/// Runs a pass now and then every `settings.interval` until `shutdown` is cancelled.
pub(crate) async fn run(pool: Pool, settings: RetentionSettings, shutdown: CancellationToken) {
    loop {
        if let Err(err) = pass(&pool, &settings).await {
            hookline_telemetry::warn_throttled!(error = %err, "retention pass failed; trying again next interval");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(settings.interval) => {}
        }
    }
}

/// One pass: partitions ahead, then removal.
pub(crate) async fn pass(
    pool: &Pool,
    settings: &RetentionSettings,
) -> Result<retention::Removed, hookline_store::Error> {
    let now = chrono::Utc::now();
    let made = retention::prepare_partitions(pool, now).await?;
    let removed = retention::remove_expired(pool, now, settings.max_age, settings.response_bodies).await?;
    if made > 0 || removed != retention::Removed::default() {
        tracing::info!(partitions_made = made, ?removed, "retention pass");
    }
    Ok(removed)
}
