//! A job is sent once: copies of one job (a redelivery, the reconciliation sweep, a
//! recovery path) that meet its attempt in flight or recorded do not send it again.

use std::time::Duration;

use hookline_bus::codec::proto::DeliveryJob;
use hookline_bus::jobs;
use hookline_core::delivery::DeliveryStatus;
use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;

use crate::WAIT;

/// The value of `hookline_duplicate_jobs_total{reason}` in `text`, 0 when absent.
fn duplicates(text: &str, reason: &str) -> u64 {
    let series = format!("hookline_duplicate_jobs_total{{reason=\"{reason}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(series.as_str())).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_job_in_flight_or_recorded_send_nothing() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    // The first request takes a while: copies arrive while it is in flight.
    receiver.script("/hook", &[Reply::Slow(Duration::from_millis(1500))]);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": 1}})).await;
    receiver.wait_for("/hook", 1, WAIT).await;
    let delivery: String = env.scalar("SELECT id FROM deliveries", &[]).await;
    let copy = DeliveryJob { delivery_id: delivery.clone(), attempt: 1, ..Default::default() };

    // Three copies while the attempt is in flight, each in a message of its own.
    for _ in 0..3 {
        jobs::to_workers(&env.bus.publisher, &env.bus.topology, vec![copy.clone()]).await.unwrap();
    }
    let succeeded = eventually(WAIT, || async {
        env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Succeeded
    })
    .await;
    assert!(succeeded);
    // And two once it is recorded.
    jobs::to_workers(&env.bus.publisher, &env.bus.topology, vec![copy.clone(), copy]).await.unwrap();
    let counted = eventually(WAIT, || async {
        let text = env.metrics.render().await;
        duplicates(&text, "in_flight") >= 3 && duplicates(&text, "already_recorded") >= 5
    })
    .await;
    let text = env.metrics.render().await;
    assert!(
        counted,
        "every copy is counted as a duplicate: in_flight {}, already_recorded {}",
        duplicates(&text, "in_flight"),
        duplicates(&text, "already_recorded")
    );
    assert_eq!(receiver.requests("/hook").len(), 1, "the receiver got the event once");
    let attempts: i64 = env.scalar("SELECT count(*) FROM attempts", &[]).await;
    assert_eq!(attempts, 1);
    let leased: Option<chrono::DateTime<chrono::Utc>> = env.scalar("SELECT leased_until FROM deliveries", &[]).await;
    assert_eq!(leased, None, "recording the attempt released its lease");
    services.stop().await;
    env.cleanup().await;
}
