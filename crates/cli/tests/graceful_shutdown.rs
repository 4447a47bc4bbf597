//! SIGTERM to a worker with attempts in flight: it stops taking jobs, lets the in-flight
//! attempts finish and record, returns the rest to the queue and exits cleanly. Unlike a
//! kill, nothing is sent twice.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;

const EVENTS: usize = 8;

fn spawn_worker(env: &TestEnv) -> Child {
    env.command(env!("CARGO_BIN_EXE_hookline"))
        .arg("worker")
        .env("HOOKLINE__DELIVERY__CONCURRENCY", "3")
        .env("HOOKLINE__SHUTDOWN__GRACE", "20s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_attempts_finish_and_hands_back_the_rest() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/hook", Reply::Slow(Duration::from_millis(1500)));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start_without_worker();
    let mut first = spawn_worker(&env);
    for n in 0..EVENTS {
        env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": n}})).await;
    }
    // Attempts are in flight (each takes 1.5 s at the receiver).
    receiver.wait_for("/hook", 1, Duration::from_secs(30)).await;
    Command::new("kill").arg("-TERM").arg(first.id().to_string()).status().unwrap();
    let exited = tokio::task::spawn_blocking(move || first.wait().unwrap()).await.unwrap();
    assert!(exited.success(), "the worker did not exit cleanly on SIGTERM");
    let sent_by_first = receiver.requests("/hook").len();
    let recorded_by_first: i64 = env.scalar("SELECT count(*) FROM attempts", &[]).await;
    assert_eq!(recorded_by_first as usize, sent_by_first, "every attempt in flight finished and was recorded");
    assert!(sent_by_first < EVENTS, "the worker drained everything instead of stopping");

    let mut second = spawn_worker(&env);
    let all = eventually(Duration::from_secs(60), || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await == EVENTS as i64
    })
    .await;
    assert!(all, "the jobs handed back were delivered by the next worker");
    let ids: BTreeSet<String> =
        receiver.requests("/hook").iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
    assert_eq!(ids.len(), EVENTS);
    assert_eq!(receiver.requests("/hook").len(), EVENTS, "nothing was sent twice");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, EVENTS as i64);
    second.kill().unwrap();
    second.wait().unwrap();
    services.stop().await;
    env.cleanup().await;
}
