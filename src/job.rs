//! The per-file policy: one job's attempts → its outcome, run by the
//! [`Downloader`] (what every transfer of a run shares, built once).
//!
//! A job is tried from where its [`Route`] starts through [`retry::run`]
//! (the one retry loop); between sources it may move: a bucket object the
//! bucket does not have (403/404) comes from the archive instead when the
//! route falls back (else, `--cloud-only`, it is SKIPPED), and a 401/403
//! without a token from a host the token would be sent to asks for one
//! once, on a terminal, then tries again. `--update` first asks the source
//! (a HEAD, retried the same way) whether a complete file changed. The
//! outcome is typed facts (a [`Why`], not words), a timeline bar and what
//! the HTML's "Access" column says; [`Outcomes`] keeps them and makes the
//! manifest rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::auth::{Auth, TOKEN_HELP};
use crate::budget::{Event, Throttle};
use crate::dest::{Dest, StateRecord};
use crate::error::TransferError;
use crate::manifest::Source;
use crate::manifest::{Bar, FileRecord, Row, Status, Timing, MAX_BARS};
use crate::plan::{Job, Planned, Route};
use crate::progress::{Level, Reporter};
use crate::retry::{self, GaveUp, Policy};
use crate::token::Token;
use crate::transfer::{self, Done, Http};

/// Why a row says what it says: its manifest message, typed until the
/// row is made ([`Facts::row`] turns it into words, the only place that
/// does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    /// A transfer cut short by Ctrl-C or SIGTERM, its `.part` kept.
    CutShort,
    /// A file the interruption kept from starting.
    NotStarted,
    /// A transfer interrupted before its first byte.
    InterruptedEarly,
    /// A complete file `--update` kept because nothing tells its version
    /// from the source's (same size, no validator to compare).
    NoValidator,
    /// `--cloud-only`: the plan found it is not in the bucket.
    NotInCloud,
    /// Its task ended without an outcome.
    Lost,
    /// Words that vary (an error, what an update found).
    Text(String),
}

impl Why {
    /// Returns the manifest message.
    fn words(&self) -> &str {
        match self {
            Why::CutShort => "interrupted; the `.part` was kept and the next run resumes it",
            Why::NotStarted => "not started: the run was interrupted",
            Why::InterruptedEarly => "interrupted before any byte arrived",
            Why::NoValidator => {
                "no validator: cannot tell whether it changed; `--force` fetches it again"
            }
            Why::NotInCloud => "not in cloud",
            Why::Lost => "internal error: the transfer ended unexpectedly",
            Why::Text(t) => t,
        }
    }
}

/// The reasons [`Outcomes`] keeps as a number (1 + the index; 0: none,
/// [`WHY_TEXT`]: words kept in its messages).
const WHYS: [Why; 6] = [
    Why::CutShort,
    Why::NotStarted,
    Why::InterruptedEarly,
    Why::NoValidator,
    Why::NotInCloud,
    Why::Lost,
];
const WHY_TEXT: u8 = u8::MAX;

impl Why {
    /// Returns its number in a [`Slot`]: 1 + its index in [`WHYS`], or
    /// [`WHY_TEXT`] (a new reason must be given a number here).
    fn code(&self) -> u8 {
        match self {
            Why::CutShort => 1,
            Why::NotStarted => 2,
            Why::InterruptedEarly => 3,
            Why::NoValidator => 4,
            Why::NotInCloud => 5,
            Why::Lost => 6,
            Why::Text(_) => WHY_TEXT,
        }
    }
}

/// The note of a reprocessed change-feed row fetched again because nothing
/// tells the versions apart.
const REPROCESSED_BLIND: &str =
    "updated: the feed says reprocessed, and no validator tells the versions apart (same size)";

/// What every transfer of one run shares, built once (by `fetch`): the
/// HTTP client, DEST, the token, the progress sink, the concurrency
/// budget, the retry policy and the run's cancellation. The per-file
/// policy ([`Downloader::run`], here) takes only the job; each transfer it
/// makes ([`Downloader::download`], in [`crate::transfer`]) takes one
/// [`crate::transfer::Attempt`].
pub(crate) struct Downloader {
    pub(crate) http: Http,
    pub(crate) dest: Dest,
    pub(crate) auth: Auth,
    pub(crate) reporter: Arc<dyn Reporter>,
    /// The run's concurrency (`-j`, the bucket's bound, `--limit-rate`).
    pub(crate) throttle: Throttle,
    pub(crate) policy: Policy,
    pub(crate) cancel: CancellationToken,
    /// When the run started (the timeline's zero).
    pub(crate) started: Instant,
    /// Body bytes received by the whole run.
    pub(crate) received: AtomicU64,
}

