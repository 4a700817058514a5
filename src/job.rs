//! The per-file policy: one job's attempts → its outcome.
//!
//! A job is tried from its source through [`retry::run`] (the one retry
//! loop); between sources it may move: a bucket object the bucket does not
//! have (403/404) comes from the archive instead (or is SKIPPED with
//! `--cloud-only`), and a 401/403 without a token from a host the token
//! would be sent to asks for one once, on a terminal, then tries again. `--update` first asks the source (a HEAD,
//! retried the same way) whether a complete file changed. The outcome is a
//! manifest row, a timeline bar and what the HTML's "Access" column says.

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
use crate::error::FetchError;
use crate::fetch::{self, Done, Http, Transfer};
use crate::manifest::{Bar, FileRecord, Row, Status, Timing, MAX_BARS};
use crate::plan::{Job, Planned, Source};
use crate::progress::{Level, Reporter};
use crate::retry::{self, Failed, Policy};
use crate::settings::Cloud;
use crate::token::Token;

/// The manifest message of a transfer cut short by Ctrl-C or SIGTERM.
pub(crate) const CUT_SHORT: &str = "interrupted; the `.part` was kept and the next run resumes it";
/// The manifest message of a file the interruption kept from starting.
pub(crate) const NOT_STARTED: &str = "not started: the run was interrupted";
/// The manifest message of a transfer interrupted before its first byte.
pub(crate) const INTERRUPTED_EARLY: &str = "interrupted before any byte arrived";
/// The manifest message of a complete file `--update` kept because nothing
/// tells its version from the source's (same size, no validator to compare).
pub(crate) const NO_VALIDATOR: &str =
    "no validator: cannot tell whether it changed; `--force` fetches it again";
/// The note of a reprocessed change-feed row fetched again because nothing
/// tells the versions apart.
const REPROCESSED_BLIND: &str =
    "updated: the feed says reprocessed, and no validator tells the versions apart (same size)";

