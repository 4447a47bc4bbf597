//! An endpoint's circuit breaker: what counts as the endpoint's own trouble, when the
//! circuit opens, how often an open circuit is probed, and what a job may do meanwhile.
//!
//! While an endpoint answers, its circuit is closed and its jobs are sent. After
//! [`Breaker::open_after`] attempts in a row fail in a way that says the endpoint itself
//! is in trouble ([`verdict`]: no answer, a refused connection, a 5xx, a 429), the
//! circuit opens: its
//! jobs are parked (they leave the shared delivery queue and wait in the database), and
//! one job at a time is let through as a probe, first [`Breaker::first_probe`] after
//! opening, then twice as long after each failed probe up to [`Breaker::max_probe`]. An
//! answer closes the circuit, and the parked jobs are released.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::delivery::ErrorKind;

/// When an endpoint's circuit opens and how often it is probed (the `delivery.circuit_*`
/// settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Attempts in a row that fail as the endpoint's own trouble before it opens.
    pub open_after: u32,
    /// How long an opened circuit waits before its first probe.
    pub first_probe: Duration,
    /// The longest wait between two probes.
    pub max_probe: Duration,
}

impl Breaker {
    /// The wait before the next probe, after a probe that waited `previous` failed.
    pub fn next_probe_wait(&self, previous: Duration) -> Duration {
        previous.saturating_mul(2).clamp(self.first_probe, self.max_probe.max(self.first_probe))
    }
}

/// What an attempt says of its endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The endpoint answered (a 2xx, or a 4xx other than 429: the receiver's verdict on
    /// one request): this ends a run of failures and closes an open circuit.
    Answered,
    /// The endpoint did not answer, could not be reached, or answered that it is
    /// overloaded or broken (5xx, 429): this counts towards opening its circuit.
    Trouble,
    /// Nothing about the endpoint: its address is blocked or its configuration broken,
    /// which is ours to fix, not its.
    Neither,
}

/// What an attempt that ended with `kind` (`None`: a 2xx) and `status` says of its
/// endpoint.
pub fn verdict(kind: Option<ErrorKind>, status: Option<u16>) -> Verdict {
    match kind {
        None => Verdict::Answered,
        Some(ErrorKind::HttpStatus) if status.is_some_and(|status| status == 429 || status >= 500) => Verdict::Trouble,
        Some(ErrorKind::HttpStatus) => Verdict::Answered,
        Some(ErrorKind::Timeout | ErrorKind::Connect | ErrorKind::Dns | ErrorKind::Tls | ErrorKind::Other) => {
            Verdict::Trouble
        }
        Some(ErrorKind::BlockedAddress | ErrorKind::InvalidEndpoint) => Verdict::Neither,
    }
}

named_enum! {
    /// An endpoint circuit's state, as the API shows it.
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum CircuitState {
        /// Jobs are sent.
        Closed,
        /// Jobs are parked until the next probe.
        Open,
        /// Jobs are parked; one is being sent as a probe now.
        Probing,
    }
}

/// An endpoint's circuit as stored: the run of failed attempts and, once open, when and
/// until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    /// Attempts in a row that failed as the endpoint's trouble.
    pub failures: u32,
    /// When the circuit opened; `None` while closed.
    pub opened_at: Option<DateTime<Utc>>,
    /// How long the last wait for a probe was (while open): the next doubles it.
    pub probe_wait: Option<Duration>,
    /// When the next probe may go (while open).
    pub probe_at: Option<DateTime<Utc>>,
    /// Until when a probe in flight holds the circuit (while open).
    pub probing_until: Option<DateTime<Utc>>,
}

/// What a job of an endpoint may do, as its circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send it.
    Pass,
    /// The circuit is open and a probe may go: send this job if it wins the probe.
    Probe,
    /// The circuit is open: park the job.
    Park,
}

impl Circuit {
    /// A closed circuit with no failure in a row (what no stored row means).
    pub fn closed() -> Self {
        Circuit { failures: 0, opened_at: None, probe_wait: None, probe_at: None, probing_until: None }
    }

