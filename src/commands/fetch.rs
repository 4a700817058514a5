//! `mastdl fetch`: plan, lock DEST, run the jobs concurrently, write the
//! manifests.
//!
//! One HTTP client for the whole run; at most `--jobs` transfers at once
//! (`-j N`, or `auto`: see [`Budget`]); each file's outcome is collected,
//! never `?`-propagated, so one bad file never stops the others. SIGINT and
//! SIGTERM cancel the run: running transfers stop, `.part` files stay, the
//! manifest is written, and a second signal exits at once.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{plan_each, plan_jobs, reporter, run_http};
use crate::auth::{self, Auth, Identity};
use crate::budget::{Jobs, Throttle};
use crate::cloud;
use crate::dest::{Dest, StateIndex};
use crate::error::Exit;
use crate::job::{self, Downloader, Facts, Outcome, Outcomes, Why};
use crate::manifest::{self, Header, HtmlContext, Status};
use crate::plan::{hash64, Job, PlanFile, Planned, Route};
use crate::progress::{Level, Reporter, Summary};
use crate::retry::Policy;
use crate::settings::{Cloud, Settings};

/// The most connections to the bucket at once (S3 serves each at its own speed).
pub(crate) const BUCKET_CONNECTIONS: usize = 16;

/// Runs `fetch`: plan, lock, download, manifest. Returns the exit code.
pub(crate) async fn fetch(mut settings: Settings) -> anyhow::Result<Exit> {
    // The final `-j` first: the client's per-host connection cap is sized from it.
    let reporter = reporter(&settings, true);
    fit_jobs(&mut settings, reporter.as_ref());
    let throttle = Throttle::new(settings.jobs, settings.limit_rate, BUCKET_CONNECTIONS);
    let http = run_http(&settings)?;
    let mut early = None;
    let (planned, notes) = if settings.cloud == Cloud::Off {
        let (plan, look, notes) = plan_file(&settings, &http, reporter.as_ref()).await?;
        early = Some(look);
        (Stage::OnDisk(plan), notes)
    } else {
        // The bucket's answer is asked for all jobs at once.
        let (jobs, notes) = plan_jobs(&settings, &http, reporter.as_ref()).await?;
        (Stage::InMemory(jobs), notes)
    };
    let dest = Dest::open(&settings.dest, settings.plan.shard)?;
    let mut plan = match planned {
        Stage::OnDisk(plan) => plan,
        Stage::InMemory(mut jobs) => {
            cloud::route(&mut jobs, &settings, &http, reporter.as_ref()).await?;
            let mut plan = PlanFile::new().context("Cannot keep the plan")?;
            for job in &jobs {
                plan.push(job).context("Cannot keep the plan")?;
            }
            plan
        }
    };
    plan.seal().context("Cannot keep the plan")?;
    let started_at = manifest::now_rfc3339();
    let cancel = CancellationToken::new();
    let signalled = on_signals(&cancel);
    let downloader = Arc::new(Downloader {
        http,
        dest,
        auth: Auth::new(settings.token.clone(), settings.interactive),
        reporter: reporter.clone(),
        throttle,
        policy: Policy::new(settings.retries),
        cancel: cancel.clone(),
        started: Instant::now(),
        received: AtomicU64::new(0),
    });
    let mut state = downloader
        .dest
        .load_state(plan.len(), settings.update || plan.updates() > 0)?;
    let mut outcomes = Outcomes::new(plan.len());
    classify(&plan, &downloader, &settings, &state, &mut outcomes, early)?;
    let todo = outcomes.open_tasks();
    // Who the token belongs to, asked only when something will be asked of
    // the archive at all: a re-run of a complete pull makes no request.
    let identity = match (&settings.token, todo == 0) {
        (Some(t), false) => Some(
            auth::whoami(
                &downloader.http,
                &settings.plan.base,
                t,
                reporter.as_ref(),
                &cancel,
            )
            .await,
        ),
        _ => None,
    };
    reporter.planned(plan.len(), todo);
    downloader.dest.reserve(todo);
    if todo > 0 {
        run_all(&downloader, &plan, &mut outcomes, &mut state).await?;
    }
    drop(state);
    let identity = match (&settings.token, downloader.auth.current()) {
        // A token typed at the prompt: the manifest names its owner too.
        (None, Some(t)) => Some(
            auth::whoami(
                &downloader.http,
                &settings.plan.base,
                &t,
                reporter.as_ref(),
                &cancel,
            )
            .await,
        ),
        _ => identity,
    };
    let user = match (&identity, &settings.token) {
        (Some(id), _) => id.label(),
        (None, Some(_)) => "not asked (nothing to download)".to_string(),
        (None, None) => "anonymous".to_string(),
    };
    let who = Who {
        user,
        token_refused: identity == Some(Identity::Anonymous),
    };
    let signal = signalled.get().copied();
    finish(&downloader, &plan, outcomes, started_at, notes, who, signal)
}

