//! The broker connection a service lives on, kept up by a supervisor task: it connects
//! to any node `amqp.url` lists, declares the topology, hands the connection out, and
//! when the connection is lost connects again (capped exponential backoff with jitter)
//! and declares everything again. It logs one line when the broker goes and one when it
//! is back, never one per attempt.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt as _;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{AmqpContext as _, Error, Result, Topology};

/// One connection and its confirming publisher channel. `generation` counts the
/// connections made, so a consumer knows a link is a new one.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) connection: Arc<Connection>,
    pub(crate) channel: Channel,
    pub(crate) generation: u64,
}

/// What the supervisor and everyone using the connection share.
pub(crate) struct Shared {
    pub(crate) topology: Topology,
    /// Delays whose retry queues are declared on every connection: the configured ones
    /// and any declared on demand since.
    delays: Mutex<BTreeSet<Duration>>,
    link: watch::Sender<Option<Link>>,
    /// Told when a publisher finds its channel closed under a live connection: the
    /// supervisor then starts over with a new connection.
    broken: Notify,
}

impl Shared {
    pub(crate) fn new(topology: Topology, delays: &[Duration]) -> Self {
        let delays = Topology::standing_delays(delays).into_iter().collect();
        Self { topology, delays: Mutex::new(delays), link: watch::Sender::new(None), broken: Notify::new() }
    }

    /// The connection as it is now, if there is one.
    pub(crate) fn current(&self) -> Option<Link> {
        self.link.borrow().clone()
    }

    /// Waits for a connection newer than generation `after` (any, for `None`); `None`
    /// when `stop` is cancelled first.
    pub(crate) async fn next_link(&self, after: Option<u64>, stop: &CancellationToken) -> Option<Link> {
        let mut changes = self.link.subscribe();
        loop {
            let newer =
                changes.borrow_and_update().clone().filter(|link| after.is_none_or(|old| link.generation > old));
            if newer.is_some() {
                return newer;
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                changed = changes.changed() => changed.ok()?,
            }
        }
    }

    /// A publisher found `generation`'s channel closed.
    pub(crate) fn report_broken(&self, generation: u64) {
        if self.current().is_some_and(|link| link.generation == generation) {
            self.broken.notify_one();
        }
    }

    /// The delays whose retry queues every connection declares.
    pub(crate) fn delays(&self) -> Vec<Duration> {
        self.delays.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied().collect()
    }

    /// Adds `delay` to what every connection declares; whether it is new.
    pub(crate) fn remember_delay(&self, delay: Duration) -> bool {
        self.delays.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(delay)
    }
}

/// Keeps `shared`'s link up until `stop` is cancelled, connecting as `name` to the nodes
/// of `urls` in turn.
pub(crate) async fn supervise(shared: Arc<Shared>, urls: Vec<String>, name: String, stop: CancellationToken) {
    let mut generation = 0;
    let mut failures = 0_u32;
    let mut next_url = 0;
    // Whether the current outage was logged: one line when the broker goes, one when it
    // is back.
    let mut outage = false;
    loop {
        let url = &urls[next_url % urls.len()];
        next_url += 1;
        match link(&shared, url, &name, generation + 1).await {
            Ok(link) => {
                generation = link.generation;
                if outage {
                    tracing::info!(attempts = failures + 1, "connected to the broker again");
                }
                failures = 0;
                shared.link.send_replace(Some(link.clone()));
                let lost = until_lost(&shared, &link, &stop).await;
                shared.link.send_replace(None);
                close(link).await;
                let Some(why) = lost else { return };
                tracing::warn!(reason = %why, "lost the connection to the broker; reconnecting");
                outage = true;
            }
            Err(err) => {
                if !outage {
                    tracing::warn!(error = %err, "cannot reach the broker; trying again until it answers");
                    outage = true;
                }
                failures = failures.saturating_add(1);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(hookline_core::backoff::after(failures)) => {}
        }
    }
}

/// Closes a link's publishing channel, then its connection (closing the connection
/// first would leave the dropped channel to close itself on a closing connection, which
/// lapin reports as a connection error), each for at most a moment: a lost connection
/// answers nothing.
async fn close(link: Link) {
    const MOMENT: Duration = Duration::from_secs(2);
    let _ = tokio::time::timeout(MOMENT, link.channel.close(200, "closing".into())).await;
    let _ = tokio::time::timeout(MOMENT, link.connection.close(200, "closing".into())).await;
}

/// Connects to `url`, opens a confirming channel and declares the topology.
async fn link(shared: &Shared, url: &str, name: &str, generation: u64) -> Result<Link> {
    let connection = crate::connect(url, name).await?;
    let channel = connection.create_channel().await.context("opening a publishing channel")?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.context("enabling publisher confirms")?;
    shared.topology.declare(&channel, &shared.delays()).await?;
    Ok(Link { connection: Arc::new(connection), channel, generation })
}

/// Waits until `link`'s connection fails or its publisher channel breaks (`Some` with
/// why), or `stop` is cancelled (`None`). Another channel's error (a passive declaration
/// of a missing queue, say) closes only that channel and is not a loss.
async fn until_lost(shared: &Shared, link: &Link, stop: &CancellationToken) -> Option<String> {
    let mut events = link.connection.events_listener();
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            () = shared.broken.notified() => return Some("the publishing channel was closed".into()),
            event = events.next() => match event {
                Some(lapin::Event::Error(err))
                    if !link.connection.status().connected() || !link.channel.status().connected() =>
                {
                    return Some(err.to_string());
                }
                Some(lapin::Event::ConnectionBlocked(reason)) => {
                    tracing::warn!(%reason, "the broker is blocking publishes (a resource alarm); they wait until it lifts");
                }
                Some(lapin::Event::ConnectionUnblocked) => tracing::info!("the broker takes publishes again"),
                Some(_) => {}
                None => return Some("the connection ended".into()),
            },
        }
    }
}

/// Makes sure the delay queue of `delay` exists: declared on the current connection the
/// first time it is asked for, and on every connection made from then on.
pub(crate) async fn ensure_delay_queue(shared: &Shared, delay: Duration) -> Result<String> {
    if shared.remember_delay(delay) {
        let link = shared.current().ok_or(Error::Disconnected)?;
        shared.topology.declare_delay_queue(&link.channel, delay).await?;
    }
    Ok(shared.topology.delay_queue(delay))
}
