//! SIGTERM ends every `hookline` process within `shutdown.grace` and a few seconds,
//! outage or not: each service as its own process (as deployed), the test's own broker
//! or database gone when the signal comes, so every service is somewhere on its error
//! path (reconnecting, waiting for a connection, retrying a write) when asked to stop,
//! with work in hand: requests to an endpoint that never answers (a delivery timeout
//! far past the grace), and in the database's case events received but not stored.
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "a fault test reads best as one story, setup to last check")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hookline_tests::{OwnBroker, OwnDatabase, Receiver, Reply, TestEnv};
use serde_json::json;

/// `shutdown.grace` in the sandbox's settings.
const GRACE: Duration = Duration::from_secs(3);
/// What "a few seconds" past the grace may be at most.
const SLACK: Duration = Duration::from_secs(5);
const ROLES: [&str; 5] = ["ingest", "router", "scheduler", "worker", "api"];

/// What is gone when the signal comes.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// The test's own broker, `stop_app`.
    Broker,
    /// The test's own database, stopped.
    Database,
}

/// The processes of one test, killed if the test ends before they do.
struct Fleet(Vec<(&'static str, Child)>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn terminated_during(outage: Outage) {
    let broker = match outage {
        Outage::Broker => Some(OwnBroker::start().await),
        Outage::Database => None,
    };
    let database = match outage {
        Outage::Database => Some(OwnDatabase::start().await),
        Outage::Broker => None,
    };
    let env = TestEnv::around(broker.as_ref(), database.as_ref(), &[]).await;
    assert_eq!(env.settings.shutdown.grace, GRACE, "the grace this test holds the services to");
    let receiver = Receiver::start().await;
    receiver.always("/ok", Reply::Status(200));
    receiver.always("/hang", Reply::Hang);
    let org = env.organization().await;
    env.create_webhook(TestEnv::webhook(&org.id, &[receiver.url("/ok"), receiver.url("/hang")], &["job.created"]))
        .await;
    let mut fleet = Fleet(
        ROLES
            .iter()
            .map(|role| {
                let child = env
                    .command(env!("CARGO_BIN_EXE_hookline"))
                    .arg(role)
                    .env("HOOKLINE__API__LISTEN", "127.0.0.1:0")
                    .env("HOOKLINE__DELIVERY__TIMEOUT", "60s")
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log(&env, role)))
                    .spawn()
                    .unwrap();
                (*role, child)
            })
            .collect(),
    );
    // Everything is up once events go all the way through; meanwhile their requests to
    // the endpoint that never answers stay open.
    let event = |n: usize| json!({"type": "job.created", "organization": org.id, "data": {"n": n}});
    for n in 0..20 {
        env.publish(event(n)).await;
    }
    receiver.wait_for("/ok", 20, Duration::from_secs(60)).await;
    receiver.wait_for("/hang", 1, Duration::from_secs(60)).await;

    match (&broker, &database) {
        (Some(broker), _) => broker.stop_app().await,
        (_, Some(database)) => {
            database.stop().await;
            // Ingest takes these off the broker and cannot store them.
            for n in 20..40 {
                env.publish(event(n)).await;
            }
        }
        _ => unreachable!("one outage"),
    }
    // Long enough for every service to notice and be on its error path.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    for (_, child) in &fleet.0 {
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }
    let mut took = Vec::new();
    for (role, child) in &mut fleet.0 {
        let exited = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if asked.elapsed() > GRACE + SLACK {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        took.push((*role, exited.map(|status| (asked.elapsed(), status))));
    }
    println!("{outage:?}: {took:?}");
    for (role, exited) in &took {
        let (elapsed, status) = exited.unwrap_or_else(|| panic!("{outage:?}: {role} still running after {took:?}"));
        assert!(elapsed <= GRACE + SLACK, "{outage:?}: {role} took {elapsed:?}");
        let said = std::fs::read_to_string(log_path(&env, role)).unwrap_or_default();
        assert!(status.success(), "{outage:?}: {role} ended with {status}:\n{said}");
    }

    match (&broker, &database) {
        (Some(broker), _) => broker.start_app().await,
        (_, Some(database)) => database.resume().await,
        _ => unreachable!("one outage"),
    }
    drop(fleet);
    for role in ROLES {
        let _ = std::fs::remove_file(log_path(&env, role));
    }
    env.cleanup().await;
}

/// Where a process of this test writes its log.
fn log_path(env: &TestEnv, role: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hookline-shutdown-{}-{role}.log", env.id))
}

fn log(env: &TestEnv, role: &str) -> std::fs::File {
    std::fs::File::create(log_path(env, role)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_stops_in_time_while_the_broker_is_down() {
    terminated_during(Outage::Broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_stops_in_time_while_the_database_is_down() {
    terminated_during(Outage::Database).await;
}
