//! End-to-end: events in over AMQP (and HTTP), signed deliveries out, retries over
//! delay queues, rejects, against the real broker and database.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

mod batching;
mod config_cache;
mod consumer;
mod delivery;
mod http_ingest;
mod isolation;
mod job_batches;
mod metrics;
mod outcomes;
mod reconcile;
mod rejects;
mod retention;
mod retries;
mod send_once;
mod traces;

use std::time::Duration;

/// Generous bound for things that normally take milliseconds; only a failure waits it out.
pub const WAIT: Duration = Duration::from_secs(20);