    /// The circuit after one more attempt failed as the endpoint's trouble at `now`
    /// (`probe`: the attempt was the open circuit's probe). A closed circuit opens at
    /// [`Breaker::open_after`] failures; a failed probe doubles the wait for the next. An
    /// attempt sent before the circuit opened and failing after changes only the count.
    pub fn after_failure(&self, probe: bool, breaker: &Breaker, now: DateTime<Utc>) -> Circuit {
        let failures = self.failures.saturating_add(1);
        let wait = match (self.opened_at, probe) {
            (None, _) if failures >= breaker.open_after => breaker.first_probe,
            (None, _) => return Circuit { failures, ..Circuit::closed() },
            (Some(_), true) => breaker.next_probe_wait(self.probe_wait.unwrap_or_default()),
            (Some(_), false) => return Circuit { failures, ..self.clone() },
        };
        Circuit {
            failures,
            opened_at: Some(self.opened_at.unwrap_or(now)),
            probe_wait: Some(wait),
            probe_at: Some(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)),
            probing_until: None,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> CircuitState {
        match (self.opened_at, self.probing_until) {
            (None, _) => CircuitState::Closed,
            (Some(_), Some(until)) if until > now => CircuitState::Probing,
            (Some(_), _) => CircuitState::Open,
        }
    }

    /// What a job may do at `now`.
    pub fn gate(&self, now: DateTime<Utc>) -> Gate {
        match self.state(now) {
            CircuitState::Closed => Gate::Pass,
            CircuitState::Probing => Gate::Park,
            CircuitState::Open if self.probe_at.is_none_or(|at| at <= now) => Gate::Probe,
            CircuitState::Open => Gate::Park,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BREAKER: Breaker =
        Breaker { open_after: 5, first_probe: Duration::from_secs(5), max_probe: Duration::from_secs(300) };

    #[test]
    fn only_the_endpoints_own_trouble_counts_and_any_answer_ends_a_run() {
        for kind in [ErrorKind::Timeout, ErrorKind::Connect, ErrorKind::Dns, ErrorKind::Tls, ErrorKind::Other] {
            assert_eq!(verdict(Some(kind), None), Verdict::Trouble, "{kind:?}");
        }
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(verdict(Some(ErrorKind::HttpStatus), Some(status)), Verdict::Trouble, "{status}");
        }
        for status in [301, 400, 401, 404, 410, 422] {
            assert_eq!(verdict(Some(ErrorKind::HttpStatus), Some(status)), Verdict::Answered, "{status}");
        }
        assert_eq!(verdict(None, Some(200)), Verdict::Answered);
        assert_eq!(verdict(Some(ErrorKind::BlockedAddress), None), Verdict::Neither);
        assert_eq!(verdict(Some(ErrorKind::InvalidEndpoint), None), Verdict::Neither);
    }

    #[test]
    fn probe_waits_double_from_the_first_up_to_the_cap() {
        assert_eq!(BREAKER.next_probe_wait(Duration::ZERO), BREAKER.first_probe);
        assert_eq!(BREAKER.next_probe_wait(Duration::from_secs(5)), Duration::from_secs(10));
        assert_eq!(BREAKER.next_probe_wait(Duration::from_secs(200)), BREAKER.max_probe);
    }

    #[test]
    fn a_closed_circuit_passes_an_open_one_parks_until_its_probe_is_due_and_one_probe_goes_at_a_time() {
        let now = Utc::now();
        let second = chrono::Duration::seconds(1);
        let closed = Circuit { failures: 3, ..Circuit::closed() };
        assert_eq!((closed.state(now), closed.gate(now)), (CircuitState::Closed, Gate::Pass));
        let open = Circuit { failures: 5, opened_at: Some(now - second), probe_at: Some(now + second), ..closed };
        assert_eq!((open.state(now), open.gate(now)), (CircuitState::Open, Gate::Park));
        let due = Circuit { probe_at: Some(now - second), ..open.clone() };
        assert_eq!((due.state(now), due.gate(now)), (CircuitState::Open, Gate::Probe));
        let probing = Circuit { probing_until: Some(now + second), ..due.clone() };
        assert_eq!((probing.state(now), probing.gate(now)), (CircuitState::Probing, Gate::Park));
        let lapsed = Circuit { probing_until: Some(now - second), ..due };
        assert_eq!(lapsed.gate(now), Gate::Probe, "a probe whose worker died holds the circuit only so long");
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_and_failed_probes_wait_longer_each_time() {
        let now = Utc::now();
        let mut circuit = Circuit::closed();
        for n in 1..BREAKER.open_after {
            circuit = circuit.after_failure(false, &BREAKER, now);
            assert_eq!((circuit.failures, circuit.state(now)), (n, CircuitState::Closed));
        }
        let open = circuit.after_failure(false, &BREAKER, now);
        assert_eq!(open.state(now), CircuitState::Open);
        assert_eq!((open.opened_at, open.probe_wait), (Some(now), Some(BREAKER.first_probe)));
        assert_eq!(open.probe_at, Some(now + chrono::Duration::seconds(5)));
        let straggler = open.after_failure(false, &BREAKER, now + chrono::Duration::seconds(1));
        assert_eq!(straggler, Circuit { failures: 6, ..open.clone() }, "a request sent before it opened");
        let later = now + chrono::Duration::seconds(6);
        let probed = Circuit { probing_until: Some(later), ..open.clone() }.after_failure(true, &BREAKER, later);
        assert_eq!(probed.opened_at, Some(now), "still open since the first time");
        assert_eq!(probed.probe_wait, Some(Duration::from_secs(10)));
        assert_eq!((probed.probe_at, probed.probing_until), (Some(later + chrono::Duration::seconds(10)), None));
    }
}
