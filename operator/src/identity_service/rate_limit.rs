//! Per-identity token buckets: a proxy may get `burst` certificates at once, then `per_second`. The clock
//! is passed in, so tests drive it.

use std::{collections::HashMap, time::Duration};
use tokio::time::Instant;

/// Past this many buckets, full ones (identities quiet long enough to have refilled) are dropped: they
/// behave exactly like a fresh bucket.
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub burst: f64,
    pub per_second: f64,
}

impl Limits {
    /// Checked limits: at least one certificate per burst, a positive finite refill.
    pub fn new(burst: u32, per_second: f64) -> Result<Self, String> {
        if burst == 0 {
            return Err("the identity rate-limit burst must be at least 1".into());
        }
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(format!(
                "the identity rate-limit refill must be a positive number per second, not {per_second}"
            ));
        }
        Ok(Self {
            burst: f64::from(burst),
            per_second,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by identity name.
#[derive(Debug)]
pub struct RateLimiter {
    limits: Limits,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `key`'s bucket at `now`, or says how long until one is there.
    pub fn try_acquire(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() > PRUNE_ABOVE {
            self.prune(now);
        }
        let limits = self.limits;
        let bucket = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: limits.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limits.per_second).min(limits.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / limits.per_second))
        }
    }

    fn prune(&mut self, now: Instant) {
        let limits = self.limits;
        self.buckets.retain(|_, bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens + elapsed * limits.per_second < limits.burst
        });
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_second: f64) -> RateLimiter {
        RateLimiter::new(Limits::new(burst, per_second).expect("limits"))
    }

    #[test]
    fn a_burst_then_the_refill_rate() {
        let mut limiter = limiter(10, 1.0);
        let start = Instant::now();
        for i in 0..10 {
            assert_eq!(limiter.try_acquire("a", start), Ok(()), "request {i}");
        }
        let wait = limiter.try_acquire("a", start).expect_err("limited");
        assert_eq!(wait, Duration::from_secs(1));
        // Half a second later half a token is there: still limited, half a second to go.
        let wait = limiter
            .try_acquire("a", start + Duration::from_millis(500))
            .expect_err("limited");
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(
            limiter.try_acquire("a", start + Duration::from_secs(1)),
            Ok(())
        );
        assert!(
            limiter
                .try_acquire("a", start + Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn identities_do_not_share_a_bucket() {
        let mut limiter = limiter(1, 1.0);
        let now = Instant::now();
        assert_eq!(limiter.try_acquire("a", now), Ok(()));
        assert!(limiter.try_acquire("a", now).is_err());
        assert_eq!(limiter.try_acquire("b", now), Ok(()));
    }

    #[test]
    fn a_bucket_refills_no_higher_than_the_burst() {
        let mut limiter = limiter(2, 1.0);
        let start = Instant::now();
        let later = start + Duration::from_secs(3600);
        assert_eq!(limiter.try_acquire("a", start), Ok(()));
        assert_eq!(limiter.try_acquire("a", later), Ok(()));
        assert_eq!(limiter.try_acquire("a", later), Ok(()));
        assert!(limiter.try_acquire("a", later).is_err());
    }

    #[test]
    fn quiet_identities_are_forgotten() {
        let mut limiter = limiter(1, 1.0);
        let start = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            assert_eq!(limiter.try_acquire(&format!("id-{i}"), start), Ok(()));
        }
        assert_eq!(limiter.tracked(), PRUNE_ABOVE + 1);
        let later = start + Duration::from_secs(2);
        assert_eq!(limiter.try_acquire("fresh", later), Ok(()));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn nonsense_limits_are_refused() {
        assert!(Limits::new(0, 1.0).is_err());
        assert!(Limits::new(1, 0.0).is_err());
        assert!(Limits::new(1, f64::NAN).is_err());
        assert!(Limits::new(1, f64::INFINITY).is_err());
    }
}
