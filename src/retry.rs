//! What is worth another try, and how long to wait before it: decided here only.
//!
//! Transient: connection errors, stalls, truncated bodies, MD5 mismatches and
//! the statuses 408, 429, 500, 502, 503 and 504. Everything else fails at
//! once. Waits grow exponentially with full jitter, capped; a `Retry-After`
//! from the server wins, within [`MAX_RETRY_AFTER`]. [`Throttle`] lowers the
//! whole run's concurrency after a 429 and raises it again after successes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;

use crate::fetch::FetchError;

/// Retries per file unless `--retries` says otherwise.
pub const DEFAULT_RETRIES: u32 = 5;
/// The first backoff step.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest backoff step.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The environment variable that sets the first backoff step in
/// milliseconds (tests set it to 0 so they do not sleep).
pub const BASE_DELAY_ENV: &str = "MASTDL_RETRY_BASE_MS";

/// Returns true if and only if `status` is worth retrying.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Returns true if and only if `err` is worth retrying.
pub fn is_transient(err: &FetchError) -> bool {
    match err {
        FetchError::Status { status, .. } => is_transient_status(*status),
        FetchError::Network { fatal, .. } => !fatal,
        FetchError::Stall(_)
        | FetchError::Truncated { .. }
        | FetchError::TooLong { .. }
        | FetchError::Md5Mismatch { .. }
        | FetchError::RangeMismatch(_) => true,
        FetchError::ErrorPage(_)
        | FetchError::SizeMismatch { .. }
        | FetchError::Redirect(_)
        | FetchError::Disk { .. }
        | FetchError::BodyTooLarge { .. }
        | FetchError::Interrupted => false,
    }
}

/// Returns true if and only if a `reqwest` error will not go away by trying
/// again: TLS and certificate failures, malformed requests.
pub fn is_fatal_network(err: &reqwest::Error) -> bool {
    if err.is_builder() {
        return true;
    }
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        let text = e.to_string().to_ascii_lowercase();
        if text.contains("certificate")
            || text.contains("tls handshake")
            || text.contains("invalid peer")
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Parses a `Retry-After` value: delay seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    base: Duration,
}

impl Backoff {
    /// Returns the backoff whose first step is `base`.
    pub fn new(base: Duration) -> Backoff {
        Backoff { base }
    }

    /// Returns the backoff, with its base from [`BASE_DELAY_ENV`] when set.
    pub fn from_env() -> Backoff {
        let base = std::env::var(BASE_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_BASE_DELAY, Duration::from_millis);
        Backoff { base }
    }

    /// Returns how long to wait before retry number `attempt` (1-based);
    /// the server's `Retry-After` wins when given.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            return d;
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(MAX_DELAY);
        if ceiling.is_zero() {
            return ceiling;
        }
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// Why one request failed, for the small request loops outside transfers
/// (the bucket lookup, the search client): whether trying again may help,
/// how long the server asked to wait, and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    pub transient: bool,
    pub retry_after: Option<Duration>,
    pub message: String,
}

/// Runs `op` up to `attempts` times, waiting `backoff` (or the server's
/// `Retry-After`, within [`MAX_DELAY`]) after each transient failure.
/// Returns the value, or the last failure and the attempts made.
pub async fn with_retries<T, F, Fut>(
    attempts: u32,
    backoff: &Backoff,
    mut op: F,
) -> Result<T, (Failure, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let attempts = attempts.max(1);
    let mut attempt = 1u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(f) if f.transient && attempt < attempts => {
                tokio::time::sleep(backoff.delay(attempt, f.retry_after.map(|d| d.min(MAX_DELAY))))
                    .await;
                attempt += 1;
            }
            Err(f) => return Err((f, attempt)),
        }
    }
}

