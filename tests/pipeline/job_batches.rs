//! The router → worker hop in batches: the deliveries of events routed together travel
//! in one `DeliveryJobs` message, and the worker performs each job on its own, in its
//! own trace, rejecting only the jobs it can never perform.

use hookline_bus::codec::proto::{DeliveryJob, DeliveryJobs};
use hookline_bus::jobs::{self, DELIVERY_JOBS_TYPE};
use hookline_bus::topology::JOB_ROUTING_KEY;
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
    env.publish(json!({"type": "job.created", "organization": org.id, "data": {}})).await;

    let channel = env.bus.connection.create_channel().await.unwrap();
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
    assert_eq!(message.properties.kind().as_ref().map(|kind| kind.as_str()), Some(DELIVERY_JOBS_TYPE));
    let batch = DeliveryJobs::decode(message.data.as_slice()).unwrap();
    let mut ids: Vec<String> = batch.jobs.iter().map(|job| job.delivery_id.clone()).collect();
    ids.sort();
    let mut stored: Vec<String> = {
        let client = env.pool.get().await.unwrap();
        client.query("SELECT id FROM deliveries", &[]).await.unwrap().iter().map(|row| row.get(0)).collect()
    };
    stored.sort();
    assert_eq!(ids, stored, "one message with a job for each of the event's three deliveries");
    for job in &batch.jobs {
        assert_eq!(job.attempt, 1);
        assert!(job.traceparent.is_some(), "each job carries its event's trace context: {job:?}");
    }
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
    let topology = &env.bus.topology;
    env.bus
        .publisher
        .publish(&topology.delivery_exchange(), JOB_ROUTING_KEY, &jobs::encode(batch), jobs::properties())
        .await
        .unwrap();
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
