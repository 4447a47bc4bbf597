//! A worker process killed with SIGKILL in the middle of a stream of deliveries loses
//! none of them: its unacknowledged jobs return to the queue and another worker (a
//! competing consumer) delivers them. The attempts it had in flight are sent again only
//! once their leases run out (the delivery timeout plus a margin), so the workers here
//! time out requests after a few seconds.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;

const EVENTS: usize = 40;

/// A worker process, killed when dropped: a failing assertion leaves none behind.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(env: &TestEnv) -> Worker {
    env.command(env!("CARGO_BIN_EXE_hookline"))
        .arg("worker")
        .env("HOOKLINE__DELIVERY__CONCURRENCY", "4")
        .env("HOOKLINE__DELIVERY__TIMEOUT", "5s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Worker)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_loses_no_delivery() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    receiver.always("/hook", Reply::Slow(Duration::from_millis(100)));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start_without_worker();
    let mut doomed = spawn_worker(&env);
    for n in 0..EVENTS {
        env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": n}})).await;
    }
    // Kill it once it is busy: some jobs delivered, several in flight, most still queued.
    receiver.wait_for("/hook", 5, Duration::from_secs(30)).await;
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let received_before_kill = receiver.requests("/hook").len();
    assert!(received_before_kill < EVENTS, "the worker finished everything before it was killed");

    let survivor = spawn_worker(&env);
    let distinct = || {
        receiver.requests("/hook").iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect::<BTreeSet<_>>()
    };
    let all_delivered = eventually(Duration::from_secs(60), || async { distinct().len() == EVENTS }).await;
    assert!(all_delivered, "only {} of {EVENTS} events reached the receiver", distinct().len());
    // The killed worker's attempts in flight were sent but not recorded: they are
    // recorded once their leases (5 s + 30 s) have run out and the survivor sends them.
    let all_recorded = eventually(Duration::from_secs(75), || async {
        env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await == EVENTS as i64
    })
    .await;
    assert!(all_recorded, "every delivery is recorded as succeeded");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, EVENTS as i64, "one attempt each");
    drop(survivor);
    services.stop().await;
    env.cleanup().await;
}
