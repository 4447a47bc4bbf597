use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::delivery::{DeliveryStatus, ErrorKind};
use crate::retry::RetryPolicy;

const STATUSES: [DeliveryStatus; 4] =
    [DeliveryStatus::Pending, DeliveryStatus::Retrying, DeliveryStatus::Succeeded, DeliveryStatus::Failed];

const KINDS: [ErrorKind; 8] = [
    ErrorKind::HttpStatus,
    ErrorKind::Timeout,
    ErrorKind::Connect,
    ErrorKind::Dns,
    ErrorKind::Tls,
    ErrorKind::BlockedAddress,
    ErrorKind::InvalidEndpoint,
    ErrorKind::Other,
];

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn open(attempts: u32) -> Delivery {
    Delivery { status: DeliveryStatus::Pending, attempts, webhook_enabled: true }
}

fn failed(status_code: u16) -> Ended {
    Ended::Failed(Failure { kind: ErrorKind::HttpStatus, status_code: Some(status_code), retry_after: None })
}

fn rules(policy: &RetryPolicy) -> Rules<'_> {
    Rules { policy, max_retry_after: Duration::from_secs(3600) }
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[test]
fn a_job_is_made_only_for_the_next_attempt_of_an_open_delivery_or_by_an_operator() {
    for status in STATUSES {
        for attempts in 0..4 {
            for webhook_enabled in [true, false] {
                let delivery = Delivery { status, attempts, webhook_enabled };
                for attempt in 1..6 {
                    for manual in [false, true] {
                        let expected = if attempt != attempts + 1 || (status.is_final() && !manual) {
                            Admission::Duplicate
                        } else if !webhook_enabled {
                            Admission::Close
                        } else {
                            Admission::Attempt
                        };
                        let job = Job { attempt, manual };
                        assert_eq!(admit(&delivery, job), expected, "{delivery:?} {job:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn duplicates_of_every_kind_send_nothing() {
    // The same job twice: the attempt is recorded the first time.
    assert_eq!(admit(&open(1), Job { attempt: 1, manual: false }), Admission::Duplicate);
    // A stray later attempt, as a recovery path might publish.
    assert_eq!(admit(&open(1), Job { attempt: 3, manual: false }), Admission::Duplicate);
    // A scheduled retry of a delivery an operator's attempt settled meanwhile.
    let settled = Delivery { status: DeliveryStatus::Succeeded, attempts: 2, webhook_enabled: true };
    assert_eq!(admit(&settled, Job { attempt: 3, manual: false }), Admission::Duplicate);
    // But an operator may redeliver a settled delivery, as its next attempt.
    assert_eq!(admit(&settled, Job::after(settled.attempts, true)), Admission::Attempt);
    assert_eq!(admit(&settled, Job { attempt: 2, manual: true }), Admission::Duplicate);
}

#[test]
fn a_delivery_whose_webhook_is_gone_is_closed_not_attempted() {
    let gone = Delivery { status: DeliveryStatus::Retrying, attempts: 1, webhook_enabled: false };
    assert_eq!(admit(&gone, Job { attempt: 2, manual: false }), Admission::Close);
    assert_eq!(admit(&gone, Job::after(gone.attempts, true)), Admission::Close);
    assert_eq!(Transition::Closed.status(), Some(DeliveryStatus::Failed));
    assert!(!Transition::Closed.is_final_failure(), "closing is not the receiver's failure");
}

#[test]
fn manual_and_resumed_jobs_are_the_next_attempt() {
    assert_eq!(Job::after(2, true), Job { attempt: 3, manual: true });
    assert_eq!(Job::after(0, false), Job { attempt: 1, manual: false });
    assert_eq!(admit(&open(2), Job::after(2, false)), Admission::Attempt);
}

#[test]
fn any_2xx_is_a_success_and_nothing_else_is() {
    for status in [200, 201, 202, 204, 299] {
        assert!(is_success(status), "{status}");
    }
    for status in [100, 199, 300, 301, 304, 400, 404, 410, 429, 500, 503] {
        assert!(!is_success(status), "{status}");
    }
}

#[test]
fn a_success_settles_the_delivery_whatever_its_state() {
    let policy = RetryPolicy::default();
    for status in STATUSES {
        let delivery = Delivery { status, attempts: 0, webhook_enabled: true };
        let transition = next(&delivery, 1, &Ended::Succeeded, &rules(&policy), Utc::now());
        assert_eq!(transition, Transition::Succeeded, "{status:?}");
        assert_eq!(transition.status(), Some(DeliveryStatus::Succeeded));
    }
}

#[test]
fn the_reference_schedule_retries_after_5_then_10_minutes_then_fails() {
    let policy = RetryPolicy::default();
    let now = at("2026-12-01T10:00:00Z");
    let after_first = next(&open(0), 1, &failed(500), &rules(&policy), now);
    assert_eq!(after_first, Transition::RetryAt { attempt: 2, delay: minutes(5), at: at("2026-12-01T10:05:00Z") });
    assert_eq!(after_first.status(), Some(DeliveryStatus::Retrying));
    assert_eq!(after_first.next_attempt_at(), Some(at("2026-12-01T10:05:00Z")));
    let later = at("2026-12-01T10:05:00Z");
    let retrying = Delivery { status: DeliveryStatus::Retrying, ..open(1) };
    assert_eq!(
        next(&retrying, 2, &failed(503), &rules(&policy), later),
        Transition::RetryAt { attempt: 3, delay: minutes(10), at: at("2026-12-01T10:15:00Z") }
    );
    let third = next(&Delivery { attempts: 2, ..retrying }, 3, &failed(500), &rules(&policy), later);
    assert_eq!(third, Transition::Failed(FailedBecause::Exhausted));
    assert!(third.is_final_failure());
    assert_eq!(third.next_attempt_at(), None);
}

#[test]
fn inspectorios_60_seconds_three_times_makes_four_attempts() {
    // 004: "auto retry to send the request 3 times (each time separated by 60s)".
    let policy = RetryPolicy::new(vec![Duration::from_secs(60); 3]).unwrap();
    assert_eq!(policy.max_attempts(), 4);
    let now = at("2026-12-01T10:00:00Z");
    for attempt in 1..=3 {
        let delivery = Delivery { status: DeliveryStatus::Retrying, ..open(attempt - 1) };
        let transition = next(&delivery, attempt, &failed(500), &rules(&policy), now);
        let expected = Transition::RetryAt { attempt: attempt + 1, delay: minutes(1), at: at("2026-12-01T10:01:00Z") };
        assert_eq!(transition, expected, "after attempt {attempt}");
    }
    let last = next(&open(3), 4, &failed(500), &rules(&policy), now);
    assert_eq!(last, Transition::Failed(FailedBecause::Exhausted));
}

#[test]
fn a_policy_without_delays_makes_one_attempt() {
    let policy = RetryPolicy::new(vec![]).unwrap();
    assert_eq!(
        next(&open(0), 1, &failed(500), &rules(&policy), Utc::now()),
        Transition::Failed(FailedBecause::Exhausted)
    );
}

#[test]
fn failures_that_would_happen_again_are_not_retried_and_every_other_kind_is() {
    let policy = RetryPolicy::default();
    for kind in KINDS {
        let ended = Ended::Failed(Failure { kind, status_code: None, retry_after: None });
        let transition = next(&open(0), 1, &ended, &rules(&policy), Utc::now());
        if kind.is_retryable() {
            assert!(matches!(transition, Transition::RetryAt { attempt: 2, .. }), "{kind:?}: {transition:?}");
        } else {
            assert_eq!(transition, Transition::Failed(FailedBecause::NotRetryable(kind)));
        }
    }
    assert!(!ErrorKind::BlockedAddress.is_retryable() && !ErrorKind::InvalidEndpoint.is_retryable());
}

#[test]
fn a_410_fails_the_delivery_at_once_and_disables_its_webhook() {
    let policy = RetryPolicy::default();
    let transition = next(&open(0), 1, &failed(410), &rules(&policy), Utc::now());
    assert_eq!(transition, Transition::Failed(FailedBecause::Gone));
    assert_eq!(disable(&transition, 1, 20), Some(Disable::Gone));
    assert_eq!(disable(&transition, 1, 0), Some(Disable::Gone), "even with auto-disable off");
    let reason = Disable::Gone.reason("https://crm.example.com/h", at("2026-12-01T10:00:00Z"));
    assert_eq!(reason, "https://crm.example.com/h answered 410 Gone at 2026-12-01T10:00:00+00:00");
}

#[test]
fn an_operators_failed_attempt_leaves_a_settled_delivery_as_it_was() {
    let policy = RetryPolicy::default();
    for status in [DeliveryStatus::Succeeded, DeliveryStatus::Failed] {
        let settled = Delivery { status, attempts: 3, webhook_enabled: true };
        for ended in [failed(500), failed(410)] {
            let transition = next(&settled, 4, &ended, &rules(&policy), Utc::now());
            assert_eq!(transition, Transition::Kept, "{status:?} {ended:?}");
            assert_eq!((transition.status(), disable(&transition, 99, 1)), (None, None));
        }
    }
}

#[test]
fn an_operators_failed_attempt_on_an_open_delivery_goes_on_with_the_schedule() {
    // Attempt 2 was waiting its 5 minutes; the operator's attempt 2 fails: attempt 3
    // follows 10 minutes later, as it would have after the scheduled attempt 2.
    let policy = RetryPolicy::default();
    let retrying = Delivery { status: DeliveryStatus::Retrying, attempts: 1, webhook_enabled: true };
    assert_eq!(admit(&retrying, Job::after(retrying.attempts, true)), Admission::Attempt);
    let now = at("2026-12-01T10:02:00Z");
    assert_eq!(
        next(&retrying, 2, &failed(500), &rules(&policy), now),
        Transition::RetryAt { attempt: 3, delay: minutes(10), at: at("2026-12-01T10:12:00Z") }
    );
}

#[test]
fn retry_after_is_honoured_on_429_and_503_only() {
    let now = at("2015-10-21T07:28:00Z");
    assert_eq!(retry_after(429, Some("120"), now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(503, Some("Wed, 21 Oct 2015 07:30:00 GMT"), now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(500, Some("120"), now), None);
    assert_eq!(retry_after(200, Some("120"), now), None);
    assert_eq!(retry_after(429, None, now), None);
    assert_eq!(retry_after(429, Some("soon"), now), None);
}

#[test]
fn a_receiver_asking_for_more_time_gets_the_later_of_its_wish_and_the_schedule() {
    let policy = RetryPolicy::new(vec![Duration::from_secs(1), minutes(10)]).unwrap();
    let now = at("2026-12-01T10:00:00Z");
    let asking = |seconds: u64| {
        Ended::Failed(Failure {
            kind: ErrorKind::HttpStatus,
            status_code: Some(429),
            retry_after: Some(Duration::from_secs(seconds)),
        })
    };
    let delay = |transition: Transition| match transition {
        Transition::RetryAt { delay, .. } => delay,
        other => panic!("not a retry: {other:?}"),
    };
    // More than the schedule's 1 s: rounded up to the next delay queue's (3 s → 5 s).
    assert_eq!(delay(next(&open(0), 1, &asking(3), &rules(&policy), now)), Duration::from_secs(5));
    // Less than the schedule's 10 min: the schedule wins.
    let retrying = Delivery { status: DeliveryStatus::Retrying, ..open(1) };
    assert_eq!(delay(next(&retrying, 2, &asking(30), &rules(&policy), now)), minutes(10));
    // A day: capped at `max_retry_after` (1 h).
    assert_eq!(delay(next(&open(0), 1, &asking(86_400), &rules(&policy), now)), minutes(60));
    let tight = Rules { policy: &policy, max_retry_after: Duration::from_secs(2) };
    assert_eq!(delay(next(&open(0), 1, &asking(86_400), &tight, now)), Duration::from_secs(2));
    // Retry-After never makes another attempt than the policy allows.
    let last = Delivery { status: DeliveryStatus::Retrying, ..open(2) };
    assert_eq!(next(&last, 3, &asking(3), &rules(&policy), now), Transition::Failed(FailedBecause::Exhausted));
}

#[test]
fn final_failures_in_a_row_disable_the_webhook_at_the_threshold() {
    let exhausted = Transition::Failed(FailedBecause::Exhausted);
    assert_eq!(disable(&exhausted, 19, 20), None);
    assert_eq!(disable(&exhausted, 20, 20), Some(Disable::FailingInARow(20)));
    assert_eq!(disable(&exhausted, 21, 20), Some(Disable::FailingInARow(21)));
    assert_eq!(disable(&exhausted, 1_000, 0), None, "0 switches auto-disable off");
    let blocked = Transition::Failed(FailedBecause::NotRetryable(ErrorKind::BlockedAddress));
    assert_eq!(disable(&blocked, 3, 3), Some(Disable::FailingInARow(3)));
    let retry = Transition::RetryAt { attempt: 2, delay: minutes(5), at: Utc::now() };
    for transition in [Transition::Succeeded, retry, Transition::Closed, Transition::Kept] {
        assert_eq!(disable(&transition, 1_000, 1), None, "{transition:?}");
    }
    assert_eq!(
        Disable::FailingInARow(20).reason("https://crm.example.com/h", Utc::now()),
        "20 deliveries in a row to https://crm.example.com/h failed"
    );
}

/// Plays a delivery through the lifecycle as the services would, on tokio's paused
/// clock: a job is admitted, its attempt ends as `receiver` says, and a retry waits its
/// delay. Returns the times (from the first attempt) at which attempts were made, and
/// the delivery's final state.
async fn play(policy: &RetryPolicy, mut receiver: impl FnMut(u32) -> Ended) -> (Vec<Duration>, Delivery) {
    let started = tokio::time::Instant::now();
    let wall = at("2026-12-01T10:00:00Z");
    let now = || wall + chrono::Duration::from_std(started.elapsed()).unwrap();
    let mut delivery = open(0);
    let mut job = Job { attempt: 1, manual: false };
    let mut made = Vec::new();
    loop {
        assert_eq!(admit(&delivery, job), Admission::Attempt);
        made.push(started.elapsed());
        let transition = next(&delivery, job.attempt, &receiver(job.attempt), &rules(policy), now());
        delivery =
            Delivery { status: transition.status().unwrap_or(delivery.status), attempts: job.attempt, ..delivery };
        let Transition::RetryAt { attempt, delay, at } = transition else { return (made, delivery) };
        tokio::time::sleep(delay).await;
        assert_eq!(now(), at, "the retry is due when its delay queue lets it go");
        assert_eq!(admit(&delivery, Job { attempt: job.attempt, manual: false }), Admission::Duplicate);
        job = Job { attempt, manual: false };
    }
}

#[tokio::test(start_paused = true)]
async fn on_virtual_time_a_receiver_that_always_fails_gets_attempts_at_0_5_and_15_minutes() {
    let (made, delivery) = play(&RetryPolicy::default(), |_| failed(500)).await;
    assert_eq!(made, [Duration::ZERO, minutes(5), minutes(15)]);
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Failed, 3));
}

#[tokio::test(start_paused = true)]
async fn on_virtual_time_a_receiver_failing_twice_succeeds_on_the_third_attempt() {
    let (made, delivery) =
        play(&RetryPolicy::default(), |attempt| if attempt < 3 { failed(503) } else { Ended::Succeeded }).await;
    assert_eq!(made, [Duration::ZERO, minutes(5), minutes(15)]);
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Succeeded, 3));
}

#[tokio::test(start_paused = true)]
async fn on_virtual_time_60_seconds_three_times_spaces_four_attempts_a_minute_apart() {
    let policy = RetryPolicy::new(vec![Duration::from_secs(60); 3]).unwrap();
    let (made, delivery) = play(&policy, |_| failed(500)).await;
    assert_eq!(made, [Duration::ZERO, minutes(1), minutes(2), minutes(3)]);
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Failed, 4));
}

#[tokio::test(start_paused = true)]
async fn on_virtual_time_a_429_pushes_the_next_attempt_back_to_what_it_asked() {
    let policy = RetryPolicy::new(vec![Duration::from_secs(1), Duration::from_secs(1)]).unwrap();
    let (made, delivery) = play(&policy, |attempt| match attempt {
        1 => Ended::Failed(Failure {
            kind: ErrorKind::HttpStatus,
            status_code: Some(429),
            retry_after: Some(Duration::from_secs(2)),
        }),
        _ => Ended::Succeeded,
    })
    .await;
    assert_eq!(made, [Duration::ZERO, Duration::from_secs(2)]);
    assert_eq!(delivery.status, DeliveryStatus::Succeeded);
}
