//! Knowing when webhooks, endpoints or credentials change, so that what routers and
//! workers keep of them in memory ([`ConfigCache`]) is dropped the moment a change
//! commits.
//!
//! Migration V7 makes every such change `NOTIFY hookline_config` at commit. A
//! [`ConfigWatch`] listens on a connection of its own and counts the notifications into
//! a version number; a cache entry is good only while the version it was read under is
//! still current. While the listening connection is down nothing can be trusted, so the
//! watch reports no version and every read goes to the database until it listens again.

use std::collections::HashMap;
use std::hash::Hash;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::{Error, QueryContext as _, Result};

/// The channel migration V7's triggers notify.
pub const CHANNEL: &str = "hookline_config";

/// How long a cached value is used at most, even with no change notified: a safety
/// net, should a change ever reach the tables without passing the triggers.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Values a cache holds before it starts over.
pub const CAPACITY: usize = 10_000;

/// How long to wait before listening again after the connection was lost.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The configuration's version as this process last heard of it; cheap to clone.
#[derive(Clone)]
pub struct ConfigWatch {
    state: Arc<State>,
}

struct State {
    /// Bumped by every notification and by every loss or regain of the connection.
    version: AtomicU64,
    /// Whether a notification would reach us now.
    listening: AtomicBool,
    /// Dropped with the last clone, which ends the listening task.
    _stop: Option<oneshot::Sender<()>>,
}

impl ConfigWatch {
    /// A watch that never listens: every cache read goes to the database. For tools and
    /// tests that work on a database without a running listener.
    pub fn unwatched() -> Self {
        Self { state: Arc::new(State { version: AtomicU64::new(0), listening: AtomicBool::new(false), _stop: None }) }
    }

    /// Listens for changes on a connection of its own to `url`, for as long as a clone
    /// of the watch lives. Nothing is cached until it listens; a loss is logged, caching
    /// stops, and the watch connects again every second. Fails only on an unusable URL.
    pub fn listen(url: &str) -> Result<Self> {
        let config =
            tokio_postgres::Config::from_str(url).map_err(|err| Error::Config(format!("database.url: {err}")))?;
        let (stop, stopped) = oneshot::channel();
        let state =
            Arc::new(State { version: AtomicU64::new(0), listening: AtomicBool::new(false), _stop: Some(stop) });
        tokio::spawn(keep_listening(config, Arc::downgrade(&state), stopped));
        Ok(Self { state })
    }

    /// Waits until the watch listens (and so caches), polling every 10 ms.
    pub async fn until_listening(&self) {
        while self.current().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The version to tag a read with; `None` while not listening, when nothing read
    /// may be kept.
    pub fn current(&self) -> Option<u64> {
        // The version is read after `listening`: a loss sets `listening` before bumping,
        // so a version read as listening is one that a later loss will have moved on from.
        if self.state.listening.load(Ordering::Acquire) {
            Some(self.state.version.load(Ordering::Acquire))
        } else {
            None
        }
    }
}

impl State {
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn set_listening(&self, listening: bool) {
        if listening {
            self.changed();
            self.listening.store(true, Ordering::Release);
        } else {
            self.listening.store(false, Ordering::Release);
            self.changed();
        }
    }
}

/// The listening connection: its client must live as long as it is polled.
struct Listener {
    _client: tokio_postgres::Client,
    connection: tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
}

/// Connects and listens; marks the state listening once `LISTEN` is in effect.
async fn connect(config: &tokio_postgres::Config, state: &State) -> Result<Listener> {
    let (client, mut connection) = config.connect(NoTls).await.context("connecting to listen for changes")?;
    // The connection must be polled for `LISTEN` to complete; notifications that arrive
    // before it returns only bump the version, which is harmless.
    let statement = format!("LISTEN {CHANNEL}");
    {
        let listen = client.batch_execute(&statement);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => {
                    done.context("listening for changes")?;
                    break;
                }
                message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                    Some(Ok(_)) => state.changed(),
                    Some(Err(err)) => return Err(err).context("listening for changes"),
                    None => return Err(Error::Listen("the server closed the connection")),
                },
            }
        }
    }
    state.set_listening(true);
    Ok(Listener { _client: client, connection })
}

/// Connects, then counts notifications until the watch is dropped; after a loss, stops
/// caching and connects again. One line when listening is lost, one when it is back.
async fn keep_listening(
    config: tokio_postgres::Config,
    state: std::sync::Weak<State>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut lost = false;
    loop {
        let listener = {
            let Some(watch) = state.upgrade() else { return };
            connect(&config, &watch).await
        };
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(err) => {
                if !lost {
                    tracing::warn!(error = %err, "cannot listen for webhook changes yet; not caching until it can");
                    lost = true;
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                }
            }
        };
        if lost {
            tracing::info!("listening for webhook changes again");
        }
        let why = tokio::select! {
            _ = &mut stopped => return,
            why = receive(&mut listener, &state) => why,
        };
        let Some(watch) = state.upgrade() else { return };
        watch.set_listening(false);
        tracing::warn!(error = %why, "lost the connection that listens for webhook changes; not caching until it is back");
        lost = true;
    }
}

/// Bumps the version on each notification until the connection fails.
async fn receive(listener: &mut Listener, state: &std::sync::Weak<State>) -> String {
    loop {
        match std::future::poll_fn(|cx| listener.connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => match state.upgrade() {
                Some(state) => state.changed(),
                None => return "the watch was dropped".into(),
            },
            Some(Ok(_)) => {}
            Some(Err(err)) => return err.to_string(),
            None => return "the server closed the connection".into(),
        }
    }
}

/// Values read from the configuration tables, kept while no change was notified, and at
/// most `max_age` as a safety net.
pub struct ConfigCache<K, V> {
    watch: ConfigWatch,
    max_age: Duration,
    capacity: usize,
    entries: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    version: u64,
    values: HashMap<K, (Instant, V)>,
}

impl<K: Eq + Hash, V: Clone> ConfigCache<K, V> {
    /// An empty cache that forgets everything when `watch` reports a change, and holds up
    /// to `capacity` values (all are dropped when it is full: the next reads refill it).
    pub fn new(watch: ConfigWatch, max_age: Duration, capacity: usize) -> Self {
        Self { watch, max_age, capacity, entries: Mutex::new(Entries { version: 0, values: HashMap::new() }) }
    }

    /// The version to pass to [`ConfigCache::insert`]: take it before reading from the
    /// database, so a change committed after the read is not kept.
    pub fn version(&self) -> Option<u64> {
        self.watch.current()
    }

    /// The value kept for `key`, if it is still good.
    pub fn get(&self, key: &K) -> Option<V> {
        let current = self.watch.current()?;
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.version != current {
            entries.values.clear();
            entries.version = current;
            return None;
        }
        entries.values.get(key).filter(|(stored, _)| stored.elapsed() < self.max_age).map(|(_, value)| value.clone())
    }

    /// Keeps `value`, read from the database under `version`, unless a change came since.
    pub fn insert(&self, version: Option<u64>, key: K, value: V) {
        let Some(version) = version else { return };
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.watch.current() != Some(version) {
            return;
        }
        if entries.version != version {
            entries.values.clear();
            entries.version = version;
        }
        if entries.values.len() >= self.capacity {
            entries.values.clear();
        }
        entries.values.insert(key, (Instant::now(), value));
    }
}