/// What the manifest's "Access" column says of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Not transferred: nothing to say.
    Untouched,
    Public,
    Token,
    /// The archive refused the file (401/403), and why.
    Denied(Denial),
}

/// Why the archive refused a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denial {
    /// No token was given (none on the command line, in the environment or
    /// at the prompt).
    NoToken,
    /// A 401 with a token: MAST did not accept it (expired or revoked).
    Rejected,
    /// A 403 with a token: it may be valid and not grant this file; it
    /// counts as a token failure only when `/whoami` said MAST did not
    /// accept the token.
    NotGranted,
}

impl Denial {
    /// Returns why a 401/403 (`status`) refused a file, `None` for any
    /// other status.
    pub(crate) fn of(status: Option<u16>, had_token: bool) -> Option<Denial> {
        match (status?, had_token) {
            (401 | 403, false) => Some(Denial::NoToken),
            (401, true) => Some(Denial::Rejected),
            (403, true) => Some(Denial::NotGranted),
            _ => None,
        }
    }

    /// Returns why `error` refused a file for the token's sake: a 401/403
    /// from a URL the trust rules give the token to (the hop that answered,
    /// after redirects), `had_token` saying whether the run had one. A
    /// refusal from a host the token is never sent to (a script's
    /// third-party line, a redirect to an untrusted host) is `None`: no
    /// token could change it.
    pub(crate) fn of_error(http: &Http, error: &TransferError, had_token: bool) -> Option<Denial> {
        let trusted = error.answered_by().is_some_and(|u| http.trust.allows(u));
        Denial::of(error.status(), had_token).filter(|_| trusted)
    }
}

impl Access {
    /// Returns the column's text.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::Untouched => "",
            Access::Public => "public",
            Access::Token => "token",
            Access::Denied(_) => "denied",
        }
    }
}

/// One file's outcome.
pub(crate) struct Outcome {
    pub(crate) facts: Facts,
    pub(crate) timing: Option<Timing>,
    pub(crate) access: Access,
}

impl Outcome {
    /// Returns the outcome of a file that was not transferred.
    pub(crate) fn untransferred(facts: Facts) -> Outcome {
        Outcome {
            facts,
            timing: None,
            access: Access::Untouched,
        }
    }
}

/// Every job's outcome, by job index, in a few bytes each: what a
/// manifest row needs besides the job itself (which the plan file keeps).
/// The reasons are numbers and the rare free texts share one string; the
/// timeline keeps the bars of the first [`MAX_BARS`] jobs. So a
/// million-file run holds some 40 MiB here rather than a million rows.
pub(crate) struct Outcomes {
    slots: Vec<Slot>,
    /// Every free text, one after another.
    messages: String,
    /// Job index -> its bar (the lowest indices).
    bars: BTreeMap<usize, Bar>,
    /// Failed transfers cut short by an interruption.
    pub(crate) cut_short: usize,
    /// Files an interruption kept from starting.
    pub(crate) not_started: usize,
    /// Transfers with a bar, drawn or not.
    pub(crate) transfers: usize,
    /// FAILED files the archive refused: for want of a token (no token, or
    /// a 401 with one), and with a 403 to a token.
    denied: [usize; 2],
}

/// One job's outcome (see [`Outcomes`]).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    bytes: u64,
    /// Where its free text starts in the messages, and its length.
    text: (u32, u32),
    attempts: u32,
    http: u16,
    state: SlotState,
    access: u8,
    /// Its reason: 0 none, 1 + an index of [`WHYS`], or [`WHY_TEXT`].
    why: u8,
    /// Fetched from the archive after all (the route's fallback).
    fell_back: bool,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SlotState {
    /// Not classified, or never finished.
    #[default]
    Open,
    /// To download.
    Fetch,
    /// `--update`: complete, of this size (in `bytes`); to check.
    Check,
    Done(Status),
}

const ACCESS: [Access; 6] = [
    Access::Untouched,
    Access::Public,
    Access::Token,
    Access::Denied(Denial::NoToken),
    Access::Denied(Denial::Rejected),
    Access::Denied(Denial::NotGranted),
];

