//! The delivery lifecycle: every decision about a delivery, made in one place.
//!
//! A delivery is one event on its way to one endpoint, made of numbered attempts. Three
//! questions decide its life, and each is answered here and nowhere else:
//!
//! - a job asks for attempt *n*: [`admit`] says to make it, to skip it as a duplicate, or
//!   to close the delivery because its webhook is gone;
//! - attempt *n* ended: [`next`] says whether the delivery succeeded, is tried again
//!   (when), failed for good (why), or is left as it was;
//! - a final failure was counted against its endpoint: [`disable`] says whether the
//!   webhook must be switched off.
//!
//! The services do the I/O around these answers (the worker sends, records and reports,
//! the scheduler puts retries in their delay queues, the API asks for manual attempts),
//! and the store persists a [`Transition`] as one typed value.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::delivery::{DeliveryStatus, ErrorKind};
use crate::retry::{RetryPolicy, parse_retry_after, retry_after_delay};

/// A delivery as stored when a decision is made about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts recorded so far.
    pub attempts: u32,
    /// Whether its webhook is still active and undeleted, and its endpoint not removed.
    pub webhook_enabled: bool,
}

/// A request to make one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// Asked for by an operator (redelivery, recovery) rather than by the schedule.
    pub manual: bool,
}

impl Job {
    /// The job for the attempt after `attempts` recorded ones: what an operator's
    /// redelivery publishes (`manual`), and what resumes a delivery whose message was lost.
    pub fn after(attempts: u32, manual: bool) -> Self {
        Job { attempt: attempts.saturating_add(1), manual }
    }
}

/// What to do with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Make the attempt.
    Attempt,
    /// Send nothing: the attempt was made already (the job came twice, or a recovery path
    /// published it again), or the delivery settled and the job is not an operator's.
    Duplicate,
    /// Send nothing and close the delivery: its webhook was deactivated or deleted, or
    /// its endpoint removed. Closing it (rather than dropping the job) keeps the
    /// reconciliation sweep from bringing it back.
    Close,
}

/// Whether to make the attempt a job asks for. A job is good only for the delivery's
/// next attempt: one for an attempt already recorded is a duplicate, and so is a
/// scheduled one for a delivery that has settled (an operator may still ask for more).
pub fn admit(delivery: &Delivery, job: Job) -> Admission {
    if job.attempt != delivery.attempts.saturating_add(1) || (delivery.status.is_final() && !job.manual) {
        Admission::Duplicate
    } else if !delivery.webhook_enabled {
        Admission::Close
    } else {
        Admission::Attempt
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The receiver answered with a 2xx (see [`is_success`]).
    Succeeded,
    /// Anything else.
    Failed(Failure),
}

/// A failed attempt, as far as the lifecycle cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it failed.
    pub kind: ErrorKind,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    /// How long the receiver asked to be left alone ([`retry_after`]), uncapped.
    pub retry_after: Option<Duration>,
}

/// Whether a receiver's status means the event was delivered: any 2xx. Redirects are not
/// followed, so a 3xx is a failure like a 4xx or 5xx.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What a receiver's `Retry-After` header asks for, read at `now`: honoured on a 429
/// (too many requests) or a 503 (unavailable) only, where it means "not before then".
pub fn retry_after(status: u16, header: Option<&str>, now: DateTime<Utc>) -> Option<Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    parse_retry_after(header?, now)
}

/// What a deployment's configuration adds to a webhook's retry policy.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The delays between attempts (the webhook's own, or the configured default).
    pub policy: &'a RetryPolicy,
    /// The longest `Retry-After` honoured (`delivery.max_retry_after`).
    pub max_retry_after: Duration,
}

/// Why a delivery failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedBecause {
    /// Its policy's last attempt failed.
    Exhausted,
    /// The failure would happen again however often it is tried (a blocked address, an
    /// endpoint that cannot be used as configured).
    NotRetryable(ErrorKind),
    /// The receiver answered 410 Gone: the endpoint is gone for good, and so is its
    /// webhook.
    Gone,
}

