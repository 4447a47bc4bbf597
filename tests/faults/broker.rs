use std::collections::BTreeSet;

use hookline_core::ids::OrganizationId;
use hookline_sandbox::broker::OwnBroker;
use hookline_tests::{ApiServer, Receiver, TestEnv, eventually};
use serde_json::json;

use crate::WAIT;

/// What happens to the broker mid-stream.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `rabbitmqctl stop_app`, then `start_app`.
    StopApp,
    /// SIGKILL of the node, then a fresh start on the same data.
    Kill,
}

impl Fault {
    async fn inject(self, broker: &OwnBroker) {
        match self {
            Fault::StopApp => broker.stop_app().await,
            Fault::Kill => broker.kill().await,
        }
    }

    async fn heal(self, broker: &OwnBroker) {
        match self {
            Fault::StopApp => broker.start_app().await,
            Fault::Kill => broker.restart().await,
        }
    }
}

fn event(org: &OrganizationId, n: usize) -> serde_json::Value {
    json!({"type": "job.created", "organization": org, "data": {"n": n}})
}

/// The metrics port of the services (in this process, one for all of them, as in
/// `hookline all`), with its `/readyz` and `/healthz`.
struct Probes {
    base: String,
    _shutdown: tokio_util::sync::DropGuard,
}

impl Probes {
    async fn serve(env: &TestEnv) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(hookline_telemetry::serve_metrics(listener, env.metrics.clone(), shutdown.clone()));
        Self { base, _shutdown: shutdown.drop_guard() }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

async fn readiness(api: &ApiServer) -> (u16, serde_json::Value) {
    api.call("GET", "/readyz", None, None).await
}

/// The distinct events the receiver got, by their `webhook-id`, and how many requests
/// were repeats of one already received.
fn received(receiver: &Receiver) -> (BTreeSet<String>, usize) {
    let requests = receiver.requests("/hook");
    let ids: BTreeSet<String> =
        requests.iter().filter_map(|request| request.header("webhook-id").map(str::to_owned)).collect();
    let repeats = requests.len() - ids.len();
    (ids, repeats)
}

/// Events before, during and after the broker goes away all arrive, once each; no
/// service stops; the API says the broker is missing while it is, and accepts events
/// all along (stored, then routed by the sweep once the broker is back).
async fn the_services_ride_out(fault: Fault) {
    let broker = OwnBroker::start().await;
    let url = broker.url();
    let env = crate::sandbox_on_broker(&url).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    let api = env.start_api().await;
    let probes = Probes::serve(&env).await;
    for n in 0..10 {
        env.publish(event(&org.id, n)).await;
    }
    receiver.wait_for("/hook", 10, WAIT).await;

    fault.inject(&broker).await;
    let missing = eventually(WAIT, || async { readiness(&api).await.0 == 503 }).await;
    assert!(missing, "/readyz answers 503 while the broker is away");
    let (_, why) = readiness(&api).await;
    assert!(why.to_string().contains("broker"), "and says it is the broker: {why}");
    let (status, accepted) = api.call("POST", "/v1/events", Some(&org.api_key), Some(event(&org.id, 10))).await;
    assert_eq!(status, 202, "an event posted while the broker is away is stored and accepted: {accepted}");
    let during = accepted["id"].as_str().unwrap().to_owned();
    // The consumers' own port says the same, for each of them; they are not wedged.
    let (status, why) = probes.get("/readyz").await;
    assert_eq!(status, 503, "{why}");
    for service in ["hookline-ingest", "hookline-router", "hookline-worker", "hookline-scheduler"] {
        assert!(why.contains(&format!("{service}: broker")), "{service} is missing its broker: {why}");
    }
    assert!(!why.contains("database"), "{why}");
    assert_eq!(probes.get("/healthz").await.0, 200, "waiting for the broker is not being wedged");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(services.stopped(), 0, "no service stopped while the broker was away");

    fault.heal(&broker).await;
    let back = eventually(WAIT * 2, || async { readiness(&api).await.0 == 200 }).await;
    assert!(back, "/readyz is 200 again once the broker is back, with no restart");
    assert!(eventually(WAIT, || async { env.bus.is_connected() }).await);
    let consumers_back = eventually(WAIT, || async { probes.get("/readyz").await.0 == 200 }).await;
    assert!(consumers_back, "the consumers' /readyz is 200 again: {}", probes.get("/readyz").await.1);
    for n in 11..21 {
        env.publish(event(&org.id, n)).await;
    }
    let all = eventually(WAIT * 2, || async { received(&receiver).0.len() >= 21 }).await;
    let (ids, repeats) = received(&receiver);
    assert!(all, "every event arrived: {} of 21", ids.len());
    assert!(ids.contains(&during), "including the one accepted while the broker was away");
    assert_eq!(repeats, 0, "and none twice");
    crate::still_running_then_stopped(services).await;
    drop(api);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stop_app_and_start_app_is_ridden_out() {
    the_services_ride_out(Fault::StopApp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_started_again_is_ridden_out() {
    the_services_ride_out(Fault::Kill).await;
}