impl Outcomes {
    /// Returns the table of `n` jobs, none decided.
    pub(crate) fn new(n: usize) -> Outcomes {
        Outcomes {
            slots: vec![Slot::default(); n],
            messages: String::new(),
            bars: BTreeMap::new(),
            cut_short: 0,
            not_started: 0,
            transfers: 0,
            denied: [0; 2],
        }
    }

    /// Marks job `i` as one to download.
    pub(crate) fn mark_fetch(&mut self, i: usize) {
        self.slots[i].state = SlotState::Fetch;
    }

    /// Marks job `i`, complete with `size` bytes, as one to check (`--update`).
    pub(crate) fn mark_check(&mut self, i: usize, size: u64) {
        self.slots[i].state = SlotState::Check;
        self.slots[i].bytes = size;
    }

    /// Returns what is to be done with job `i` (`None`: it is decided);
    /// `record` gives the state record of a file to check (its error is
    /// returned).
    pub(crate) fn task<E>(
        &self,
        i: usize,
        record: impl FnOnce() -> Result<Option<StateRecord>, E>,
    ) -> Result<Option<Task>, E> {
        let Some(s) = self.slots.get(i) else {
            return Ok(None);
        };
        Ok(match s.state {
            SlotState::Fetch => Some(Task::Fetch),
            SlotState::Check => Some(Task::Check {
                size: s.bytes,
                record: record()?,
            }),
            _ => None,
        })
    }

    /// Returns the number of jobs to download or check.
    pub(crate) fn open_tasks(&self) -> usize {
        let todo = |s: &&Slot| matches!(s.state, SlotState::Fetch | SlotState::Check);
        self.slots.iter().filter(todo).count()
    }

    /// Returns the number of jobs that ended with `status`.
    pub(crate) fn count(&self, status: Status) -> usize {
        let with = |s: &&Slot| s.state == SlotState::Done(status);
        self.slots.iter().filter(with).count()
    }

    /// Returns true if and only if job `i` has its outcome.
    pub(crate) fn is_done(&self, i: usize) -> bool {
        matches!(self.slots[i].state, SlotState::Done(_))
    }

    /// Keeps job `i`'s outcome; `rel` is its path (a bar's label).
    pub(crate) fn set(&mut self, i: usize, rel: &str, o: Outcome) {
        let Outcome {
            facts: f,
            timing,
            access,
        } = o;
        if f.status == Status::Interrupted {
            match f.why {
                // No byte arrived: nothing kept, the next run starts it anew.
                Some(Why::NotStarted | Why::InterruptedEarly) => self.not_started += 1,
                _ => self.cut_short += 1,
            }
        }
        if let (Status::Failed, Access::Denied(d)) = (f.status, access) {
            self.denied[usize::from(d == Denial::NotGranted)] += 1;
        }
        let (mut why, mut text) = (0u8, (0u32, 0u32));
        match &f.why {
            None => {}
            Some(Why::Text(t)) => {
                let at = self.messages.len();
                if let (Ok(at32), Ok(len)) = (u32::try_from(at), u32::try_from(t.len())) {
                    self.messages.push_str(t);
                    (why, text) = (WHY_TEXT, (at32, len));
                }
                // Beyond 4 GiB of messages: keep the outcome, lose the text.
            }
            Some(w) => why = w.code(),
        }
        self.slots[i] = Slot {
            bytes: f.bytes,
            text,
            attempts: f.attempts,
            http: f.http_status.unwrap_or(0),
            state: SlotState::Done(f.status),
            access: ACCESS.iter().position(|a| *a == access).unwrap_or(0) as u8,
            why,
            fell_back: f.fell_back,
        };
        if let Some(timing) = timing {
            self.transfers += 1;
            if self.bars.len() < MAX_BARS || self.bars.last_key_value().is_some_and(|(k, _)| *k > i)
            {
                self.bars.insert(
                    i,
                    Bar {
                        label: rel.to_string(),
                        status: f.status,
                        timing,
                    },
                );
                if self.bars.len() > MAX_BARS {
                    self.bars.pop_last();
                }
            }
        }
    }

    /// Takes the timeline's bars, in job order.
    pub(crate) fn take_bars(&mut self) -> Vec<Bar> {
        std::mem::take(&mut self.bars).into_values().collect()
    }

