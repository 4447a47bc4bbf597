//! Warnings that repeat at a bounded rate: a failure that hits every message (the
//! database down, an endpoint down) logs one line per interval with how many times it
//! happened since, instead of one line per message.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a throttled warning may be logged.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One repeating warning's state. Usually a `static` beside the warning:
///
/// ```
/// use hookline_telemetry::Throttle;
/// static STORE_FAILED: Throttle = Throttle::new();
/// if let Some(repeats) = STORE_FAILED.due() {
///     tracing::warn!(repeats, "could not store an event; it will be retried");
/// }
/// ```
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    /// Occurrences since the last line, that line's included.
    since: u64,
}

impl Throttle {
    /// A warning not logged yet: its first occurrence is.
    pub const fn new() -> Self {
        Self { state: Mutex::new(State { last: None, since: 0 }) }
    }

    /// Counts one occurrence; `Some(n)` when it is to be logged now, `n` being the
    /// occurrences the line stands for (this one and those left unlogged before it).
    pub fn due(&self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.since += 1;
        let due = state.last.is_none_or(|last| now.duration_since(last) >= INTERVAL);
        if !due {
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.since))
    }
}

/// `tracing::warn!` at most once per [`INTERVAL`] from this call site, with a `repeats`
/// field counting the occurrences the line stands for: for a failure that can hit every
/// message while a dependency is down.
#[macro_export]
macro_rules! warn_throttled {
    ($($arg:tt)+) => {{
        static THROTTLE: $crate::Throttle = $crate::Throttle::new();
        if let Some(repeats) = THROTTLE.due() {
            ::tracing::warn!(repeats, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_then_one_line_per_interval_counts_the_rest() {
        let throttle = Throttle::new();
        let start = Instant::now();
        assert_eq!(throttle.due_at(start), Some(1));
        for n in 1..1000 {
            assert_eq!(throttle.due_at(start + Duration::from_millis(n)), None);
        }
        // 999 left unlogged, and this one.
        assert_eq!(throttle.due_at(start + INTERVAL), Some(1000));
        assert_eq!(throttle.due_at(start + INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(throttle.due_at(start + INTERVAL * 3), Some(2));
    }
}
