//! CPU time and memory of this process and of the broker and database, from /proc, so a
//! run can say what each delivery cost the machine and not only how fast it went.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Clock ticks per second of `/proc/<pid>/stat` times; 100 on every Linux this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far by the processes a run involves.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTimes {
    /// This process (the publisher, the sink and, in-process, every hookline service),
    /// and every `hookline` process when the services run apart.
    pub bench: f64,
    /// Every RabbitMQ (beam.smp) process.
    pub broker: f64,
    /// Every PostgreSQL process (each connection is a process).
    pub database: f64,
}

impl CpuTimes {
    /// Reads the CPU time used so far; `services_apart` counts `hookline` processes too.
    pub(crate) fn now(services_apart: bool) -> Self {
        let mut times = Self { bench: process_seconds("self").unwrap_or_default(), ..Self::default() };
        let Ok(entries) = std::fs::read_dir("/proc") else { return times };
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let seconds = || process_seconds(&pid).unwrap_or_default();
            match command.trim() {
                "beam.smp" => times.broker += seconds(),
                "hookline" if services_apart => times.bench += seconds(),
                name if name.starts_with("postgres") => times.database += seconds(),
                _ => {}
            }
        }
        times
    }

    /// CPU used between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            bench: self.bench - earlier.bench,
            broker: self.broker - earlier.broker,
            database: self.database - earlier.database,
        }
    }

    /// All three together.
    pub(crate) fn total(&self) -> f64 {
        self.bench + self.broker + self.database
    }
}

/// utime + stime of one process (`self` or a pid), in seconds.
fn process_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after its closing parenthesis are fixed.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// The most resident memory the services have had (VmHWM), in MiB: this process's, or
/// the sum over `hookline` processes when the services run apart.
pub(crate) fn peak_rss_mib(services_apart: bool) -> f64 {
    services_kib("VmHWM", services_apart) / 1024.0
}

/// The resident memory the services have now (VmRSS), in MiB: this process's, or the
/// sum over `hookline` processes when the services run apart.
pub(crate) fn rss_mib(services_apart: bool) -> f64 {
    services_kib("VmRSS", services_apart) / 1024.0
}

fn services_kib(field: &str, services_apart: bool) -> f64 {
    if !services_apart {
        return status_kib("self", field);
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "hookline"))
        .map(|pid| status_kib(&pid, field))
        .sum()
}

fn status_kib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_default()
}

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Latency {
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let at = |quantile: f64| Duration::from_micros(histogram.value_at_quantile(quantile));
        Self { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: Duration::from_micros(histogram.max()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_to_three_digits() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for ms in 1..=100 {
            histogram.record(ms * 1000).unwrap();
        }
        let latency = Latency::of(&histogram);
        let close = |actual: Duration, ms: u64| actual.abs_diff(Duration::from_millis(ms)) <= Duration::from_micros(ms);
        assert!(close(latency.p50, 50), "{:?}", latency.p50);
        assert!(close(latency.p99, 99), "{:?}", latency.p99);
        assert!(close(latency.max, 100), "{:?}", latency.max);
        assert_eq!(Latency::of(&Histogram::new(3).unwrap()).max, Duration::ZERO);
    }

    #[test]
    fn this_process_can_be_read_from_proc() {
        assert!(process_seconds("self").is_some(), "/proc/self/stat did not parse");
        assert!(process_seconds("not-a-pid").is_none());
        let rss = rss_mib(false);
        assert!(rss > 1.0, "VmRSS did not parse");
        // Read after the current size: the peak can only have grown since.
        assert!(peak_rss_mib(false) >= rss, "VmHWM did not parse");
    }
}