    /// Returns true if and only if every FAILED file failed for want of a
    /// valid token (`token_refused`: `/whoami` said MAST did not accept
    /// the token, so a 403 to it counts too).
    pub(crate) fn all_want_token(&self, token_refused: bool) -> bool {
        let failed = self.count(Status::Failed);
        let wanting = self.denied[0] + if token_refused { self.denied[1] } else { 0 };
        failed > 0 && wanting == failed
    }

    /// Returns job `i`'s manifest row, `p` being the job as planned.
    pub(crate) fn row(&self, i: usize, p: Planned) -> Row {
        let s = self.slots[i];
        let why = match s.why {
            0 => None,
            WHY_TEXT => {
                let (at, len) = (s.text.0 as usize, s.text.1 as usize);
                let text = self.messages.get(at..at + len).unwrap_or("");
                Some(Why::Text(text.to_string()))
            }
            k => WHYS.get(usize::from(k) - 1).cloned(),
        };
        let facts = Facts {
            status: match s.state {
                SlotState::Done(st) => st,
                _ => Status::Failed,
            },
            bytes: s.bytes,
            http_status: (s.http != 0).then_some(s.http),
            attempts: s.attempts,
            why,
            fell_back: s.fell_back,
        };
        let (url, source) = p.route.landed(p.url, s.fell_back);
        Row {
            file: facts.row(p.uri, url, p.rel, source),
            access: ACCESS[usize::from(s.access).min(ACCESS.len() - 1)].as_str(),
        }
    }
}

/// What to do with a job.
pub(crate) enum Task {
    /// Download it (resuming a `.part`).
    Fetch,
    /// `--update`: it is complete; ask the source whether it changed.
    Check {
        size: u64,
        record: Option<StateRecord>,
    },
}

/// The facts of a manifest row besides the job's own.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub(crate) status: Status,
    pub(crate) bytes: u64,
    pub(crate) http_status: Option<u16>,
    pub(crate) attempts: u32,
    pub(crate) why: Option<Why>,
    /// Fetched from the archive after all, not from the bucket the route
    /// named.
    pub(crate) fell_back: bool,
}

impl Facts {
    /// Returns the facts of a file with `status` and nothing else to say.
    pub(crate) fn plain(status: Status, bytes: u64) -> Facts {
        Facts {
            status,
            bytes,
            http_status: None,
            attempts: 0,
            why: None,
            fell_back: false,
        }
    }

    /// Returns the facts of a file with `status`, `bytes` and `why`.
    pub(crate) fn because(status: Status, bytes: u64, why: Why) -> Facts {
        Facts {
            why: Some(why),
            ..Facts::plain(status, bytes)
        }
    }

    /// Returns the manifest row of the file `uri` at `path` with these
    /// facts, fetched (or not) from `url` at `source`: the one place a row
    /// is made and its reason turned into words.
    fn row(&self, uri: String, url: String, path: String, source: Source) -> FileRecord {
        FileRecord {
            // Only a URL with an `@` can carry a password: any other is kept as it is.
            url: if url.contains('@') {
                crate::layout::redact_url_text(&url)
            } else {
                url
            },
            uri,
            path,
            status: self.status,
            bytes: self.bytes,
            http_status: self.http_status,
            attempts: self.attempts,
            message: self.why.as_ref().map(|w| w.words().to_string()),
            source,
        }
    }

    /// Returns the manifest row of `job` with these facts.
    pub(crate) fn row_of(&self, job: &Job) -> FileRecord {
        let (url, source) = job.route.borrowed().landed(&job.url, self.fell_back);
        self.row(job.uri.clone(), url.to_string(), job.rel.clone(), source)
    }

    /// Returns the manifest row of a planned job with these facts.
    pub(crate) fn row_planned(&self, p: &Planned) -> FileRecord {
        let (url, source) = p.route.borrowed().landed(&p.url, self.fell_back);
        self.row(p.uri.clone(), url.clone(), p.rel.clone(), source)
    }
}

/// Returns the local path of `rel` below `root`.
pub(crate) fn local(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(rel.split('/'));
    p
}

/// Where a job is being fetched from now.
struct Via<'a> {
    url: &'a Url,
    source: Source,
    token: Option<Token>,
}

