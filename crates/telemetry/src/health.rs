//! What `/readyz` and `/healthz` answer on every service's metrics port.
//!
//! **Ready** means every dependency a service registered answers now (the database,
//! the broker): an orchestrator sends it no traffic otherwise, and the answer names what
//! is missing. **Live** means the process is not wedged: each consume loop's
//! [`Watchdog`] says whether it has stopped making progress (every handler place taken
//! and none given back for its stall bound). A loop that is stalled while a dependency
//! is down is waiting, not wedged: the service rides outages out by itself, and
//! restarting it would only lose what it holds. Only a stall with every dependency up
//! fails `/healthz`, so a restart is asked for exactly when it is the cure.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// The process's readiness checks and watchdogs (one for all services of `hookline all`).
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<Vec<(String, Check)>>>,
    watchdogs: Arc<Mutex<Vec<Watchdog>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Health {
    /// Adds a dependency `name` (e.g. `hookline-worker: database`) that `check` reaches,
    /// answering why not when it cannot.
    pub fn check<F, Fut>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        self.lock_checks().push((name.into(), check));
    }

    /// A watchdog for a loop named `name`, stalled once it is blocked with no progress
    /// for `stall_after`.
    pub fn watchdog(&self, name: impl Into<String>, stall_after: Duration) -> Watchdog {
        let watchdog = Watchdog(Arc::new(WatchdogState {
            name: name.into(),
            stall_after,
            started: Instant::now(),
            progress_ms: AtomicU64::new(0),
            blocked: AtomicBool::new(false),
        }));
        self.watchdogs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(watchdog.clone());
        watchdog
    }

    /// Ready: every dependency answers. Otherwise what does not, and why.
    pub async fn ready(&self) -> Result<(), Vec<String>> {
        let checks = self.lock_checks().clone();
        let mut missing = Vec::new();
        for (name, check) in checks {
            match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => missing.push(format!("{name}: {why}")),
                Err(_) => missing.push(format!("{name}: no answer within {CHECK_TIMEOUT:?}")),
            }
        }
        if missing.is_empty() { Ok(()) } else { Err(missing) }
    }

    /// Live: no loop is stalled, or one is but a dependency is down (it is waiting for
    /// it). Otherwise the loops that are wedged.
    pub async fn live(&self) -> Result<(), Vec<String>> {
        let stalled: Vec<String> = {
            let watchdogs = self.watchdogs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            watchdogs
                .iter()
                .filter_map(|watchdog| {
                    let for_ = watchdog.stalled_for()?;
                    Some(format!("{} has made no progress for {}s", watchdog.0.name, for_.as_secs()))
                })
                .collect()
        };
        if stalled.is_empty() || self.ready().await.is_err() { Ok(()) } else { Err(stalled) }
    }

    fn lock_checks(&self) -> std::sync::MutexGuard<'_, Vec<(String, Check)>> {
        self.checks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct WatchdogState {
    name: String,
    stall_after: Duration,
    started: Instant,
    /// When progress was last made, in milliseconds since `started`.
    progress_ms: AtomicU64,
    /// Whether the loop is waiting for a place to free (not for work to come).
    blocked: AtomicBool,
}

/// One loop's progress: it reports each piece of work finished and whether it is
/// blocked waiting for room; cheap to clone.
#[derive(Clone)]
pub struct Watchdog(Arc<WatchdogState>);

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Watchdog").field(&self.0.name).finish()
    }
}

impl Watchdog {
    /// A piece of work was taken or finished.
    pub fn progress(&self) {
        let now = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.progress_ms.store(now, Ordering::Relaxed);
    }

    /// The loop starts (`true`) or stops waiting for room to take more work: the stall
    /// bound counts from the later of this and the last progress.
    pub fn blocked(&self, blocked: bool) {
        self.progress();
        self.0.blocked.store(blocked, Ordering::Relaxed);
    }

    /// How long the loop has been blocked with no progress, once that is longer than
    /// its stall bound.
    fn stalled_for(&self) -> Option<Duration> {
        if !self.0.blocked.load(Ordering::Relaxed) {
            return None;
        }
        let since = Duration::from_millis(self.0.progress_ms.load(Ordering::Relaxed));
        let idle = self.0.started.elapsed().saturating_sub(since);
        (idle > self.0.stall_after).then_some(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_what_is_missing() {
        let health = Health::default();
        assert_eq!(health.ready().await, Ok(()));
        health.check("svc: database", || async { Ok(()) });
        health.check("svc: broker", || async { Err("not connected".to_owned()) });
        assert_eq!(health.ready().await, Err(vec!["svc: broker: not connected".to_owned()]));
    }

    #[tokio::test]
    async fn a_loop_blocked_without_progress_is_wedged_only_while_its_dependencies_answer() {
        let health = Health::default();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        health.check("svc: database", move || {
            let up = flag.load(Ordering::Relaxed);
            async move { if up { Ok(()) } else { Err("down".to_owned()) } }
        });
        let watchdog = health.watchdog("svc consuming q", Duration::from_millis(50));
        watchdog.progress();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(health.live().await, Ok(()), "idle, waiting for work, is not wedged");
        watchdog.blocked(true);
        assert_eq!(health.live().await, Ok(()), "blocked, with progress just now");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let wedged = health.live().await.unwrap_err();
        assert!(wedged[0].starts_with("svc consuming q has made no progress"), "{wedged:?}");
        up.store(false, Ordering::Relaxed);
        assert_eq!(health.live().await, Ok(()), "stalled while the database is down: waiting for it");
        up.store(true, Ordering::Relaxed);
        watchdog.progress();
        assert_eq!(health.live().await, Ok(()), "progress again");
    }
}