/// Who the run was, for the manifest and the exit code.
struct Who {
    /// The manifest's "Logged In User".
    user: String,
    /// `/whoami` said MAST did not accept the token.
    token_refused: bool,
}

/// The plan before DEST is locked: on disk, or (for the bucket's lookup)
/// still in memory.
enum Stage {
    OnDisk(PlanFile),
    InMemory(Vec<Job>),
}

/// Reads the inputs into a plan file, job by job; returns it with the
/// files looked at meanwhile ([`EarlyLook`]) and the notes for the manifest.
async fn plan_file(
    settings: &Settings,
    http: &crate::transfer::Http,
    reporter: &dyn Reporter,
) -> anyhow::Result<(PlanFile, EarlyLook, Vec<String>)> {
    let mut plan = PlanFile::new().context("Cannot keep the plan")?;
    let mut look = EarlyLook::new(&settings.dest);
    let mut kept: std::io::Result<()> = Ok(());
    let notes = plan_each(settings, http, reporter, &mut |job| {
        if kept.is_ok() {
            look.push(&job);
            kept = plan.push_planned(&job);
        }
    })
    .await?;
    kept.context("Cannot keep the plan")?;
    Ok((plan, look, notes))
}

/// Lowers `--jobs` to what the open-file limit allows, saying so.
fn fit_jobs(settings: &mut Settings, reporter: &dyn Reporter) {
    let wanted = settings.jobs.ceiling();
    let fit = crate::dest::fit_open_files(wanted);
    if fit < wanted {
        reporter.message(
            Level::Warn,
            &format!(
                "`-j` needs up to {wanted} open connections, more than this process may have (`ulimit -n`): running {fit} transfers at once"
            ),
        );
        settings.jobs = Jobs::Fixed(fit);
    }
}

/// Cancels the run on the first SIGINT or SIGTERM and exits at once on the
/// second. Returns where the first signal's exit code is kept (unset: none).
fn on_signals(cancel: &CancellationToken) -> Arc<OnceLock<Exit>> {
    let signalled = Arc::new(OnceLock::new());
    let (cancel, flag) = (cancel.clone(), signalled.clone());
    tokio::spawn(async move {
        let first = signal().await;
        let _ = flag.set(first);
        cancel.cancel();
        signal().await;
        std::process::exit(first as i32);
    });
    signalled
}

/// Waits for SIGINT or (on Unix) SIGTERM; returns the exit code it means.
async fn signal() -> Exit {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Exit::Interrupted,
                _ = term.recv() => Exit::Terminated,
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    Exit::Interrupted
}

/// Returns the size of a file when it is complete: a regular file (a
/// symlink may point anywhere) of the size the input or the state record
/// expects, if either does. Where neither does, an empty file is not: it is
/// what a power loss leaves of a file whose bytes were not yet on disk
/// (and whose record was lost with them), and one request settles it.
fn complete_size(found: Option<(bool, u64)>, expect: Option<u64>) -> Option<u64> {
    let (true, len) = found? else {
        return None;
    };
    match expect {
        Some(s) if s != len => None,
        None if len == 0 => None,
        _ => Some(len),
    }
}

/// Looks at files below DEST with one `lstat` each: on Unix relative to
/// their folder, kept open while consecutive files share it (most do), so
/// a million files cost a million short lookups, not full path walks.
struct Lstat {
    root: std::path::PathBuf,
    #[cfg(unix)]
    dir: Option<(String, Option<fs::File>)>,
}