impl Downloader {
    /// Runs one task of job `id` to its outcome.
    pub(crate) async fn run(&self, id: usize, job: &Job, task: Task) -> Outcome {
        if job.route == Route::NotInBucket {
            // The plan found it is not in the bucket (`--cloud-only`):
            // nothing is asked of anyone.
            return Outcome::untransferred(Facts::because(Status::Skipped, 0, Why::NotInCloud));
        }
        match task {
            Task::Fetch => self.retrieve(id, job, None).await,
            Task::Check { size, record } => self.check_update(id, job, size, record).await,
        }
    }

    /// Returns the token a source may see: the archive's, never the bucket's.
    fn token_for(&self, source: Source) -> Option<Token> {
        match source {
            Source::Mast => self.auth.current(),
            Source::Cloud => None,
        }
    }

    /// Reports a retry (and a run-wide slow-down on 429).
    fn on_retry(&self, id: usize, job: &Job, err: &TransferError, n: u32, delay: Duration) {
        if err.status() == Some(429) {
            self.reporter.message(
                Level::Warn,
                &format!(
                    "the archive asks to slow down (HTTP 429): {} transfer(s) at once for a while",
                    self.throttle.current()
                ),
            );
        }
        self.reporter
            .retrying(id, &job.rel, n, &err.to_string(), delay);
    }

    /// `--update` for one complete file: a HEAD to its source; a changed file
    /// is fetched again to `.part` and renamed over the old one only when
    /// complete, so a failed replacement leaves the old file as it was. When
    /// nothing tells the versions apart (see [`Why::NoValidator`]), a
    /// reprocessed change-feed row is fetched again and any other file kept,
    /// saying so.
    async fn check_update(
        &self,
        id: usize,
        job: &Job,
        size: u64,
        record: Option<StateRecord>,
    ) -> Outcome {
        let source = job.route.source();
        let token = self.token_for(source);
        let head = retry::run(
            &self.policy,
            &self.cancel,
            Some(&self.throttle),
            |_| transfer::head(&self.http, job.route.url(&job.url), token.as_ref()),
            |e, n, d| self.on_retry(id, job, e, n, d),
        )
        .await;
        let (head, _) = match head {
            Ok(h) => h,
            Err(f) => {
                let denial = Denial::of_error(&self.http, &f.error, token.is_some());
                let (status, why) = if f.cancelled {
                    (Status::Interrupted, Why::NotStarted)
                } else {
                    let message = format!(
                        "could not check for an update ({}); the local file is unchanged",
                        failure_message(&f, denial)
                    );
                    (Status::Failed, Why::Text(message))
                };
                return Outcome {
                    access: denial.map_or(Access::Untouched, Access::Denied),
                    ..Outcome::untransferred(Facts {
                        http_status: f.error.status(),
                        attempts: f.retries + 1,
                        ..Facts::because(status, size, why)
                    })
                };
            }
        };
        // Validators recorded from another source (archive vs bucket) say nothing
        // about this one: then only the size is compared.
        let (etag, modified) = match &record {
            Some(r) if r.source == source => (r.etag.as_deref(), r.last_modified.as_deref()),
            _ => (None, None),
        };
        if let Some(why) = transfer::changed(&head, size, etag, modified) {
            return self
                .retrieve(id, job, Some(&format!("updated: {why}")))
                .await;
        }
        // What the record says of the bytes on disk: nothing when there is no
        // record from this source, or when it has no validator while the source
        // now gives one.
        let known = record.as_ref().is_some_and(|r| r.source == source);
        let source_has = head.etag.is_some() || head.last_modified.is_some();
        let unrecorded = !known || (etag.is_none() && modified.is_none() && source_has);
        if unrecorded && !older_than_file(&head, &local(self.dest.root(), &job.rel)) {
            // Nothing says which version is on disk (fetched by another tool,
            // or its record lost): only a file carrying the source's own date
            // proves it current; otherwise fetch it again.
            let note =
                "updated: no record of the version on disk, and the file does not carry the source's date";
            return self.retrieve(id, job, Some(note)).await;
        }
        // Nothing tells the versions apart: the same size, and no validator the
        // record and the source both have (MAST may send none; a reprocessed
        // FITS file keeps its size). A change feed that says the product was
        // reprocessed is believed: it comes again, through `.part`, the old
        // file untouched until the new one is complete. Plain `--update` keeps
        // the file and says why.
        let comparable = (etag.is_some() && head.etag.is_some())
            || (modified.is_some() && head.last_modified.is_some());
        let blind = !unrecorded && !comparable;
        if blind && job.update {
            return self.retrieve(id, job, Some(REPROCESSED_BLIND)).await;
        }
        if unrecorded || (etag.is_none() && modified.is_none()) {
            // Nothing was recorded to compare with: remember the source's
            // validators now, so the next --update can.
            let _ = self.dest.record(&StateRecord {
                path: job.rel.clone(),
                uri: job.uri.clone(),
                size,
                etag: head.etag.clone(),
                last_modified: head.last_modified.clone(),
                source,
                // The bytes did not change: what they hashed to still holds.
                md5: record
                    .as_ref()
                    .filter(|r| r.size == size)
                    .and_then(|r| r.md5.clone()),
            });
        }
        Outcome::untransferred(Facts {
            http_status: Some(head.status),
            why: blind.then_some(Why::NoValidator),
            ..Facts::plain(Status::Skipped, size)
        })
    }

