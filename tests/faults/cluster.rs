//! A three-node RabbitMQ cluster on this machine (three node names, three ports), with
//! hookline's quorum queues replicated across it: stopping the node the services are
//! connected to in the middle of a stream loses nothing and sends nothing twice; the
//! services fail over to the other nodes `amqp.url` lists, with no restart.

use std::collections::BTreeSet;

use hookline_sandbox::broker::OwnBroker;
use hookline_tests::{Receiver, TestEnv, eventually};
use serde_json::json;

use crate::WAIT;

const EVENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_node_the_services_use_mid_stream_loses_nothing() {
    let nodes = OwnBroker::cluster(3).await;
    let urls = nodes.iter().map(OwnBroker::url).collect::<Vec<_>>().join(",");
    let env = crate::sandbox_on_broker(&urls).await;
    let receiver = Receiver::start().await;
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/hook")], &["job.created"])).await;
    let services = env.start();
    let publish = |n: usize| {
        let event = json!({"id": format!("e-{n}"), "type": "job.created", "organization": org.id, "data": {"n": n}});
        env.publish(event)
    };
    for n in 0..EVENTS / 2 {
        publish(n).await;
    }
    // The services connect to the first node that answers: the first listed.
    nodes[0].stop_app().await;
    assert!(eventually(WAIT * 2, || async { env.bus.is_connected() }).await, "the publisher failed over");
    for n in EVENTS / 2..EVENTS {
        publish(n).await;
    }
    let received = || {
        let requests = receiver.requests("/hook");
        let ids: BTreeSet<u64> = requests.iter().filter_map(|r| r.json()["payload"]["n"].as_u64()).collect();
        (ids.len(), requests.len())
    };
    let all = eventually(WAIT * 3, || async { received().0 == EVENTS }).await;
    let (distinct, requests) = received();
    assert!(all, "every event arrived: {distinct} of {EVENTS}");
    assert_eq!(requests, EVENTS, "and none twice");
    crate::still_running_then_stopped(services).await;
    env.cleanup().await;
}
