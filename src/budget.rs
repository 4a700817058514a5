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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where `-j auto` starts.
pub const AUTO_START: usize = 4;
/// The most connections `-j auto` opens to a host over HTTP/1.1.
pub const AUTO_CAP_HTTP1: usize = 16;
/// The most concurrent requests `-j auto` sends over HTTP/2 (two
/// connections carry them all, see `fetch::http`).
pub const AUTO_CAP_HTTP2: usize = 64;
/// Where `-j auto` jumps once the archive answers over HTTP/2.
pub const AUTO_START_HTTP2: usize = 48;
/// Successes after which a throttled fixed budget gets one slot back.
pub const RECOVER_AFTER: usize = 8;
/// How long growth pauses after the server pushed back.
pub const CALM_AFTER_STRAIN: Duration = Duration::from_secs(3);
/// How often `-j auto` looks at throughput.
pub const TICK: Duration = Duration::from_millis(250);

/// `-j`: a fixed number, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jobs {
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
    pub fn ceiling(self) -> usize {
        match self {
            Jobs::Auto => AUTO_CAP_HTTP1,
            Jobs::Fixed(n) => n,
        }
    }
}

/// How hard the server pushed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// HTTP 429: slow down.
    SlowDown,
    /// A 503, a reset or a stall: the server or the path is strained.
    Strain,
}

/// Throughput at the last look.
#[derive(Debug)]
struct Sample {
    at: Instant,
    bytes: u64,
    files: usize,
    rate: f64,
    strained: Option<Instant>,
}

/// The connection budget (see the module docs).
#[derive(Debug)]
pub struct Budget {
    sem: Arc<Semaphore>,
    auto: bool,
    /// The ceiling now (grows to the HTTP/2 cap when HTTP/2 is seen).
    cap: AtomicUsize,
    /// The budget now.
    current: AtomicUsize,
    /// Permits to forget as they come back (a shrink while all were out).
    debt: AtomicUsize,
    /// Files waiting for a slot.
    waiting: AtomicUsize,
    successes: AtomicUsize,
    http2: AtomicBool,
    /// Slots held back until the first answer arrives.
    cold: AtomicUsize,
    /// A large file asked for an extra slot and found none since the last look.
    demand: AtomicBool,
    /// Body bytes received so far, as they stream.
    bytes: std::sync::atomic::AtomicU64,
    sample: Mutex<Sample>,
}

impl Budget {
    /// Returns the budget `-j` asks for.
    pub fn new(jobs: Jobs) -> Budget {
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
            demand: AtomicBool::new(false),
            bytes: std::sync::atomic::AtomicU64::new(0),
            auto,
            cap: AtomicUsize::new(cap),
            current: AtomicUsize::new(start),
            debt: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            sample: Mutex::new(Sample {
                at: Instant::now(),
                bytes: 0,
                files: 0,
                rate: 0.0,
                strained: None,
            }),
        }
    }

    /// The first answer arrived (or the first job ended): the slots held
    /// back are given out.
    pub fn warm(&self) {
        let held = self.cold.swap(0, Ordering::SeqCst);
        if held > 0 {
            self.sem.add_permits(held);
        }
    }

    /// Counts body bytes as they arrive (the throughput `tick` looks at).
    pub fn streamed(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Returns true if and only if the held-back slots were given out.
    pub fn is_warm(&self) -> bool {
        self.cold.load(Ordering::SeqCst) == 0
    }

    /// Returns true if and only if the archive answered over HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// Returns the budget now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Returns true if and only if `-j auto`.
    pub fn is_auto(&self) -> bool {
        self.auto
    }

    /// Waits for a slot for a new file.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let p = self.sem.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        p
    }

    /// Returns a slot for an extra range of a large file, if one is free
    /// and no file is waiting for it.
    pub fn try_extra(&self) -> Option<OwnedSemaphorePermit> {
        if self.wanted() {
            return None;
        }
        let got = self.sem.clone().try_acquire_owned().ok();
        if got.is_none() {
            self.demand.store(true, Ordering::Relaxed);
        }
        got
    }

    /// Returns true if and only if a file is waiting for a slot.
    pub fn wanted(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Hands a slot back: forgotten if a shrink is still owed.
    pub fn release(&self, permit: OwnedSemaphorePermit) {
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
            self.successes.store(0, Ordering::Relaxed);
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
    pub fn push_back(&self, kind: Pushback) -> usize {
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
        if let Ok(mut s) = self.sample.lock() {
            s.strained = Some(Instant::now());
        }
    }

    /// Counts a finished file; a fixed budget throttled by a 429 gets one
    /// slot back per [`RECOVER_AFTER`] of them.
    pub fn success(&self) {
        if self.auto || self.current() >= self.cap.load(Ordering::Relaxed) {
            return;
        }
        if self.successes.fetch_add(1, Ordering::Relaxed) + 1 >= RECOVER_AFTER {
            self.successes.store(0, Ordering::Relaxed);
            self.grow(1);
        }
    }

    /// The archive answered over HTTP/2: with `auto`, the ceiling becomes
    /// [`AUTO_CAP_HTTP2`] (the requests share one connection).
    pub fn saw_http2(&self) {
        if self.auto && !self.http2.swap(true, Ordering::Relaxed) {
            self.cap.store(AUTO_CAP_HTTP2, Ordering::Relaxed);
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
    pub fn tick(&self, files: usize) -> usize {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let Ok(mut s) = self.sample.lock() else {
            return self.current();
        };
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
        *s = Sample {
            at: now,
            bytes,
            files,
            rate,
            strained: s.strained,
        };
        drop(s);
        let demand = self.demand.swap(false, Ordering::Relaxed);
        if self.auto && calm && holding && (self.wanted() || demand) {
            // Over HTTP/2 a step is a stream, not a connection: double.
            let step = match self.http2.load(Ordering::Relaxed) {
                true => self.current(),
                false => (self.current() / 2).max(2),
            };
            return self.grow(step);
        }
        self.current()
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
}