    /// Downloads one job with retries; `note` goes into the manifest message
    /// on success. A bucket object the bucket turns out not to have (403/404)
    /// comes from the archive instead when its route falls back (else, with
    /// `--cloud-only`, it is SKIPPED); a 401/403 without a token asks for one
    /// (once per run) and tries again.
    async fn retrieve(&self, id: usize, job: &Job, note: Option<&str>) -> Outcome {
        let path = local(self.dest.root(), &job.rel);
        let start = self.started.elapsed();
        let mut via = match &job.route {
            Route::Archive => Via {
                url: &job.url,
                source: Source::Mast,
                token: self.auth.current(),
            },
            Route::Bucket { object, .. } => Via {
                url: object,
                source: Source::Cloud,
                token: None,
            },
            // Decided by the plan; never a task.
            Route::NotInBucket => {
                return Outcome::untransferred(Facts::because(Status::Skipped, 0, Why::NotInCloud))
            }
        };
        let mut attempts = 0u32;
        loop {
            let tried = retry::run(
                &self.policy,
                &self.cancel,
                Some(&self.throttle),
                |n| self.attempt(id, job, &path, &via, n == 1),
                |e, n, d| self.on_retry(id, job, e, n, d),
            )
            .await;
            let timing = Some(Timing {
                start_ms: start.as_millis() as u64,
                end_ms: self.started.elapsed().as_millis() as u64,
                received: tried.as_ref().map_or(0, |(d, _)| d.received),
            });
            let failed = match tried {
                Ok((done, n)) => {
                    return Outcome {
                        timing,
                        ..self.complete(job, &via, done, attempts + n, note)
                    };
                }
                Err(f) => f,
            };
            attempts += failed.retries + 1;
            let status = failed.error.status();
            if via.source == Source::Cloud && matches!(status, Some(403 | 404)) {
                match &job.route {
                    Route::Bucket { fallback: true, .. } => {
                        via = Via {
                            url: &job.url,
                            source: Source::Mast,
                            token: self.auth.current(),
                        };
                        continue;
                    }
                    _ => return not_in_cloud(&failed, attempts),
                }
            }
            let denial = Denial::of_error(&self.http, &failed.error, via.token.is_some());
            if denial == Some(Denial::NoToken) && via.source == Source::Mast {
                if let Some(t) = self.auth.ask(self.reporter.as_ref(), &self.cancel).await {
                    via.token = Some(t);
                    continue;
                }
            }
            return Outcome {
                timing,
                ..failure(job, &path, &via, &failed, attempts, denial)
            };
        }
    }

    /// One attempt from `via`: the archive streams (resuming a `.part`); the
    /// bucket is asked for the object's size and ETag once, then a large
    /// object comes as parallel ranges.
    async fn attempt(
        &self,
        id: usize,
        job: &Job,
        path: &Path,
        via: &Via<'_>,
        split: bool,
    ) -> Result<Done, TransferError> {
        let name = job.rel.rsplit('/').next().unwrap_or(&job.rel);
        let a = transfer::Attempt {
            url: via.url,
            token: via.token.as_ref(),
            path,
            label: &job.rel,
            id,
            expect_size: job.size,
            md5_from_etag: via.source == Source::Cloud,
            binary: !transfer::is_text_product(name),
            split,
        };
        if via.source == Source::Mast {
            return self.download(&a).await;
        }
        let head = {
            let _permit = self.bucket_slot().await?;
            transfer::head(&self.http, via.url, None).await?
        };
        if let (Some(expected), Some(got)) = (job.size, head.size) {
            if expected != got {
                return Err(TransferError::SizeMismatch { expected, got });
            }
        }
        match (head.size, head.etag.as_deref()) {
            (Some(size), Some(etag)) if size > transfer::RANGED_MIN && !etag.is_empty() => {
                let v = transfer::part::Validator::Etag(etag.to_string());
                let slots = transfer::Slots::Bucket(self.throttle.bucket());
                self.download_ranged(&a, size, Some(&v), slots).await
            }
            _ => {
                let _permit = self.bucket_slot().await?;
                self.download(&a).await
            }
        }
    }

