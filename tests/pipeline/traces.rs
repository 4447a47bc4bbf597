//! One event, one trace: spans of every service joined by parent links across the queue
//! hops (delay queue included), and the receiver handed the same trace.

use std::collections::HashMap;

use hookline_telemetry::memory_exporter::attribute;
use hookline_tests::{Receiver, Recorded, Reply, TestEnv, eventually, spans};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::SpanData;
use serde_json::json;

use crate::WAIT;

/// The trace id and parent span id a receiver was given in `traceparent`.
fn traceparent(request: &Recorded) -> (TraceId, SpanId) {
    let value = request.header("traceparent").expect("the delivery carries traceparent");
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent `{value}`");
    (TraceId::from_hex(parts[1]).unwrap(), SpanId::from_hex(parts[2]).unwrap())
}

/// The finished spans of one trace, by span id.
fn trace(trace_id: TraceId) -> HashMap<SpanId, SpanData> {
    spans()
        .spans()
        .into_iter()
        .filter(|span| span.span_context.trace_id() == trace_id)
        .map(|span| (span.span_context.span_id(), span))
        .collect()
}

fn service(span: &SpanData) -> String {
    attribute(span, "service.name").unwrap_or_default()
}

/// `span` and its ancestors up to the root, as `(service, span name)`.
fn lineage(trace: &HashMap<SpanId, SpanData>, span: &SpanData) -> Vec<(String, String)> {
    let mut chain = vec![(service(span), span.name.to_string())];
    let mut parent = span.parent_span_id;
    while let Some(next) = trace.get(&parent) {
        chain.push((service(next), next.name.to_string()));
        parent = next.parent_span_id;
    }
    chain
}

fn named<'a>(trace: &'a HashMap<SpanId, SpanData>, service_name: &str, span_name: &str) -> Vec<&'a SpanData> {
    trace.values().filter(|s| service(s) == service_name && s.name == span_name).collect()
}

fn has(chain: &[(String, String)], service_name: &str, span_name: &str) -> bool {
    chain.iter().any(|(service, name)| service == service_name && name == span_name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_failing_once_makes_one_trace_across_all_four_services() {
    let env = TestEnv::new().await; // retry delays 1s, 2s
    let receiver = Receiver::start().await;
    receiver.script("/hook", &[Reply::Status(503)]);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"jobId": "J-7"}})).await;

    let requests = receiver.wait_for("/hook", 2, WAIT).await;
    let (trace_id, first_parent) = traceparent(&requests[0]);
    let (retry_trace_id, second_parent) = traceparent(&requests[1]);
    assert_eq!(trace_id, retry_trace_id, "the retry continues the event's trace");
    let event_id = requests[0].json()["messageId"].as_str().unwrap().to_owned();

    // Spans end once their message is acked; wait for the second attempt's to close.
    let complete = eventually(WAIT, || async {
        let trace = trace(trace_id);
        named(&trace, "hookline-worker", "deliver").len() == 2
            && named(&trace, "hookline-scheduler", "schedule").len() == 1
            && trace.values().any(|s| s.name.starts_with("process "))
    })
    .await;
    let trace = trace(trace_id);
    let names: Vec<_> = trace.values().map(|s| (service(s), s.name.to_string())).collect();
    assert!(complete, "trace {trace_id} is incomplete: {names:?}");
    // Of the messages processed for the event only the upstream one is in its trace:
    // hookline's own messages may carry other events' work too, so each has a trace of
    // its own, linked from the span of this event's work in it (checked below).
    assert_eq!(trace.values().filter(|s| s.name.starts_with("process ")).count(), 1, "{names:?}");

    // One root: the ingest service taking the message from the events queue.
    let roots: Vec<_> = trace.values().filter(|s| !trace.contains_key(&s.parent_span_id)).collect();
    assert_eq!(roots.len(), 1, "one root, got {names:?}");
    assert_eq!(service(roots[0]), "hookline-ingest");
    assert_eq!(roots[0].parent_span_id, SpanId::INVALID, "the root has no parent anywhere");

    // Every service has its spans in this trace, with the identifiers operators search by.
    let ingest = named(&trace, "hookline-ingest", "ingest");
    let route = named(&trace, "hookline-router", "route");
    let schedule = named(&trace, "hookline-scheduler", "schedule");
    let mut deliver = named(&trace, "hookline-worker", "deliver");
    assert_eq!((ingest.len(), route.len(), schedule.len(), deliver.len()), (1, 1, 1, 2), "{names:?}");
    for span in [ingest[0], route[0], schedule[0], deliver[0], deliver[1]] {
        assert_eq!(attribute(span, "event_id").as_deref(), Some(event_id.as_str()), "{} has the event id", span.name);
    }
    assert_eq!(attribute(ingest[0], "event_type").as_deref(), Some("job.created"));
    assert_eq!(attribute(route[0], "organization").as_deref(), Some(org.id.as_str()));
    assert_eq!(attribute(schedule[0], "retry_delay").as_deref(), Some("1s"));
    assert_eq!(attribute(schedule[0], "error_kind").as_deref(), Some("http_status"));
    deliver.sort_by_key(|s| attribute(s, "attempt"));
    assert_eq!(attribute(deliver[0], "attempt").as_deref(), Some("1"));
    assert_eq!(attribute(deliver[0], "status_code").as_deref(), Some("503"));
    assert_eq!(attribute(deliver[1], "attempt").as_deref(), Some("2"));
    assert_eq!(attribute(deliver[1], "status_code").as_deref(), Some("200"));
    assert_eq!(attribute(deliver[1], "endpoint_host").as_deref(), Some("127.0.0.1"));
    assert!(attribute(deliver[1], "webhook_id").is_some_and(|id| id.starts_with("wh_")));
    assert!(attribute(deliver[1], "delivery_id").is_some());

    // The span that ingested the event is an ancestor of the router's and the scheduler's.
    for span in [route[0], schedule[0]] {
        let chain = lineage(&trace, span);
        assert!(has(&chain, "hookline-ingest", "ingest"), "{} descends from ingest: {chain:?}", span.name);
    }
    // Each hop's span links to the span that processed the message it came in: the route
    // message, the failed attempt's report, and the two delivery messages (the second
    // dead-lettered from the delay queue). Five messages processed in all.
    let hops = [
        (route[0], "hookline-router", ".route"),
        (schedule[0], "hookline-scheduler", ".failed"),
        (deliver[0], "hookline-worker", ".deliver"),
        (deliver[1], "hookline-worker", ".deliver"),
    ];
    let mut processed = std::collections::HashSet::new();
    for (span, service_name, queue) in hops {
        let linked: Vec<SpanId> = span.links.iter().map(|link| link.span_context.span_id()).collect();
        let found = eventually(WAIT, || async {
            spans().spans().into_iter().any(|s| {
                linked.contains(&s.span_context.span_id())
                    && service(&s) == service_name
                    && s.name.starts_with("process ")
                    && s.name.ends_with(queue)
            })
        })
        .await;
        assert!(found, "the {} span links to the span of the {queue} message it came in: {linked:?}", span.name);
        processed.extend(linked);
    }
    assert_eq!(processed.len(), 4, "four of hookline's own messages, each processed once");

    // The parent links cross every hop: ingest → router → worker, and for the retry
    // worker → scheduler → delay queue → worker.
    let first = lineage(&trace, deliver[0]);
    assert!(has(&first, "hookline-router", "route") && has(&first, "hookline-ingest", "ingest"), "{first:?}");
    assert!(!has(&first, "hookline-scheduler", "schedule"), "{first:?}");
    let second = lineage(&trace, deliver[1]);
    assert!(has(&second, "hookline-scheduler", "schedule"), "{second:?}");
    assert_eq!(second.iter().filter(|(_, name)| name == "deliver").count(), 2, "attempt 1 is an ancestor: {second:?}");
    assert!(has(&second, "hookline-ingest", "ingest"), "{second:?}");

    // Each receiver request hangs under its own attempt's client span.
    for (parent, attempt) in [(first_parent, deliver[0]), (second_parent, deliver[1])] {
        let request_span = trace.get(&parent).expect("traceparent names a span of the trace");
        assert_eq!(request_span.span_kind, opentelemetry::trace::SpanKind::Client);
        assert_eq!(request_span.parent_span_id, attempt.span_context.span_id());
    }

    // Nothing else carries this event: there is exactly one trace for it.
    let elsewhere = spans()
        .spans()
        .into_iter()
        .filter(|s| attribute(s, "event_id").as_deref() == Some(event_id.as_str()))
        .filter(|s| s.span_context.trace_id() != trace_id)
        .count();
    assert_eq!(elsewhere, 0);
    services.stop().await;
    env.cleanup().await;
}