/// Returns ` (after N attempts)` for N > 1, else nothing.
pub fn after_attempts(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// The run-wide limit on concurrent transfers, lowered on 429 Too Many
/// Requests and restored one step per [`RECOVER_AFTER`] successes.
#[derive(Debug)]
pub struct Throttle {
    sem: Arc<Semaphore>,
    max: usize,
    current: AtomicUsize,
    debt: AtomicUsize,
    successes: AtomicUsize,
}

/// Successes after which a throttled run gets one more slot back.
pub const RECOVER_AFTER: usize = 8;

impl Throttle {
    /// Returns a throttle allowing `max` transfers at once.
    pub fn new(max: usize) -> Throttle {
        let max = max.max(1);
        Throttle {
            sem: Arc::new(Semaphore::new(max)),
            max,
            current: AtomicUsize::new(max),
            debt: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
        }
    }

    /// Waits for a slot.
    pub async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.sem.clone().acquire_owned().await.ok()
    }

    /// Returns the number of transfers now allowed at once.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Halves the allowed concurrency (never below one). Returns the new limit.
    pub fn slow_down(&self) -> usize {
        let cur = self.current.load(Ordering::Relaxed);
        let target = (cur / 2).max(1);
        let drop = cur - target;
        if drop > 0 {
            self.current.store(target, Ordering::Relaxed);
            self.successes.store(0, Ordering::Relaxed);
            let got = self.sem.forget_permits(drop);
            self.debt.fetch_add(drop - got, Ordering::Relaxed);
        }
        target
    }

    /// Hands a permit back: forgotten if a slow-down is still owed.
    pub fn release(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        let owed = self.debt.load(Ordering::Relaxed);
        if owed > 0
            && self
                .debt
                .compare_exchange(owed, owed - 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            permit.forget();
        }
    }

    /// Counts a success; every [`RECOVER_AFTER`] of them restore one slot.
    pub fn success(&self) {
        if self.current.load(Ordering::Relaxed) >= self.max {
            return;
        }
        if self.successes.fetch_add(1, Ordering::Relaxed) + 1 >= RECOVER_AFTER {
            self.successes.store(0, Ordering::Relaxed);
            if self.debt.load(Ordering::Relaxed) > 0 {
                self.debt.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.sem.add_permits(1);
            }
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_capped_jittered_and_zeroable() {
        let b = Backoff {
            base: Duration::from_millis(500),
        };
        for attempt in 1..40 {
            let d = b.delay(attempt, None);
            assert!(d <= MAX_DELAY);
            assert!(d <= Duration::from_millis(500) * 2u32.pow(attempt.min(16) - 1));
        }
        assert_eq!(
            b.delay(3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            Backoff {
                base: Duration::ZERO
            }
            .delay(5, None),
            Duration::ZERO
        );
    }

    #[test]
    fn statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(s));
        }
        for s in [400, 401, 403, 404, 410, 416, 501] {
            assert!(!is_transient_status(s));
        }
    }

    #[tokio::test]
    async fn with_retries_stops_at_the_limit_and_on_fatal_failures() {
        let zero = Backoff::new(Duration::ZERO);
        let fail = |transient| Failure {
            transient,
            retry_after: None,
            message: "x".into(),
        };
        let mut calls = 0;
        let r: Result<(), _> = with_retries(3, &zero, || {
            calls += 1;
            std::future::ready(Err(fail(true)))
        })
        .await;
        assert_eq!(r.unwrap_err().1, 3);
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = with_retries(3, &zero, || {
            calls += 1;
            std::future::ready(Err(fail(false)))
        })
        .await;
        assert_eq!(r.unwrap_err().1, 1);
        let mut calls = 0;
        let r = with_retries(3, &zero, || {
            calls += 1;
            std::future::ready(if calls < 2 { Err(fail(true)) } else { Ok(7) })
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(after_attempts(1), "");
        assert_eq!(after_attempts(2), " (after 2 attempts)");
    }

    #[tokio::test]
    async fn throttle_halves_and_recovers() {
        let t = Throttle::new(4);
        assert_eq!(t.slow_down(), 2);
        assert_eq!(t.sem.available_permits(), 2);
        assert_eq!(t.slow_down(), 1);
        assert_eq!(t.slow_down(), 1);
        for _ in 0..RECOVER_AFTER {
            t.success();
        }
        assert_eq!(t.current(), 2);
        assert_eq!(t.sem.available_permits(), 2);
        // A slow-down while every slot is taken is paid back by released permits.
        let a = t.acquire().await.unwrap();
        let b = t.acquire().await.unwrap();
        assert_eq!(t.slow_down(), 1);
        t.release(a);
        t.release(b);
        assert_eq!(t.sem.available_permits(), 1);
    }
}
