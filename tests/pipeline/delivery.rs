use std::time::Duration;

use hookline_core::delivery::DeliveryStatus;
use hookline_core::ids::OrganizationId;
use hookline_tests::{Receiver, TestEnv};
use serde_json::json;

use crate::WAIT;

fn event(org: &OrganizationId, event_type: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"type": event_type, "organization": org, "data": data})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_delivered_signed_with_the_documented_body() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let webhook = env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["report.created"])).await;
    let services = env.start();
    env.publish(json!({
        "type": "report.created", "organization": org.id, "occurred_at": "2026-03-04T05:06:07Z",
        "data": {"resourceId": 12301, "path": "/reports/12301"}
    }))
    .await;

    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request.header("user-agent").unwrap().starts_with("hookline/"));
    let verifier = standardwebhooks::Webhook::new(&webhook.signing_secret).unwrap();
    verifier.verify(&request.body, &request.headers).expect("signature verifies with the standardwebhooks crate");
    let body = request.json();
    let message_id = body["messageId"].as_str().unwrap().to_owned();
    assert!(message_id.starts_with("evt_"));
    assert_eq!(request.header("webhook-id"), Some(message_id.as_str()));
    assert_eq!(
        body,
        json!({
            "messageId": message_id, "organizationId": org.id.as_str(), "eventCode": "report.created", "eventName": "An Inspection report is uploaded",
            "occurredAt": "2026-03-04T05:06:07.000Z", "environment": "live",
            "payload": {"resourceId": 12301, "path": "/reports/12301"}
        })
    );
    // A different secret does not verify: the check above can fail.
    let other = standardwebhooks::Webhook::new(hookline_core::signing::SigningSecret::generate().expose()).unwrap();
    assert!(other.verify(&request.body, &request.headers).is_err());

    let settled = hookline_tests::eventually(WAIT, || async {
        env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Succeeded
    })
    .await;
    assert!(settled, "delivery is recorded as succeeded");
    let (attempts, status_code): (i64, Option<i32>) = (
        env.scalar("SELECT count(*) FROM attempts", &[]).await,
        env.scalar("SELECT status_code FROM attempts WHERE attempt_number = 1", &[]).await,
    );
    assert_eq!((attempts, status_code), (1, Some(200)));
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reaches_every_webhook_and_every_endpoint() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/a")], &["job.created"])).await;
    let mut two_endpoints = TestEnv::webhook(&org.id, &[receiver.url("/b1"), receiver.url("/b2")], &["job.created"]);
    two_endpoints.endpoints[1].method = Some("PUT".into());
    env.create_webhook(two_endpoints).await;
    let services = env.start();
    env.publish(event(&org.id, "job.created", json!({"jobId": 1}))).await;

    for path in ["/a", "/b1", "/b2"] {
        receiver.wait_for(path, 1, WAIT).await;
    }
    assert_eq!(receiver.requests("/b2")[0].method, "PUT");
    let ids: Vec<String> =
        ["/a", "/b1", "/b2"].iter().map(|p| receiver.requests(p)[0].header("webhook-id").unwrap().to_owned()).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "every endpoint gets the same message id");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM deliveries", &[]).await, 3);
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_deleted_foreign_and_wrong_environment_webhooks_receive_nothing() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let other_org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/control")], &["job.created"])).await;
    let mut inactive = TestEnv::webhook(&org.id, &[receiver.url("/inactive")], &["job.created"]);
    inactive.active = false;
    env.create_webhook(inactive).await;
    let deleted = env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/deleted")], &["job.created"])).await;
    assert!(hookline_store::repo::webhooks::changes::soft_delete(&env.pool, &org.id, &deleted.id).await.unwrap());
    env.create_webhook(TestEnv::webhook(&other_org.id, &[receiver.url("/foreign")], &["job.created"])).await;
    let mut test_webhook = TestEnv::webhook(&org.id, &[receiver.url("/test-env")], &["job.created"]);
    test_webhook.test = true;
    env.create_webhook(test_webhook).await;
    let services = env.start();

    env.publish(event(&org.id, "job.created", json!({}))).await;
    receiver.wait_for("/control", 1, WAIT).await;
    // A test event reaches the test webhook only: proof the environment check works both ways.
    env.publish(json!({"type": "job.created", "organization": org.id, "environment": "test", "data": {}})).await;
    receiver.wait_for("/test-env", 1, WAIT).await;

    assert_eq!(receiver.requests("/control").len(), 1, "the live webhook got no test event");
    for path in ["/inactive", "/deleted", "/foreign"] {
        assert!(receiver.requests(path).is_empty(), "{path} received a delivery");
    }
    assert_eq!(receiver.requests("/test-env").len(), 1);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM deliveries", &[]).await, 2);
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_wildcards_and_actor_and_team_filters_select_events() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/jobs")], &["job.*"])).await;
    let mut for_login = TestEnv::webhook(&org.id, &[receiver.url("/actor")], &["job.*", "estimate.*"]);
    for_login.actor = Some("u-1".into());
    env.create_webhook(for_login).await;
    let mut team = TestEnv::webhook(&org.id, &[receiver.url("/team")], &["estimate.created"]);
    team.team = Some("roofing".into());
    env.create_webhook(team).await;
    let services = env.start();

    let publish = |event_type: &str, actor: Option<&str>, team: Option<&str>, n: u32| json!({"type": event_type, "organization": org.id, "actor": actor, "team": team, "data": {"n": n}});
    env.publish(publish("job.created", Some("u-2"), None, 1)).await;
    env.publish(publish("job.assigned", Some("u-1"), None, 2)).await;
    env.publish(publish("estimate.created", Some("u-1"), Some("roofing"), 3)).await;
    env.publish(publish("estimate.created", None, Some("plumbing"), 4)).await;
    env.publish(publish("report.created", Some("u-1"), Some("roofing"), 5)).await;

    receiver.wait_for("/jobs", 2, WAIT).await;
    receiver.wait_for("/actor", 2, WAIT).await;
    receiver.wait_for("/team", 1, WAIT).await;
    // Everything published has been routed once the counts settle; give stragglers a moment.
    let routed = hookline_tests::eventually(WAIT, || async {
        env.scalar::<i64>("SELECT count(*) FROM events WHERE routed_at IS NOT NULL", &[]).await == 5
    })
    .await;
    assert!(routed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let numbers = |path: &str| -> Vec<u64> {
        let mut n: Vec<u64> =
            receiver.requests(path).iter().map(|r| r.json()["payload"]["n"].as_u64().unwrap()).collect();
        n.sort();
        n
    };
    assert_eq!(numbers("/jobs"), vec![1, 2], "job.* selects every job event and nothing else");
    assert_eq!(numbers("/actor"), vec![2, 3], "only events acted by u-1");
    assert_eq!(numbers("/team"), vec![3], "only the roofing team's estimate");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_published_twice_is_delivered_once() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created", "job.updated"])).await;
    let services = env.start();
    let duplicate = json!({"id": "order-42", "type": "job.created", "organization": org.id, "data": {"n": 1}});
    env.publish(duplicate.clone()).await;
    env.publish(duplicate).await;
    // The same key in another organisation is a different event.
    let other = env.organization().await;
    env.create_webhook(TestEnv::webhook(&other.id, &[receiver.url("/other")], &["job.created"])).await;
    env.publish(json!({"id": "order-42", "type": "job.created", "organization": other.id, "data": {}})).await;
    // A control event published after both copies: once it is delivered, so would a second copy be.
    env.publish(json!({"type": "job.updated", "organization": org.id, "data": {"n": 2}})).await;

    receiver.wait_for("/hook", 2, WAIT).await;
    receiver.wait_for("/other", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = receiver.requests("/hook");
    let created = requests.iter().filter(|r| r.json()["eventCode"] == "job.created").count();
    assert_eq!(created, 1, "the duplicate was delivered again");
    let stored: i64 = env
        .scalar(
            "SELECT count(*) FROM events WHERE message_id = 'order-42' AND organization_id = $1",
            &[&org.id.as_str()],
        )
        .await;
    assert_eq!(stored, 1);
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_events_are_delivered_like_json_ones() {
    use prost::Message as _;
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["report.file_ready"])).await;
    let services = env.start();
    let data = json!({"resourceId": 7, "path": "/reports/7/file"});
    let message = hookline_bus::codec::proto::UpstreamEvent {
        r#type: "report.file_ready".into(),
        organization: org.id.to_string(),
        data: Some(hookline_bus::codec::json_to_struct(data.as_object().unwrap())),
        ..Default::default()
    };
    env.publish_raw("report.file_ready", &message.encode_to_vec(), Some("application/x-protobuf")).await;
    let request = receiver.wait_for("/hook", 1, WAIT).await.remove(0);
    assert_eq!(request.json()["payload"], data);
    assert_eq!(request.json()["eventName"], "An Inspection report file is ready to view");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_job_for_a_settled_delivery_sends_nothing() {
    use hookline_bus::codec::proto::DeliveryJob;
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created", "job.updated"])).await;
    let services = env.start();
    env.publish(event(&org.id, "job.created", json!({}))).await;
    receiver.wait_for("/hook", 1, WAIT).await;
    let settled = hookline_tests::eventually(WAIT, || async {
        env.scalar::<DeliveryStatus>("SELECT status FROM deliveries", &[]).await == DeliveryStatus::Succeeded
    })
    .await;
    assert!(settled);
    let delivery_id: String = env.scalar("SELECT id FROM deliveries", &[]).await;
    // A redelivered copy of the job, and a stray later attempt, as a recovery path might publish.
    let jobs: Vec<DeliveryJob> = (1..=2)
        .map(|attempt| DeliveryJob { delivery_id: delivery_id.clone(), attempt, manual: false, ..Default::default() })
        .collect();
    let topology = &env.bus.topology;
    hookline_bus::jobs::to_workers(&env.bus.publisher, topology, jobs).await.unwrap();
    // A control event behind the duplicates in the same queue.
    env.publish(event(&org.id, "job.updated", json!({}))).await;
    receiver.wait_for("/hook", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let codes: Vec<String> =
        receiver.requests("/hook").iter().map(|r| r.json()["eventCode"].as_str().unwrap().to_owned()).collect();
    assert_eq!(codes, vec!["job.created", "job.updated"]);
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts WHERE delivery_id = $1", &[&delivery_id]).await, 1);
    services.stop().await;
    env.cleanup().await;
}

/// A webhook platform must not change a customer's data: numbers beyond 2^64, long
/// decimals, `-0`, exponents, key order and spacing reach the receiver as published,
/// whether the job carries the payload (small) or the worker reads it (over 8 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_is_delivered_exactly_as_published() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let webhook = env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    let api = env.start_api().await;
    let numbers = r#"{"z": 123456789012345678901234567890, "neg": -0, "dec": 0.1000000000000000000000000000001,
        "exp": 1E400, "big": -18446744073709551617, "same": 1.50, "a": [1.0, 2e-400]}"#;
    let padded = format!(r#"{{"z": 98765432109876543210987654321, "neg": -0.0, "pad": "{}"}}"#, "x".repeat(10_000));
    // Over AMQP, and through `POST /v1/events`.
    let event = format!(r#"{{"type": "job.created", "organization": "{}", "data": {numbers}}}"#, org.id);
    env.publish_raw("job.created", event.as_bytes(), Some("application/json")).await;
    let event = format!(r#"{{"type": "job.created", "data": {padded}}}"#);
    let (status, answer) = api.call_text("POST", "/v1/events", Some(&org.api_key), Some(event)).await;
    assert_eq!(status, 202, "{answer}");

    let requests = receiver.wait_for("/hook", 2, WAIT).await;
    for data in [numbers, padded.as_str()] {
        let delivered = format!(r#""payload":{data}}}"#);
        let found = requests.iter().any(|request| request.body.ends_with(delivered.as_bytes()));
        assert!(found, "payload not delivered as published: {data:.200}");
        let stored: i64 = env.scalar("SELECT count(*) FROM events WHERE data::text = $1", &[&data]).await;
        assert_eq!(stored, 1, "stored as published");
    }
    // And the log shows it as published.
    let (_, page) = api.call("GET", &format!("/v1/webhooks/{}/deliveries", webhook.id), Some(&org.api_key), None).await;
    let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|line| line["id"].as_str().unwrap()).collect();
    let mut shown = String::new();
    for id in ids {
        shown += &api.call_text("GET", &format!("/v1/deliveries/{id}"), Some(&org.api_key), None).await.1;
    }
    for data in [numbers, padded.as_str()] {
        assert!(shown.contains(&format!(r#""payload":{data}"#)), "the log changed the payload: {data:.200}");
    }
    drop(api);
    services.stop().await;
    env.cleanup().await;
}
