//! `/metrics` after a known workload shows exactly that workload.

use hookline_tests::{Receiver, Reply, TestEnv, eventually};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::WAIT;

/// The value of the sample `series` (name and labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_workload() {
    let env = TestEnv::new().await; // retry delays 1s, 2s
    let receiver = Receiver::start().await;
    // The first three requests to /flaky fail once each; /down always fails.
    receiver.script("/flaky", &[Reply::Status(500), Reply::Status(502), Reply::Status(503)]);
    receiver.always("/down", Reply::Status(500));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/ok")], &["job.created"])).await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/flaky")], &["job.created"])).await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/down")], &["report.created"])).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop_metrics = CancellationToken::new();
    tokio::spawn(hookline_telemetry::serve_metrics(listener, env.metrics.clone(), stop_metrics.clone()));
    let services = env.start();

    // 5 events × 2 webhooks, 1 event × 1 failing webhook, 2 bad messages, 1 duplicate.
    for n in 0..5 {
        env.publish(json!({"id": format!("job-{n}"), "type": "job.created", "organization": org.id})).await;
    }
    env.publish(json!({"id": "job-0", "type": "job.created", "organization": org.id})).await;
    env.publish(json!({"type": "report.created", "organization": org.id})).await;
    env.publish_raw("job.created", b"not json", Some("application/json")).await;
    env.publish(json!({"type": "job.exploded", "organization": org.id})).await;

    let settled = eventually(WAIT, || async {
        let text = scrape(&base).await;
        sample(&text, r#"hookline_deliveries_completed_total{outcome="succeeded"}"#) == Some(10.0)
            && sample(&text, r#"hookline_deliveries_completed_total{outcome="failed"}"#) == Some(1.0)
    })
    .await;
    let text = scrape(&base).await;
    assert!(settled, "the workload did not settle:\n{text}");
    let prefix = &env.settings.amqp.prefix;
    let expected = [
        (r#"hookline_events_ingested_total{source="amqp"}"#.to_owned(), 6.0),
        (format!(r#"hookline_messages_rejected_total{{queue="{prefix}.ingest",reason="malformed"}}"#), 1.0),
        (format!(r#"hookline_messages_rejected_total{{queue="{prefix}.ingest",reason="unknown_type"}}"#), 1.0),
        ("hookline_deliveries_created_total".to_owned(), 11.0),
        (r#"hookline_deliveries_completed_total{outcome="succeeded"}"#.to_owned(), 10.0),
        (r#"hookline_deliveries_completed_total{outcome="failed"}"#.to_owned(), 1.0),
        // 10 first attempts + 3 flaky retries + 3 attempts to /down.
        (r#"hookline_attempts_total{status_class="2xx"}"#.to_owned(), 10.0),
        (r#"hookline_attempts_total{status_class="5xx"}"#.to_owned(), 6.0),
        ("hookline_attempt_duration_seconds_count".to_owned(), 16.0),
        ("hookline_delivery_latency_seconds_count".to_owned(), 10.0),
        (r#"hookline_retries_scheduled_total{delay="1s"}"#.to_owned(), 4.0),
        (r#"hookline_retries_scheduled_total{delay="2s"}"#.to_owned(), 1.0),
        ("hookline_attempts_in_flight".to_owned(), 0.0),
        (format!(r#"hookline_queue_messages{{queue="{prefix}.rejected"}}"#), 2.0),
        (format!(r#"hookline_queue_messages{{queue="{prefix}.deliver"}}"#), 0.0),
        (format!(r#"hookline_queue_messages{{queue="{prefix}.retry.1s"}}"#), 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    // Group commit: the six events and the duplicate went through the store statement,
    // the six events through the router's, and every batched statement was timed once.
    let batch = |series: &str, statement: &str| {
        sample(&text, &format!(r#"hookline_batch_{series}{{statement="{statement}"}}"#))
    };
    assert_eq!(batch("rows_sum", "store_events"), Some(7.0), "{text}");
    assert_eq!(batch("rows_sum", "create_deliveries"), Some(6.0), "{text}");
    for statement in ["store_events", "create_deliveries", "settle_deliveries", "route_message"] {
        let statements = batch("rows_count", statement).unwrap_or_default();
        assert!(statements >= 1.0, "no {statement} batch in\n{text}");
        assert_eq!(batch("seconds_count", statement), Some(statements), "each {statement} batch timed once");
    }
    assert_eq!(receiver.requests("/ok").len() + receiver.requests("/flaky").len(), 13);
    services.stop().await;
    stop_metrics.cancel();
    env.cleanup().await;
}
