//! The run's connection budget: how many requests to the archive may be
//! in flight at once (over HTTP/1.1, how many connections are open).
//!
//! `-j N` fixes it at N. `-j auto` starts at [`AUTO_START`] and grows while
//! the budget is saturated and throughput holds or rises, up to
//! [`AUTO_CAP_HTTP1`] (or [`AUTO_CAP_HTTP2`] once the archive answers over
//! HTTP/2, where requests share two connections). Both shrink when the
//! server pushes back: a 429 halves the budget (and, with `-j N`, it comes
//! back one slot per [`RECOVER_AFTER`] successes); with `auto`, a 503, a
//! reset or a stall takes a quarter off and pauses growth. New files are
//! served first: the extra ranges of a large file take only slots nobody
//! is waiting for ([`Budget::try_extra`]) and give them back between
//! ranges when a file is waiting ([`Budget::wanted`]).
//!
//! One [`Throttle`], resolved from `-j` and `--limit-rate` before any
//! client exists, owns the budget, the bucket's connection bound and the
//! rate limiter. The transfers and the retry loop only tell it what
//! happened ([`Event`]: an answer, a retry with or without push-back, a
//! success; and the bytes as they stream); it keeps them in step.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::rate::RateLimiter;

/// Where `-j auto` starts.
pub(crate) const AUTO_START: usize = 4;
/// The most connections `-j auto` opens to a host over HTTP/1.1.
pub(crate) const AUTO_CAP_HTTP1: usize = 16;
/// The most concurrent requests `-j auto` sends over HTTP/2 (two
/// connections carry them all, see `transfer::http`).
pub(crate) const AUTO_CAP_HTTP2: usize = 64;
/// Where `-j auto` jumps once the archive answers over HTTP/2.
pub(crate) const AUTO_START_HTTP2: usize = 48;
/// Successes after which a throttled fixed budget gets one slot back.
pub(crate) const RECOVER_AFTER: usize = 8;
/// How long growth pauses after the server pushed back.
pub(crate) const CALM_AFTER_STRAIN: Duration = Duration::from_secs(3);
/// How often `-j auto` looks at throughput.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// `-j`: a fixed number, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jobs {
    Auto,
    Fixed(usize),
}

impl std::str::FromStr for Jobs {
    type Err = String;
    fn from_str(s: &str) -> Result<Jobs, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Jobs::Auto);
        }
        match s.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("expected a number above 0 or `auto`, got `{s}`")),
            Ok(n) => Ok(Jobs::Fixed(n)),
        }
    }
}

impl Jobs {
    /// Returns the most requests this setting may ever have in flight.
    pub(crate) fn ceiling(self) -> usize {
        match self {
            Jobs::Auto => AUTO_CAP_HTTP1,
            Jobs::Fixed(n) => n,
        }
    }
}

/// How hard the server pushed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// HTTP 429: slow down.
    SlowDown,
    /// A 503, a reset or a stall: the server or the path is strained.
    Strain,
}

/// Throughput at the last look, and what happened since.
#[derive(Debug)]
struct Sample {
    at: Instant,
    bytes: u64,
    files: usize,
    rate: f64,
    strained: Option<Instant>,
    /// Successes since a throttled fixed budget last got a slot back.
    successes: usize,
    /// A large file asked for an extra slot and found none since the last look.
    demand: bool,
}

/// The connection budget (see the module docs).
#[derive(Debug)]
struct Budget {
    sem: Arc<Semaphore>,
    auto: bool,
    /// The ceiling now: with `auto`, [`AUTO_CAP_HTTP2`] once HTTP/2 is seen.
    cap: AtomicUsize,
    /// The budget now.
    current: AtomicUsize,
    /// Permits to forget as they come back (a shrink while all were out).
    debt: AtomicUsize,
    /// Files waiting for a slot.
    waiting: AtomicUsize,
    /// Slots held back until the first answer arrives.
    cold: AtomicUsize,
    /// Body bytes received so far, as they stream.
    bytes: AtomicU64,
    sample: Mutex<Sample>,
}

