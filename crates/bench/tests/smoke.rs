//! The benchmark still runs: a few hundred events through one scenario and the floor,
//! checking that it reports every figure (not how fast they are: that is BENCHMARKS.md's
//! business, never a test's).
#![allow(clippy::unwrap_used, missing_docs)]

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
        .args(["--events", "200", "--scenarios", "one,retry10", "--deadline", "90s"])
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
}
