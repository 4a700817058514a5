//! What is worth another try, how long to wait before it, and the one loop
//! that tries again: decided here only.
//!
//! Transient: connection failures, resets and unexpected ends (found by
//! type, walking an error's source chain: `io::ErrorKind`, hyper's
//! incomplete messages), stalls, truncated bodies, MD5 and range mismatches,
//! and the statuses 408, 429, 500, 502, 503 and 504. TLS and certificate
//! failures (a `rustls::Error` in the chain), other 4xx, disk errors and
//! error pages fail at once. Waits grow exponentially with full jitter,
//! capped; a `Retry-After` from the server wins, within [`MAX_RETRY_AFTER`].
//! [`run`] is the loop every caller uses: archive downloads and `--update`
//! HEADs, bucket lookups and searches; it tells the run's
//! [`Throttle`] of every retry, and whether the server pushed back.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::budget::{Event, Pushback, Throttle};
use crate::error::TransferError;

/// Retries per file unless `--retries` says otherwise.
pub(crate) const DEFAULT_RETRIES: u32 = 5;
/// The first backoff step.
pub(crate) const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest backoff step.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The environment variable that sets the first backoff step in
/// milliseconds (tests set it to 0 so they do not sleep).
pub(crate) const BASE_DELAY_ENV: &str = "MASTDL_RETRY_BASE_MS";

/// Returns true if and only if `status` is worth retrying.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try again, after the server's `Retry-After` when it gave one.
    Retry { after: Option<Duration> },
    /// Give up.
    Stop,
}

/// An error that knows whether trying again may help.
pub(crate) trait Classify: std::fmt::Display {
    /// Returns the verdict on this error.
    fn verdict(&self) -> Verdict;
    /// Returns the error that stands for "the run was cancelled".
    fn interrupted() -> Self
    where
        Self: Sized;
    /// Returns how this error says the server or the path is pushing back.
    fn pushback(&self) -> Option<Pushback> {
        None
    }
}

impl Classify for TransferError {
    fn verdict(&self) -> Verdict {
        let retry = Verdict::Retry { after: None };
        match self {
            TransferError::Status {
                status,
                retry_after,
                ..
            } if is_transient_status(*status) => Verdict::Retry {
                after: *retry_after,
            },
            TransferError::Status { .. } => Verdict::Stop,
            TransferError::Network { fatal, .. } => {
                if *fatal {
                    Verdict::Stop
                } else {
                    retry
                }
            }
            TransferError::Stall(_)
            | TransferError::Truncated { .. }
            | TransferError::TooLong { .. }
            | TransferError::Md5Mismatch { .. }
            | TransferError::RangeMismatch(_) => retry,
            TransferError::ErrorPage(_)
            | TransferError::SizeMismatch { .. }
            | TransferError::Redirect(_)
            | TransferError::Disk { .. }
            | TransferError::BodyTooLarge { .. }
            | TransferError::NoLength
            | TransferError::Interrupted => Verdict::Stop,
        }
    }

    fn pushback(&self) -> Option<Pushback> {
        match self {
            TransferError::Status { status: 429, .. } => Some(Pushback::SlowDown),
            TransferError::Status { status: 503, .. }
            | TransferError::Stall(_)
            | TransferError::Truncated { .. }
            | TransferError::Network { fatal: false, .. } => Some(Pushback::Strain),
            _ => None,
        }
    }

    fn interrupted() -> TransferError {
        TransferError::Interrupted
    }
}

/// Returns true if and only if `err` is worth retrying.
pub(crate) fn is_transient(err: &TransferError) -> bool {
    err.verdict() != Verdict::Stop
}

