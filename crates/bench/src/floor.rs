//! What the machine itself can do, measured in the same run as hookline: the broker with
//! confirms and manual acks, the database inserting rows, HTTP to the sink, and a bare
//! pipeline doing the least a delivery needs (consume, POST, insert a row, ack).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_lite::StreamExt as _;
use hookline_sandbox::Sandbox;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};

use crate::sink::Sink;
use crate::usage::{CpuTimes, Latency};

/// Operations per second of each floor.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Floor {
    /// Messages per second published with confirms and consumed with manual acks.
    pub broker: f64,
    /// Rows per second, one INSERT per row, 16 connections.
    pub insert_single: f64,
    /// Rows per second, 500 rows per INSERT.
    pub insert_batched: f64,
    /// Requests per second to the sink, keep-alive, 64 at a time.
    pub http: f64,
    /// Deliveries per second of the bare pipeline.
    pub pipeline: f64,
}

/// Publishes in flight at once (confirms outstanding).
const CONFIRM_WINDOW: usize = 1000;
/// Consumer prefetch and concurrency of the bare pipeline.
const PREFETCH: u16 = 256;

/// Measures every floor with `messages` operations each.
pub(crate) async fn measure(messages: u64) -> anyhow::Result<Floor> {
    let env = Sandbox::new().await;
    let sink = Sink::start(Instant::now(), 0).await?;
    let connection = &*env.bus.connection()?;
    let prefix = &env.settings.amqp.prefix;
    eprintln!("floor: broker");
    let broker = broker(connection, &format!("{prefix}.floor.broker"), messages).await?;
    eprintln!("floor: PostgreSQL inserts");
    let (insert_single, insert_batched) = inserts(&env, messages).await?;
    eprintln!("floor: HTTP");
    let http = http(&sink, messages).await?;
    eprintln!("floor: bare pipeline");
    let pipeline = pipeline(&env, &sink, &format!("{prefix}.floor.pipeline"), messages).await?;
    env.cleanup().await;
    Ok(Floor { broker, insert_single, insert_batched, http, pipeline })
}

/// A durable quorum queue, like hookline's work queues.
async fn declare(channel: &Channel, queue: &str) -> anyhow::Result<()> {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.into(), options, arguments).await?;
    Ok(())
}

/// Publishes `count` persistent messages with at most `CONFIRM_WINDOW` unconfirmed.
async fn publish_confirmed(connection: &Connection, queue: &str, count: u64, body: &[u8]) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut pending = VecDeque::with_capacity(CONFIRM_WINDOW);
    for _ in 0..count {
        if pending.len() == CONFIRM_WINDOW
            && let Some(confirm) = pending.pop_front()
        {
            confirm.await?;
        }
        let properties = BasicProperties::default().with_delivery_mode(2);
        pending.push_back(
            channel.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, properties).await?,
        );
    }
    for confirm in pending {
        confirm.await?;
    }
    Ok(())
}