impl Budget {
    /// Returns the budget `-j` asks for.
    fn new(jobs: Jobs) -> Budget {
        let (auto, start, cap) = match jobs {
            Jobs::Auto => (true, AUTO_START, AUTO_CAP_HTTP1),
            Jobs::Fixed(n) => (false, n.max(1), n.max(1)),
        };
        Budget {
            // One request first: once the first connection is up (and its
            // protocol known), the others can share it over HTTP/2 instead
            // of each racing to open its own.
            sem: Arc::new(Semaphore::new(1)),
            cold: AtomicUsize::new(start - 1),
            bytes: AtomicU64::new(0),
            auto,
            cap: AtomicUsize::new(cap),
            current: AtomicUsize::new(start),
            debt: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            sample: Mutex::new(Sample {
                at: Instant::now(),
                bytes: 0,
                files: 0,
                rate: 0.0,
                strained: None,
                successes: 0,
                demand: false,
            }),
        }
    }

    /// The first answer arrived (or the first job ended): the slots held
    /// back are given out.
    fn warm(&self) {
        let held = self.cold.swap(0, Ordering::SeqCst);
        if held > 0 {
            self.sem.add_permits(held);
        }
    }

    /// Counts body bytes as they arrive (the throughput `tick` looks at).
    fn streamed(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Returns true if and only if the held-back slots were given out.
    fn is_warm(&self) -> bool {
        self.cold.load(Ordering::SeqCst) == 0
    }

    /// Returns true if and only if `auto` saw the archive answer over HTTP/2.
    fn is_http2(&self) -> bool {
        self.auto && self.cap.load(Ordering::Relaxed) == AUTO_CAP_HTTP2
    }

    /// Returns the budget now.
    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    fn sample(&self) -> std::sync::MutexGuard<'_, Sample> {
        self.sample.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot for a new file.
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let p = self.sem.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        p
    }

    /// Returns a slot for an extra range of a large file, if one is free
    /// and no file is waiting for it.
    fn try_extra(&self) -> Option<OwnedSemaphorePermit> {
        if self.wanted() {
            return None;
        }
        let got = self.sem.clone().try_acquire_owned().ok();
        if got.is_none() {
            self.sample().demand = true;
        }
        got
    }

