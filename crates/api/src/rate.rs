//! Rate limits: requests per API key, and failed sign-ins per client address, answered
//! 429 with `Retry-After`. Each API process counts its own (behind a load balancer the
//! limits are per instance).
//!
//! A token bucket per key, by hand: `governor` would bring a second `hashbrown` into
//! the build for what is twenty lines here, and its keyed store needs the same sweep
//! of idle keys this one does.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hookline_core::ids::ApiKeyId;

use crate::ApiError;

/// Keys idle this long are forgotten (their buckets are full again by then).
const IDLE: Duration = Duration::from_secs(600);

/// Buckets of `burst` tokens refilled at `per_second`, one per key.
#[derive(Debug)]
struct Buckets<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`, or says how long until one is there.
    fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < IDLE);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }

    /// Whether `key` has a token now, without taking it.
    fn has_token(&self, key: &K, now: Instant) -> bool {
        let buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets
            .get(key)
            .is_none_or(|(tokens, at)| tokens + now.duration_since(*at).as_secs_f64() * self.per_second >= 1.0)
    }
}

/// The limits one API process enforces (`[api]` settings; 0 switches one off).
#[derive(Debug)]
pub(crate) struct RateLimits {
    per_key: Option<Buckets<ApiKeyId>>,
    failed_sign_ins: Option<Buckets<IpAddr>>,
}

impl RateLimits {
    /// `per_key_per_second` requests per key (bursts of twice that), and
    /// `failed_per_minute` requests with a missing or unknown key per address.
    pub(crate) fn new(per_key_per_second: u32, failed_per_minute: u32) -> Self {
        let per_key = (per_key_per_second > 0)
            .then(|| Buckets::new(f64::from(per_key_per_second), f64::from(per_key_per_second) * 2.0));
        let failed_sign_ins = (failed_per_minute > 0)
            .then(|| Buckets::new(f64::from(failed_per_minute) / 60.0, f64::from(failed_per_minute)));
        Self { per_key, failed_sign_ins }
    }

    /// A request made with `key`: 429 once it is over its rate.
    pub(crate) fn admit_key(&self, key: &ApiKeyId) -> Result<(), ApiError> {
        match &self.per_key {
            Some(buckets) => buckets.take(key, Instant::now()).map_err(|wait| too_many(wait, "this API key")),
            None => Ok(()),
        }
    }

    /// Before a key is looked up: 429 for an address whose failed sign-ins are spent, so
    /// guessing keys costs the guesser time and the database nothing.
    pub(crate) fn admit_address(&self, address: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.failed_sign_ins, address) {
            (Some(buckets), Some(address)) if !buckets.has_token(&address, Instant::now()) => {
                Err(too_many(Duration::from_secs_f64(1.0 / buckets.per_second), "failed sign-ins from this address"))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `address`.
    pub(crate) fn failed_sign_in(&self, address: Option<IpAddr>) {
        if let (Some(buckets), Some(address)) = (&self.failed_sign_ins, address) {
            let _ = buckets.take(&address, Instant::now());
        }
    }
}

fn too_many(wait: Duration, whose: &str) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError {
        retry_after: None,
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        field: None,
        message: format!("too many requests for {whose}; retry after {seconds} s"),
    }
    .retry_after(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let buckets = Buckets::new(10.0, 20.0);
        let start = Instant::now();
        assert!((0..20).all(|_| buckets.take(&"k", start).is_ok()));
        let wait = buckets.take(&"k", start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(buckets.take(&"other", start).is_ok(), "keys are apart");
        assert!(buckets.take(&"k", start + Duration::from_millis(100)).is_ok(), "a token every 100 ms");
        assert!(buckets.take(&"k", start + Duration::from_millis(100)).is_err());
        assert!(!buckets.has_token(&"k", start + Duration::from_millis(100)));
        assert!(buckets.has_token(&"k", start + Duration::from_secs(1)));
    }
}
