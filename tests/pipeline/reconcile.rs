use chrono::Utc;
use hookline_core::Environment;
use hookline_core::delivery::DeliveryStatus;
use hookline_core::envelope::UpstreamEvent;
use hookline_store::repo::events;
use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;

use crate::WAIT;

const FAST_SWEEP: [(&str, &str); 2] =
    [("HOOKLINE__SCHEDULER__RECONCILE_INTERVAL", "300ms"), ("HOOKLINE__SCHEDULER__RECONCILE_AFTER", "1s")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_but_never_forwarded_is_routed_by_the_sweep() {
    let env = TestEnv::with(&FAST_SWEEP).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    // As if ingest crashed between storing the event and publishing its route message.
    let event = UpstreamEvent {
        message_id: Some("lost-1".into()),
        event_type: "job.created".into(),
        organization: org.id.clone(),
        environment: Environment::Live,
        occurred_at: Utc::now(),
        actor: None,
        team: None,
        data: hookline_core::payload::Payload::from_value(&json!({"n": 1})).unwrap(),
    };
    let events::Stored::Inserted(id) = events::insert(&env.pool, &event).await.unwrap() else { panic!("not stored") };
    let services = env.start();

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_eq!(request.header("webhook-id"), Some(id.as_str()));
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_delayed_message_was_lost_is_republished_by_the_sweep() {
    // The delay is an hour, so only the sweep can bring attempt 2 within the test.
    let mut overrides = FAST_SWEEP.to_vec();
    overrides.push(("HOOKLINE__RETRY__DELAYS", "1h"));
    let env = TestEnv::with(&overrides).await;
    let receiver = Receiver::start().await;
    receiver.script("/hook", &[Reply::Status(503)]);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;
    receiver.wait_for("/hook", 1, WAIT).await;
    let scheduled = eventually(WAIT, || async {
        env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Retrying
    })
    .await;
    assert!(scheduled);
    assert_eq!(receiver.requests("/hook").len(), 1, "attempt 2 waits an hour in the delay queue");
    // As if the broker lost the delayed job: its due time passed long ago.
    env.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE deliveries SET next_attempt_at = now() - interval '1 hour', updated_at = now() - interval '1 hour'",
            &[],
        )
        .await
        .unwrap();

    receiver.wait_for("/hook", 2, WAIT).await;
    assert!(
        eventually(WAIT, || async {
            env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Succeeded
        })
        .await
    );
    assert_eq!(env.scalar::<i32>("SELECT attempt_count FROM deliveries", &[]).await, 2);
    services.stop().await;
    env.cleanup().await;
}

/// How many messages of jobs wait in the delivery queue (the router sends the jobs of
/// the deliveries it makes together in one).
async fn queued_jobs(env: &TestEnv) -> u64 {
    env.bus.queue_depths().waiting(&env.bus.topology.delivery_queue()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_still_queued_behind_a_backlog_are_not_republished_but_lost_ones_are() {
    let env = TestEnv::with(&FAST_SWEEP).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    // No worker yet: every job waits in the delivery queue, a backlog.
    let services = env.start_without_worker();
    for n in 0..20 {
        env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": n}})).await;
    }
    let made =
        eventually(WAIT, || async { env.scalar::<i64>("SELECT count(*) FROM deliveries", &[]).await == 20 }).await;
    assert!(made);
    assert!(eventually(WAIT, || async { queued_jobs(&env).await > 0 }).await);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let queued = queued_jobs(&env).await;
    // Many sweeps, each long after the deliveries last moved: none may add a copy.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(queued_jobs(&env).await, queued, "the sweep left the queued jobs alone");

    // The broker loses them (the queue is purged): the queue is empty, so what was in it
    // before is known lost, and the sweep republishes it, once.
    let channel = env.bus.connection().unwrap().create_channel().await.unwrap();
    channel
        .queue_purge(env.bus.topology.delivery_queue().as_str().into(), lapin::options::QueuePurgeOptions::default())
        .await
        .unwrap();
    assert!(eventually(WAIT, || async { queued_jobs(&env).await > 0 }).await, "the lost jobs are republished");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let republished = queued_jobs(&env).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(queued_jobs(&env).await, republished, "republished once");

    let workers = env.start();
    let delivered = eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await == 20
    })
    .await;
    assert!(delivered);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(receiver.requests("/hook").len(), 20, "each event sent once");
    workers.stop().await;
    services.stop().await;
    env.cleanup().await;
}