impl Lstat {
    fn new(root: &Path) -> Lstat {
        Lstat {
            root: root.to_path_buf(),
            #[cfg(unix)]
            dir: None,
        }
    }

    /// Returns whether the file at `rel` is a regular file, and its length;
    /// `None` when there is nothing there.
    fn at(&mut self, rel: &str) -> Option<(bool, u64)> {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            use std::os::unix::fs::OpenOptionsExt;
            use std::os::unix::io::AsRawFd;
            let (folder, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            if self.dir.as_ref().is_none_or(|(f, _)| f != folder) {
                let path = job::local(&self.root, folder);
                let opened = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(if folder.is_empty() { &self.root } else { &path })
                    .ok();
                self.dir = Some((folder.to_string(), opened));
            }
            let dir = self.dir.as_ref()?.1.as_ref()?;
            let name = std::ffi::CString::new(std::ffi::OsStr::new(name).as_bytes()).ok()?;
            // SAFETY: an all-zero `stat` is a valid value for fstatat to fill.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: the descriptor is open, the name NUL-terminated, and
            // `st` a valid place for the answer.
            let r = unsafe {
                libc::fstatat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            (r == 0).then_some((
                st.st_mode & libc::S_IFMT == libc::S_IFREG,
                st.st_size as u64,
            ))
        }
        #[cfg(not(unix))]
        {
            let m = fs::symlink_metadata(job::local(&self.root, rel)).ok()?;
            Some((m.is_file(), m.len()))
        }
    }
}

/// What [`Lstat::at`] found, in eight bytes: the length of a regular file,
/// or one of these two markers.
const NOTHING_THERE: u64 = u64::MAX;
const NOT_A_FILE: u64 = u64::MAX - 1;

fn pack(found: Option<(bool, u64)>) -> u64 {
    match found {
        None => NOTHING_THERE,
        Some((false, _)) => NOT_A_FILE,
        Some((true, len)) => len.min(NOT_A_FILE - 1),
    }
}

fn unpack(found: u64) -> Option<(bool, u64)> {
    match found {
        NOTHING_THERE => None,
        NOT_A_FILE => Some((false, 0)),
        len => Some((true, len)),
    }
}

/// Looks at the planned files below DEST while the plan is still being
/// built: planning keeps one core busy, and the `lstat`s are most of the
/// rest of a re-run's time. The plan hands over its paths in batches, in
/// plan order; two threads look at them. DEST is not locked yet then: a
/// file another run completes after its look is seen as missing and
/// fetched again, and one replaced since has a length the state record no
/// longer vouches for (checked as any file is); a stale look costs at most
/// a download, never a wrong SKIPPED that a look after the lock would not
/// give as well (files are only ever renamed into place whole).
struct EarlyLook {
    batch: LookBatch,
    send: Option<std::sync::mpsc::SyncSender<LookBatch>>,
    workers: Vec<std::thread::JoinHandle<Looked>>,
    /// What classify needs of each job besides the look, kept as it is
    /// planned so that classify need not read the plan back.
    facts: JobFacts,
}

/// Per job, in plan order: the key of its path in the state record
/// ([`hash64`]) with its size as the input gives it (plus one; 0: none),
/// and whether its input says it changed.
#[derive(Default)]
struct JobFacts {
    keys: Vec<(u64, u64)>,
    updates: Vec<bool>,
}

/// What [`EarlyLook::finish`] hands classify: the look at each job's file
/// ([`pack`]ed) and its [`JobFacts`].
struct Looks {
    found: Vec<u64>,
    facts: JobFacts,
}

/// What one looking thread found: per batch, its first job and a look a job.
type Looked = Vec<(usize, Vec<u64>)>;

/// Paths to look at: `text[ends[k-1]..ends[k]]` is that of job `start + k`.
#[derive(Default)]
struct LookBatch {
    start: usize,
    text: String,
    ends: Vec<usize>,
}

impl EarlyLook {
    /// Paths a batch holds.
    const BATCH: usize = 4096;

