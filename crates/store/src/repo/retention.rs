//! Bounded tables: what has aged out of the retention window is removed, and the coming
//! days' partitions of attempts and events are made ahead of need (see migrations V11
//! and V12).
//!
//! Ids are ULIDs, so their text order is creation order: everything is cut at the id a
//! ULID made at the cutoff would have, and every removal walks an index. Attempts and
//! events, the tables that grow fastest, go a whole day's partition at a time (a drop:
//! no long lock, no bloat); what sits in a table from before partitioning or a default
//! partition, deliveries and idempotency keys go in short batches.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hookline_core::ids::{DeliveryId, EventId};
use tokio_postgres::error::SqlState;

use crate::error::{QueryContext as _, Result};

/// The id prefixes bounds are written with.
const DLV: &str = DeliveryId::PREFIX;
const EVT: &str = EventId::PREFIX;

/// Rows one statement removes at most: each statement stays short.
const BATCH: i64 = 5_000;

/// Days of partitions made ahead of today.
const DAYS_AHEAD: i64 = 7;

/// A table partitioned by day on a ULID column.
#[derive(Debug, Clone, Copy)]
struct Daily {
    /// The partitioned table; its partitions are `{table}_pYYYYMMDD`.
    table: &'static str,
    /// The prefix of the ids its partition key holds.
    prefix: &'static str,
}

/// Attempts, by the id of their delivery (V11).
const ATTEMPTS: Daily = Daily { table: "attempts", prefix: DLV };
/// Events, by their own id (V12).
const EVENTS: Daily = Daily { table: "events", prefix: EVT };

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Attempt partitions dropped whole.
    pub partitions: u64,
    /// Event partitions dropped whole.
    pub event_partitions: u64,
    /// Attempts deleted row by row (outside the daily partitions).
    pub attempts: u64,
    /// Deliveries deleted.
    pub deliveries: u64,
    /// Events deleted row by row (outside the daily partitions).
    pub events: u64,
    /// Idempotency keys deleted with their events.
    pub keys: u64,
    /// Response bodies dropped from attempts still kept.
    pub bodies: u64,
    /// Idempotency keys of management requests past their 24 hours.
    pub request_keys: u64,
}

/// The start of the UTC day `at` falls in: windows are cut at whole days, so a day's
/// partition goes as a whole.
fn day_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive().and_hms_opt(0, 0, 0).map_or(at, |midnight| midnight.and_utc())
}

/// Makes the daily partitions of attempts and events from today to a week on that do
/// not exist yet; answers how many it made. A day already covered (by a table from
/// before partitioning, on the day of its migration) or whose rows went to the default
/// partition meanwhile is left to the default partition.
pub async fn prepare_partitions(pool: &Pool, now: DateTime<Utc>) -> Result<u64> {
    let mut made = 0;
    for daily in [ATTEMPTS, EVENTS] {
        made += prepare(pool, daily, now).await?;
    }
    Ok(made)
}

/// [`prepare_partitions`] for one table.
async fn prepare(pool: &Pool, daily: Daily, now: DateTime<Utc>) -> Result<u64> {
    let Daily { table, prefix } = daily;
    let client = pool.get().await?;
    let mut made = 0;
    for offset in 0..=DAYS_AHEAD {
        let day = day_start(now) + chrono::Duration::days(offset);
        let name = format!("{table}_p{}", day.format("%Y%m%d"));
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL AS found", &[&name])
            .await
            .context("looking up a partition")?
            .try_get("found")?;
        if exists {
            continue;
        }
        let bounds = client
            .query_one(
                &format!(
                    "SELECT '{prefix}' || hookline_ulid_floor($1) AS lower,
                         '{prefix}' || hookline_ulid_floor($1 + interval '1 day') AS upper"
                ),
                &[&day],
            )
            .await
            .context("computing a partition's bounds")?;
        let (lower, upper): (String, String) = (bounds.try_get("lower")?, bounds.try_get("upper")?);
        let create = format!("CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{lower}') TO ('{upper}')");
        match client.batch_execute(&create).await {
            Ok(()) => made += 1,
            // The range overlaps the table from before partitioning, or the default
            // partition already holds rows of it (those rows stay where they are), or
            // another scheduler made it first.
            Err(err)
                if err.code().is_some_and(|code| {
                    [SqlState::INVALID_OBJECT_DEFINITION, SqlState::CHECK_VIOLATION, SqlState::DUPLICATE_TABLE]
                        .contains(code)
                }) =>
            {
                tracing::debug!(partition = %name, error = %err, "partition not made");
            }
            Err(err) => return Err(err).context("making a partition"),
        }
    }
    Ok(made)
}

