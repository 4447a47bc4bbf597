//! Where a run's latency went: publish → receipt split at the timestamps hookline
//! writes on the way, read from the database once the run is over.
//!
//! An event's `received_at` is when ingest's insert began, a delivery's `created_at`
//! when the router's insert began, and a first attempt's `started_at` when the worker
//! began its request; each stage ends where the next begins, so a stage includes the
//! queue hop, the consumer's wait for a batch and the statement before it.

use std::time::SystemTime;

use hookline_core::ids::OrganizationId;
use hookline_store::Pool;

/// The p50 and p99 of one stage, milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    /// What the stage spans.
    pub name: &'static str,
    /// Median, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
}

/// The stages of `organization`'s first attempts. `clock_epoch` is the wall-clock time
/// of the instant the events' `sent` offsets count from.
pub(crate) async fn measure(
    pool: &Pool,
    organization: &OrganizationId,
    clock_epoch: SystemTime,
) -> anyhow::Result<Vec<Stage>> {
    let epoch_ms = clock_epoch.duration_since(SystemTime::UNIX_EPOCH)?.as_secs_f64() * 1000.0;
    let client = pool.get().await?;
    let row = client
        .query_one(
            "WITH timings AS (
                 SELECT extract(epoch FROM e.received_at) * 1000 - ($2 + (e.data->>'sent')::float8 / 1e6) AS stored,
                        extract(epoch FROM d.created_at - e.received_at) * 1000 AS routed,
                        extract(epoch FROM a.started_at - d.created_at) * 1000 AS attempted
                 FROM events e
                 JOIN deliveries d ON d.event_id = e.id
                 JOIN attempts a ON a.delivery_id = d.id AND a.attempt_number = 1
                 WHERE e.organization_id = $1)
             SELECT percentile_cont(ARRAY[0.5, 0.99]::float8[]) WITHIN GROUP (ORDER BY stored),
                    percentile_cont(ARRAY[0.5, 0.99]::float8[]) WITHIN GROUP (ORDER BY routed),
                    percentile_cont(ARRAY[0.5, 0.99]::float8[]) WITHIN GROUP (ORDER BY attempted)
             FROM timings",
            &[&organization.as_str(), &epoch_ms],
        )
        .await?;
    let names = ["publish → event stored", "stored → delivery created", "created → request started"];
    let stages = names
        .iter()
        .enumerate()
        .filter_map(|(column, name)| {
            let quantiles: Option<Vec<f64>> = row.get(column);
            match quantiles.as_deref() {
                Some([p50, p99]) => Some(Stage { name, p50: *p50, p99: *p99 }),
                _ => None,
            }
        })
        .collect();
    Ok(stages)
}