/// What happens to a delivery: the one value the store persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The attempt delivered the event.
    Succeeded,
    /// Attempt `attempt` is due after `delay`, at `at`.
    RetryAt {
        /// The next attempt's number.
        attempt: u32,
        /// How long it waits (the delay queue it waits in).
        delay: Duration,
        /// When it is due.
        at: DateTime<Utc>,
    },
    /// No attempt will follow.
    Failed(FailedBecause),
    /// Closed without an attempt: its webhook is gone ([`Admission::Close`]).
    Closed,
    /// The attempt is kept in the log and the delivery stays as it was: an operator's
    /// attempt that failed after the delivery had settled.
    Kept,
}

impl Transition {
    /// The status the delivery takes, `None` when it keeps its own.
    pub fn status(&self) -> Option<DeliveryStatus> {
        match self {
            Transition::Succeeded => Some(DeliveryStatus::Succeeded),
            Transition::RetryAt { .. } => Some(DeliveryStatus::Retrying),
            Transition::Failed(_) | Transition::Closed => Some(DeliveryStatus::Failed),
            Transition::Kept => None,
        }
    }

    /// When the next attempt is due, for a retry.
    pub fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Transition::RetryAt { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// Whether it counts against the endpoint as a delivery that failed for good (what
    /// [`disable`] counts). A closed delivery is not the receiver's failure.
    pub fn is_final_failure(&self) -> bool {
        matches!(self, Transition::Failed(_))
    }
}

/// What follows attempt `attempt` of `delivery` (as it stood when the attempt was
/// admitted), given how it `ended`, at `now`.
///
/// A success settles the delivery. A failure is retried on the policy's schedule unless
/// the receiver said the endpoint is gone (410), the failure cannot be helped by trying
/// again, or the policy has no attempt left; a receiver that asked for more time
/// (`Retry-After`, capped and rounded up to a delay queue's) gets the later of the two.
/// An operator's attempt on a settled delivery that fails leaves it settled.
pub fn next(delivery: &Delivery, attempt: u32, ended: &Ended, rules: &Rules<'_>, now: DateTime<Utc>) -> Transition {
    let failure = match ended {
        Ended::Succeeded => return Transition::Succeeded,
        Ended::Failed(failure) => failure,
    };
    if delivery.status.is_final() {
        return Transition::Kept;
    }
    if failure.status_code == Some(410) {
        return Transition::Failed(FailedBecause::Gone);
    }
    if !failure.kind.is_retryable() {
        return Transition::Failed(FailedBecause::NotRetryable(failure.kind));
    }
    let Some(scheduled) = rules.policy.delay_after(attempt) else {
        return Transition::Failed(FailedBecause::Exhausted);
    };
    let asked = failure.retry_after.map(|asked| retry_after_delay(asked, rules.max_retry_after));
    let delay = asked.map_or(scheduled, |asked| scheduled.max(asked));
    let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    Transition::RetryAt { attempt: attempt.saturating_add(1), delay, at }
}

/// Why a webhook is switched off by hookline itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disable {
    /// Its receiver answered 410 Gone.
    Gone,
    /// This many deliveries in a row to one of its endpoints failed for good.
    FailingInARow(u32),
}

impl Disable {
    /// The reason shown on the webhook and announced in `webhook.disabled`.
    pub fn reason(&self, url: &str, at: DateTime<Utc>) -> String {
        match self {
            Disable::Gone => format!("{url} answered 410 Gone at {}", at.to_rfc3339()),
            Disable::FailingInARow(count) => format!("{count} deliveries in a row to {url} failed"),
        }
    }
}

/// Whether a delivery's `transition` switches its webhook off: a 410 always does; a
/// final failure does when it makes `consecutive_failures` (the endpoint's run of final
/// failures, this one included) reach `auto_disable_after` (0: never).
pub fn disable(transition: &Transition, consecutive_failures: u32, auto_disable_after: u32) -> Option<Disable> {
    match transition {
        Transition::Failed(FailedBecause::Gone) => Some(Disable::Gone),
        Transition::Failed(_) if auto_disable_after > 0 && consecutive_failures >= auto_disable_after => {
            Some(Disable::FailingInARow(consecutive_failures))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