/// Removes what is older than `max_age` at `now` (cut at the start of that UTC day), and
/// the response bodies of attempts older than `response_bodies`.
///
/// A delivery goes when it or its event has aged out (a delivery made just after
/// midnight for an event of the day before goes with its event), its attempts before
/// it, an event's key and deliveries before the event.
pub async fn remove_expired(
    pool: &Pool,
    now: DateTime<Utc>,
    max_age: Duration,
    response_bodies: Duration,
) -> Result<Removed> {
    let age = |duration: Duration| chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
    let cutoff = day_start(now - age(max_age));
    let bodies_cutoff = now - age(response_bodies);
    let mut removed = Removed { partitions: drop_partitions(pool, ATTEMPTS, cutoff).await?, ..Removed::default() };
    (removed.attempts, removed.deliveries) = remove_deliveries(pool, cutoff).await?;
    removed.keys = in_batches(
        pool,
        &format!(
            "DELETE FROM event_keys WHERE (organization_id, message_id) IN (
                 SELECT organization_id, message_id FROM event_keys WHERE event_id < '{EVT}' || hookline_ulid_floor($1)
                 LIMIT $2)"
        ),
        cutoff,
    )
    .await?;
    removed.event_partitions = drop_partitions(pool, EVENTS, cutoff).await?;
    removed.events = in_batches(
        pool,
        &format!(
            "DELETE FROM events WHERE id IN (
                 SELECT e.id FROM events e WHERE e.id < '{EVT}' || hookline_ulid_floor($1)
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        ),
        cutoff,
    )
    .await?;
    removed.bodies = in_batches(
        pool,
        &format!(
            "UPDATE attempts SET response_body = NULL WHERE (delivery_id, attempt_number) IN (
                 SELECT delivery_id, attempt_number FROM attempts
                 WHERE delivery_id < '{DLV}' || hookline_ulid_floor($1) AND response_body IS NOT NULL LIMIT $2)"
        ),
        bodies_cutoff,
    )
    .await?;
    removed.request_keys = in_batches(
        pool,
        "DELETE FROM idempotency_keys WHERE (organization_id, key) IN (
             SELECT organization_id, key FROM idempotency_keys WHERE created_at < $1 LIMIT $2)",
        now - age(super::idempotency::KEPT),
    )
    .await?;
    Ok(removed)
}

/// Removes the deliveries made before `cutoff` or of events received before it, each
/// after its attempts (those outside the dropped partitions); answers how many attempts
/// and deliveries it removed.
async fn remove_deliveries(pool: &Pool, cutoff: DateTime<Utc>) -> Result<(u64, u64)> {
    let mut attempts = in_batches(
        pool,
        &format!(
            "DELETE FROM attempts WHERE (delivery_id, attempt_number) IN (
                 SELECT delivery_id, attempt_number FROM attempts WHERE delivery_id < '{DLV}' || hookline_ulid_floor($1)
                 LIMIT $2)"
        ),
        cutoff,
    )
    .await?;
    attempts += in_batches(
        pool,
        &format!(
            "DELETE FROM attempts WHERE (delivery_id, attempt_number) IN (
                 SELECT a.delivery_id, a.attempt_number FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
                 WHERE d.event_id < '{EVT}' || hookline_ulid_floor($1)
                 LIMIT $2)"
        ),
        cutoff,
    )
    .await?;
    let mut deliveries = 0;
    for aged in
        [format!("id < '{DLV}' || hookline_ulid_floor($1)"), format!("event_id < '{EVT}' || hookline_ulid_floor($1)")]
    {
        deliveries += in_batches(
            pool,
            &format!(
                "DELETE FROM deliveries WHERE id IN (
                     SELECT id FROM deliveries WHERE {aged} LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            cutoff,
        )
        .await?;
    }
    Ok((attempts, deliveries))
}

/// Drops every daily partition of `daily` (and the table from before partitioning)
/// whose rows were all made before `cutoff`. An event partition some delivery still
/// names (one locked by a worker while the pass ran) waits for a later pass. The drop
/// waits at most a moment for its lock, so it never queues the delivery path behind a
/// long read: it is tried again on the next pass.
async fn drop_partitions(pool: &Pool, daily: Daily, cutoff: DateTime<Utc>) -> Result<u64> {
    let Daily { table, prefix } = daily;
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT relname, coalesce(lower, '') AS lower, upper FROM (
                 SELECT c.relname,
                     substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']*)''\\)') AS lower,
                     substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']*)''\\)') AS upper
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = '{table}'::regclass) p
             WHERE upper IS NOT NULL AND upper <= '{prefix}' || hookline_ulid_floor($1)"
            ),
            &[&cutoff],
        )
        .await
        .context("listing expired partitions")?;
    let mut dropped = 0;
    for row in &rows {
        let name: String = row.try_get("relname")?;
        if daily.table == EVENTS.table {
            let (lower, upper): (String, String) = (row.try_get("lower")?, row.try_get("upper")?);
            let named: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM deliveries WHERE event_id >= $1 AND event_id < $2) AS named",
                    &[&lower, &upper],
                )
                .await
                .context("looking for deliveries of an expired event partition")?
                .try_get("named")?;
            if named {
                tracing::info!(partition = %name, "expired event partition still has deliveries; dropped on a later pass");
                continue;
            }
        }
        let drop = format!("SET lock_timeout = '2s'; DROP TABLE {name}; RESET lock_timeout");
        match client.batch_execute(&drop).await {
            Ok(()) => {
                dropped += 1;
                tracing::info!(partition = %name, "expired partition dropped");
            }
            Err(err) if err.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                let _ = client.batch_execute("RESET lock_timeout").await;
                tracing::info!(partition = %name, "expired partition busy; dropped on a later pass");
            }
            // Another scheduler dropped it first.
            Err(err) if err.code() == Some(&SqlState::UNDEFINED_TABLE) => {
                let _ = client.batch_execute("RESET lock_timeout").await;
            }
            Err(err) => return Err(err).context("dropping a partition"),
        }
    }
    Ok(dropped)
}

/// Runs `statement` (`$1` the cutoff, `$2` the batch size) until it changes fewer rows
/// than a batch; answers how many it changed in all.
async fn in_batches(pool: &Pool, statement: &str, cutoff: DateTime<Utc>) -> Result<u64> {
    let client = pool.get().await?;
    let prepared = client.prepare_cached(statement).await.context("preparing a retention statement")?;
    let mut total = 0;
    loop {
        let changed = client.execute(&prepared, &[&cutoff, &BATCH]).await.context("removing expired rows")?;
        total += changed;
        if changed < BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}
