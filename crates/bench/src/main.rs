//! `hookline-bench`: how fast hookline delivers, next to what this machine can do.
//!
//! Runs against the local PostgreSQL and RabbitMQ (each scenario in its own throwaway
//! database and broker prefix, every service in this process), measures the machine's
//! floor in the same run, and prints every hookline figure with its ratio to the floor.
//! See BENCHMARKS.md for the method and the figures.

mod deployment;
mod floor;
mod history;
mod scenario;
mod sink;
mod stages;
mod usage;

use clap::Parser;

use crate::deployment::Target;
use crate::scenario::{Outcome, Scenario};

#[derive(Parser)]
#[command(about = "Benchmark hookline end to end against the machine's own floor")]
struct Args {
    /// Events per scenario (fan-out and 64 KiB scenarios publish a fifth of them).
    #[arg(long, default_value_t = 5000)]
    events: u64,
    /// Scenarios to run, comma-separated: one, fanout10, retry10, payload1k, payload64k, paced1000, paced250.
    #[arg(long, value_delimiter = ',', default_value = "one,fanout10,retry10,payload1k,payload64k,paced1000,paced250")]
    scenarios: Vec<String>,
    /// Skip measuring the floor.
    #[arg(long)]
    no_floor: bool,
    /// Measure the bare pipeline at each paced scenario's rate even with `--no-floor`
    /// (its latency and CPU beside the scenario's).
    #[arg(long)]
    paced_floor: bool,
    /// Share of traces recorded (telemetry.sampling_ratio); spans are never exported.
    #[arg(long, default_value_t = 1.0)]
    sampling_ratio: f64,
    /// Measure a deployment that is already running instead of starting one per
    /// scenario: the one its settings describe (`--config`, and `HOOKLINE__…`
    /// variables). Its services must run on this machine and may deliver to 127.0.0.1.
    #[arg(long)]
    connect: bool,
    /// The running deployment's configuration file, for `--connect`.
    #[arg(long, value_name = "FILE", requires = "connect")]
    config: Option<std::path::PathBuf>,
    /// Attempts (with their deliveries and events, of another organisation, over the
    /// last 29 days) stored before each scenario, to measure with full tables.
    #[arg(long, default_value_t = 0)]
    stored_attempts: u64,
    /// Give up on a scenario whose deliveries have not all succeeded after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    deadline: std::time::Duration,
}

fn scenario(name: &str, events: u64, stored_attempts: u64) -> Option<Scenario> {
    let base =
        Scenario { name: "one", events, fan_out: 1, fail_every: 0, payload_bytes: 64, rate: None, stored_attempts };
    Some(match name {
        "one" => base,
        "fanout10" => Scenario { name: "fanout10", events: (events / 5).max(1), fan_out: 10, ..base },
        "retry10" => Scenario { name: "retry10", fail_every: 10, ..base },
        "payload1k" => Scenario { name: "payload1k", payload_bytes: 1024, ..base },
        "payload64k" => Scenario { name: "payload64k", events: (events / 5).max(1), payload_bytes: 64 * 1024, ..base },
        "paced1000" => Scenario { name: "paced1000", rate: Some(1000.0), ..base },
        // Below what this machine sustains, so the latency is the pipeline's, not a queue's.
        "paced250" => Scenario { name: "paced250", events: (events / 5).max(1), rate: Some(250.0), ..base },
        _ => return None,
    })
}

