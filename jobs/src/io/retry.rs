//! Bounded exponential backoff with full jitter (the AWS Architecture Blog's
//! "exponential backoff and jitter"), shared by every client that retries:
//! Kinesis, Firehose, the LLM scorer and the alert webhook. [`retrying`] drives
//! the simple loops (Kinesis reads, the webhook); Kinesis/Firehose puts (which
//! resend only the failed entries) and the LLM transport (which honours
//! Retry-After and hands the last answer back) keep their own loops over the
//! same policy.

use std::sync::Mutex;
use std::time::Duration;

use crate::io::aws::Failure;
use crate::rng::Rng;

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

/// A failure [`retrying`] can judge: whether another attempt may help, and what to log.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
    fn message(&self) -> String;
}

impl Retryable for Failure {
    fn is_retryable(&self) -> bool {
        Failure::is_retryable(self)
    }
    fn message(&self) -> String {
        Failure::message(self).to_string()
    }
}

/// Calls `attempt` until it succeeds, fails for good (a [`Failure::Fatal`]), or the policy's
/// retries are spent, sleeping a full-jitter backoff before each retry. `attempt`
/// gets the retry number (0 for the first try). The error is the last failure and
/// the number of retries made.
pub async fn retrying<T, E, F, Fut>(
    what: &str,
    policy: &RetryPolicy,
    jitter: &Jitter,
    mut attempt: F,
) -> Result<T, (E, u32)>
where
    E: Retryable,
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut retry = 0u32;
    loop {
        match attempt(retry).await {
            Ok(v) => return Ok(v),
            Err(failure) => {
                if !failure.is_retryable() || retry >= policy.max_retries {
                    return Err((failure, retry));
                }
                retry += 1;
                let d = jitter.delay(policy, retry);
                tracing::debug!(what, retry, delay_ms = d.as_millis() as u64, reason = failure.message(), "retrying");
                tokio::time::sleep(d).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retrying_stops_on_success_fatal_or_spent_retries() {
        let p = RetryPolicy { max_retries: 3, base: Duration::from_millis(1), cap: Duration::from_millis(2) };
        let jitter = Jitter::default();
        // two transient failures, then success: 3 attempts, numbered 0, 1, 2
        let mut seen = Vec::new();
        let r = retrying("t", &p, &jitter, |n| {
            seen.push(n);
            async move { if n < 2 { Err(Failure::Transient("blip".into())) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r, Ok(2));
        assert_eq!(seen, vec![0, 1, 2]);
        // fatal: no retry
        let mut calls = 0;
        let r: Result<(), _> = retrying("t", &p, &jitter, |_| {
            calls += 1;
            async { Err(Failure::Fatal("no such stream".into())) }
        })
        .await;
        assert_eq!(r, Err((Failure::Fatal("no such stream".into()), 0)));
        assert_eq!(calls, 1);
        // always throttled: 1 try + 3 retries, then the last failure and the count
        let mut calls = 0;
        let r: Result<(), _> = retrying("t", &p, &jitter, |_| {
            calls += 1;
            async { Err(Failure::Throttled("slow down".into())) }
        })
        .await;
        assert_eq!(r, Err((Failure::Throttled("slow down".into()), 3)));
        assert_eq!(calls, 4);
    }

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
