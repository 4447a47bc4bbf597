//! Foul weather: the services ride out a broker or database going away, on a broker
//! node (and a database cluster) of the test's own, so stopping and killing them leaves
//! the rest of the suite alone.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "a fault test reads best as one story, setup to last check")]

mod broker;
mod cluster;
mod database;

use std::time::Duration;

/// Generous bound for things that normally take milliseconds; only a failure waits it out.
pub const WAIT: Duration = Duration::from_secs(30);