    fn new(root: &Path) -> EarlyLook {
        // A few batches in flight: the plan waits rather than queue them all.
        let (send, recv) = std::sync::mpsc::sync_channel::<LookBatch>(8);
        let recv = Arc::new(std::sync::Mutex::new(recv));
        let workers = (0..2)
            .filter_map(|_| {
                let (recv, root) = (recv.clone(), root.to_path_buf());
                std::thread::Builder::new()
                    .name("lstat".into())
                    .spawn(move || {
                        let mut lstat = Lstat::new(&root);
                        let mut done = Vec::new();
                        loop {
                            let next = match recv.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => break,
                            };
                            let Ok(batch) = next else { break };
                            let mut found = Vec::with_capacity(batch.ends.len());
                            let mut from = 0;
                            for &end in &batch.ends {
                                found.push(pack(
                                    batch.text.get(from..end).and_then(|rel| lstat.at(rel)),
                                ));
                                from = end;
                            }
                            done.push((batch.start, found));
                        }
                        done
                    })
                    .ok()
            })
            .collect();
        EarlyLook {
            batch: LookBatch::default(),
            send: Some(send),
            workers,
            facts: JobFacts::default(),
        }
    }

    /// Hands over the path of the next job, and keeps its facts.
    fn push(&mut self, job: &Planned) {
        let rel = job.rel.as_str();
        let size = job.size.map_or(0, |s| s.saturating_add(1));
        self.facts.keys.push((hash64(rel.as_bytes()), size));
        self.facts.updates.push(job.update);
        self.batch.text.push_str(rel);
        self.batch.ends.push(self.batch.text.len());
        if self.batch.ends.len() >= Self::BATCH {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        let next = self.batch.start + self.batch.ends.len();
        let room = self.batch.text.capacity();
        let batch = std::mem::replace(
            &mut self.batch,
            LookBatch {
                start: next,
                text: String::with_capacity(room),
                ends: Vec::with_capacity(Self::BATCH),
            },
        );
        if batch.ends.is_empty() {
            return;
        }
        if let Some(send) = &self.send {
            if send.send(batch).is_err() {
                self.send = None;
            }
        }
    }

    /// Returns what was found of each of the `len` jobs, in plan order,
    /// once every path is looked at; `None` when a look is missing (a
    /// thread that could not start or ended early): then they are looked
    /// at again.
    fn finish(mut self, len: usize) -> Option<Looks> {
        self.hand_over();
        self.send = None;
        let mut parts = Vec::new();
        for w in self.workers.drain(..) {
            parts.extend(w.join().ok()?);
        }
        parts.sort_unstable_by_key(|p| p.0);
        let mut all = Vec::with_capacity(len);
        for (start, found) in parts {
            if start != all.len() {
                return None;
            }
            all.extend(found);
        }
        let facts = std::mem::take(&mut self.facts);
        (all.len() == len && facts.keys.len() == len).then_some(Looks { found: all, facts })
    }
}

/// Sorts the jobs: those already decided (complete files SKIPPED, files not
/// in the bucket with `--cloud-only`) get their outcome now; the others
/// are marked to download (or, with `--update`, to check).
fn classify(
    plan: &PlanFile,
    downloader: &Downloader,
    settings: &Settings,
    state: &StateIndex,
    outcomes: &mut Outcomes,
    early: Option<EarlyLook>,
) -> anyhow::Result<()> {
    // Files looked at while planning are not looked at again.
    let early = early.and_then(|e| e.finish(plan.len()));
    // Without a row to say for a SKIPPED file, what was kept while
    // planning decides every job: the plan is not read back.
    if let Some(looks) = early {
        if !downloader.reporter.shows(Status::Skipped) {
            classify_looked(looks, settings, state, outcomes);
            return Ok(());
        }
        return classify_read(
            plan,
            downloader,
            settings,
            state,
            outcomes,
            Some(looks.found),
        );
    }
    classify_read(plan, downloader, settings, state, outcomes, None)
}

/// Decides every job from what was kept while planning ([`Looks`]); a
/// SKIPPED job gets its outcome, without a row said.
fn classify_looked(looks: Looks, settings: &Settings, state: &StateIndex, outcomes: &mut Outcomes) {
    const BATCH: usize = 8192;
    let Looks { found, facts } = looks;
    let mut expected: Vec<Option<u64>> = Vec::with_capacity(BATCH);
    for start in (0..found.len()).step_by(BATCH) {
        let end = (start + BATCH).min(found.len());
        let keys = &facts.keys[start..end];
        // The sizes the state record expects, looked up in a tight loop
        // (the lookups miss the cache and overlap), half on each thread.
        expected.clear();
        expected.resize(keys.len(), None);
        let expect_of = |_: &mut (), keys: &[(u64, u64)], out: &mut [Option<u64>]| {
            for (&(key, size), e) in keys.iter().zip(out.iter_mut()) {
                *e = size.checked_sub(1).or_else(|| state.size_of(key));
            }
        };
        in_halves(keys, &mut expected, &mut [(), ()], expect_of);
        for (i, &expect) in (start..end).zip(expected.iter()) {
            match verdict(unpack(found[i]), expect, facts.updates[i], settings) {
                Verdict::Check(size) => outcomes.mark_check(i, size),
                // An outcome without a transfer keeps no label: no path.
                Verdict::Skip(size) => {
                    let facts = Facts::plain(Status::Skipped, size);
                    outcomes.set(i, "", Outcome::untransferred(facts));
                }
                Verdict::Fetch => outcomes.mark_fetch(i),
            }
        }
    }
}

/// Decides every job reading the plan back, in batches: each batch's
/// files are looked at (unless `early` holds their looks) on two threads,
/// half each (the `lstat`s are most of a re-run's time), then decided in
/// plan order.
fn classify_read(
    plan: &PlanFile,
    downloader: &Downloader,
    settings: &Settings,
    state: &StateIndex,
    outcomes: &mut Outcomes,
    early: Option<Vec<u64>>,
) -> anyhow::Result<()> {
    const BATCH: usize = 8192;
    let mut lstat = [
        Lstat::new(downloader.dest.root()),
        Lstat::new(downloader.dest.root()),
    ];
    let mut reader = plan.read().context("Cannot read the plan back")?;
    let mut batch: Vec<Planned> = Vec::with_capacity(BATCH);
    let mut found: Vec<Option<(bool, u64)>> = Vec::with_capacity(BATCH);
    let mut expected: Vec<Option<u64>> = Vec::with_capacity(BATCH);
    let mut next = 0;
    loop {
        batch.clear();
        for p in reader.by_ref().take(BATCH) {
            batch.push(p.context("Cannot read the plan back")?);
        }
        if batch.is_empty() {
            return Ok(());
        }
        found.clear();
        found.resize(batch.len(), None);
        if let Some(looked) = early.as_ref().and_then(|e| e.get(next..next + batch.len())) {
            for (at, &f) in found.iter_mut().zip(looked) {
                *at = unpack(f);
            }
        } else {
            in_halves(&batch, &mut found, &mut lstat, look_at);
        }
        // The sizes the state record expects, looked up in a tight loop
        // (the lookups miss the cache and overlap), half on each thread.
        expected.clear();
        expected.resize(batch.len(), None);
        let expect_of = |_: &mut (), jobs: &[Planned], out: &mut [Option<u64>]| {
            for (p, e) in jobs.iter().zip(out.iter_mut()) {
                *e = p.size.or_else(|| state.size(&p.rel));
            }
        };
        in_halves(&batch, &mut expected, &mut [(), ()], expect_of);
        for ((p, &at), &expect) in batch.drain(..).zip(found.iter()).zip(expected.iter()) {
            let i = next;
            next += 1;
            let facts = if p.route == Route::NotInBucket {
                Facts::because(Status::Skipped, 0, Why::NotInCloud)
            } else {
                match verdict(at, expect, p.update, settings) {
                    Verdict::Check(size) => {
                        outcomes.mark_check(i, size);
                        continue;
                    }
                    Verdict::Skip(size) => Facts::plain(Status::Skipped, size),
                    Verdict::Fetch => {
                        outcomes.mark_fetch(i);
                        continue;
                    }
                }
            };
            // A million SKIPPED rows are built only for a reporter that says them.
            if downloader.reporter.shows(facts.status) {
                downloader
                    .reporter
                    .finished(None, &facts.row_planned(&p), Duration::ZERO);
            }
            outcomes.set(i, &p.rel, Outcome::untransferred(facts));
        }
    }
}

/// What classify makes of one job (see [`verdict`]).
enum Verdict {
    /// Complete, and to be asked whether it changed: its size.
    Check(u64),
    /// Complete: SKIPPED, its size.
    Skip(u64),
    Fetch,
}

/// The one rule of classify: a file found complete ([`complete_size`]) is
/// checked with `--update` or when its change-feed row says it was
/// reprocessed (`update`; `--force` fetches it anyway), else SKIPPED unless
/// `--force`; anything else is fetched.
fn verdict(
    at: Option<(bool, u64)>,
    expect: Option<u64>,
    update: bool,
    settings: &Settings,
) -> Verdict {
    match complete_size(at, expect) {
        Some(size) if settings.update || (update && !settings.force) => Verdict::Check(size),
        Some(size) if !settings.force => Verdict::Skip(size),
        _ => Verdict::Fetch,
    }
}

/// Runs `f` over `jobs` and `out` in step: on this thread for a small
/// batch, else half here and half on a second thread, each half with its
/// own `state`.
fn in_halves<J: Sync, O: Send, S: Send>(
    jobs: &[J],
    out: &mut [O],
    state: &mut [S; 2],
    f: impl Fn(&mut S, &[J], &mut [O]) + Sync,
) {
    let [near, far] = state;
    if jobs.len() < 256 {
        return f(near, jobs, out);
    }
    let half = jobs.len() / 2;
    let (first, second) = out.split_at_mut(half);
    let (mine, theirs) = jobs.split_at(half);
    std::thread::scope(|s| {
        s.spawn(|| f(far, theirs, second));
        f(near, mine, first);
    });
}

/// Looks at the file of each job of `jobs` (not those `--cloud-only`
/// skips) into the same place of `found`.
fn look_at(lstat: &mut Lstat, jobs: &[Planned], found: &mut [Option<(bool, u64)>]) {
    for (p, at) in jobs.iter().zip(found.iter_mut()) {
        if p.route != Route::NotInBucket {
            *at = lstat.at(&p.rel);
        }
    }
}

/// Runs the tasks, at most the throttle's number at once, until done or
/// cancelled; each outcome goes into `outcomes` as it arrives.
async fn run_all(
    downloader: &Arc<Downloader>,
    plan: &PlanFile,
    outcomes: &mut Outcomes,
    state: &mut StateIndex,
) -> anyhow::Result<()> {
    let mut set: JoinSet<(usize, Job, Outcome)> = JoinSet::new();
    let ticker = tokio::spawn({
        let downloader = downloader.clone();
        async move { downloader.throttle.steer().await }
    });
    for (i, p) in plan
        .read()
        .context("Cannot read the plan back")?
        .enumerate()
    {
        let p = p.context("Cannot read the plan back")?;
        let task = outcomes.task(i, || state.take(&p.rel));
        let Some(task) = task.context("Cannot read the state records back")? else {
            continue;
        };
        let permit = tokio::select! {
            biased;
            _ = downloader.cancel.cancelled() => None,
            p = downloader.throttle.acquire() => p.filter(|_| !downloader.cancel.is_cancelled()),
        };
        let Some(permit) = permit else {
            let f = Facts::because(Status::Interrupted, 0, Why::NotStarted);
            outcomes.set(i, &p.rel, Outcome::untransferred(f));
            continue;
        };
        let job = match p.job() {
            Ok(job) => job,
            Err((p, e)) => {
                downloader.throttle.ended(permit);
                let why = Why::Text(format!(
                    "internal error: the planned URL does not parse: {e}"
                ));
                let f = Facts::because(Status::Failed, 0, why);
                outcomes.set(i, &p.rel, Outcome::untransferred(f));
                continue;
            }
        };
        let downloader = downloader.clone();
        set.spawn(async move {
            let t0 = Instant::now();
            let out = downloader.run(i, &job, task).await;
            // The next file may start before this one's connection is back
            // in the pool: the gate (transfer::gate) keeps it from opening one
            // more.
            downloader.throttle.ended(permit);
            downloader
                .reporter
                .finished(Some(i), &out.facts.row_of(&job), t0.elapsed());
            (i, job, out)
        });
        while let Some(Ok((i, job, out))) = set.try_join_next() {
            outcomes.set(i, &job.rel, out);
        }
    }
    while let Some(done) = set.join_next().await {
        if let Ok((i, job, out)) = done {
            outcomes.set(i, &job.rel, out);
        }
    }
    ticker.abort();
    Ok(())
}

/// Writes the state record, then `MANIFEST.json`, then `MANIFEST.HTML`
/// (each from the plan file and the outcomes, row by row), prints the
/// summary, and returns the exit code. A manifest that cannot be written
/// (a full disk) is said in the summary; what fits is still written.
fn finish(
    downloader: &Downloader,
    plan: &PlanFile,
    mut outcomes: Outcomes,
    started_at: String,
    notes: Vec<String>,
    who: Who,
    signal: Option<Exit>,
) -> anyhow::Result<Exit> {
    let open = plan.len()
        - outcomes.count(Status::Complete)
        - outcomes.count(Status::Skipped)
        - outcomes.count(Status::Failed)
        - outcomes.count(Status::Interrupted);
    if open > 0 {
        // Never started (interrupted), or its task died.
        let (status, why) = match downloader.cancel.is_cancelled() {
            true => (Status::Interrupted, Why::NotStarted),
            false => (Status::Failed, Why::Lost),
        };
        for (i, p) in plan
            .read()
            .context("Cannot read the plan back")?
            .enumerate()
        {
            let p = p.context("Cannot read the plan back")?;
            if !outcomes.is_done(i) {
                let f = Facts::because(status, 0, why.clone());
                outcomes.set(i, &p.rel, Outcome::untransferred(f));
            }
        }
    }
    let root = downloader.dest.root();
    let mut unwritten = Vec::new();
    if let Err(e) = downloader.dest.flush() {
        unwritten.push(format!(
            "cannot write the state record in `{}`: {e} (the files are complete; the next run \
             finds them by their size)",
            root.display()
        ));
    }
    let elapsed = downloader.started.elapsed();
    let received = downloader.received.load(Ordering::Relaxed);
    let header = Header {
        started: started_at,
        finished: manifest::now_rfc3339(),
        requested: plan.len(),
        complete: outcomes.count(Status::Complete),
        skipped: outcomes.count(Status::Skipped),
        failed: outcomes.count(Status::Failed),
        interrupted: outcomes.count(Status::Interrupted),
        bytes: received,
        notes,
    };
    let summary = Summary {
        complete: header.complete,
        skipped: header.skipped,
        failed: header.failed,
        bytes: received,
        elapsed,
        interrupted: signal.is_some(),
        cut_short: outcomes.cut_short,
        not_started: outcomes.not_started,
        wants_token: outcomes.all_want_token(who.token_refused),
    };
    let html = HtmlContext {
        user: who.user,
        seconds: elapsed.as_secs_f64(),
        transfers: outcomes.transfers,
        bars: outcomes.take_bars(),
    };
    let stem = downloader.dest.manifest_stem();
    let rows = |start: usize| {
        let outcomes = &outcomes;
        Ok((start..)
            .zip(plan.read_from(start)?.without_origins())
            .map(move |(i, p)| p.map(|p| outcomes.row(i, p))))
    };
    let saved = manifest::save_streamed(root, &stem, &header, &html, rows);
    unwritten.extend(saved.error(root, &stem));
    for e in &unwritten {
        downloader.reporter.message(Level::Error, e);
    }
    downloader.reporter.summary(&summary);
    Ok(match signal {
        Some(signal) => signal,
        None if saved.json.is_err() || saved.html.is_err() => Exit::Failed,
        None if summary.wants_token => Exit::NeedsToken,
        None if header.failed > 0 => Exit::Failed,
        None => Exit::Success,
    })
}