    /// Waits for one of the bucket's connections (its own bound, beside `-j`).
    async fn bucket_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, TransferError> {
        let slot = self.throttle.bucket().acquire().await;
        slot.map_err(|_| TransferError::Interrupted)
    }

    /// The outcome of a finished transfer: recorded in the state record.
    fn complete(
        &self,
        job: &Job,
        via: &Via<'_>,
        done: Done,
        attempts: u32,
        note: Option<&str>,
    ) -> Outcome {
        self.received.fetch_add(done.received, Ordering::Relaxed);
        self.throttle.on(Event::Success);
        let _ = self.dest.record(&StateRecord {
            path: job.rel.clone(),
            uri: job.uri.clone(),
            size: done.size,
            etag: done.etag,
            last_modified: done.last_modified,
            source: via.source,
            md5: done.md5,
        });
        let withheld = done
            .withheld
            .map(|h| format!("token withheld from untrusted host `{h}`"));
        // Which check joined bytes from more than one answer passed.
        let joined = done.joined.map(transfer::Joined::describe);
        let parts: Vec<String> = [note.map(str::to_string), joined, withheld]
            .into_iter()
            .flatten()
            .collect();
        let why = (!parts.is_empty()).then(|| Why::Text(parts.join("; ")));
        Outcome {
            facts: Facts {
                status: Status::Complete,
                bytes: done.size,
                http_status: Some(done.http_status),
                attempts,
                why,
                fell_back: via.source != job.route.source(),
            },
            timing: None,
            access: if via.token.is_some() {
                Access::Token
            } else {
                Access::Public
            },
        }
    }
}

/// Returns true if and only if the local file carries the source's
/// Last-Modified as its modification time (as mastdl, `curl -R` and
/// `wget -N` set it): then it holds that version. A copy made later, or
/// a clock running ahead, proves nothing.
fn older_than_file(head: &transfer::Head, path: &Path) -> bool {
    let Some(source) = head
        .last_modified
        .as_deref()
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        return false;
    };
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|file| {
            let gap = file
                .duration_since(source)
                .or_else(|e| Ok::<_, ()>(e.duration()));
            gap.is_ok_and(|g| g < Duration::from_secs(1))
        })
}

/// The outcome of a bucket object the bucket does not have (`--cloud-only`).
fn not_in_cloud(f: &GaveUp<TransferError>, attempts: u32) -> Outcome {
    Outcome {
        facts: Facts {
            http_status: f.error.status(),
            attempts,
            ..Facts::because(
                Status::Skipped,
                0,
                Why::Text(format!("not in cloud ({})", f.error)),
            )
        },
        timing: None,
        access: Access::Public,
    }
}

/// The outcome of a job that failed for good, or was interrupted;
/// `denial` says why a refusal was for the token's sake (see
/// [`Denial::of_error`]).
fn failure(
    job: &Job,
    path: &Path,
    via: &Via<'_>,
    f: &GaveUp<TransferError>,
    attempts: u32,
    denial: Option<Denial>,
) -> Outcome {
    let (status, why) = if f.cancelled {
        let kept = transfer::part::Part::of(path)
            .file_len()
            .is_some_and(|n| n > 0);
        let why = if kept {
            Why::CutShort
        } else {
            Why::InterruptedEarly
        };
        (Status::Interrupted, why)
    } else {
        (Status::Failed, Why::Text(failure_message(f, denial)))
    };
    Outcome {
        facts: Facts {
            http_status: f.error.status(),
            attempts,
            fell_back: via.source != job.route.source(),
            ..Facts::because(status, 0, why)
        },
        timing: None,
        access: if let Some(d) = denial {
            Access::Denied(d)
        } else if via.token.is_some() {
            Access::Token
        } else {
            Access::Public
        },
    }
}

