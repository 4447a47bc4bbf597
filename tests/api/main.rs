//! The management API against the real database and broker.
#![allow(clippy::unwrap_used, missing_docs)]

mod authorization;
mod credentials;
mod keys;
mod logs;
mod signals;
mod signing;
mod webhooks;

use std::time::Duration;

/// Generous bound for things that normally take milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);
