//! The router → worker hop in batches: the deliveries of events routed together travel
//! in one `DeliveryJobs` message, and the worker performs each job on its own, in its
//! own trace, rejecting only the jobs it can never perform.

use hookline_bus::codec::proto::{DeliveryJob, DeliveryJobs};
use hookline_bus::jobs;
use hookline_bus::message::BusMessage as _;
use hookline_core::ids::DeliveryId;
use hookline_store::repo::{deliveries, events};
use hookline_telemetry::memory_exporter::attribute;
use hookline_tests::{Receiver, TestEnv, eventually, spans};
use lapin::options::BasicGetOptions;
use opentelemetry::trace::{SpanId, TraceId};
use prost::Message as _;
use serde_json::json;

use crate::WAIT;
use crate::batching::{event, inserted, live_webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliveries_of_an_event_go_to_the_workers_in_one_message() {
    let env = TestEnv::new().await;
    let org = env.organization().await;
    let urls: Vec<String> = (0..3).map(|n| format!("http://127.0.0.1:9/{n}")).collect();
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    let services = env.start_without_worker();
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"n": 1}})).await;

    let channel = env.bus.connection().unwrap().create_channel().await.unwrap();
    let queue = env.bus.topology.delivery_queue();
    let taken = std::sync::Mutex::new(Vec::new());
    let arrived = eventually(WAIT, || async {
        let got = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
        let mut taken = taken.lock().unwrap();
        taken.extend(got.map(|message| message.delivery));
        !taken.is_empty()
    })
    .await;
    assert!(arrived, "no delivery message");
    let taken = taken.into_inner().unwrap();
    let message = &taken[0];
    assert_eq!(message.properties.kind().as_ref().map(|kind| kind.as_str()), Some(DeliveryJobs::TYPE));
    let batch = DeliveryJobs::decode(message.data.as_slice()).unwrap();
    let mut ids: Vec<String> = batch.jobs.iter().map(|job| job.delivery_id.clone()).collect();
    ids.sort();
    let mut stored: Vec<String> = {
        let client = env.pool.get().await.unwrap();
        client.query("SELECT id FROM deliveries", &[]).await.unwrap().iter().map(|row| row.get(0)).collect()
    };
    stored.sort();
    assert_eq!(ids, stored, "one message with a job for each of the event's three deliveries");
    let endpoints: Vec<(String, String, String)> = {
        let client = env.pool.get().await.unwrap();
        let rows = client.query("SELECT id, endpoint_id, event_id FROM deliveries", &[]).await.unwrap();
        rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect()
    };
    for job in &batch.jobs {
        assert_eq!(job.attempt, 1);
        assert!(job.traceparent.is_some(), "each job carries its event's trace context: {job:?}");
        // And what the worker would otherwise read back: the event and the endpoint.
        let prepared = job.prepared.as_ref().expect("a new delivery's job carries its event");
        let (_, endpoint, event) = endpoints.iter().find(|(id, _, _)| *id == job.delivery_id).unwrap();
        assert_eq!((&prepared.endpoint_id, &prepared.event_id), (endpoint, event));
        assert_eq!(prepared.organization_id, org.id.as_str());
        assert_eq!((prepared.event_type.as_str(), prepared.environment.as_str()), ("job.created", "live"));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&prepared.data).unwrap(), json!({"n": 1}));
    }

    // An event whose data is large leaves it to the worker to read.
    let large = "x".repeat(deliveries::SNAPSHOT_MAX_BYTES as usize * 4);
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {"large": large}})).await;
    let more = eventually(WAIT, || async {
        let got = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
        let Some(message) = got else { return false };
        let batch = DeliveryJobs::decode(message.delivery.data.as_slice()).unwrap();
        assert!(batch.jobs.iter().all(|job| job.prepared.is_none()), "large data travelled: {:?}", batch.jobs.len());
        true
    })
    .await;
    assert!(more, "no delivery message for the large event");
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_attempt_is_sent_as_its_job_describes_it_once_the_endpoint_is_known() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/a")], &["job.created"])).await;
    let webhook = live_webhook(&env, &org.id).await;
    let targets = vec![(webhook.id.clone(), webhook.endpoints[0].clone())];
    let mut created = Vec::new();
    for _ in 0..2 {
        let stored = events::insert(&env.pool, &event(&org.id, None)).await.unwrap();
        let event_id = inserted(&stored);
        created.push((
            event_id.clone(),
            deliveries::create_for_event(&env.pool, &event_id, &org.id, &targets).await.unwrap().remove(0),
        ));
    }
    let services = env.start();
    // The worker keeps targets in memory only while it listens for changes to them (the
    // router listens too: two listeners).
    let listening = eventually(WAIT, || async {
        env.scalar::<i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            &[],
        )
        .await
            >= 2
    })
    .await;
    assert!(listening, "the services listen for configuration changes");
    let bus = &env.bus;
    let send =
        |job: DeliveryJob| async move { jobs::to_workers(&bus.publisher, &bus.topology, vec![job]).await.unwrap() };
    // The first job carries nothing: the worker loads it, and learns the endpoint.
    send(DeliveryJob { delivery_id: created[0].1.to_string(), attempt: 1, ..Default::default() }).await;
    assert_eq!(receiver.wait_for("/a", 1, WAIT).await.len(), 1);

    // The second carries its delivery, with data unlike the stored event's: what the
    // endpoint receives shows the worker sent the job's and did not read it back.
    let prepared = hookline_bus::codec::proto::PreparedJob {
        organization_id: org.id.to_string(),
        endpoint_id: webhook.endpoints[0].to_string(),
        event_id: created[1].0.to_string(),
        event_type: "job.created".into(),
        environment: "live".into(),
        occurred_at_micros: chrono::Utc::now().timestamp_micros(),
        data: r#"{"from":"job"}"#.into(),
    };
    send(DeliveryJob {
        delivery_id: created[1].1.to_string(),
        attempt: 1,
        prepared: Some(prepared),
        ..Default::default()
    })
    .await;
    let received = receiver.wait_for("/a", 2, WAIT).await;
    assert_eq!(received.len(), 2);
    let payloads: Vec<serde_json::Value> = received.iter().map(|r| r.json()["payload"].clone()).collect();
    assert_eq!(payloads[0], json!({"key": null}), "the loaded delivery sends the stored data");
    assert_eq!(payloads[1], json!({"from": "job"}), "the prepared job sends what it carries");
    // Recorded once the receiver has answered: wait for the second record's commit.
    let both = eventually(WAIT, || async { env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await >= 2 }).await;
    assert!(both, "both attempts are recorded");
    assert_eq!(env.scalar::<i64>("SELECT count(*) FROM attempts", &[]).await, 2);
    services.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivers_each_job_in_its_own_trace_and_rejects_only_the_unusable_ones() {
    let env = TestEnv::new().await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    let urls = [receiver.url("/a"), receiver.url("/b")];
    env.create_webhook(TestEnv::webhook(&org.id, &urls, &["job.created"])).await;
    let stored = events::insert(&env.pool, &event(&org.id, None)).await.unwrap();
    let webhook = live_webhook(&env, &org.id).await;
    let targets: Vec<_> = webhook.endpoints.iter().map(|endpoint| (webhook.id.clone(), endpoint.clone())).collect();
    let created = deliveries::create_for_event(&env.pool, &inserted(&stored), &org.id, &targets).await.unwrap();

    let traces: Vec<(TraceId, SpanId)> =
        (1..=2u8).map(|n| (TraceId::from_bytes([n; 16]), SpanId::from_bytes([n; 8]))).collect();
    let job = |delivery_id: String, trace: Option<(TraceId, SpanId)>| DeliveryJob {
        delivery_id,
        attempt: 1,
        traceparent: trace.map(|(trace, span)| format!("00-{trace}-{span}-01")),
        ..Default::default()
    };
    let unknown = DeliveryId::generate().to_string();
    let batch = vec![
        job(created[0].to_string(), Some(traces[0])),
        job(unknown.clone(), None),
        job("not-a-delivery-id".into(), None),
        job(created[1].to_string(), Some(traces[1])),
    ];
    jobs::to_workers(&env.bus.publisher, &env.bus.topology, batch).await.unwrap();
    let services = env.start();

    assert_eq!(receiver.wait_for("/a", 1, WAIT).await.len(), 1);
    assert_eq!(receiver.wait_for("/b", 1, WAIT).await.len(), 1);
    let rejected = std::sync::Mutex::new(Vec::new());
    let both = eventually(WAIT, || async {
        let drained = env.drain_rejected().await;
        let mut rejected = rejected.lock().unwrap();
        rejected.extend(drained);
        rejected.len() >= 2
    })
    .await;
    let rejected = rejected.into_inner().unwrap();
    assert!(both, "rejected: {rejected:?}");
    let mut parts: Vec<(String, Vec<String>)> = rejected
        .iter()
        .map(|(reason, body)| {
            let part = DeliveryJobs::decode(body.as_slice()).expect("a rejected part is a batch of one");
            (reason.clone(), part.jobs.into_iter().map(|job| job.delivery_id).collect())
        })
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        [
            ("malformed".to_owned(), vec!["not-a-delivery-id".to_owned()]),
            ("unknown_delivery".to_owned(), vec![unknown])
        ]
    );

    // Each delivered job's attempt hangs under the span its job names.
    for (delivery, (trace, parent)) in created.iter().zip(&traces) {
        let found = eventually(WAIT, || async {
            spans().spans().iter().any(|span| {
                span.name == "deliver"
                    && attribute(span, "delivery_id").as_deref() == Some(delivery.as_str())
                    && span.span_context.trace_id() == *trace
                    && span.parent_span_id == *parent
            })
        })
        .await;
        assert!(found, "no deliver span of {delivery} under {trace}/{parent}");
    }
    services.stop().await;
    env.cleanup().await;
}