#[tokio::main]
#[allow(clippy::too_many_lines, reason = "the run in the order it prints: settings, floor, each scenario, the summary")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenarios: Vec<Scenario> = args
        .scenarios
        .iter()
        .map(|name| {
            scenario(name, args.events, args.stored_attempts)
                .ok_or_else(|| anyhow::anyhow!("unknown scenario `{name}`"))
        })
        .collect::<anyhow::Result<_>>()?;
    // Tracing as a production process has it without a collector (ids, no export); set
    // before the harness would install its in-memory span store.
    let defaults = hookline_telemetry::Settings::load_with(
        None,
        [
            ("HOOKLINE__TELEMETRY__LOG_LEVEL".to_owned(), "warn,lapin=off,deadpool=off".to_owned()),
            ("HOOKLINE__TELEMETRY__SAMPLING_RATIO".to_owned(), args.sampling_ratio.to_string()),
        ],
    )?;
    hookline_telemetry::init_tracing("hookline-bench", &defaults.telemetry);
    let target = if args.connect {
        Target::Running(Box::new(hookline_telemetry::Settings::load(args.config.as_deref())?))
    } else {
        Target::InProcess
    };
    println!("machine: {} cores, {}", cores(), memory());
    let floor = if args.no_floor {
        None
    } else {
        let floor = floor::measure(args.events.max(1000)).await?;
        println!("floor ({} operations each):", args.events.max(1000));
        println!("  broker publish (confirms) → consume (manual ack), quorum queue  {:>9.0} msg/s", floor.broker);
        println!(
            "  PostgreSQL INSERT, one row per statement, 16 connections       {:>9.0} rows/s",
            floor.insert_single
        );
        println!(
            "  PostgreSQL INSERT, 500 rows per statement                      {:>9.0} rows/s",
            floor.insert_batched
        );
        println!("  HTTP POST to the sink, keep-alive, 64 at a time                {:>9.0} req/s", floor.http);
        println!(
            "  bare pipeline: consume, POST, batch-insert a row, ack          {:>9.0} deliveries/s",
            floor.pipeline
        );
        Some(floor)
    };
    let mut paced_floors = Vec::new();
    if !args.no_floor || args.paced_floor {
        for scenario in &scenarios {
            let Some(rate) = scenario.rate else { continue };
            if paced_floors.iter().any(|floor: &PacedFloor| floor.rate == rate) {
                continue;
            }
            let messages = scenario.events.min(PACED_FLOOR_MAX_MESSAGES);
            eprintln!("floor: bare pipeline at {rate:.0}/s");
            let (latency, cpu) = floor::paced_pipeline(messages, rate).await?;
            println!(
                "  bare pipeline at {rate:.0}/s ({messages} messages)       p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms, CPU {:.2} s per 1,000 ({:.2} · {:.2} · {:.2})",
                ms(latency.p50),
                ms(latency.p99),
                ms(latency.max),
                cpu.total(),
                cpu.bench,
                cpu.broker,
                cpu.database
            );
            paced_floors.push(PacedFloor { rate, latency });
        }
    }
    for scenario in scenarios {
        eprintln!("scenario {}", scenario.name);
        let outcome = scenario::run(scenario, &target, args.deadline).await?;
        let paced = outcome.scenario.rate.and_then(|rate| paced_floors.iter().find(|floor| floor.rate == rate));
        report(&outcome, &target, floor.as_ref(), paced);
    }
    Ok(())
}

/// Messages the paced bare pipeline takes at most: enough for a stable p99 without a
/// soak's length.
const PACED_FLOOR_MAX_MESSAGES: u64 = 20_000;

/// The bare pipeline's latency at one paced scenario's rate.
struct PacedFloor {
    rate: f64,
    latency: usage::Latency,
}

fn report(outcome: &Outcome, target: &Target, floor: Option<&floor::Floor>, paced: Option<&PacedFloor>) {
    let s = &outcome.scenario;
    println!("{}", s.heading());
    let ratio = floor.map_or(String::new(), |f| {
        format!("  ({:.0} % of the bare pipeline)", 100.0 * outcome.deliveries_per_second / f.pipeline)
    });
    println!("  events ingested      {:>9.0} /s", outcome.events_per_second);
    println!("  deliveries           {:>9.0} /s{ratio}", outcome.deliveries_per_second);
    let l = &outcome.latency;
    println!(
        "  publish → receipt    p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        ms(l.p50),
        ms(l.p95),
        ms(l.p99),
        ms(l.max)
    );
    if let Some(paced) = paced {
        println!(
            "  (bare pipeline at this rate: p50 {:.1} ms  p99 {:.1} ms; hookline's p99 is {:.1} ×)",
            ms(paced.latency.p50),
            ms(paced.latency.p99),
            l.p99.as_secs_f64() / paced.latency.p99.as_secs_f64().max(1e-9)
        );
    }
    if outcome.latency_by_minute.len() > 2 {
        let line: Vec<String> = outcome.latency_by_minute.iter().map(|l| format!("{:.0}", ms(l.p99))).collect();
        println!("  p99 by minute (ms)        {}", line.join(" "));
    }
    if !outcome.stages.is_empty() {
        let line: Vec<String> =
            outcome.stages.iter().map(|s| format!("{} {:.1} / {:.1}", s.name, s.p50, s.p99)).collect();
        println!("  stages p50 / p99 (ms)     {}", line.join(" · "));
    }
    let c = &outcome.cpu_per_thousand;
    println!(
        "  CPU per 1,000 deliveries  {:.2} s (hookline+bench {:.2}, RabbitMQ {:.2}, PostgreSQL {:.2})",
        c.total(),
        c.bench,
        c.broker,
        c.database
    );
    let whose = if matches!(target, Target::Running(_)) { "hookline processes" } else { "this process" };
    println!("  peak RSS ({whose})   {:.0} MiB", outcome.peak_rss_mib);
    if let Some(sizes) = &outcome.batch_sizes {
        let line: Vec<String> =
            sizes.iter().map(|(name, rows, ms)| format!("{name} {rows:.1} in {ms:.1} ms")).collect();
        println!("  rows per batch            {}", line.join(" · "));
    }
    let samples = &outcome.rss_samples;
    if samples.len() > 2 {
        let line: Vec<String> = samples.iter().map(|mib| format!("{mib:.0}")).collect();
        println!("  RSS every 10 s (MiB)      {}", line.join(" "));
    }
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn memory() -> String {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_default();
    format!("{:.0} GiB", kib / 1024.0 / 1024.0)
}
