//! A real `hookline all` process exports its spans over OTLP/HTTP under one
//! `service.name` per service, writes JSON log lines that carry the trace id, and serves
//! its counts at `/metrics`.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use serde_json::json;

/// Span names by (trace id as hex, service.name of the resource they came under).
type Collected = Arc<Mutex<HashMap<(String, String), Vec<String>>>>;

async fn collect(State(collected): State<Collected>, body: Bytes) -> &'static str {
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    let mut collected = collected.lock().unwrap();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let trace_id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
            collected.entry((trace_id, service.clone())).or_default().push(span.name);
        }
    }
    "{}"
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookline_all_exports_each_services_spans_under_its_own_name() {
    let env = TestEnv::new().await; // retry delays 1s, 2s
    let receiver = Receiver::start().await;
    receiver.script("/hook", &[Reply::Status(503)]);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;

    let collected = Collected::default();
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", collector.local_addr().unwrap());
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(collect)).with_state(collected.clone());
    tokio::spawn(async move { axum::serve(collector, app).await });

    let metrics_port = free_port();
    let log_path = std::env::temp_dir().join(format!("hookline-telemetry-{}.txt", env.id));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut process = env
        .command(env!("CARGO_BIN_EXE_hookline"))
        .arg("all")
        .env("HOOKLINE__API__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("HOOKLINE__TELEMETRY__METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("HOOKLINE__TELEMETRY__OTLP_ENDPOINT", &collector_url)
        .env("HOOKLINE__TELEMETRY__LOG_LEVEL", "info")
        .env("HOOKLINE__TELEMETRY__LOG_FORMAT", "json")
        // Export batches every 200 ms instead of every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let client = reqwest::Client::new();
    let up = eventually(Duration::from_secs(30), || async {
        client.get(&metrics_url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(up, "hookline all did not serve /metrics");
    // Queue depths appear once a service has declared the topology.
    let declared = eventually(Duration::from_secs(30), || async {
        let text = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
        text.contains(&format!("queue=\"{}.ingest\"", env.settings.amqp.prefix))
    })
    .await;
    assert!(declared, "/metrics shows no queue depths");
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    let requests = receiver.wait_for("/hook", 2, Duration::from_secs(30)).await;
    let traceparent = requests[1].header("traceparent").unwrap().to_owned();
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    let services = |collected: &Collected| -> BTreeSet<String> {
        collected.lock().unwrap().keys().filter(|(t, _)| *t == trace_id).map(|(_, s)| s.clone()).collect()
    };
    let expected: BTreeSet<String> = ["hookline-ingest", "hookline-router", "hookline-worker", "hookline-scheduler"]
        .into_iter()
        .map(String::from)
        .collect();
    let deliver_spans = |collected: &Collected| {
        let collected = collected.lock().unwrap();
        let worker = collected.get(&(trace_id.clone(), "hookline-worker".to_owned()));
        worker.map_or(0, |names| names.iter().filter(|name| *name == "deliver").count())
    };
    // Both attempts' spans are exported (batches come every 200 ms).
    let exported = eventually(Duration::from_secs(20), || async {
        services(&collected) == expected && deliver_spans(&collected) == 2
    })
    .await;
    assert!(
        exported,
        "trace {trace_id}: services {:?}, {} deliver spans",
        services(&collected),
        deliver_spans(&collected)
    );

    let text = client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("hookline_events_ingested_total{source=\"amqp\"} 1\n"), "{text}");
    assert!(text.contains("hookline_attempts_total{status_class=\"5xx\"} 1\n"), "{text}");

    Command::new("kill").arg("-TERM").arg(process.id().to_string()).status().unwrap();
    let exited = tokio::task::spawn_blocking(move || process.wait().unwrap()).await.unwrap();
    assert!(exited.success(), "hookline all did not shut down cleanly on SIGTERM");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    std::fs::remove_file(&log_path).unwrap();
    let lines: Vec<serde_json::Value> =
        logs.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    // Nothing went wrong, scraping /metrics (several times, above) included.
    assert!(lines.iter().all(|line| line["level"] != "ERROR"), "errors were logged:\n{logs}");
    // Every line written inside a service's span carries the trace id (the broker client's
    // own connection span belongs to no trace).
    let in_spans: Vec<_> = lines.iter().filter(|line| line["span"]["service.name"].is_string()).collect();
    assert!(in_spans.len() >= 3, "{logs}");
    for line in in_spans {
        assert!(line["trace_id"].as_str().is_some_and(|id| id.len() == 32), "no trace id on {line}");
    }
    let delivered: Vec<_> = lines.iter().filter(|line| line["message"] == "delivered").collect();
    assert_eq!(delivered.len(), 1, "{logs}");
    assert_eq!(delivered[0]["trace_id"], trace_id.as_str(), "the delivery's log line joins its trace");
    assert!(delivered[0]["span"]["delivery_id"].is_string(), "{}", delivered[0]);
    let retry = lines.iter().find(|line| line["message"] == "retry scheduled").expect("the retry was logged");
    assert_eq!(retry["trace_id"], trace_id.as_str());
    env.cleanup().await;
}