/// Returns true if and only if a `reqwest` error will not go away by trying
/// again: a malformed request, or TLS (a `rustls::Error` anywhere in the
/// source chain: bad certificate, failed handshake). Decided by type, not
/// by message text.
pub(crate) fn is_fatal_network(err: &reqwest::Error) -> bool {
    if err.is_builder() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // `io::Error::source` skips the error it wraps: step into it.
        source = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// Parses a `Retry-After` value: delay seconds or an HTTP-date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
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
pub(crate) struct Backoff {
    base: Duration,
}

impl Backoff {
    /// Returns the backoff whose first step is `base`.
    pub(crate) fn new(base: Duration) -> Backoff {
        Backoff { base }
    }

    /// Returns the backoff, with its base from [`BASE_DELAY_ENV`] when set.
    pub(crate) fn from_env() -> Backoff {
        let base = std::env::var(BASE_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_BASE_DELAY, Duration::from_millis);
        Backoff { base }
    }

    /// Returns how long to wait before retry number `attempt` (1-based);
    /// the server's `Retry-After` wins when given.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
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

/// How often and how patiently to try.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Retries after the first attempt.
    pub(crate) retries: u32,
    pub(crate) backoff: Backoff,
    /// The longest `Retry-After` honoured by this caller.
    pub(crate) max_retry_after: Duration,
}

impl Policy {
    /// Returns a policy of `retries` retries with the backoff from the
    /// environment ([`BASE_DELAY_ENV`]).
    pub(crate) fn new(retries: u32) -> Policy {
        Policy {
            retries,
            backoff: Backoff::from_env(),
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

/// What [`run`] gives up with: the last error, how long it was tried, and
/// whether the run was cancelled (rather than the error being final).
#[derive(Debug)]
pub(crate) struct GaveUp<E> {
    pub(crate) error: E,
    /// Retries made (attempts − 1).
    pub(crate) retries: u32,
    pub(crate) elapsed: Duration,
    /// True if and only if the run was cancelled.
    pub(crate) cancelled: bool,
}

impl<E: std::fmt::Display> GaveUp<E> {
    /// Returns the error with how long it was tried: `… (failed after N
    /// retries in T s)`, or the error alone when it was not retried.
    pub(crate) fn message(&self) -> String {
        match self.retries {
            0 => self.error.to_string(),
            n => format!(
                "{} (failed after {n} {} in {:.1}s)",
                self.error,
                if n == 1 { "retry" } else { "retries" },
                self.elapsed.as_secs_f64()
            ),
        }
    }
}

/// Runs `op` (given the attempt number, 1-based) until it succeeds, fails
/// for good, its retries run out or `cancel` fires; between attempts it
/// waits the backoff (or the server's `Retry-After`), calling `on_retry`
/// with the error, the retry number and the wait first. When the server
/// pushes back (429; with `-j auto` also 503, resets, stalls) the
/// `throttle` (when given, told of every retry) lowers the whole run's
/// concurrency.
pub(crate) async fn run<T, E, F, Fut>(
    policy: &Policy,
    cancel: &CancellationToken,
    throttle: Option<&Throttle>,
    mut op: F,
    mut on_retry: impl FnMut(&E, u32, Duration),
) -> Result<(T, u32), GaveUp<E>>
where
    E: Classify,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let t0 = Instant::now();
    let mut retries = 0u32;
    loop {
        let result = tokio::select! {
            r = op(retries + 1) => Some(r),
            _ = cancel.cancelled() => None,
        };
        let error = match result {
            Some(Ok(v)) => return Ok((v, retries + 1)),
            Some(Err(e)) => e,
            None => return Err(cancelled(retries, t0)),
        };
        let after = match error.verdict() {
            Verdict::Retry { after } if retries < policy.retries && !cancel.is_cancelled() => after,
            _ => {
                return Err(GaveUp {
                    error,
                    retries,
                    elapsed: t0.elapsed(),
                    cancelled: cancel.is_cancelled(),
                })
            }
        };
        retries += 1;
        if let Some(t) = throttle {
            t.on(Event::Retrying(error.pushback()));
        }
        let delay = policy
            .backoff
            .delay(retries, after.map(|d| d.min(policy.max_retry_after)));
        on_retry(&error, retries, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => {
                return Err(GaveUp { error, retries, elapsed: t0.elapsed(), cancelled: true })
            }
        }
    }
}

/// The failure of an operation cut short by cancellation.
fn cancelled<E>(retries: u32, t0: Instant) -> GaveUp<E>
where
    E: Classify,
{
    GaveUp {
        error: E::interrupted(),
        retries,
        elapsed: t0.elapsed(),
        cancelled: true,
    }
}

/// Why one request failed, for the request loops outside transfers (the
/// bucket lookup, the search client): whether trying again may help, how
/// long the server asked to wait, and what to tell the user.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) transient: bool,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Classify for Failure {
    fn verdict(&self) -> Verdict {
        if self.transient {
            Verdict::Retry {
                after: self.retry_after,
            }
        } else {
            Verdict::Stop
        }
    }
    fn interrupted() -> Failure {
        Failure {
            transient: false,
            retry_after: None,
            message: "interrupted".into(),
        }
    }
}

/// Runs `op` up to `attempts` times with [`run`], waiting `backoff` (or the
/// server's `Retry-After`, within [`MAX_DELAY`]) after each transient
/// failure. Returns the value, or the last failure (its [`Failed::message`]
/// says how long it was tried, in the words downloads use).
pub(crate) async fn with_retries<T, F, Fut>(
    attempts: u32,
    backoff: &Backoff,
    mut op: F,
) -> Result<T, GaveUp<Failure>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let policy = Policy {
        retries: attempts.max(1) - 1,
        backoff: *backoff,
        max_retry_after: MAX_DELAY,
    };
    let never = CancellationToken::new();
    run(&policy, &never, None, |_| op(), |_, _, _| {})
        .await
        .map(|(v, _)| v)
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
        let f = r.unwrap_err();
        assert_eq!(f.retries, 2);
        assert!(
            f.message().starts_with("x (failed after 2 retries in "),
            "{}",
            f.message()
        );
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = with_retries(3, &zero, || {
            calls += 1;
            std::future::ready(Err(fail(false)))
        })
        .await;
        let f = r.unwrap_err();
        assert_eq!(f.retries, 0);
        assert_eq!(f.message(), "x");
        let mut calls = 0;
        let r = with_retries(3, &zero, || {
            calls += 1;
            std::future::ready(if calls < 2 { Err(fail(true)) } else { Ok(7) })
        })
        .await;
        assert_eq!(r.unwrap(), 7);
    }
}
