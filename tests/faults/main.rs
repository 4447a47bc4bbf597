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

/// A sandbox on the broker (or cluster) at `amqp_url` that sweeps lost work every 500 ms
/// once it is 2 s overdue, so what an outage strands is resumed within the test.
async fn sandbox_on_broker(amqp_url: &str) -> hookline_tests::TestEnv {
    hookline_tests::TestEnv::with(&[
        ("HOOKLINE__AMQP__URL", amqp_url),
        ("HOOKLINE__SCHEDULER__RECONCILE_INTERVAL", "500ms"),
        ("HOOKLINE__SCHEDULER__RECONCILE_AFTER", "2s"),
    ])
    .await
}

/// How every fault test ends: no service stopped by itself, and all of them stop when
/// asked, after the fault too.
async fn still_running_then_stopped(services: hookline_tests::Services) {
    assert_eq!(services.stopped(), 0, "every service is still running");
    let stopping = tokio::time::timeout(WAIT, services.stop()).await;
    assert!(stopping.is_ok(), "the services stop when asked, after the fault too");
}
