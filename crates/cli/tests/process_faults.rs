//! hookline as it is deployed: each service its own `hookline` process (ingest, router,
//! scheduler and three competing workers), a stream of events with a receiver that fails
//! at first, and one fault mid-stream. After it, with no restart of any other process (a
//! killed one is started again, as its supervisor would): every confirmed event is
//! stored, every delivery has succeeded, every event reached both endpoints, every
//! process is still running, and nothing was sent twice (but by a worker killed between
//! a request and its record, whose duplicates are counted and reported).
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookline_tests::{OwnBroker, OwnDatabase, Receiver, Reply, TestEnv, eventually};
use serde_json::json;

const EVENTS: usize = 1_500;
const PACE: Duration = Duration::from_millis(4);
const WORKERS: usize = 3;
/// When the fault comes: after this many events are published.
const FAULT_AT: usize = 500;

/// What goes wrong mid-stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillWorker,
    TerminateWorker,
    KillIngest,
    KillRouter,
    KillScheduler,
    /// The test's own broker: `stop_app`, then `start_app` 5 s later.
    BrokerStopApp,
    /// The test's own broker: SIGKILL of its VM (no goodbye to any connection), then
    /// started again with the data it had.
    BrokerKill,
    /// The test's own database: stopped for 15 s.
    DatabaseStop,
}

/// The hookline processes of one test.
struct Fleet<'a> {
    env: &'a TestEnv,
    processes: Vec<(&'static str, Child)>,
}

impl<'a> Fleet<'a> {
    fn start(env: &'a TestEnv) -> Self {
        let mut fleet = Fleet { env, processes: Vec::new() };
        for role in ["ingest", "router", "scheduler"].into_iter().chain(std::iter::repeat_n("worker", WORKERS)) {
            let child = fleet.spawn(role);
            fleet.processes.push((role, child));
        }
        fleet
    }

