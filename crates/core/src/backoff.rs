//! How long to wait before trying a dependency (the broker, the database) again: capped
//! exponential backoff with jitter, the same for every service.

use std::time::Duration;

/// The first wait after a failed attempt; each further one doubles, up to [`MAX`].
pub const FIRST: Duration = Duration::from_millis(200);

/// The longest wait between two attempts.
pub const MAX: Duration = Duration::from_secs(10);

/// The wait after `failures` failed attempts in a row: doubling from [`FIRST`] up to
/// [`MAX`], then shortened by up to a half at random, so that many services do not knock
/// on a returning broker or database at the same instant.
pub fn after(failures: u32) -> Duration {
    ceiling(failures).mul_f64(rand::random_range(0.5..=1.0))
}

fn ceiling(failures: u32) -> Duration {
    FIRST.saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1).min(16))).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_below_it() {
        for failures in 0..40 {
            let wait = after(failures);
            assert!(wait <= ceiling(failures) && wait >= ceiling(failures) / 2, "{failures}: {wait:?}");
        }
        assert_eq!((ceiling(1), ceiling(2), ceiling(3)), (FIRST, FIRST * 2, FIRST * 4));
        assert_eq!(ceiling(30), MAX);
    }
}