async fn broker(connection: &Connection, queue: &str, count: u64) -> anyhow::Result<f64> {
    let channel = connection.create_channel().await?;
    declare(&channel, queue).await?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(queue.into(), "floor".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let started = Instant::now();
    let consuming = tokio::spawn(async move {
        let mut seen = 0;
        while seen < count {
            let Some(delivery) = consumer.next().await else { break };
            delivery?.ack(BasicAckOptions::default()).await?;
            seen += 1;
        }
        Ok::<_, lapin::Error>(())
    });
    publish_confirmed(connection, queue, count, &[b'x'; 256]).await?;
    consuming.await??;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    remove(&channel, queue, "floor").await?;
    Ok(rate)
}

/// Cancels the consumer, then deletes its queue: RabbitMQ closes the whole connection
/// with INTERNAL_ERROR when a cancel arrives for a quorum queue already deleted.
async fn remove(channel: &Channel, queue: &str, consumer: &str) -> anyhow::Result<()> {
    channel.basic_cancel(consumer.into(), BasicCancelOptions::default()).await?;
    channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
    channel.close(200, "floor measured".into()).await?;
    Ok(())
}

async fn inserts(env: &Sandbox, count: u64) -> anyhow::Result<(f64, f64)> {
    let client = env.pool.get().await?;
    client.batch_execute("CREATE TABLE floor_rows (id bigserial PRIMARY KEY, seq bigint, body text)").await?;
    drop(client);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (pool, next) = (env.pool.clone(), next.clone());
        tasks.spawn(async move {
            let client = pool.get().await?;
            let statement = client.prepare("INSERT INTO floor_rows (seq, body) VALUES ($1, $2)").await?;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                client.execute(&statement, &[&1_i64, &"row"]).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let single = count as f64 / started.elapsed().as_secs_f64();
    let client = env.pool.get().await?;
    let started = Instant::now();
    let mut inserted = 0;
    while inserted < count {
        let rows = (count - inserted).min(500);
        let seqs: Vec<i64> = (0..rows as i64).collect();
        let bodies: Vec<&str> = vec!["row"; rows as usize];
        client
            .execute(
                "INSERT INTO floor_rows (seq, body) SELECT * FROM unnest($1::bigint[], $2::text[])",
                &[&seqs, &bodies],
            )
            .await?;
        inserted += rows;
    }
    Ok((single, count as f64 / started.elapsed().as_secs_f64()))
}

async fn http(sink: &Sink, count: u64) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicU64::new(0));
    let url = sink.url("/floor");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (client, next, url) = (client.clone(), next.clone(), url.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                client.post(&url).body("{}").send().await?.error_for_status()?;
            }
            Ok::<_, reqwest::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The least a delivery needs: consume from a durable quorum queue with prefetch, POST to
/// the sink, insert one row (batched with whatever else finished meanwhile), ack; fed as
/// fast as confirms allow. Deliveries per second.
async fn pipeline(env: &Sandbox, sink: &Sink, queue: &str, count: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let connection = env.bus.connection()?;
    let publishing = publish_confirmed(&connection, queue, count, br#"{"deliveryId":"dlv_floor","attempt":1}"#);
    run_pipeline(env, sink, queue, count, publishing).await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The bare pipeline fed at `rate` messages per second, each carrying its publish time
/// as the scenarios' events do: the latency and CPU the machine itself shows at the
/// rate of the paced scenarios.
pub(crate) async fn paced_pipeline(count: u64, rate: f64) -> anyhow::Result<(Latency, CpuTimes)> {
    let env = Sandbox::new().await;
    let clock = Instant::now();
    let sink = Sink::start(clock, 0).await?;
    let queue = format!("{}.floor.paced", env.settings.amqp.prefix);
    let cpu_before = CpuTimes::now(false);
    let connection = env.bus.connection()?;
    let publishing = publish_paced(&connection, &queue, count, rate, clock);
    run_pipeline(&env, &sink, &queue, count, publishing).await?;
    let cpu = CpuTimes::now(false).since(&cpu_before);
    env.cleanup().await;
    let per_thousand = 1000.0 / count as f64;
    let cpu = CpuTimes {
        bench: cpu.bench * per_thousand,
        broker: cpu.broker * per_thousand,
        database: cpu.database * per_thousand,
    };
    Ok((sink.latency(), cpu))
}

/// Publishes `count` persistent messages at `rate` per second, each with its sequence
/// number and publish time on `clock`, without waiting for one confirm before the next
/// publish (every confirm is still checked).
async fn publish_paced(
    connection: &Connection,
    queue: &str,
    count: u64,
    rate: f64,
    clock: Instant,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let (confirms, mut unconfirmed) = tokio::sync::mpsc::unbounded_channel::<lapin::PublisherConfirm>();
    let checking = tokio::spawn(async move {
        while let Some(confirm) = unconfirmed.recv().await {
            confirm.await?;
        }
        Ok::<_, lapin::Error>(())
    });
    let start = clock.elapsed();
    for seq in 0..count {
        let due = start + std::time::Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep(due.saturating_sub(clock.elapsed())).await;
        let sent = u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let body = format!(r#"{{"payload":{{"seq":{seq},"sent":{sent}}}}}"#);
        let properties = BasicProperties::default().with_delivery_mode(2);
        let confirm = channel
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body.as_bytes(), properties)
            .await?;
        let _ = confirms.send(confirm);
    }
    drop(confirms);
    checking.await??;
    Ok(())
}

/// Consumes `count` messages from `queue` (declared here) while `publishing` feeds it:
/// each is POSTed to the sink, then recorded as a row in a batch with whatever else
/// finished meanwhile, then acked.
async fn run_pipeline(
    env: &Sandbox,
    sink: &Sink,
    queue: &str,
    count: u64,
    publishing: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let connection = &*env.bus.connection()?;
    let channel = connection.create_channel().await?;
    declare(&channel, queue).await?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(queue.into(), "floor-pipeline".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let (done_sender, mut done) = tokio::sync::mpsc::unbounded_channel::<lapin::Acker>();
    let pool = env.pool.clone();
    let batcher = tokio::spawn(async move {
        let client = pool.get().await?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS floor_rows (id bigserial PRIMARY KEY, seq bigint, body text)")
            .await?;
        let mut recorded = 0;
        let mut batch = Vec::new();
        while recorded < count {
            let Some(first) = done.recv().await else { break };
            batch.push(first);
            while let Ok(more) = done.try_recv() {
                batch.push(more);
            }
            let seqs: Vec<i64> = (0..batch.len() as i64).collect();
            client.execute("INSERT INTO floor_rows (seq) SELECT * FROM unnest($1::bigint[])", &[&seqs]).await?;
            for acker in batch.drain(..) {
                acker.ack(BasicAckOptions::default()).await?;
                recorded += 1;
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    let client = reqwest::Client::new();
    let url = sink.url("/pipeline");
    let consuming = tokio::spawn(async move {
        let mut taken = 0;
        while taken < count {
            let Some(delivery) = consumer.next().await else { break };
            let delivery = delivery?;
            let (client, url, done_sender) = (client.clone(), url.clone(), done_sender.clone());
            tokio::spawn(async move {
                if client.post(&url).body(delivery.data).send().await.is_ok() {
                    let _ = done_sender.send(delivery.acker);
                }
            });
            taken += 1;
        }
        Ok::<_, lapin::Error>(())
    });
    publishing.await?;
    consuming.await??;
    batcher.await??;
    remove(&channel, queue, "floor-pipeline").await?;
    Ok(())
}
