//! The run-wide bandwidth cap behind `--limit-rate`: curl's rate syntax
//! ([`parse_rate`]) and one token bucket ([`RateLimiter`]) shared by every
//! transfer and every range of a run.
//!
//! A streaming loop asks for permission before it hands on each chunk it
//! read (`limiter.take(chunk.len()).await`). The bucket holds at most a
//! tenth of a second's worth of bytes, so an idle spell cannot turn into a
//! long burst and the mean rate stays on the cap over any few seconds. Takers
//! are served one at a time in the order they asked (the lock is a fair,
//! first-in first-out [`tokio::sync::Mutex`], held while the taker waits for
//! its bytes), so no transfer starves: N transfers reading chunks of the same
//! size each get about 1/N of the cap. A limiter built without a rate does
//! nothing and costs nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Parses a rate in bytes per second with curl's `--limit-rate` syntax.
///
/// A whole number of bytes, optionally followed by one suffix: `k`/`K`
/// (×1024), `m`/`M` (×1024²) or `g`/`G` (×1024³), as curl counts them:
/// `500k` = 512,000, `20M` = 20,971,520, `1G` = 1,073,741,824. Surrounding
/// whitespace is ignored. Zero, signs, fractions, other suffixes and values
/// that do not fit in a `u64` are errors.
pub(crate) fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mult) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid rate `{s}`: expected bytes per second such as `500k`, `20M` or `1G`"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("rate `{s}` is too large"))?;
    let rate = n
        .checked_mul(mult)
        .ok_or_else(|| format!("rate `{s}` is too large"))?;
    if rate == 0 {
        return Err(format!("rate `{s}` must be more than zero"));
    }
    Ok(rate)
}

/// The most the bucket holds, as a fraction of a second's worth of bytes.
const BURST_SECS: f64 = 0.1;

