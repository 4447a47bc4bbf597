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
        data: json!({"jobId": "stored"}),
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
