use std::collections::BTreeSet;
use std::time::Duration;

use hookline_core::delivery::DeliveryStatus;
use hookline_core::ids::OrganizationId;
use hookline_sandbox::database::OwnDatabase;
use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;

use crate::WAIT;

fn event(org: &OrganizationId, n: usize) -> serde_json::Value {
    json!({"type": "job.created", "organization": org, "data": {"n": n}})
}

/// What happens to the database mid-stream.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `pg_ctl stop -m fast`, a pause, then a start.
    Stop,
    /// SIGKILL of the postmaster, a pause, then a start (with crash recovery).
    Kill,
}

/// Attempts in flight when the database goes are recorded once it is back, not sent
/// again; events published while it is away are stored once it is back; the API says
/// the database is missing (503, never 500); no service stops.
async fn the_services_ride_out(fault: Fault) {
    let database = OwnDatabase::start().await;
    let env = TestEnv::on(&database.admin_url(), &[]).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    let api = env.start_api().await;
    for n in 0..5 {
        env.publish(event(&org.id, n)).await;
    }
    receiver.wait_for("/hook", 5, WAIT).await;

    // The next five are in flight, answered slowly, when the database goes.
    receiver.script("/hook", &[Reply::Slow(Duration::from_millis(1200)); 5]);
    for n in 5..10 {
        env.publish(event(&org.id, n)).await;
    }
    receiver.wait_for("/hook", 10, WAIT).await;
    match fault {
        Fault::Stop => database.stop().await,
        Fault::Kill => database.kill().await,
    }
    // Published while the database is away: waiting in the ingest queue.
    for n in 10..15 {
        env.publish(event(&org.id, n)).await;
    }
    let (ready, why) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(ready, 503, "/readyz says the database is missing: {why}");
    assert!(why.to_string().contains("database"), "{why}");
    let (status, answer) = api.call("GET", "/v1/webhooks", Some(&org.api_key), None).await;
    assert_eq!(status, 503, "a request needing the database is told to come back, not failed: {answer}");
    assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(services.stopped(), 0, "no service stopped while the database was away");
    database.resume().await;

    let all = eventually(WAIT * 2, || async {
        let ids: BTreeSet<String> =
            receiver.requests("/hook").iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
        ids.len() >= 15
    })
    .await;
    let requests = receiver.requests("/hook");
    let ids: BTreeSet<&str> = requests.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert!(all, "every event arrived: {} of 15", ids.len());
    assert_eq!(requests.len(), ids.len(), "none twice: the attempts in flight were recorded, not sent again");
    let settled = eventually(WAIT, || async {
        let open: i64 =
            env.scalar("SELECT count(*) FROM deliveries WHERE status <> $1", &[&DeliveryStatus::Succeeded]).await;
        open == 0
    })
    .await;
    assert!(settled, "every delivery is recorded as succeeded");
    let attempts: i64 = env.scalar("SELECT count(*) FROM attempts", &[]).await;
    assert_eq!(attempts, 15, "one attempt each");
    assert_eq!(api.call("GET", "/readyz", None, None).await.0, 200, "and the API is ready again");
    crate::still_running_then_stopped(services).await;
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_mid_stream_and_started_again_is_ridden_out() {
    the_services_ride_out(Fault::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_killed_mid_stream_and_started_again_is_ridden_out() {
    the_services_ride_out(Fault::Kill).await;
}
