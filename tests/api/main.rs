//! The management API against the real database and broker.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

mod authorization;
mod contract;
mod credentials;
mod errors;
mod events;
mod idempotency;
mod keys;
mod logs;
mod operator;
mod signals;
mod signing;
mod webhooks;

use std::time::Duration;

/// Generous bound for things that normally take milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);