    fn spawn(&self, role: &str) -> Child {
        self.env
            .command(env!("CARGO_BIN_EXE_hookline"))
            .arg(role)
            .env("HOOKLINE__DELIVERY__TIMEOUT", "5s")
            .env("HOOKLINE__SCHEDULER__RECONCILE_INTERVAL", "1s")
            .env("HOOKLINE__SCHEDULER__RECONCILE_AFTER", "5s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Sends `signal` to the first process of `role`, waits for it to end, and starts it
    /// again.
    fn signal_and_restart(&mut self, role: &str, signal: &str) {
        let index = self.processes.iter().position(|(r, _)| *r == role).unwrap();
        let (role, child) = &mut self.processes[index];
        let pid = child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(sent.success());
        child.wait().unwrap();
        let role: &'static str = role;
        self.processes[index] = (role, self.spawn(role));
    }

    /// The processes that have exited.
    fn exited(&mut self) -> Vec<&'static str> {
        let mut exited = Vec::new();
        for (role, child) in &mut self.processes {
            if child.try_wait().unwrap().is_some() {
                exited.push(*role);
            }
        }
        exited
    }
}

impl Drop for Fleet<'_> {
    fn drop(&mut self) {
        for (_, child) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn inject(fault: Fault, fleet: &mut Fleet<'_>, broker: Option<&OwnBroker>, database: Option<&OwnDatabase>) {
    let env = fleet.env;
    match fault {
        Fault::KillWorker => fleet.signal_and_restart("worker", "KILL"),
        Fault::TerminateWorker => fleet.signal_and_restart("worker", "TERM"),
        Fault::KillIngest => fleet.signal_and_restart("ingest", "KILL"),
        Fault::KillRouter => fleet.signal_and_restart("router", "KILL"),
        Fault::KillScheduler => fleet.signal_and_restart("scheduler", "KILL"),
        Fault::BrokerStopApp => {
            let broker = broker.unwrap();
            broker.stop_app().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            broker.start_app().await;
            // The upstream publisher (this test) reconnects too before it publishes on.
            assert!(eventually(Duration::from_secs(60), || async { env.bus.is_connected() }).await);
        }
        Fault::BrokerKill => {
            let broker = broker.unwrap();
            broker.kill().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            broker.restart().await;
            assert!(eventually(Duration::from_secs(60), || async { env.bus.is_connected() }).await);
        }
        Fault::DatabaseStop => {
            let database = database.unwrap();
            database.stop().await;
            tokio::time::sleep(Duration::from_secs(15)).await;
            database.resume().await;
        }
    }
}

async fn ride_out(fault: Fault) {
    let broker = match fault {
        Fault::BrokerStopApp | Fault::BrokerKill => Some(OwnBroker::start().await),
        _ => None,
    };
    let database = match fault {
        Fault::DatabaseStop => Some(OwnDatabase::start().await),
        _ => None,
    };
    let env = TestEnv::around(broker.as_ref(), database.as_ref(), &[]).await;
    let receiver = Receiver::start().await;
    receiver.always("/ok", Reply::Status(200));
    // The second endpoint fails every other one of its first 200 requests (not enough
    // in a row to open its circuit): their retries come a second later.
    let flaky: Vec<Reply> = (0..200).map(|n| Reply::Status(if n % 2 == 0 { 503 } else { 200 })).collect();
    receiver.script("/flaky", &flaky);
    receiver.always("/flaky", Reply::Status(200));
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/ok"), receiver.url("/flaky")], &["job.created"]))
        .await;
    let mut fleet = Fleet::start(&env);
    let mut pace = tokio::time::interval(PACE);
    for n in 0..EVENTS {
        pace.tick().await;
        if n == FAULT_AT {
            inject(fault, &mut fleet, broker.as_ref(), database.as_ref()).await;
        }
        // With an idempotency key, as the upstream contract asks: a message redelivered
        // after ingest died between storing and acking it is the same event.
        let event = json!({"id": format!("e-{n}"), "type": "job.created", "organization": org.id, "data": {"n": n}});
        env.publish(event).await;
    }

    let expected = (EVENTS * 2) as i64;
    let upstream = "FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.origin = 'upstream'";
    let succeeded = format!("SELECT count(*) {upstream} AND d.status = 'succeeded'");
    let settled =
        eventually(Duration::from_secs(120), || async { env.scalar::<i64>(&succeeded, &[]).await == expected }).await;
    let stored: i64 = env.scalar("SELECT count(*) FROM events WHERE origin = 'upstream'", &[]).await;
    let open: i64 = env.scalar(&format!("SELECT count(*) {upstream} AND d.open"), &[]).await;
    let failed: i64 = env.scalar(&format!("SELECT count(*) {upstream} AND d.status = 'failed'"), &[]).await;
    assert_eq!(stored, EVENTS as i64, "{fault:?}: every confirmed event is stored");
    assert!(settled, "{fault:?}: every delivery succeeded ({open} still open, {failed} failed)");
    for path in ["/ok", "/flaky"] {
        let reached: std::collections::BTreeSet<u64> =
            receiver.requests(path).iter().filter_map(|r| r.json()["payload"]["n"].as_u64()).collect();
        assert_eq!(reached.len(), EVENTS, "{fault:?}: every event reached {path}");
    }
    // Every request the receiver got is a recorded attempt, but for those sent again
    // after a worker died between sending and recording them.
    let attempts: i64 = env.scalar("SELECT count(*) FROM attempts", &[]).await;
    let requests = receiver.all_requests().len() as i64;
    let duplicates = requests - attempts;
    println!("{fault:?}: {requests} requests, {attempts} attempts recorded, {duplicates} duplicates");
    if fault == Fault::KillWorker {
        assert!(duplicates >= 0, "{fault:?}: {duplicates}");
    } else {
        assert_eq!(duplicates, 0, "{fault:?}: nothing is sent twice");
    }
    assert_eq!(fleet.exited(), Vec::<&str>::new(), "{fault:?}: every process is still running");
    drop(fleet);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream() {
    ride_out(Fault::KillWorker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_terminated_mid_stream() {
    ride_out(Fault::TerminateWorker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_mid_stream() {
    ride_out(Fault::KillIngest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_killed_mid_stream() {
    ride_out(Fault::KillRouter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_killed_mid_stream() {
    ride_out(Fault::KillScheduler).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_and_started_mid_stream() {
    ride_out(Fault::BrokerStopApp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_and_started_again_mid_stream() {
    ride_out(Fault::BrokerKill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_for_15_seconds_mid_stream() {
    ride_out(Fault::DatabaseStop).await;
}
