//! The receiver every scenario delivers to: answers at once (200, or 500 to a job's first
//! request when the scenario fails some once), and notes when each event arrived.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use hdrhistogram::Histogram;

use crate::usage::Latency;

/// What the bench puts in each event's data, so the sink can time it.
#[derive(serde::Deserialize)]
struct Delivered {
    payload: Payload,
}

#[derive(serde::Deserialize)]
struct Payload {
    seq: u64,
    /// Nanoseconds since the run's clock started, when the event was published.
    sent: u64,
}

struct Inner {
    /// Publish → receipt of each successful delivery, in microseconds. A histogram
    /// rather than a list, so a long soak's memory figure is hookline's alone.
    latencies: Mutex<Histogram<u64>>,
    /// The current minute's latencies, and the percentiles of each finished minute: how
    /// a long run's latency moves over time, in memory that does not grow with it.
    minutes: Mutex<Minutes>,
    /// (path, seq) already failed once.
    failed_once: Mutex<HashSet<(String, u64)>>,
    succeeded: AtomicU64,
}

/// Latency by minute of arrival.
struct Minutes {
    /// Minutes since the clock started of the latencies in `current`.
    minute: u64,
    current: Histogram<u64>,
    finished: Vec<Latency>,
}

impl Minutes {
    fn record(&mut self, arrived: Duration, micros: u64) {
        let minute = arrived.as_secs() / 60;
        if minute != self.minute {
            if !self.current.is_empty() {
                self.finished.push(Latency::of(&self.current));
            }
            self.current.reset();
            self.minute = minute;
        }
        self.current.saturating_record(micros);
    }
}

/// A sink on 127.0.0.1.
#[derive(Clone)]
pub(crate) struct Sink {
    address: SocketAddr,
    clock: Instant,
    /// Every `fail_every`-th event (by sequence number) fails its first request; 0: none.
    fail_every: u64,
    inner: Arc<Inner>,
}

async fn receive(State(sink): State<Sink>, uri: Uri, body: Bytes) -> StatusCode {
    let arrived = sink.clock.elapsed();
    let Ok(delivered) = serde_json::from_slice::<Delivered>(&body) else {
        // Raw HTTP floor requests and pings carry no sequence number.
        return StatusCode::OK;
    };
    let seq = delivered.payload.seq;
    if sink.fail_every > 0 && seq % sink.fail_every == 0 {
        let first = sink.inner.failed_once.lock().map(|mut seen| seen.insert((uri.path().to_owned(), seq)));
        if first.unwrap_or(false) {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let latency = arrived.saturating_sub(Duration::from_nanos(delivered.payload.sent));
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if let Ok(mut latencies) = sink.inner.latencies.lock() {
        latencies.saturating_record(micros);
    }
    if let Ok(mut minutes) = sink.inner.minutes.lock() {
        minutes.record(arrived, micros);
    }
    sink.inner.succeeded.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

impl Sink {
    /// Starts a sink whose clock is `clock` (the publisher's), failing the first request
    /// of every `fail_every`-th event (0: never).
    pub(crate) async fn start(clock: Instant, fail_every: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let inner = Inner {
            // 1 µs to 1 hour, to three significant digits.
            latencies: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
            minutes: Mutex::new(Minutes {
                minute: 0,
                current: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
                finished: Vec::new(),
            }),
            failed_once: Mutex::default(),
            succeeded: AtomicU64::default(),
        };
        let sink = Sink { address: listener.local_addr()?, clock, fail_every, inner: Arc::new(inner) };
        let app = axum::Router::new().fallback(receive).with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(sink)
    }

    /// The URL of `path` on this sink.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Successful deliveries received.
    pub(crate) fn succeeded(&self) -> u64 {
        self.inner.succeeded.load(Ordering::Relaxed)
    }

    /// Percentiles of the latencies recorded so far.
    pub(crate) fn latency(&self) -> Latency {
        self.inner.latencies.lock().map(|histogram| Latency::of(&histogram)).unwrap_or_default()
    }

    /// Percentiles of each minute of arrivals so far (the last one possibly partial).
    pub(crate) fn latency_by_minute(&self) -> Vec<Latency> {
        let Ok(minutes) = self.inner.minutes.lock() else { return Vec::new() };
        let mut all = minutes.finished.clone();
        if !minutes.current.is_empty() {
            all.push(Latency::of(&minutes.current));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_summed_up_by_minute_of_arrival() {
        let mut minutes =
            Minutes { minute: 0, current: Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap(), finished: vec![] };
        minutes.record(Duration::from_secs(10), 1_000);
        minutes.record(Duration::from_secs(59), 2_000);
        minutes.record(Duration::from_secs(61), 1_500);
        minutes.record(Duration::from_secs(190), 700);
        let maxima: Vec<u128> = minutes.finished.iter().map(|l| l.max.as_micros()).collect();
        assert_eq!(maxima, vec![2_000, 1_500], "minutes 0 and 1 are finished; minute 2 had no arrivals");
        assert_eq!(minutes.minute, 3);
        assert_eq!(minutes.current.max(), 700);
    }
}
