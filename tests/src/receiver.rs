//! A test receiver: records every request and answers as the test scripts.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse as _;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    /// The query string as it arrived, undecoded ("" when there was none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Never answer (until the client gives up).
    Hang,
    /// Answer 200 after a pause.
    Slow(Duration),
    /// Answer with this status and a body of this many bytes.
    Body(u16, usize),
    /// Answer with this status and exactly these bytes.
    Bytes(u16, &'static [u8]),
    /// Answer 200 with a body that never ends (1 KiB chunks, forever).
    Endless,
    /// Answer 302 pointing at this path of the same receiver.
    Redirect(&'static str),
    /// Answer with this status and a Retry-After of this many seconds from now, written
    /// as delay-seconds (`false`) or as an HTTP date (`true`).
    RetryAfter(u16, u64, bool),
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    scripts: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
}

/// A receiver on 127.0.0.1, port chosen by the OS.
#[derive(Clone)]
pub struct Receiver {
    address: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let path = uri.path().to_owned();
    let reply = {
        let mut inner = inner.lock().unwrap();
        let query = uri.query().unwrap_or_default().to_owned();
        inner.requests.push(Recorded { method, path: path.clone(), query, headers, body, at: Instant::now() });
        let scripted = inner.scripts.get_mut(&path).and_then(VecDeque::pop_front);
        scripted.or_else(|| inner.defaults.get(&path).copied()).unwrap_or(Reply::Status(200))
    };
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::Slow(pause) => {
            tokio::time::sleep(pause).await;
            StatusCode::OK.into_response()
        }
        Reply::Body(code, size) => (StatusCode::from_u16(code).unwrap(), "b".repeat(size)).into_response(),
        Reply::Bytes(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        Reply::Redirect(target) => (StatusCode::FOUND, [("location", target)]).into_response(),
        Reply::Endless => {
            let chunks = futures_lite::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])));
            axum::body::Body::from_stream(chunks).into_response()
        }
        Reply::RetryAfter(code, seconds, as_date) => {
            let value = if as_date {
                let at = chrono::Utc::now() + chrono::Duration::seconds(i64::try_from(seconds).unwrap());
                at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            } else {
                seconds.to_string()
            };
            (StatusCode::from_u16(code).unwrap(), [("retry-after", value)]).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().fallback(record).with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, inner }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Answers the next requests to `path` with these replies, then with the default.
    pub fn script(&self, path: &str, replies: &[Reply]) {
        self.inner.lock().unwrap().scripts.entry(path.to_owned()).or_default().extend(replies.iter().copied());
    }

    /// Answers every request to `path` (after any script) with `reply`.
    pub fn always(&self, path: &str, reply: Reply) {
        self.inner.lock().unwrap().defaults.insert(path.to_owned(), reply);
    }

    /// Requests received on `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Every request received.
    pub fn all_requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Waits until `path` has received at least `count` requests; returns them.
    pub async fn wait_for(&self, path: &str, count: usize, timeout: Duration) -> Vec<Recorded> {
        let found = crate::eventually(timeout, || async { self.requests(path).len() >= count }).await;
        let requests = self.requests(path);
        assert!(found, "{path} received {} requests, expected {count} within {timeout:?}", requests.len());
        requests
    }
}
