//! The retry policy: how long to wait before each further attempt, and when to stop.

use std::time::Duration;

/// Attempt 1 is immediate; after attempt `n` fails, attempt `n + 1` waits
/// `delays[n - 1]`; when no delay is left the delivery has failed for good.
///
/// The shipped default (5 minutes, then 10 minutes: 3 attempts in all) is the schedule
/// of the reference products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
}

/// The longest delay accepted, so a typo cannot park a message for a year.
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most attempts one delivery makes on its schedule, the first included: the limit of
/// the configured default policy and of every webhook's own.
pub const MAX_ATTEMPTS: u32 = 10;

/// A retry schedule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPolicy {
    /// A delay of zero would retry in a tight loop.
    #[error("retry delay {index} is zero")]
    ZeroDelay {
        /// Position in the list, from 0.
        index: usize,
    },
    /// Longer than [`MAX_DELAY`].
    #[error("retry delay {index} is longer than 7 days")]
    TooLong {
        /// Position in the list, from 0.
        index: usize,
    },
    /// More attempts than [`MAX_ATTEMPTS`].
    #[error("at most {MAX_ATTEMPTS} attempts in all ({} retry delays) are allowed", MAX_ATTEMPTS - 1)]
    TooMany,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { delays: vec![Duration::from_secs(5 * 60), Duration::from_secs(10 * 60)] }
    }
}

impl RetryPolicy {
    /// A policy with these delays between attempts.
    pub fn new(delays: Vec<Duration>) -> Result<Self, InvalidPolicy> {
        if delays.len() >= MAX_ATTEMPTS as usize {
            return Err(InvalidPolicy::TooMany);
        }
        for (index, delay) in delays.iter().enumerate() {
            if delay.is_zero() {
                return Err(InvalidPolicy::ZeroDelay { index });
            }
            if *delay > MAX_DELAY {
                return Err(InvalidPolicy::TooLong { index });
            }
        }
        Ok(Self { delays })
    }

    /// The delays between attempts.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// A policy as stored: its delays in milliseconds.
    pub fn from_millis(millis: &[i64]) -> Result<Self, InvalidPolicy> {
        let delays = millis.iter().map(|ms| Duration::from_millis(u64::try_from(*ms).unwrap_or_default())).collect();
        Self::new(delays)
    }

    /// The delays in milliseconds, as stored.
    pub fn millis(&self) -> Vec<i64> {
        self.delays.iter().map(|delay| i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)).collect()
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// How long after its first attempt a delivery's last one comes (a receiver's
    /// Retry-After aside): after this, a delivery that has not been attempted as the
    /// schedule says has outlived it.
    pub fn span(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// How long to wait after attempt `failed_attempt` (from 1) failed, or `None` when
    /// it was the last one.
    pub fn delay_after(&self, failed_attempt: u32) -> Option<Duration> {
        let index = usize::try_from(failed_attempt).ok()?.checked_sub(1)?;
        self.delays.get(index).copied()
    }
}

/// The delays (seconds) a receiver's Retry-After is rounded up to. Each distinct delay
/// needs its own delay queue, so honouring arbitrary values would create queues without
/// bound; this list is also every such queue that can exist.
pub const RETRY_AFTER_LADDER: [u64; 17] =
    [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

/// The delay to wait for a receiver that asked for `retry_after`: capped at `cap`, then
/// rounded up to the next step of a fixed ladder (1s … 24h).
pub fn retry_after_delay(retry_after: Duration, cap: Duration) -> Duration {
    let wanted = retry_after.min(cap);
    let seconds = wanted.as_secs() + u64::from(wanted.subsec_nanos() > 0);
    let step = RETRY_AFTER_LADDER.iter().copied().find(|step| *step >= seconds).unwrap_or(86_400);
    Duration::from_secs(step)
}

/// Parses a Retry-After header: delay-seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((date.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

/// A delay as it appears in queue names and logs: `5m`, `1h30m`, `250ms`.
pub fn format_delay(delay: Duration) -> String {
    humantime::format_duration(delay).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_five_then_ten_minutes_then_stop() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 3);
        assert_eq!(policy.delay_after(1), Some(Duration::from_secs(300)));
        assert_eq!(policy.delay_after(2), Some(Duration::from_secs(600)));
        assert_eq!(policy.delay_after(3), None);
        assert_eq!(policy.delay_after(0), None);
        assert_eq!(policy.span(), Duration::from_secs(900), "the last attempt 15 minutes after the first");
    }

    #[test]
    fn bad_policies_are_refused() {
        assert_eq!(RetryPolicy::new(vec![Duration::ZERO]), Err(InvalidPolicy::ZeroDelay { index: 0 }));
        assert!(RetryPolicy::new(vec![MAX_DELAY + Duration::from_secs(1)]).is_err());
        assert_eq!(RetryPolicy::new(vec![]).unwrap().max_attempts(), 1);
        let most = vec![Duration::from_secs(1); MAX_ATTEMPTS as usize - 1];
        assert_eq!(RetryPolicy::new(most.clone()).unwrap().max_attempts(), MAX_ATTEMPTS);
        let one_more = [most, vec![Duration::from_secs(1)]].concat();
        assert_eq!(RetryPolicy::new(one_more), Err(InvalidPolicy::TooMany));
        assert_eq!(RetryPolicy::from_millis(&[0]), Err(InvalidPolicy::ZeroDelay { index: 0 }));
    }

    #[test]
    fn a_policy_reads_back_from_its_stored_milliseconds() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.millis(), vec![300_000, 600_000]);
        assert_eq!(RetryPolicy::from_millis(&policy.millis()), Ok(policy));
    }

    #[test]
    fn retry_after_is_capped_and_rounded_up_to_the_ladder() {
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_after_delay(Duration::from_secs(3), hour), Duration::from_secs(5));
        assert_eq!(retry_after_delay(Duration::from_millis(1500), hour), Duration::from_secs(2));
        assert_eq!(retry_after_delay(Duration::from_secs(120), hour), Duration::from_secs(120));
        assert_eq!(retry_after_delay(Duration::from_secs(90_000), hour), hour);
        assert_eq!(retry_after_delay(Duration::ZERO, hour), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn delay_names() {
        assert_eq!(format_delay(Duration::from_secs(300)), "5m");
        assert_eq!(format_delay(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_delay(Duration::from_millis(250)), "250ms");
    }
}
