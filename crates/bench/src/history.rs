//! A history stored before a scenario starts (`--stored-attempts`), so the scenario
//! measures hookline with full tables as a deployment has them after weeks, beside the
//! empty-table figure: events with idempotency keys, their deliveries (succeeded) and
//! two attempts each (a 503, then a 200 with headers and a body), spread over the last
//! 29 days, all of another organisation's.

use std::time::{Duration, Instant};

use hookline_core::ids::OrganizationId;
use hookline_store::Pool;

use crate::deployment::Deployment;

/// Deliveries one statement writes: each statement stays short and the run shows
/// progress.
const CHUNK: i64 = 250_000;

/// Stores `attempts` attempts (rounded down to whole deliveries of two) with their
/// deliveries and events, then vacuums and analyses the tables as autovacuum would have
/// and checkpoints and flushes them to disk; answers how long it took.
pub(crate) async fn store(deployment: &Deployment, attempts: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let organization = deployment.organization().await?;
    deployment.create_webhook(&organization, "http://127.0.0.1:9/history".into(), false).await?;
    let pool = deployment.pool();
    let deliveries = i64::try_from(attempts / 2)?;
    let mut done = 0;
    while done < deliveries {
        let count = CHUNK.min(deliveries - done);
        store_chunk(pool, &organization, done, count, deliveries).await?;
        done += count;
        eprintln!("history: {done} of {deliveries} deliveries stored ({:.0} s)", started.elapsed().as_secs_f64());
    }
    // As a deployment's tables are between loads: vacuumed, analysed, and written out,
    // so the scenario does not pay for the load's dirty pages.
    let client = pool.get().await?;
    // One statement each: VACUUM refuses to run in the transaction a batch would be.
    client.batch_execute("VACUUM ANALYZE").await?;
    client.batch_execute("CHECKPOINT").await?;
    // And flushed by the kernel: gigabytes of dirty pages written back during the
    // scenario would slow every commit's fsync, which no deployment pays for its history.
    let flushed = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await??;
    anyhow::ensure!(flushed.success(), "sync failed: {flushed}");
    Ok(started.elapsed())
}

/// Deliveries `from..from + count` of `total`, each made at its own millisecond of the
/// window (so its ULID-shaped ids are unique and in creation order).
async fn store_chunk(
    pool: &Pool,
    organization: &OrganizationId,
    from: i64,
    count: i64,
    total: i64,
) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let target = client
        .query_one(
            "SELECT w.id AS webhook, e.id AS endpoint FROM webhooks w JOIN endpoints e ON e.webhook_id = w.id
             WHERE w.organization_id = $1",
            &[organization],
        )
        .await?;
    let (webhook, endpoint): (String, String) = (target.try_get("webhook")?, target.try_get("endpoint")?);
    let statement = "
        CREATE TEMP TABLE IF NOT EXISTS history (g bigint, at timestamptz, event text, delivery text);
        TRUNCATE history;
        INSERT INTO history
            SELECT g, t, 'evt_' || hookline_ulid_floor(t), 'dlv_' || hookline_ulid_floor(t + interval '5 ms')
            FROM generate_series($2::bigint, $3::bigint) g,
                 LATERAL (SELECT now() - interval '29 days' + (interval '29 days' - interval '1 hour') * g / $4 AS t) w;
        INSERT INTO events (id, organization_id, message_id, event_type, environment, occurred_at, received_at,
                            data, routed_at)
            SELECT event, $1, 'history-' || g, 'job.created', 'live', at, at,
                   jsonb_build_object('n', g, 'padding', repeat('x', 48)), at
            FROM history;
        INSERT INTO event_keys (organization_id, message_id, event_id) SELECT $1, 'history-' || g, event FROM history;
        INSERT INTO deliveries (id, event_id, endpoint_id, webhook_id, organization_id, status, attempt_count,
                                last_status_code, created_at, updated_at, completed_at)
            SELECT delivery, event, $5, $6, $1, 'succeeded', 2, 200, at, at + interval '301 s',
                   at + interval '301 s'
            FROM history;
        INSERT INTO attempts (delivery_id, attempt_number, started_at, duration_ms, request_method, request_url,
                              request_headers, status_code, response_headers, response_body, error_kind)
            SELECT delivery, n, at + (n - 1) * interval '300 s', 40 + g % 50, 'POST', 'http://127.0.0.1:9/history',
                   '{\"content-type\": \"application/json\", \"webhook-id\": \"msg\", \"webhook-timestamp\": \"1\"}',
                   CASE n WHEN 1 THEN 503 ELSE 200 END, '{\"content-type\": \"text/plain\"}',
                   CASE n WHEN 1 THEN 'unavailable' ELSE repeat('ok ', 30) END,
                   CASE n WHEN 1 THEN 'http_status'::error_kind END
            FROM history, generate_series(1, 2) n;";
    // The parameters go in as literals: a multi-statement batch takes none.
    let statement = statement
        .replace("$1", &format!("'{organization}'"))
        .replace("$2", &from.to_string())
        .replace("$3", &(from + count - 1).to_string())
        .replace("$4", &total.to_string())
        .replace("$5", &format!("'{endpoint}'"))
        .replace("$6", &format!("'{webhook}'"));
    client.batch_execute(&statement).await?;
    Ok(())
}
