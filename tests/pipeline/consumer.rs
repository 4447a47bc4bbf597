//! The consume loop every service shares, against the real broker: finished messages
//! are acked many at a time, never held for long behind one still running, and all
//! acked by a graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hookline_bus::consumer::{self, ConsumerOptions, Outcome};
use hookline_tests::{TestEnv, eventually};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::WAIT;

/// Publishes `bodies` to `queue` (confirmed).
async fn publish(env: &TestEnv, queue: &str, bodies: impl IntoIterator<Item = String>) {
    for body in bodies {
        env.bus.publisher.publish("", queue, body.as_bytes(), Default::default()).await.unwrap();
    }
}

/// Messages ready in `queue` (not delivered, or returned by a closed channel).
async fn ready(env: &TestEnv, queue: &str) -> u32 {
    let channel = env.bus.connection().unwrap().create_channel().await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let declared = channel.queue_declare(queue.into(), passive, FieldTable::default()).await.unwrap();
    let _ = channel.close(200, "counted".into()).await;
    declared.message_count()
}

/// How long the test consumers may be blocked with no progress before `/healthz` fails.
const STALL_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Consumes `queue` on a connection of its own with `handler`, prefetch `concurrency`.
fn start<H, F>(
    env: &TestEnv,
    queue: &str,
    concurrency: usize,
    handler: H,
) -> (CancellationToken, tokio::task::JoinHandle<hookline_bus::Result<()>>)
where
    H: Fn(Arc<hookline_bus::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    let shutdown = CancellationToken::new();
    let options = ConsumerOptions {
        service: "hookline-tests",
        metrics: env.metrics.clone(),
        queue: queue.to_owned(),
        tag: "acks-test".into(),
        concurrency,
        shutdown_grace: std::time::Duration::from_millis(200),
        watchdog: env.metrics.health().watchdog(format!("test consuming {queue}"), STALL_AFTER),
    };
    let (url, rejects, stop) = (env.settings.amqp_url().to_owned(), env.bus.reject_target(), shutdown.clone());
    let consuming = tokio::spawn(async move {
        let connection = hookline_bus::connect(&url, "hookline-tests-consumer").await?;
        let consumed = consumer::consume(&connection, options, rejects, stop, handler).await;
        let _ = connection.close(200, "done".into()).await;
        consumed
    });
    (shutdown, consuming)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_finished_behind_one_still_running_are_acked_without_it() {
    let env = TestEnv::new().await;
    let queue = env.bus.topology.failed_queue();
    publish(&env, &queue, std::iter::once("slow".to_owned()).chain((0..20).map(|n| format!("fast {n}")))).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let counted = handled.clone();
    // Prefetch 5: the broker delivers no more than 5 unacked messages, so the 20 fast
    // ones all get through only if they are acked while the slow one still runs.
    let (shutdown, consuming) = start(&env, &queue, 5, move |message| {
        let counted = counted.clone();
        async move {
            if message.data == b"slow" {
                std::future::pending::<()>().await;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            Outcome::Ack
        }
    });
    let all_fast = eventually(WAIT, || async { handled.load(Ordering::SeqCst) == 20 }).await;
    assert!(all_fast, "{} of 20 fast messages handled", handled.load(Ordering::SeqCst));
    shutdown.cancel();
    consuming.await.unwrap().unwrap();
    // A quorum queue takes back a closed channel's unacked messages a moment later.
    let returned = eventually(WAIT, || async { ready(&env, &queue).await >= 1 }).await;
    assert!(returned, "the unfinished message never went back to the queue");
    assert_eq!(ready(&env, &queue).await, 1, "only the unfinished message goes back to the queue");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_whose_every_handler_is_stuck_is_reported_wedged_once_past_its_stall_bound() {
    let env = TestEnv::new().await;
    let queue = env.bus.topology.failed_queue();
    publish(&env, &queue, (0..3).map(|n| format!("stuck {n}"))).await;
    let (shutdown, consuming) = start(&env, &queue, 2, move |message| async move {
        if message.data.starts_with(b"stuck") {
            std::future::pending::<()>().await;
        }
        Outcome::Ack
    });
    assert_eq!(env.metrics.health().live().await, Ok(()), "stuck for less than its stall bound");
    let wedged = eventually(WAIT, || async { env.metrics.health().live().await.is_err() }).await;
    assert!(wedged, "both places held by handlers that never finish, a third message waiting");
    let why = env.metrics.health().live().await.unwrap_err();
    assert!(why[0].contains(&format!("test consuming {queue} has made no progress")), "{why:?}");
    shutdown.cancel();
    consuming.await.unwrap().unwrap();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_message_is_acked_by_shutdown_and_a_retried_one_comes_back() {
    let env = TestEnv::new().await;
    let queue = env.bus.topology.failed_queue();
    publish(&env, &queue, (0..200).map(|n| format!("{n}"))).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let counted = handled.clone();
    let (shutdown, consuming) = start(&env, &queue, 32, move |message| {
        let counted = counted.clone();
        async move {
            // Message 7 fails once: it is nacked between messages acked together.
            if message.data == b"7" && !message.redelivered {
                return Outcome::Retry;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            Outcome::Ack
        }
    });
    let all = eventually(WAIT, || async { handled.load(Ordering::SeqCst) == 200 }).await;
    assert!(all, "{} of 200 handled", handled.load(Ordering::SeqCst));
    shutdown.cancel();
    // An ack for a message already settled would have closed the channel: an error here.
    consuming.await.unwrap().unwrap();
    assert_eq!(ready(&env, &queue).await, 0, "every handled message was acked");
    env.cleanup().await;
}
