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
    /// (path, seq) already failed once.
    failed_once: Mutex<HashSet<(String, u64)>>,
    succeeded: AtomicU64,
}

/// A sink on 127.0.0.1.
#[derive(Clone)]
pub struct Sink {
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
    if let Ok(mut latencies) = sink.inner.latencies.lock() {
        latencies.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }
    sink.inner.succeeded.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

impl Sink {
    /// Starts a sink whose clock is `clock` (the publisher's), failing the first request
    /// of every `fail_every`-th event (0: never).
    pub async fn start(clock: Instant, fail_every: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let inner = Inner {
            // 1 µs to 1 hour, to three significant digits.
            latencies: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
            failed_once: Mutex::default(),
            succeeded: AtomicU64::default(),
        };
        let sink = Sink { address: listener.local_addr()?, clock, fail_every, inner: Arc::new(inner) };
        let app = axum::Router::new().fallback(receive).with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(sink)
    }

    /// The URL of `path` on this sink.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Successful deliveries received.
    pub fn succeeded(&self) -> u64 {
        self.inner.succeeded.load(Ordering::Relaxed)
    }

    /// Percentiles of the latencies recorded so far.
    pub fn latency(&self) -> Latency {
        self.inner.latencies.lock().map(|histogram| Latency::of(&histogram)).unwrap_or_default()
    }
}