/// A run-wide, fair token bucket: at most `rate` bytes per second over all
/// its clones together.
///
/// Cloning is cheap (an `Arc`); every clone draws on the same bucket. Built
/// with [`RateLimiter::unlimited`] (or `from_rate(None)`), [`take`] returns at
/// once.
///
/// [`take`]: RateLimiter::take
#[derive(Clone, Debug, Default)]
pub(crate) struct RateLimiter {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// Bytes per second, as a float for the arithmetic.
    per_sec: f64,
    /// The most tokens the bucket holds (a tenth of a second's worth).
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may go now; negative while a taker waits out its debt.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl RateLimiter {
    /// Returns a limiter that lets through `bytes_per_sec` bytes a second,
    /// shared by all its clones. `bytes_per_sec` must be more than zero
    /// ([`parse_rate`] guarantees it); 0 is treated as 1.
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1);
        let per_sec = rate as f64;
        let burst = per_sec * BURST_SECS;
        RateLimiter {
            inner: Some(Arc::new(Inner {
                per_sec,
                burst,
                bucket: Mutex::new(Bucket {
                    tokens: burst,
                    last: Instant::now(),
                }),
            })),
        }
    }

    /// Returns a limiter that never waits.
    pub(crate) fn unlimited() -> Self {
        RateLimiter { inner: None }
    }

    /// Returns a limiter for an optional rate (`None` = unlimited), e.g. the
    /// parsed value of `--limit-rate`.
    pub(crate) fn from_rate(bytes_per_sec: Option<u64>) -> Self {
        bytes_per_sec.map_or_else(Self::unlimited, Self::new)
    }

    /// Returns the cap in bytes per second, or `None` when unlimited.
    #[cfg(test)]
    pub(crate) fn rate(&self) -> Option<u64> {
        self.inner.as_ref().map(|i| i.per_sec as u64)
    }

    /// Returns true if and only if this limiter never waits.
    pub(crate) fn is_unlimited(&self) -> bool {
        self.inner.is_none()
    }

    /// Waits until `n` more bytes may go, then counts them as gone.
    ///
    /// Call it once per chunk, before passing the chunk on (writing it to the
    /// `.part`); chunks of up to 64 KiB keep the rate smooth. Callers are
    /// served in the order they called. Dropping the future while it waits
    /// (a cancelled transfer) keeps the bytes counted, which errs on the slow
    /// side.
    pub(crate) async fn take(&self, n: usize) {
        let Some(inner) = &self.inner else {
            return;
        };
        if n == 0 {
            return;
        }
        let mut b = inner.bucket.lock().await;
        let now = Instant::now();
        let refill = now.saturating_duration_since(b.last).as_secs_f64() * inner.per_sec;
        b.tokens = (b.tokens + refill).min(inner.burst);
        b.last = now;
        b.tokens -= n as f64;
        if b.tokens < 0.0 {
            // Wait out the debt while holding the lock: whoever asks next
            // queues behind us, and finds the bucket near empty when its turn comes.
            let wait = Duration::from_secs_f64(-b.tokens / inner.per_sec);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, u64)] = &[
            ("1", 1),
            ("123456", 123_456),
            ("500k", 512_000),
            ("500K", 512_000),
            ("20M", 20 * 1024 * 1024),
            ("20m", 20 * 1024 * 1024),
            ("50M", 52_428_800),
            ("1G", 1 << 30),
            ("2g", 2 << 30),
            (" 64k ", 65_536),
            ("18446744073709551615", u64::MAX),
            ("17179869183G", 17_179_869_183 << 30),
        ];
        for (s, want) in ok {
            assert_eq!(parse_rate(s), Ok(*want), "{s:?}");
        }
        let bad = [
            "",
            " ",
            "0",
            "0k",
            "000M",
            "-1",
            "-5M",
            "+5",
            "1.5M",
            "k",
            "M",
            "20MB",
            "20 M",
            "5x",
            "abc",
            "1e6",
            "0x10",
            "10T",
            "18446744073709551616",
            "17179869184G",
            "99999999999999999999k",
        ];
        for s in bad {
            assert!(parse_rate(s).is_err(), "{s:?} should be rejected");
        }
        assert!(parse_rate("0").unwrap_err().contains("more than zero"));
        assert!(parse_rate("9999999999999999999G")
            .unwrap_err()
            .contains("too large"));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let l = RateLimiter::from_rate(None);
        assert!(l.is_unlimited());
        assert_eq!(l.rate(), None);
        let t0 = Instant::now();
        for _ in 0..1000 {
            l.take(1 << 20).await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    /// Takes `total` bytes in `chunk`-sized pieces; returns the bytes taken.
    async fn drain(l: RateLimiter, total: u64, chunk: usize) -> u64 {
        let mut got = 0;
        while got < total {
            l.take(chunk).await;
            got += chunk as u64;
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn mean_rate_is_the_cap() {
        for (rate, chunk) in [
            (1u64 << 20, 64 * 1024),
            (50 << 20, 64 * 1024),
            (500 << 10, 16 * 1024),
        ] {
            let l = RateLimiter::new(rate);
            assert_eq!(l.rate(), Some(rate));
            let t0 = Instant::now();
            let got = drain(l, rate * 10, chunk).await;
            let secs = t0.elapsed().as_secs_f64();
            let measured = got as f64 / secs;
            let err = (measured - rate as f64).abs() / rate as f64;
            assert!(
                err <= 0.02,
                "rate {rate}: measured {measured:.0} B/s over {secs:.3} s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_holds_across_clones_and_after_idling() {
        let rate = 10u64 << 20;
        let l = RateLimiter::new(rate);
        // An idle spell earns at most a tenth of a second's worth of bytes.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| tokio::spawn(drain(l.clone(), rate, 32 * 1024)))
            .collect();
        let mut got = 0;
        for t in tasks {
            got += t.await.unwrap();
        }
        let secs = t0.elapsed().as_secs_f64();
        let measured = got as f64 / secs;
        assert!(
            (measured - rate as f64).abs() / rate as f64 <= 0.02,
            "measured {measured:.0} B/s over {secs:.3} s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_takers_share_fairly() {
        let rate = 4u64 << 20;
        let l = RateLimiter::new(rate);
        let counted = |l: RateLimiter| async move {
            let mut got = 0u64;
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                l.take(64 * 1024).await;
                got += 64 * 1024;
            }
            got
        };
        let (a, b) = tokio::join!(
            tokio::spawn(counted(l.clone())),
            tokio::spawn(counted(l.clone()))
        );
        let (a, b) = (a.unwrap() as f64, b.unwrap() as f64);
        let share = a / (a + b);
        assert!((0.45..=0.55).contains(&share), "shares {a} vs {b}");
        // Together they kept to the cap.
        let measured = (a + b) / 5.0;
        assert!(
            (measured - rate as f64).abs() / rate as f64 <= 0.03,
            "measured {measured:.0}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn small_and_large_chunks_both_progress() {
        // A taker of small chunks is not starved by one asking for big ones.
        let l = RateLimiter::new(1 << 20);
        let big = tokio::spawn(drain(l.clone(), 4 << 20, 256 * 1024));
        let t0 = Instant::now();
        drain(l.clone(), 256 * 1024, 4096).await;
        let small_secs = t0.elapsed().as_secs_f64();
        big.await.unwrap();
        // Turns alternate: while the big taker runs (16 rounds of 4 + 256 KiB
        // at 1 MiB/s ≈ 4.1 s) the small one gets 16 of its 64 chunks, then it
        // takes the other 48 (0.2 s). Starved, it would wait for all 4 MiB first.
        assert!(small_secs < 4.5, "small taker took {small_secs:.1} s");
    }
}