    /// Returns true if and only if a file is waiting for a slot.
    fn wanted(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Hands a slot back: forgotten if a shrink is still owed.
    fn release(&self, permit: OwnedSemaphorePermit) {
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

    /// Takes the budget down to `target` (at least one).
    fn shrink_to(&self, target: usize) -> usize {
        let cur = self.current.load(Ordering::Relaxed);
        let target = target.clamp(1, cur.max(1));
        let drop = cur - target;
        if drop > 0 {
            self.current.store(target, Ordering::Relaxed);
            self.sample().successes = 0;
            let got = self.sem.forget_permits(drop);
            self.debt.fetch_add(drop - got, Ordering::Relaxed);
        }
        target
    }

    /// Adds `n` slots, up to the ceiling. Returns the budget now.
    fn grow(&self, n: usize) -> usize {
        let cur = self.current.load(Ordering::Relaxed);
        let cap = self.cap.load(Ordering::Relaxed);
        let add = n.min(cap.saturating_sub(cur));
        for _ in 0..add {
            // Pay a shrink still owed before adding permits.
            let owed = self.debt.load(Ordering::Relaxed);
            if owed > 0 {
                self.debt.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.sem.add_permits(1);
            }
        }
        self.current.fetch_add(add, Ordering::Relaxed) + add
    }

    /// The server pushed back. Returns the budget now.
    fn push_back(&self, kind: Pushback) -> usize {
        match kind {
            Pushback::SlowDown => {
                self.mark_strain();
                self.shrink_to(self.current() / 2)
            }
            Pushback::Strain if self.auto => {
                self.mark_strain();
                self.shrink_to(self.current() * 3 / 4)
            }
            Pushback::Strain => self.current(),
        }
    }

    fn mark_strain(&self) {
        self.sample().strained = Some(Instant::now());
    }

    /// Counts a finished file; a fixed budget throttled by a 429 gets one
    /// slot back per [`RECOVER_AFTER`] of them.
    fn success(&self) {
        if self.auto || self.current() >= self.cap.load(Ordering::Relaxed) {
            return;
        }
        let recovered = {
            let mut s = self.sample();
            s.successes += 1;
            let recovered = s.successes >= RECOVER_AFTER;
            if recovered {
                s.successes = 0;
            }
            recovered
        };
        if recovered {
            self.grow(1);
        }
    }

    /// The archive answered over HTTP/2: with `auto`, the ceiling becomes
    /// [`AUTO_CAP_HTTP2`] (the requests share one connection).
    fn saw_http2(&self) {
        if !self.auto {
            return;
        }
        let once = self.cap.compare_exchange(
            AUTO_CAP_HTTP1,
            AUTO_CAP_HTTP2,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if once.is_ok() {
            // More streams on the one connection cost no handshake: start
            // near the top (as `curl --parallel` starts at 50).
            let now = self.current();
            self.grow(AUTO_START_HTTP2.saturating_sub(now));
        }
    }

    /// `-j auto`'s look at throughput, every [`TICK`]: with the run's body
    /// bytes and finished files so far, grows the budget while it is
    /// saturated (a file waits), throughput holds or rises, and the server
    /// has not pushed back lately. Returns the budget now.
    fn tick(&self, files: usize) -> usize {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut s = self.sample();
        let now = Instant::now();
        let secs = now.duration_since(s.at).as_secs_f64().max(1e-3);
        // Bytes and files both count: a file is worth a TTFB of bytes.
        let rate = (bytes.saturating_sub(s.bytes)) as f64 / secs
            + (files.saturating_sub(s.files)) as f64 / secs * 65_536.0;
        let calm = s
            .strained
            .is_none_or(|t| now.duration_since(t) > CALM_AFTER_STRAIN);
        // Nothing arriving is no reason to open more connections.
        let holding = rate > 0.0 && rate >= s.rate * 0.9 && self.is_warm();
        let demand = std::mem::take(&mut s.demand);
        *s = Sample {
            at: now,
            bytes,
            files,
            rate,
            ..*s
        };
        drop(s);
        if self.auto && calm && holding && (self.wanted() || demand) {
            // Over HTTP/2 a step is a stream, not a connection: double.
            let step = match self.is_http2() {
                true => self.current(),
                false => (self.current() / 2).max(2),
            };
            return self.grow(step);
        }
        self.current()
    }
}

/// What the run's transfers tell the [`Throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// An answer arrived (over HTTP/2 or not): the slots held back for the
    /// first answer go out, and over HTTP/2 `auto` reaches higher.
    Answered { http2: bool },
    /// An attempt failed and will be tried again; whatever the first
    /// file's fate, the others need not wait for it. With how the server
    /// pushed back, if it did.
    Retrying(Option<Pushback>),
    /// A file arrived whole.
    Success,
}

/// The run's concurrency, resolved once from `-j` and `--limit-rate`
/// before any client exists, and its one owner (see the module docs): the
/// connection budget, the bucket's connection bound and the rate limiter.
#[derive(Debug)]
pub(crate) struct Throttle {
    budget: Budget,
    /// The run-wide bound on connections to the bucket.
    bucket: Semaphore,
    /// `--limit-rate`.
    limiter: RateLimiter,
    /// Files whose job ended (any status), for throughput.
    ended: AtomicUsize,
}

impl Throttle {
    /// Returns the throttle of `jobs` (`-j`), `limit_rate` (`--limit-rate`,
    /// bytes a second) and `bucket` connections to the bucket.
    pub(crate) fn new(jobs: Jobs, limit_rate: Option<u64>, bucket: usize) -> Throttle {
        Throttle {
            budget: Budget::new(jobs),
            bucket: Semaphore::new(bucket),
            limiter: RateLimiter::from_rate(limit_rate),
            ended: AtomicUsize::new(0),
        }
    }

    /// Takes in what a transfer or the retry loop saw.
    pub(crate) fn on(&self, event: Event) {
        match event {
            Event::Answered { http2 } => {
                if http2 {
                    self.budget.saw_http2();
                }
                self.budget.warm();
            }
            Event::Retrying(pushback) => {
                if let Some(kind) = pushback {
                    self.budget.push_back(kind);
                }
                self.budget.warm();
            }
            Event::Success => self.budget.success(),
        }
    }

    /// Body bytes arrived: waits until `--limit-rate` lets `n` more go,
    /// and counts them for throughput.
    pub(crate) async fn streamed(&self, n: usize) {
        self.limiter.take(n).await;
        self.budget.streamed(n);
    }

    /// Returns true if and only if `--limit-rate` caps the run.
    pub(crate) fn is_rate_limited(&self) -> bool {
        !self.limiter.is_unlimited()
    }

    /// Returns the budget now.
    pub(crate) fn current(&self) -> usize {
        self.budget.current()
    }

    /// Waits for a slot for a new file.
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.budget.acquire().await
    }

    /// A file's job ended, whatever its outcome: its slot comes back and
    /// the slots held back for the first answer go out.
    pub(crate) fn ended(&self, slot: OwnedSemaphorePermit) {
        self.budget.warm();
        // The next file may start before this one's connection is back in
        // the pool: the gate (transfer::gate) keeps it from opening one more.
        self.budget.release(slot);
        self.ended.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns a slot for an extra range of a large file, if one is free
    /// and no file is waiting for it.
    pub(crate) fn try_extra(&self) -> Option<OwnedSemaphorePermit> {
        self.budget.try_extra()
    }

    /// Returns true if and only if a file is waiting for a slot.
    pub(crate) fn wanted(&self) -> bool {
        self.budget.wanted()
    }

    /// Hands an extra range's slot back.
    pub(crate) fn release(&self, slot: OwnedSemaphorePermit) {
        self.budget.release(slot);
    }

    /// Returns the run-wide bound on connections to the bucket.
    pub(crate) fn bucket(&self) -> &Semaphore {
        &self.bucket
    }

    /// Steers `-j auto` for as long as it is polled: every [`TICK`] a look
    /// at throughput; after eight, a first file that takes long to answer
    /// (a stall, a bucket object) no longer holds every other one back.
    pub(crate) async fn steer(&self) {
        for n in 1u32.. {
            tokio::time::sleep(TICK).await;
            if n == 8 {
                self.budget.warm();
            }
            self.budget.tick(self.ended.load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_parse() {
        assert_eq!("auto".parse::<Jobs>(), Ok(Jobs::Auto));
        assert_eq!("AUTO".parse::<Jobs>(), Ok(Jobs::Auto));
        assert_eq!("8".parse::<Jobs>(), Ok(Jobs::Fixed(8)));
        assert!("0".parse::<Jobs>().is_err());
        assert!("-1".parse::<Jobs>().is_err());
        assert!("many".parse::<Jobs>().is_err());
    }

    #[tokio::test]
    async fn a_fixed_budget_halves_on_429_and_recovers() {
        let b = Budget::new(Jobs::Fixed(4));
        assert_eq!(b.sem.available_permits(), 1, "one request first");
        b.warm();
        b.warm();
        assert_eq!(b.sem.available_permits(), 4);
        assert_eq!(b.push_back(Pushback::SlowDown), 2);
        assert_eq!(b.sem.available_permits(), 2);
        assert_eq!(
            b.push_back(Pushback::Strain),
            2,
            "only auto shrinks on strain"
        );
        assert_eq!(b.push_back(Pushback::SlowDown), 1);
        assert_eq!(b.push_back(Pushback::SlowDown), 1);
        for _ in 0..RECOVER_AFTER {
            b.success();
        }
        assert_eq!(b.current(), 2);
        assert_eq!(b.sem.available_permits(), 2);
        // A shrink while every slot is out is paid back by released permits.
        let x = b.acquire().await.unwrap();
        let y = b.acquire().await.unwrap();
        assert_eq!(b.push_back(Pushback::SlowDown), 1);
        b.release(x);
        b.release(y);
        assert_eq!(b.sem.available_permits(), 1);
        b.streamed(1 << 30);
        assert_eq!(b.tick(100), 1, "a fixed budget never grows");
    }

    #[tokio::test]
    async fn auto_grows_only_while_saturated_and_calm_and_shrinks_on_strain() {
        let b = Arc::new(Budget::new(Jobs::Auto));
        b.warm();
        assert_eq!(b.current(), AUTO_START);
        b.streamed(1000);
        assert_eq!(b.tick(1), AUTO_START, "nobody waits: no growth");
        let held: Vec<_> = (0..AUTO_START)
            .map(|_| b.sem.clone().try_acquire_owned().unwrap())
            .collect();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire().await })
        };
        while !b.wanted() {
            tokio::task::yield_now().await;
        }
        let mut level = b.current();
        for i in 2..20usize {
            b.streamed(1_000_000 * i);
            level = b.tick(i * 10);
        }
        assert_eq!(level, AUTO_CAP_HTTP1, "grew to the cap and no further");
        assert!(waiter.await.unwrap().is_some());
        assert_eq!(b.push_back(Pushback::Strain), AUTO_CAP_HTTP1 * 3 / 4);
        let after = b.current();
        b.streamed(1 << 40);
        assert_eq!(b.tick(1 << 20), after, "no growth right after strain");
        assert_eq!(b.push_back(Pushback::SlowDown), after / 2);
        b.saw_http2();
        assert_eq!(b.cap.load(Ordering::Relaxed), AUTO_CAP_HTTP2);
        drop(held);
    }

    #[test]
    fn extra_slots_go_only_to_nobody_waiting() {
        let b = Budget::new(Jobs::Fixed(2));
        b.warm();
        let one = b.try_extra();
        assert!(one.is_some());
        b.waiting.fetch_add(1, Ordering::SeqCst);
        assert!(b.try_extra().is_none(), "a waiting file comes first");
        b.waiting.fetch_sub(1, Ordering::SeqCst);
        let two = b.try_extra();
        assert!(two.is_some());
        assert!(b.try_extra().is_none(), "the budget is spent");
        drop((one, two));
    }

    #[tokio::test]
    async fn the_throttle_keeps_the_budget_in_step_with_its_events() {
        let t = Throttle::new(Jobs::Fixed(4), None, 2);
        assert_eq!(t.budget.sem.available_permits(), 1, "one request first");
        let first = t.acquire().await.unwrap();
        t.on(Event::Answered { http2: false });
        assert_eq!(t.budget.sem.available_permits(), 3, "warm after an answer");
        t.on(Event::Retrying(Some(Pushback::SlowDown)));
        assert_eq!(t.current(), 2);
        t.on(Event::Retrying(None));
        assert_eq!(t.current(), 2, "a plain retry is no push-back");
        for _ in 0..RECOVER_AFTER {
            t.on(Event::Success);
        }
        assert_eq!(t.current(), 3);
        t.ended(first);
        assert_eq!(t.ended.load(Ordering::Relaxed), 1);
        assert!(!t.is_rate_limited());
        assert_eq!(t.bucket().available_permits(), 2);
        let auto = Throttle::new(Jobs::Auto, Some(1 << 20), 2);
        assert!(auto.is_rate_limited());
        auto.on(Event::Answered { http2: true });
        assert_eq!(auto.current(), AUTO_START_HTTP2);
        assert!(auto.budget.is_http2());
        let fixed16 = Throttle::new(Jobs::Fixed(AUTO_CAP_HTTP1), None, 2);
        fixed16.on(Event::Answered { http2: true });
        assert_eq!(
            fixed16.current(),
            AUTO_CAP_HTTP1,
            "a fixed budget stays put"
        );
    }
}