const UPSTREAM_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const UPSTREAM_SPAN: &str = "00f067aa0ba902b7";
const UPSTREAM_STATE: &str = "upstream=t61rcWkgMzE";

fn upstream_traceparent() -> String {
    format!("00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_with_a_traceparent_continues_the_publishers_trace() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    let mut headers = FieldTable::default();
    headers.insert("traceparent".into(), AMQPValue::LongString(upstream_traceparent().into()));
    headers.insert("tracestate".into(), AMQPValue::LongString(UPSTREAM_STATE.into()));
    let properties = BasicProperties::default().with_content_type("application/json".into()).with_headers(headers);
    let body = json!({"type": "job.created", "organization": org.id, "data": {}}).to_string();
    env.bus
        .publisher
        .publish(&env.bus.topology.events_exchange(), "job.created", body.as_bytes(), properties)
        .await
        .unwrap();

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    let (trace_id, _) = traceparent(&request);
    assert_eq!(trace_id, TraceId::from_hex(UPSTREAM_TRACE).unwrap());
    assert_eq!(request.header("tracestate"), Some(UPSTREAM_STATE), "tracestate travels every hop to the receiver");
    let upstream = SpanId::from_hex(UPSTREAM_SPAN).unwrap();
    let continued = eventually(WAIT, || async {
        trace(trace_id).values().any(|s| s.parent_span_id == upstream && service(s) == "hookline-ingest")
    })
    .await;
    assert!(continued, "ingest's span is a child of the publisher's span");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_with_a_traceparent_continues_the_callers_trace() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    let api = env.start_api().await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events", api.base))
        .bearer_auth(&org.api_key)
        .header("traceparent", upstream_traceparent())
        .header("content-type", "application/json")
        .body(json!({"type": "job.created", "data": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    let (trace_id, _) = traceparent(&request);
    assert_eq!(trace_id, TraceId::from_hex(UPSTREAM_TRACE).unwrap());
    let upstream = SpanId::from_hex(UPSTREAM_SPAN).unwrap();
    let continued = eventually(WAIT, || async {
        trace(trace_id)
            .values()
            .any(|s| s.parent_span_id == upstream && service(s) == "hookline-api" && s.name == "POST /v1/events")
    })
    .await;
    assert!(continued, "the API's request span is a child of the caller's span");
    let ingested = trace(trace_id).values().any(|s| s.name == "ingest" && service(s) == "hookline-api");
    assert!(ingested, "over HTTP the API ingests the event itself");
    services.stop().await;
    env.cleanup().await;
}