/// Returns the manifest message of a failure, with what to do about it
/// (a token hint only for a refusal `denial` names).
fn failure_message(f: &GaveUp<TransferError>, denial: Option<Denial>) -> String {
    let hint = match denial {
        Some(Denial::Rejected) => " — the token was rejected: MAST tokens expire after 10 days unused or 60 days after creation; get a new one at https://auth.mast.stsci.edu/token".to_string(),
        Some(Denial::NotGranted) => " — the token does not grant access to this file (exclusive-access data?)".to_string(),
        Some(Denial::NoToken) => format!(" — this file needs a MAST token: {TOKEN_HELP}"),
        None => String::new(),
    };
    match f.retries {
        0 => format!("{}{hint}", f.error),
        _ => format!("{}{hint}", f.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Origin;

    fn planned(n: usize, route: Route<String>) -> Planned {
        Planned {
            uri: format!("mast:A/x/f_{n}.fits"),
            url: format!("https://archive.example/file?uri=mast:A/x/f_{n}.fits"),
            rel: format!("A/f_{n}.fits"),
            size: None,
            route,
            origin: Origin {
                file: "u.txt".into(),
                line: n,
            },
            update: false,
        }
    }

    #[test]
    fn every_reason_number_names_its_reason() {
        for w in &WHYS {
            assert_eq!(&WHYS[usize::from(w.code()) - 1], w);
        }
        assert_eq!(Why::Text(String::new()).code(), WHY_TEXT);
    }

    #[test]
    fn reasons_are_counted_by_kind_and_worded_only_in_the_row() {
        let whys = [
            (Status::Interrupted, Why::CutShort),
            (Status::Interrupted, Why::NotStarted),
            (Status::Interrupted, Why::InterruptedEarly),
            (Status::Skipped, Why::NoValidator),
            (Status::Skipped, Why::NotInCloud),
            (Status::Failed, Why::Lost),
            (Status::Failed, Why::Text("HTTP 500: boom".into())),
        ];
        let mut outcomes = Outcomes::new(whys.len() + 1);
        for (i, (status, why)) in whys.iter().enumerate() {
            let f = Facts::because(*status, 0, why.clone());
            outcomes.set(i, "A/f.fits", Outcome::untransferred(f));
        }
        let last = whys.len();
        outcomes.set(
            last,
            "A/f.fits",
            Outcome::untransferred(Facts::plain(Status::Complete, 7)),
        );
        // No byte arrived before the interruption: counted as not started.
        assert_eq!((outcomes.not_started, outcomes.cut_short), (2, 1));
        let words: Vec<Option<String>> = (0..=last)
            .map(|i| outcomes.row(i, planned(i, Route::Archive)).file.message)
            .collect();
        let want = [
            Some("interrupted; the `.part` was kept and the next run resumes it"),
            Some("not started: the run was interrupted"),
            Some("interrupted before any byte arrived"),
            Some("no validator: cannot tell whether it changed; `--force` fetches it again"),
            Some("not in cloud"),
            Some("internal error: the transfer ended unexpectedly"),
            Some("HTTP 500: boom"),
            None,
        ];
        assert_eq!(words, want.map(|w| w.map(str::to_string)));
    }

    #[test]
    fn a_row_names_where_the_bytes_came_from() {
        let bucket = || Route::Bucket {
            object: "https://bucket.example/a/f.fits".to_string(),
            fallback: true,
        };
        let mut outcomes = Outcomes::new(2);
        let complete = |fell_back| Facts {
            fell_back,
            ..Facts::plain(Status::Complete, 1)
        };
        outcomes.set(0, "A/f_0.fits", Outcome::untransferred(complete(false)));
        outcomes.set(1, "A/f_1.fits", Outcome::untransferred(complete(true)));
        let from_bucket = outcomes.row(0, planned(0, bucket())).file;
        assert_eq!(from_bucket.url, "https://bucket.example/a/f.fits");
        assert_eq!(from_bucket.source, Source::Cloud);
        let fell_back = outcomes.row(1, planned(1, bucket())).file;
        assert!(fell_back.url.starts_with("https://archive.example/"));
        assert_eq!(fell_back.source, Source::Mast);
    }
}
