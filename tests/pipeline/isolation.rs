//! One endpoint's trouble stays its own: while three endpoints that never answer take
//! three quarters of the traffic, a healthy endpoint on the same events is delivered as
//! fast as when all four answer. The hanging endpoints' circuits open (their jobs are
//! parked, not sent round the delivery queue), the API and the metrics say so, and once
//! they answer again their circuits close and everything parked is delivered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hookline_tests::{Reply, Running, eventually};
use serde_json::json;

use crate::WAIT;

/// Events per phase, and the pace they are published at.
const EVENTS: u64 = 600;
const PACE: Duration = Duration::from_millis(10);
const HANGING: [&str; 3] = ["/hang-1", "/hang-2", "/hang-3"];

/// Publishes events `from..from + EVENTS` at [`PACE`]; answers when each was published.
async fn publish_phase(running: &Running, from: u64) -> HashMap<u64, Instant> {
    let mut published = HashMap::new();
    let mut pace = tokio::time::interval(PACE);
    for n in from..from + EVENTS {
        pace.tick().await;
        published.insert(n, Instant::now());
        running.env.publish(json!({"type": "job.created", "organization": running.org.id, "data": {"n": n}})).await;
    }
    published
}

/// The healthy endpoint's publish → receipt latencies of the events in `published`,
/// sorted, once it has received them all.
async fn latencies(running: &Running, published: &HashMap<u64, Instant>) -> Vec<Duration> {
    let received = || {
        running
            .receiver
            .requests("/ok")
            .into_iter()
            .filter_map(|r| {
                let n = r.json()["payload"]["n"].as_u64()?;
                Some(r.at.duration_since(*published.get(&n)?))
            })
            .collect::<Vec<_>>()
    };
    let complete = eventually(WAIT * 3, || async { received().len() as u64 == EVENTS }).await;
    assert!(complete, "the healthy endpoint received {} of {EVENTS} events", received().len());
    let mut latencies = received();
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

/// The value of a metric series in `text`, 0 when absent.
fn series(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_costs_a_healthy_one_nothing_and_its_parked_jobs_follow_when_it_answers() {
    let running = Running::start(&[("HOOKLINE__DELIVERY__CIRCUIT_FIRST_PROBE", "1s")]).await;
    let receiver = &running.receiver;
    for path in HANGING.iter().chain(&["/ok"]) {
        receiver.always(path, Reply::Status(200));
    }
    let urls: Vec<String> = HANGING.iter().map(|path| receiver.url(path)).collect();
    let (status, hanging) = running
        .api
        .call(
            "POST",
            "/v1/webhooks",
            running.key(),
            // A schedule longer than the hang, so no parked job outlives it (a failed
            // probe would fail those for good) and all of them wait for the endpoints;
            // a second attempt that failed before the circuit opened comes within the
            // wait below.
            Some(json!({"name": "hanging", "events": ["job.created"], "active": true,
                "retry_policy": {"delays": ["1s", "60s"]},
                "endpoints": urls.iter().map(|url| json!({"url": url})).collect::<Vec<_>>()})),
        )
        .await;
    assert_eq!(status, 201, "{hanging}");
    let (status, healthy) = running
        .api
        .call(
            "POST",
            "/v1/webhooks",
            running.key(),
            Some(json!({"name": "healthy", "events": ["job.created"], "active": true,
                "endpoints": [{"url": receiver.url("/ok")}]})),
        )
        .await;
    assert_eq!(status, 201, "{healthy}");

    // Warm up (connections, caches, prepared statements), then the baseline: every
    // endpoint answers at once.
    let published = publish_phase(&running, 0).await;
    latencies(&running, &published).await;
    let published = publish_phase(&running, EVENTS).await;
    let baseline = latencies(&running, &published).await;

    // Three of the four endpoints stop answering (the delivery timeout here is 2 s).
    for path in HANGING {
        receiver.always(path, Reply::Hang);
    }
    let published = publish_phase(&running, 2 * EVENTS).await;
    let hung = latencies(&running, &published).await;
    let (base_p50, base_p99) = (percentile(&baseline, 0.5), percentile(&baseline, 0.99));
    let (hung_p50, hung_p99) = (percentile(&hung, 0.5), percentile(&hung, 0.99));
    println!(
        "healthy endpoint p50 / p99: {base_p50:?} / {base_p99:?} alone, {hung_p50:?} / {hung_p99:?} beside three hanging"
    );

    // The hanging endpoints' circuits are open and their jobs wait parked.
    let id = hanging["id"].as_str().unwrap();
    let opened = eventually(WAIT, || async {
        let (_, webhook) = running.api.call("GET", &format!("/v1/webhooks/{id}"), running.key(), None).await;
        webhook["endpoints"].as_array().unwrap().iter().all(|e| e["circuit"]["state"] != "closed")
    })
    .await;
    let (_, webhook) = running.api.call("GET", &format!("/v1/webhooks/{id}"), running.key(), None).await;
    assert!(opened, "every hanging endpoint's circuit opened: {}", webhook["endpoints"]);
    let parked: u64 =
        webhook["endpoints"].as_array().unwrap().iter().map(|e| e["circuit"]["parked"].as_u64().unwrap()).sum();
    assert!(parked > 0, "the hanging endpoints' jobs are parked: {}", webhook["endpoints"]);
    let metrics = running.env.metrics.render().await;
    assert!(series(&metrics, "hookline_circuit_changes_total{to=\"open\"}") >= 3, "{metrics}");
    assert!(series(&metrics, "hookline_parked_jobs_total{reason=\"circuit_open\"}") > 0, "{metrics}");
    let (_, healthy_view) = running
        .api
        .call("GET", &format!("/v1/webhooks/{}", healthy["id"].as_str().unwrap()), running.key(), None)
        .await;
    assert_eq!(healthy_view["endpoints"][0]["circuit"]["state"], "closed");

    // They answer again: the probes succeed, the circuits close, and every parked job is
    // delivered (deliveries whose attempts all timed out have failed for good).
    for path in HANGING {
        receiver.always(path, Reply::Status(200));
    }
    let settled = eventually(WAIT * 3, || async {
        running.env.scalar::<i64>("SELECT count(*) FROM deliveries WHERE open OR parked_at IS NOT NULL", &[]).await == 0
    })
    .await;
    let left: i64 = running.env.scalar("SELECT count(*) FROM deliveries WHERE open", &[]).await;
    assert!(settled, "{left} deliveries still open after the endpoints recovered");
    let (_, webhook) = running.api.call("GET", &format!("/v1/webhooks/{id}"), running.key(), None).await;
    assert!(series(&running.env.metrics.render().await, "hookline_circuit_changes_total{to=\"closed\"}") >= 3);
    for endpoint in webhook["endpoints"].as_array().unwrap() {
        assert_eq!(endpoint["circuit"]["state"], "closed", "{endpoint}");
        assert_eq!(endpoint["circuit"]["parked"], 0, "{endpoint}");
    }
    let failed: i64 = running.env.scalar("SELECT count(*) FROM deliveries WHERE status = 'failed'", &[]).await;
    let succeeded: i64 = running.env.scalar("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await;
    println!("after recovery: {succeeded} deliveries succeeded, {failed} failed for good");
    assert!(
        failed < (EVENTS / 10) as i64,
        "parked jobs were delivered once the endpoints answered: {succeeded} succeeded, {failed} failed"
    );
    running.stop().await;
}