/// Everything the jobs of one run share.
pub(crate) struct Ctx {
    pub(crate) http: Http,
    pub(crate) dest: Dest,
    pub(crate) auth: Auth,
    pub(crate) reporter: Arc<dyn Reporter>,
    /// The run's concurrency (`-j`, the bucket's bound, `--limit-rate`).
    pub(crate) throttle: Throttle,
    pub(crate) policy: Policy,
    pub(crate) cancel: CancellationToken,
    /// When the run started (the timeline's zero).
    pub(crate) origin: Instant,
    /// Body bytes received by the whole run.
    pub(crate) received: AtomicU64,
    /// `--cloud` / `--cloud-only`.
    pub(crate) cloud: Cloud,
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
    pub(crate) fn of_error(http: &Http, error: &FetchError, had_token: bool) -> Option<Denial> {
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
    pub(crate) row: FileRecord,
    pub(crate) timing: Option<Timing>,
    pub(crate) access: Access,
}

impl Outcome {
    /// Returns the outcome of a file that was not transferred.
    pub(crate) fn untransferred(row: FileRecord) -> Outcome {
        Outcome {
            row,
            timing: None,
            access: Access::Untouched,
        }
    }
}

/// Every job's outcome, by job index, in a few bytes each: what a
/// manifest row needs besides the job itself (which the plan file keeps).
/// The rare messages share one text; the timeline keeps the bars of the
/// first [`MAX_BARS`] jobs. So a million-file run holds some 40 MiB here
/// rather than a million rows.
pub(crate) struct Outcomes {
    slots: Vec<Slot>,
    /// Every message, one after another.
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
    /// Where its message starts in the messages, and its length.
    message: (u32, u32),
    attempts: u32,
    http: u16,
    state: SlotState,
    access: u8,
    /// Fetched from the bucket.
    cloud: bool,
    /// Fetched from the archive after all (the job's fallback URL).
    fell_back: bool,
    has_message: bool,
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
    /// `record` gives the state record of a file to check.
    pub(crate) fn task(
        &self,
        i: usize,
        record: impl FnOnce() -> Option<StateRecord>,
    ) -> Option<Task> {
        let s = self.slots.get(i)?;
        match s.state {
            SlotState::Fetch => Some(Task::Fetch),
            SlotState::Check => Some(Task::Check {
                size: s.bytes,
                record: record(),
            }),
            _ => None,
        }
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

    /// Keeps job `i`'s outcome; `planned` is the source the plan chose.
    pub(crate) fn set(&mut self, i: usize, planned: Source, o: Outcome) {
        let row = o.row;
        let message = row.message.as_deref().unwrap_or("");
        if row.status == Status::Interrupted {
            match message {
                NOT_STARTED => self.not_started += 1,
                _ => self.cut_short += 1,
            }
        }
        if let (Status::Failed, Access::Denied(d)) = (row.status, o.access) {
            self.denied[usize::from(d == Denial::NotGranted)] += 1;
        }
        let at = self.messages.len();
        self.messages.push_str(message);
        let fits = u32::try_from(at).is_ok() && u32::try_from(message.len()).is_ok();
        if !fits {
            // Beyond 4 GiB of messages: keep the outcome, lose the text.
            self.messages.truncate(at);
        }
        self.slots[i] = Slot {
            bytes: row.bytes,
            message: if fits {
                (at as u32, message.len() as u32)
            } else {
                (0, 0)
            },
            attempts: row.attempts,
            http: row.http_status.unwrap_or(0),
            state: SlotState::Done(row.status),
            access: ACCESS.iter().position(|a| *a == o.access).unwrap_or(0) as u8,
            cloud: row.source == Source::Cloud,
            fell_back: row.source != planned,
            has_message: row.message.is_some() && fits,
        };
        if let Some(timing) = o.timing {
            self.transfers += 1;
            if self.bars.len() < MAX_BARS || self.bars.last_key_value().is_some_and(|(k, _)| *k > i)
            {
                self.bars.insert(
                    i,
                    Bar {
                        label: row.path,
                        status: row.status,
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
        let url = match (p.fallback, s.fell_back) {
            (Some(f), true) => f,
            _ => p.url,
        };
        // Only a URL with an `@` can carry a password: any other is kept as it is.
        let url = if url.contains('@') {
            crate::layout::redact_url_text(&url)
        } else {
            url
        };
        let status = match s.state {
            SlotState::Done(st) => st,
            _ => Status::Failed,
        };
        let message = s.has_message.then(|| {
            let (at, len) = (s.message.0 as usize, s.message.1 as usize);
            self.messages.get(at..at + len).unwrap_or("").to_string()
        });
        Row {
            file: FileRecord {
                url,
                uri: p.uri,
                path: p.rel,
                status,
                bytes: s.bytes,
                http_status: (s.http != 0).then_some(s.http),
                attempts: s.attempts,
                message,
                source: if s.cloud { Source::Cloud } else { Source::Mast },
            },
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
pub(crate) struct Facts {
    pub(crate) status: Status,
    pub(crate) bytes: u64,
    pub(crate) http_status: Option<u16>,
    pub(crate) attempts: u32,
    pub(crate) message: Option<String>,
}

impl Facts {
    /// Returns the facts of a file with `status` and nothing else to say.
    pub(crate) fn plain(status: Status, bytes: u64) -> Facts {
        Facts {
            status,
            bytes,
            http_status: None,
            attempts: 0,
            message: None,
        }
    }
}

/// Returns a manifest row for `job` fetched (or not) from `url` at `source`.
pub(crate) fn row_at(job: &Job, url: &Url, source: Source, f: Facts) -> FileRecord {
    FileRecord {
        uri: job.uri.clone(),
        url: crate::layout::redact_url(url),
        path: job.rel.clone(),
        status: f.status,
        bytes: f.bytes,
        http_status: f.http_status,
        attempts: f.attempts,
        message: f.message,
        source,
    }
}

/// Returns a manifest row for `job` at its planned source.
pub(crate) fn row(job: &Job, f: Facts) -> FileRecord {
    row_at(job, &job.url, job.source, f)
}

/// Returns the local path of `rel` below `root`.
pub(crate) fn local(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(rel.split('/'));
    p
}

/// Runs one task to its outcome.
pub(crate) async fn run(ctx: &Ctx, id: usize, job: &Job, task: Task) -> Outcome {
    match task {
        Task::Fetch => fetch_one(ctx, id, job, None).await,
        Task::Check { size, record } => update_one(ctx, id, job, size, record).await,
    }
}

/// Returns the token a source may see: the archive's, never the bucket's.
fn token_for(ctx: &Ctx, source: Source) -> Option<Token> {
    match source {
        Source::Mast => ctx.auth.current(),
        Source::Cloud => None,
    }
}

/// Reports a retry (and a run-wide slow-down on 429).
fn on_retry(ctx: &Ctx, id: usize, job: &Job, err: &FetchError, n: u32, delay: Duration) {
    if err.status() == Some(429) {
        ctx.reporter.message(
            Level::Warn,
            &format!(
                "the archive asks to slow down (HTTP 429): {} transfer(s) at once for a while",
                ctx.throttle.current()
            ),
        );
    }
    ctx.reporter
        .retrying(id, &job.rel, n, &err.to_string(), delay);
}

/// `--update` for one complete file: a HEAD to its source; a changed file
/// is fetched again to `.part` and renamed over the old one only when
/// complete, so a failed replacement leaves the old file as it was. When
/// nothing tells the versions apart (see [`NO_VALIDATOR`]), a reprocessed
/// change-feed row is fetched again and any other file kept, saying so.
async fn update_one(
    ctx: &Ctx,
    id: usize,
    job: &Job,
    size: u64,
    record: Option<StateRecord>,
) -> Outcome {
    let token = token_for(ctx, job.source);
    let head = retry::run(
        &ctx.policy,
        &ctx.cancel,
        Some(&ctx.throttle),
        |_| fetch::head(&ctx.http, &job.url, token.as_ref()),
        |e, n, d| on_retry(ctx, id, job, e, n, d),
    )
    .await;
    let (head, _) = match head {
        Ok(h) => h,
        Err(f) => {
            let denial = Denial::of_error(&ctx.http, &f.error, token.is_some());
            let (status, message) = if f.cancelled {
                (Status::Interrupted, NOT_STARTED.to_string())
            } else {
                let message = format!(
                    "could not check for an update ({}); the local file is unchanged",
                    failure_message(&f, denial)
                );
                (Status::Failed, message)
            };
            return Outcome {
                access: denial.map_or(Access::Untouched, Access::Denied),
                ..Outcome::untransferred(row(
                    job,
                    Facts {
                        http_status: f.error.status(),
                        attempts: f.retries + 1,
                        message: Some(message),
                        ..Facts::plain(status, size)
                    },
                ))
            };
        }
    };
    // Validators recorded from another source (archive vs bucket) say nothing
    // about this one: then only the size is compared.
    let (etag, modified) = match &record {
        Some(r) if r.source == job.source => (r.etag.as_deref(), r.last_modified.as_deref()),
        _ => (None, None),
    };
    if let Some(why) = fetch::changed(&head, size, etag, modified) {
        return fetch_one(ctx, id, job, Some(&format!("updated: {why}"))).await;
    }
    // What the record says of the bytes on disk: nothing when there is no
    // record from this source, or when it has no validator while the source
    // now gives one.
    let known = record.as_ref().is_some_and(|r| r.source == job.source);
    let source_has = head.etag.is_some() || head.last_modified.is_some();
    let unrecorded = !known || (etag.is_none() && modified.is_none() && source_has);
    if unrecorded && !older_than_file(&head, &local(ctx.dest.root(), &job.rel)) {
        // Nothing says which version is on disk (fetched by another tool,
        // or its record lost): only a file carrying the source's own date
        // proves it current; otherwise fetch it again.
        let note =
            "updated: no record of the version on disk, and the file does not carry the source's date";
        return fetch_one(ctx, id, job, Some(note)).await;
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
        return fetch_one(ctx, id, job, Some(REPROCESSED_BLIND)).await;
    }
    if unrecorded || (etag.is_none() && modified.is_none()) {
        // Nothing was recorded to compare with: remember the source's
        // validators now, so the next --update can.
        let _ = ctx.dest.record(&StateRecord {
            path: job.rel.clone(),
            uri: job.uri.clone(),
            size,
            etag: head.etag.clone(),
            last_modified: head.last_modified.clone(),
            source: job.source,
            // The bytes did not change: what they hashed to still holds.
            md5: record
                .as_ref()
                .filter(|r| r.size == size)
                .and_then(|r| r.md5.clone()),
        });
    }
    Outcome::untransferred(row(
        job,
        Facts {
            http_status: Some(head.status),
            message: blind.then(|| NO_VALIDATOR.to_string()),
            ..Facts::plain(Status::Skipped, size)
        },
    ))
}

/// Returns true if and only if the local file carries the source's
/// Last-Modified as its modification time (as mastdl, `curl -R` and
/// `wget -N` set it): then it holds that version. A copy made later, or
/// a clock running ahead, proves nothing.
fn older_than_file(head: &fetch::Head, path: &Path) -> bool {
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

/// Where a job is being fetched from now.
struct From {
    url: Url,
    source: Source,
    token: Option<Token>,
}

/// Downloads one job with retries; `note` goes into the manifest message
/// on success. A bucket object the bucket turns out not to have (403/404)
/// comes from the archive instead (with `--cloud-only` it is SKIPPED); a
/// 401/403 without a token asks for one (once per run) and tries again.
async fn fetch_one(ctx: &Ctx, id: usize, job: &Job, note: Option<&str>) -> Outcome {
    let path = local(ctx.dest.root(), &job.rel);
    let start = ctx.origin.elapsed();
    let mut from = From {
        url: job.url.clone(),
        source: job.source,
        token: token_for(ctx, job.source),
    };
    let mut attempts = 0u32;
    loop {
        let tried = retry::run(
            &ctx.policy,
            &ctx.cancel,
            Some(&ctx.throttle),
            |n| attempt(ctx, id, job, &path, &from, n == 1),
            |e, n, d| on_retry(ctx, id, job, e, n, d),
        )
        .await;
        let timing = Some(Timing {
            start_ms: start.as_millis() as u64,
            end_ms: ctx.origin.elapsed().as_millis() as u64,
            received: tried.as_ref().map_or(0, |(d, _)| d.received),
        });
        let failed = match tried {
            Ok((done, n)) => {
                return Outcome {
                    timing,
                    ..complete(ctx, job, &from, done, attempts + n, note)
                };
            }
            Err(f) => f,
        };
        attempts += failed.retries + 1;
        let status = failed.error.status();
        if from.source == Source::Cloud && matches!(status, Some(403 | 404)) {
            match (&job.fallback, ctx.cloud) {
                (Some(archive), Cloud::Prefer) => {
                    from = From {
                        url: archive.clone(),
                        source: Source::Mast,
                        token: ctx.auth.current(),
                    };
                    continue;
                }
                _ => return not_in_cloud(job, &from, &failed, attempts),
            }
        }
        let denial = Denial::of_error(&ctx.http, &failed.error, from.token.is_some());
        if denial == Some(Denial::NoToken) && from.source == Source::Mast {
            if let Some(t) = ctx.auth.ask(ctx.reporter.as_ref(), &ctx.cancel).await {
                from.token = Some(t);
                continue;
            }
        }
        return Outcome {
            timing,
            ..failure(job, &path, &from, &failed, attempts, denial)
        };
    }
}

/// One attempt from `from`: the archive streams (resuming a `.part`); the
/// bucket is asked for the object's size and ETag once, then a large
/// object comes as parallel ranges.
async fn attempt(
    ctx: &Ctx,
    id: usize,
    job: &Job,
    path: &Path,
    from: &From,
    split: bool,
) -> Result<Done, FetchError> {
    let name = job.rel.rsplit('/').next().unwrap_or(&job.rel);
    let transfer = Transfer {
        url: &from.url,
        path,
        root: ctx.dest.root(),
        throttle: &ctx.throttle,
        token: from.token.as_ref(),
        expect_size: job.size,
        md5_from_etag: from.source == Source::Cloud,
        binary: !fetch::is_text_product(name),
        resume: true,
        split,
        label: &job.rel,
        reporter: ctx.reporter.as_ref(),
        id,
    };
    if from.source == Source::Mast {
        return fetch::download(&ctx.http, transfer).await;
    }
    let head = {
        let _permit = ctx
            .throttle
            .bucket()
            .acquire()
            .await
            .map_err(|_| FetchError::Interrupted)?;
        fetch::head(&ctx.http, &from.url, None).await?
    };
    if let (Some(expected), Some(got)) = (job.size, head.size) {
        if expected != got {
            return Err(FetchError::SizeMismatch { expected, got });
        }
    }
    match (head.size, head.etag.as_deref()) {
        (Some(size), Some(etag)) if size > fetch::RANGED_MIN && !etag.is_empty() => {
            let v = fetch::part::Validator::Etag(etag.to_string());
            let slots = fetch::Slots::Bucket(ctx.throttle.bucket());
            fetch::download_ranged(&ctx.http, transfer, size, Some(&v), slots).await
        }
        _ => {
            let _permit = ctx
                .throttle
                .bucket()
                .acquire()
                .await
                .map_err(|_| FetchError::Interrupted)?;
            fetch::download(&ctx.http, transfer).await
        }
    }
}

/// The outcome of a finished transfer: recorded in the state record.
fn complete(
    ctx: &Ctx,
    job: &Job,
    from: &From,
    done: Done,
    attempts: u32,
    note: Option<&str>,
) -> Outcome {
    ctx.received.fetch_add(done.received, Ordering::Relaxed);
    ctx.throttle.on(Event::Success);
    let _ = ctx.dest.record(&StateRecord {
        path: job.rel.clone(),
        uri: job.uri.clone(),
        size: done.size,
        etag: done.etag.clone(),
        last_modified: done.last_modified.clone(),
        source: from.source,
        md5: done.md5.clone(),
    });
    let withheld = done
        .withheld
        .map(|h| format!("token withheld from untrusted host `{h}`"));
    // Which check joined bytes from more than one answer passed.
    let joined = done.joined.map(fetch::Joined::describe);
    let parts: Vec<String> = [note.map(str::to_string), joined, withheld]
        .into_iter()
        .flatten()
        .collect();
    let message = (!parts.is_empty()).then(|| parts.join("; "));
    Outcome {
        row: row_at(
            job,
            &from.url,
            from.source,
            Facts {
                status: Status::Complete,
                bytes: done.size,
                http_status: Some(done.http_status),
                attempts,
                message,
            },
        ),
        timing: None,
        access: if from.token.is_some() {
            Access::Token
        } else {
            Access::Public
        },
    }
}

/// The outcome of a bucket object the bucket does not have (`--cloud-only`).
fn not_in_cloud(job: &Job, from: &From, f: &Failed<FetchError>, attempts: u32) -> Outcome {
    Outcome {
        row: row_at(
            job,
            &from.url,
            from.source,
            Facts {
                http_status: f.error.status(),
                attempts,
                message: Some(format!("not in cloud ({})", f.error)),
                ..Facts::plain(Status::Skipped, 0)
            },
        ),
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
    from: &From,
    f: &Failed<FetchError>,
    attempts: u32,
    denial: Option<Denial>,
) -> Outcome {
    let (row_status, message) = if f.cancelled {
        let kept = fetch::part::Part::of(path)
            .file_len()
            .is_some_and(|n| n > 0);
        let message = if kept { CUT_SHORT } else { INTERRUPTED_EARLY };
        (Status::Interrupted, message.to_string())
    } else {
        (Status::Failed, failure_message(f, denial))
    };
    let status = f.error.status();
    Outcome {
        row: row_at(
            job,
            &from.url,
            from.source,
            Facts {
                http_status: status,
                attempts,
                message: Some(message),
                ..Facts::plain(row_status, 0)
            },
        ),
        timing: None,
        access: if let Some(d) = denial {
            Access::Denied(d)
        } else if from.token.is_some() {
            Access::Token
        } else {
            Access::Public
        },
    }
}

/// Returns the manifest message of a failure, with what to do about it
/// (a token hint only for a refusal `denial` names).
fn failure_message(f: &Failed<FetchError>, denial: Option<Denial>) -> String {
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
