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

#[derive(Default)]
struct Inner {
    /// Publish → receipt of each successful delivery.
    latencies: Mutex<Vec<Duration>>,
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
        latencies.push(latency);
    }
    sink.inner.succeeded.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

impl Sink {
    /// Starts a sink whose clock is `clock` (the publisher's), failing the first request
    /// of every `fail_every`-th event (0: never).
    pub async fn start(clock: Instant, fail_every: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sink = Sink { address: listener.local_addr()?, clock, fail_every, inner: Arc::default() };
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

    /// Takes the latencies recorded so far.
    pub fn take_latencies(&self) -> Vec<Duration> {
        self.inner.latencies.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }
}
