//! Bounded exponential backoff with full jitter (the AWS Architecture Blog's
//! "exponential backoff and jitter"), shared by every client that retries:
//! Kinesis, Firehose and, later, the LLM scorer.

use std::sync::Mutex;
use std::time::Duration;

use crate::generate::Rng;

/// How a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = no retries).
    pub max_retries: u32,
    /// First backoff ceiling; doubles every retry.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 10, base: Duration::from_millis(100), cap: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): uniform in
    /// `[0, min(cap, base * 2^(retry-1))]` ("full jitter"), never below 1 ms.
    pub fn delay(&self, retry: u32, rng: &mut Rng) -> Duration {
        let exp = self.base.as_secs_f64() * 2f64.powi(retry.saturating_sub(1).min(30) as i32);
        let ceiling = exp.min(self.cap.as_secs_f64());
        Duration::from_secs_f64((ceiling * rng.f64()).max(0.001))
    }

    /// The delay to wait when the server said how long (`Retry-After`): that,
    /// but never more than the cap times four.
    pub fn server_delay(&self, asked: Duration) -> Duration {
        asked.min(self.cap * 4)
    }
}

/// A jitter source per process: seeded from the clock and pid so that many
/// workers that fail together do not retry together.
pub fn jitter_rng() -> Rng {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    Rng::new(now ^ ((std::process::id() as u64) << 32))
}

/// A shared jitter source for clients used from several tasks.
#[derive(Debug)]
pub struct Jitter(Mutex<Rng>);

impl Default for Jitter {
    fn default() -> Self {
        Jitter(Mutex::new(jitter_rng()))
    }
}

impl Jitter {
    pub fn delay(&self, policy: &RetryPolicy, retry: u32) -> Duration {
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        policy.delay(retry, &mut rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let p = RetryPolicy { max_retries: 10, base: Duration::from_millis(100), cap: Duration::from_secs(2) };
        let mut rng = Rng::new(1);
        for retry in 1..=12 {
            let ceiling = (0.1 * 2f64.powi(retry as i32 - 1)).min(2.0);
            let mut max = 0f64;
            for _ in 0..200 {
                let d = p.delay(retry, &mut rng).as_secs_f64();
                assert!(d <= ceiling + 1e-9 && d >= 0.001, "retry {retry}: {d} > {ceiling}");
                max = max.max(d);
            }
            // full jitter uses the whole range
            assert!(max > ceiling * 0.8, "retry {retry}: max {max} of {ceiling}");
        }
        assert_eq!(p.server_delay(Duration::from_secs(60)), Duration::from_secs(8));
        assert_eq!(p.server_delay(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
