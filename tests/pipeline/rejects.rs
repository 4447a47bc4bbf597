use std::collections::BTreeSet;

use hookline_bus::codec::proto;
use hookline_bus::route;
use hookline_core::Environment;
use hookline_core::envelope::{Origin, UpstreamEvent};
use hookline_core::ids::{EventId, OrganizationId};
use hookline_store::repo::events;
use hookline_tests::{Receiver, TestEnv, eventually};
use prost::Message as _;
use serde_json::json;

use crate::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_go_to_the_rejected_queue_with_their_reason_and_good_ones_still_flow() {
    let env = TestEnv::with(&[("HOOKLINE__INGEST__MAX_EVENT_SIZE", "2048")]).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();

    env.publish_raw("job.created", b"this is not json", Some("application/json")).await;
    env.publish(json!({"organization": org.id, "data": {}})).await;
    env.publish(json!({"type": "job.exploded", "organization": org.id})).await;
    env.publish(json!({"type": "job.created", "organization": OrganizationId::generate()})).await;
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"blob": "x".repeat(4096)}})).await;
    env.publish_raw("job.created", b"<event/>", Some("text/xml")).await;
    // NUL characters, which PostgreSQL cannot store: refused at the door, not retried
    // for ever (nor holding back the events stored with them).
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"note": "a\u{0}b"}})).await;
    env.publish(json!({"type": "job.created", "organization": org.id, "actor": "\u{0}", "data": {}})).await;
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"jobId": "after"}})).await;
    // Garbage on an internal queue is rejected by the worker, not crashed on.
    env.bus.publisher.publish("", &env.bus.topology.delivery_queue(), b"\xff\xfe", Default::default()).await.unwrap();
    // A well-formed route message for an event the organisation does not have.
    let phantom = proto::RouteEvent {
        event_id: EventId::generate().to_string(),
        organization_id: org.id.to_string(),
        event_type: "job.created".into(),
        environment: "live".into(),
        ..Default::default()
    };
    route::send(&env.bus.publisher, &env.bus.topology, vec![phantom]).await.unwrap();

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_eq!(request.json()["payload"]["jobId"], "after");

    let reasons = std::sync::Mutex::new(Vec::new());
    let all_there = eventually(WAIT, || async {
        let taken = env.drain_rejected().await;
        let mut reasons = reasons.lock().unwrap();
        reasons.extend(taken.into_iter().map(|(reason, _)| reason));
        reasons.len() >= 10
    })
    .await;
    let reasons = reasons.into_inner().unwrap();
    assert!(all_there, "rejected: {reasons:?}");
    let reasons: BTreeSet<String> = reasons.into_iter().collect();
    let expected: BTreeSet<String> = [
        "malformed",
        "missing_type",
        "unknown_type",
        "unknown_organization",
        "too_large",
        "unsupported_content_type",
        "invalid_field",
        "unknown_event",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(reasons, expected);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM events", &[]).await, 1, "nothing bad was stored");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_route_message_that_cannot_be_routed_is_rejected_alone() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    let stored = UpstreamEvent {
        message_id: None,
        event_type: "job.created".into(),
        organization: org.id.clone(),
        environment: Environment::Live,
        occurred_at: chrono::Utc::now(),
        actor: None,
        team: None,
        data: hookline_core::payload::Payload::from_value(&json!({"jobId": "stored"})).unwrap(),
    };
    let stored_id = events::insert_synthetic(&env.pool, &stored, Origin::System).await.unwrap();
    let route_event = |event_id: String| proto::RouteEvent {
        event_id,
        organization_id: org.id.to_string(),
        event_type: "job.created".into(),
        environment: "live".into(),
        ..Default::default()
    };
    let phantom = route_event(EventId::generate().to_string());
    let garbled = route_event("not an event id".into());
    let batch = vec![phantom.clone(), route_event(stored_id.to_string()), garbled.clone()];
    route::send(&env.bus.publisher, &env.bus.topology, batch).await.unwrap();

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_eq!(request.json()["payload"]["jobId"], "stored", "the routable event of the batch is delivered");
    let rejected = std::sync::Mutex::new(Vec::new());
    let both = eventually(WAIT, || async {
        let taken = env.drain_rejected().await;
        let mut rejected = rejected.lock().unwrap();
        rejected.extend(taken);
        rejected.len() >= 2
    })
    .await;
    let mut rejected = rejected.into_inner().unwrap();
    assert!(both, "rejected: {rejected:?}");
    rejected.sort();
    let parts: Vec<(String, Vec<proto::RouteEvent>)> = rejected
        .into_iter()
        .map(|(reason, body)| (reason, proto::RouteEvents::decode(body.as_slice()).unwrap().events))
        .collect();
    assert_eq!(parts, [("malformed".to_owned(), vec![garbled]), ("unknown_event".to_owned(), vec![phantom])]);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM deliveries", &[]).await, 1);
    services.stop().await;
    env.cleanup().await;
}

