//! The benchmark still runs: a few hundred events through one scenario and the floor,
//! checking that it reports every figure (not how fast they are: that is BENCHMARKS.md's
//! business, never a test's).
#![allow(clippy::unwrap_used, missing_docs)]
#![allow(clippy::too_many_lines, reason = "an end-to-end test reads best as one story, setup to last check")]

use std::process::Command;

fn figure(output: &str, label: &str) -> f64 {
    let line = output.lines().find(|line| line.trim_start().starts_with(label)).unwrap_or_else(|| {
        panic!("no `{label}` line in:\n{output}");
    });
    let number = line.trim_start()[label.len()..].split_whitespace().next().unwrap();
    number.parse().unwrap_or_else(|_| panic!("`{line}` has no number after `{label}`"))
}

#[test]
fn a_smoke_run_reports_every_figure() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline-bench"))
        .args(["--events", "200", "--scenarios", "one,retry10,paced250", "--deadline", "90s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("one: 200 events × 1 webhooks"), "{stdout}");
    assert!(stdout.contains("retry10: 200 events × 1 webhooks"), "{stdout}");
    for label in ["events ingested", "deliveries", "bare pipeline: consume, POST, batch-insert a row, ack"] {
        assert!(figure(&stdout, label) > 0.0, "{label} in:\n{stdout}");
    }
    assert!(stdout.contains("% of the bare pipeline"), "{stdout}");
    assert!(stdout.contains("p99") && stdout.contains("CPU per 1,000 deliveries"), "{stdout}");
    // Where the latency went, hop by hop, and what each batched statement took.
    let stages = stdout.lines().filter(|line| line.trim_start().starts_with("stages p50 / p99 (ms)")).count();
    assert_eq!(stages, 3, "a stages line per scenario in:\n{stdout}");
    for stage in ["publish → event stored", "stored → delivery created", "created → request started"] {
        assert!(stdout.contains(stage), "no `{stage}` in:\n{stdout}");
    }
    assert!(stdout.contains("store_events") && stdout.contains(" ms · "), "batch times in:\n{stdout}");
    // The paced scenario has the bare pipeline at its own rate beside it.
    assert!(stdout.contains("bare pipeline at 250/s"), "{stdout}");
    assert!(stdout.contains("(bare pipeline at this rate: p50"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_run_against_a_running_deployment_measures_that_deployment() {
    // The deployment runs here, apart from the bench, which finds it from its settings.
    let env = hookline_sandbox::Sandbox::new().await;
    let services = env.start();
    let environment = env.environment.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hookline-bench"))
            .args(["--connect", "--events", "100", "--scenarios", "one", "--no-floor", "--deadline", "90s"])
            .envs(environment)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("one: 100 events × 1 webhooks"), "{stdout}");
    for label in ["events ingested", "deliveries"] {
        assert!(figure(&stdout, label) > 0.0, "{label} in:\n{stdout}");
    }
    let delivered: i64 = env.scalar("SELECT count(*) FROM deliveries WHERE status = 'succeeded'", &[]).await;
    assert_eq!(delivered, 100, "the running deployment made the deliveries");
    services.stop().await;
    env.cleanup().await;
}
