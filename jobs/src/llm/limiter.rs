//! Requests-per-minute and tokens-per-minute limits: a sliding one-minute
//! window of what was sent; a caller waits until its request fits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

#[derive(Debug)]
pub struct RateLimiter {
    rpm: Option<u32>,
    tpm: Option<u32>,
    window: Duration,
    sent: Mutex<VecDeque<(Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(rpm: Option<u32>, tpm: Option<u32>) -> Self {
        Self::with_window(rpm, tpm, Duration::from_secs(60))
    }

    /// Limits per `window` instead of per minute (tests).
    pub fn with_window(rpm: Option<u32>, tpm: Option<u32>, window: Duration) -> Self {
        Self { rpm: rpm.filter(|r| *r > 0), tpm: tpm.filter(|t| *t > 0), window, sent: Mutex::new(VecDeque::new()) }
    }

    /// Waits until one more request of `tokens` fits in the last minute, then records it.
    pub async fn acquire(&self, tokens: u32) {
        if self.rpm.is_none() && self.tpm.is_none() {
            return;
        }
        // a single request larger than the whole budget still goes, alone in its minute
        let tokens = self.tpm.map_or(tokens, |t| tokens.min(t));
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent.front().is_some_and(|(t, _)| now.duration_since(*t) >= self.window) {
                    sent.pop_front();
                }
                let used: u64 = sent.iter().map(|(_, n)| u64::from(*n)).sum();
                let fits_r = self.rpm.is_none_or(|r| sent.len() < r as usize);
                let fits_t = self.tpm.is_none_or(|t| used + u64::from(tokens) <= u64::from(t));
                if fits_r && fits_t {
                    sent.push_back((now, tokens));
                    return;
                }
                // wait until the oldest entry leaves the window
                sent.front().map(|(t, _)| self.window.saturating_sub(now.duration_since(*t))).unwrap_or(self.window)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn requests_per_window_are_capped() {
        let l = RateLimiter::with_window(Some(3), None, W);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.acquire(1).await;
        }
        assert!(t0.elapsed() < W / 2);
        l.acquire(1).await; // the fourth waits for the first to leave the window
        assert!(t0.elapsed() >= W, "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn tokens_per_window_are_capped() {
        let l = RateLimiter::with_window(None, Some(100), W);
        let t0 = Instant::now();
        l.acquire(60).await;
        l.acquire(40).await;
        assert!(t0.elapsed() < W / 2);
        l.acquire(10).await;
        assert!(t0.elapsed() >= W);
        let unlimited = RateLimiter::new(None, None);
        unlimited.acquire(1_000_000).await;
    }
}