/// The malformed upstream messages a careless or hostile publisher sends, each with the
/// reason it must be rejected for. `{org}` is the test organisation's id.
fn malformed_corpus() -> Vec<(Vec<u8>, &'static str, &'static str)> {
    let json = "application/json";
    let text = |s: &str| s.as_bytes().to_vec();
    let deep = format!(
        r#"{{"type": "job.created", "organization": "{{org}}", "data": {{"a": {}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let long = "x".repeat(300);
    let mut corpus = vec![
        (text("this is not json"), json, "malformed"),
        (text(""), json, "malformed"),
        (text("[]"), json, "malformed"),
        (text("null"), json, "malformed"),
        (text(r#""job.created""#), json, "malformed"),
        (text(r#"{"type": "job.created", "organization": "{org}""#), json, "malformed"),
        (text(r#"{"type": 5, "organization": "{org}"}"#), json, "malformed"),
        (text(r#"{"type": "job.created", "type": "job.created", "organization": "{org}"}"#), json, "malformed"),
        (
            b"{\"type\": \"job.created\", \"organization\": \"{org}\", \"data\": {\"a\": \"\xff\"}}".to_vec(),
            json,
            "malformed",
        ),
        (text(&deep), json, "invalid_field"),
        (vec![0xff, 0xff, 0xff], "application/x-protobuf", "malformed"),
        (text(r#"{"organization": "{org}", "data": {}}"#), json, "missing_type"),
        (text(r#"{"type": "  ", "organization": "{org}"}"#), json, "missing_type"),
        (text(r#"{"type": "job.exploded", "organization": "{org}"}"#), json, "unknown_type"),
        (text(r#"{"type": "webhook.ping", "organization": "{org}"}"#), json, "unknown_type"),
        (text(r#"{"type": "job.created"}"#), json, "missing_organization"),
        (text(r#"{"type": "job.created", "organization": "org_nope"}"#), json, "unknown_organization"),
        (
            text(r#"{"type": "job.created", "organization": "org_01j00000000000000000000000"}"#),
            json,
            "unknown_organization",
        ),
        (text(r#"{"type": "job.created", "organization": "{org}", "environment": "prod"}"#), json, "invalid_field"),
        (
            text(r#"{"type": "job.created", "organization": "{org}", "environment": "test\u0000"}"#),
            json,
            "invalid_field",
        ),
        (
            text(r#"{"type": "job.created", "organization": "{org}", "occurred_at": "yesterday"}"#),
            json,
            "invalid_field",
        ),
        (
            text(r#"{"type": "job.created", "organization": "{org}", "occurred_at": "2026-13-45T00:00:00Z"}"#),
            json,
            "invalid_field",
        ),
        (text(r#"{"type": "job.created", "organization": "{org}", "data": [1, 2]}"#), json, "invalid_field"),
        (text(r#"{"type": "job.created", "organization": "{org}", "data": "text"}"#), json, "invalid_field"),
        (
            text(r#"{"type": "job.created", "organization": "{org}", "data": {"note": "a\u0000b"}}"#),
            json,
            "invalid_field",
        ),
        (text(r#"{"type": "job.created", "organization": "{org}", "data": {"k\u0000": 1}}"#), json, "invalid_field"),
        (text(r#"{"type": "job.created", "organization": "{org}", "actor": "\u0000"}"#), json, "invalid_field"),
        (text(r#"{"type": "job.created", "organization": "{org}", "team": "t\u0000"}"#), json, "invalid_field"),
        (text(r#"{"type": "job.created", "organization": "{org}", "id": "m\u0000"}"#), json, "invalid_field"),
        (
            text(&format!(r#"{{"type": "job.created", "organization": "{{org}}", "actor": "{long}"}}"#)),
            json,
            "invalid_field",
        ),
        (
            text(&format!(r#"{{"type": "job.created", "organization": "{{org}}", "id": "{long}"}}"#)),
            json,
            "invalid_field",
        ),
        (
            text(&format!(
                r#"{{"type": "job.created", "organization": "{{org}}", "data": {{"b": "{}"}}}}"#,
                "x".repeat(4096)
            )),
            json,
            "too_large",
        ),
        (text("<event/>"), "text/xml", "unsupported_content_type"),
    ];
    corpus.push((
        text(r#"{"type": "job.created", "organization": "{org}", "data": {"a": 1}}"#),
        "text/plain",
        "unsupported_content_type",
    ));
    corpus
}

/// Every malformed message of the corpus lands in the rejected queue with its reason,
/// each alone, and every good event published among them is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_malformed_messages_is_rejected_message_by_message_and_good_ones_are_delivered() {
    let env = TestEnv::with(&[("HOOKLINE__INGEST__MAX_EVENT_SIZE", "2048")]).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();

    let corpus: Vec<(Vec<u8>, &str, &str)> = malformed_corpus()
        .into_iter()
        .map(|(body, content_type, reason)| (with_org(&body, org.id.as_str()), content_type, reason))
        .collect();
    assert!(corpus.len() >= 30);
    let mut good = 0;
    for (index, (body, content_type, _)) in corpus.iter().enumerate() {
        env.publish_raw("job.created", body, Some(content_type)).await;
        if index % 3 == 0 {
            env.publish(json!({"type": "job.created", "organization": org.id, "data": {"good": index}})).await;
            good += 1;
        }
    }

    let delivered = receiver.wait_for("/hook", good, WAIT).await;
    let mut seen: Vec<u64> =
        delivered.iter().map(|request| request.json()["payload"]["good"].as_u64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..corpus.len() as u64).step_by(3).collect::<Vec<_>>(), "every good event, once");
    let rejected = std::sync::Mutex::new(Vec::new());
    let all_there = eventually(WAIT, || async {
        let drained = env.drain_rejected().await;
        let mut rejected = rejected.lock().unwrap();
        rejected.extend(drained);
        rejected.len() >= corpus.len()
    })
    .await;
    let rejected = rejected.into_inner().unwrap();
    assert!(all_there, "{} of {} rejected", rejected.len(), corpus.len());
    assert_eq!(rejected.len(), corpus.len(), "each bad message rejected once");
    for (body, _, reason) in &corpus {
        let found = rejected.iter().find(|(_, rejected)| rejected == body).map(|(reason, _)| reason.as_str());
        assert_eq!(found, Some(*reason), "{}", String::from_utf8_lossy(&body[..body.len().min(120)]));
    }
    let stored: i64 = env.scalar("SELECT count(*) FROM events", &[]).await;
    assert_eq!(stored, good as i64, "nothing bad was stored");
    services.stop().await;
    env.cleanup().await;
}

/// `body` with every `{org}` replaced by `org`.
fn with_org(body: &[u8], org: &str) -> Vec<u8> {
    let mut replaced = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.windows(5).position(|w| w == b"{org}") {
        replaced.extend_from_slice(&rest[..at]);
        replaced.extend_from_slice(org.as_bytes());
        rest = &rest[at + 5..];
    }
    replaced.extend_from_slice(rest);
    replaced
}
