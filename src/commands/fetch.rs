//! `mastdl fetch`: plan, lock DEST, run the jobs concurrently, write the
//! manifests.
//!
//! One HTTP client for the whole run; at most `--jobs` transfers at once
//! (`-j N`, or `auto`: see [`Budget`]); each file's outcome is collected,
//! never `?`-propagated, so one bad file never stops the others. SIGINT and
//! SIGTERM cancel the run: running transfers stop, `.part` files stay, the
//! manifest is written, and a second signal exits at once.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{plan_jobs, point_at_bucket, reporter, run_http};
use crate::auth::{self, Auth, Identity};
use crate::budget::{Jobs, Throttle};
use crate::dest::{Dest, StateRecord};
use crate::error::Exit;
use crate::job::{self, local, row, Access, Ctx, Facts, Outcome, Task, CUT_SHORT, NOT_STARTED};
use crate::manifest::{self, Bar, HtmlContext, Manifest, Status};
use crate::plan::Job;
use crate::progress::{Level, Reporter, Summary};
use crate::retry::Policy;
use crate::settings::Settings;

/// The most connections to the bucket at once (S3 serves each at its own speed).
pub const BUCKET_CONNECTIONS: usize = 16;

/// Runs `fetch`: plan, lock, download, manifest. Returns the exit code.
pub async fn fetch(mut settings: Settings) -> anyhow::Result<Exit> {
    // The final `-j` first: the client's per-host connection cap is sized from it.
    let reporter = reporter(&settings, true);
    fit_jobs(&mut settings, reporter.as_ref());
    let throttle = Throttle::new(settings.jobs, settings.limit_rate, BUCKET_CONNECTIONS);
    let http = run_http(&settings)?;
    let (mut jobs, notes) = plan_jobs(&settings, &http, reporter.as_ref()).await?;
    let dest = Dest::open(&settings.dest, settings.plan.shard)?;
    let not_in_cloud = point_at_bucket(&mut jobs, &settings, &http, reporter.as_ref()).await?;
    let started_at = manifest::now_rfc3339();
    let cancel = CancellationToken::new();
    let signalled = on_signals(&cancel);
    let ctx = Arc::new(Ctx {
        http,
        dest,
        auth: Auth::new(settings.token.clone(), settings.interactive),
        reporter: reporter.clone(),
        throttle,
        policy: Policy::new(settings.retries),
        cancel: cancel.clone(),
        origin: Instant::now(),
        received: AtomicU64::new(0),
        cloud: settings.cloud,
    });
    let (decided, todo) = classify(&jobs, &ctx.dest, &settings, &not_in_cloud);
    // Who the token belongs to, asked only when something will be asked of
    // the archive at all: a re-run of a complete pull makes no request.
    let identity = match (&settings.token, todo.is_empty()) {
        (Some(t), false) => Some(
            auth::whoami(
                &ctx.http,
                &settings.plan.base,
                t,
                reporter.as_ref(),
                &cancel,
            )
            .await,
        ),
        _ => None,
    };
    reporter.planned(jobs.len(), todo.len());
    for o in decided.iter().flatten() {
        reporter.finished(None, &o.row, Duration::ZERO);
    }
    let jobs = Arc::new(jobs);
    let outcomes = run_all(&ctx, &jobs, decided, todo).await;
    let identity = match (&settings.token, ctx.auth.current()) {
        // A token typed at the prompt: the manifest names its owner too.
        (None, Some(t)) => Some(
            auth::whoami(
                &ctx.http,
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
    let signal = signalled.load(Ordering::SeqCst);
    finish(&ctx, &jobs, outcomes, started_at, notes, who, signal)
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
/// second. Returns where the first signal's exit code is kept (0: none).
fn on_signals(cancel: &CancellationToken) -> Arc<AtomicI32> {
    let signalled = Arc::new(AtomicI32::new(0));
    let (cancel, flag) = (cancel.clone(), signalled.clone());
    tokio::spawn(async move {
        let first = signal().await;
        flag.store(first as i32, Ordering::SeqCst);
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

/// Returns the size of `job`'s file when it is already complete in DEST.
fn complete_size(path: &Path, job: &Job, state: &HashMap<String, StateRecord>) -> Option<u64> {
    // A symlink is never complete: it may point anywhere.
    let meta = fs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
    let expect = job.size.or_else(|| state.get(&job.rel).map(|r| r.size));
    match expect {
        Some(s) if s != meta.len() => None,
        _ => Some(meta.len()),
    }
}

/// Sorts the jobs: those already decided (complete files SKIPPED, files not
/// in the bucket with `--cloud-only`) get their outcome now; the others are
/// returned as tasks, with their index.
fn classify(
    jobs: &[Job],
    dest: &Dest,
    settings: &Settings,
    not_in_cloud: &[bool],
) -> (Vec<Option<Outcome>>, Vec<(usize, Task)>) {
    let mut state = dest.load_state();
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(jobs.len());
    let mut todo = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if not_in_cloud[i] {
            let f = Facts {
                message: Some("not in cloud".into()),
                ..Facts::plain(Status::Skipped, 0)
            };
            outcomes.push(Some(Outcome::untransferred(row(job, f))));
            continue;
        }
        match complete_size(&local(dest.root(), &job.rel), job, &state) {
            // A reprocessed change-feed row is checked like `--update`
            // checks every file (`--force` fetches it anyway).
            Some(size) if settings.update || (job.update && !settings.force) => {
                outcomes.push(None);
                let record = state.remove(&job.rel);
                todo.push((i, Task::Check { size, record }));
            }
            Some(size) if !settings.force => {
                let f = Facts::plain(Status::Skipped, size);
                outcomes.push(Some(Outcome::untransferred(row(job, f))));
            }
            _ => {
                outcomes.push(None);
                todo.push((i, Task::Fetch));
            }
        }
    }
    (outcomes, todo)
}

/// Runs the tasks, at most the throttle's number at once, until done or
/// cancelled; returns every job's outcome (`None`: never finished).
async fn run_all(
    ctx: &Arc<Ctx>,
    jobs: &Arc<Vec<Job>>,
    mut outcomes: Vec<Option<Outcome>>,
    todo: Vec<(usize, Task)>,
) -> Vec<Option<Outcome>> {
    let mut set: JoinSet<(usize, Outcome)> = JoinSet::new();
    let ticker = tokio::spawn({
        let ctx = ctx.clone();
        async move { ctx.throttle.steer().await }
    });
    for (i, task) in todo {
        let permit = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => None,
            p = ctx.throttle.acquire() => p.filter(|_| !ctx.cancel.is_cancelled()),
        };
        let Some(permit) = permit else {
            let f = Facts {
                message: Some(NOT_STARTED.into()),
                ..Facts::plain(Status::Interrupted, 0)
            };
            outcomes[i] = Some(Outcome::untransferred(row(&jobs[i], f)));
            continue;
        };
        let (ctx, jobs) = (ctx.clone(), jobs.clone());
        set.spawn(async move {
            let t0 = Instant::now();
            let out = job::run(&ctx, i, &jobs[i], task).await;
            ctx.throttle.ended(permit);
            ctx.reporter.finished(Some(i), &out.row, t0.elapsed());
            (i, out)
        });
        while let Some(Ok((i, out))) = set.try_join_next() {
            outcomes[i] = Some(out);
        }
    }
    while let Some(done) = set.join_next().await {
        if let Ok((i, out)) = done {
            outcomes[i] = Some(out);
        }
    }
    ticker.abort();
    outcomes
}

/// Writes the state record and both manifests (with the plan's `notes`),
/// prints the summary, and returns the exit code.
fn finish(
    ctx: &Ctx,
    jobs: &[Job],
    outcomes: Vec<Option<Outcome>>,
    started_at: String,
    notes: Vec<String>,
    who: Who,
    signal: i32,
) -> anyhow::Result<Exit> {
    let mut rows = Vec::with_capacity(outcomes.len());
    // FAILED files refused for want of a valid token.
    let mut want_token = 0;
    let mut bars = Vec::new();
    let mut access = Vec::with_capacity(outcomes.len());
    for (i, o) in outcomes.into_iter().enumerate() {
        let o = o.unwrap_or_else(|| {
            // Never started (interrupted), or its task died.
            let (status, message) = match ctx.cancel.is_cancelled() {
                true => (Status::Interrupted, NOT_STARTED),
                false => (
                    Status::Failed,
                    "internal error: the transfer ended unexpectedly",
                ),
            };
            let f = Facts {
                message: Some(message.into()),
                ..Facts::plain(status, 0)
            };
            Outcome::untransferred(row(&jobs[i], f))
        });
        if let Some(timing) = o.timing {
            bars.push(Bar {
                label: o.row.path.clone(),
                status: o.row.status,
                timing,
            });
        }
        if let (Status::Failed, Access::Denied(d)) = (o.row.status, o.access) {
            want_token += usize::from(d.wants_token(who.token_refused));
        }
        rows.push(o.row);
        access.push(o.access.as_str().to_string());
    }
    if let Err(e) = ctx.dest.flush() {
        let root = ctx.dest.root().display();
        let warning = format!("cannot write the state record in `{root}`: {e}");
        ctx.reporter.message(Level::Warn, &warning);
    }
    let elapsed = ctx.origin.elapsed();
    let received = ctx.received.load(Ordering::Relaxed);
    let mut m = Manifest::new(started_at, manifest::now_rfc3339(), received, rows);
    m.notes = notes;
    let count = |what: &str| {
        let failed_with = |r: &&manifest::FileRecord| {
            r.status == Status::Interrupted && r.message.as_deref() == Some(what)
        };
        m.files.iter().filter(failed_with).count()
    };
    let summary = Summary {
        complete: m.complete,
        skipped: m.skipped,
        failed: m.failed,
        bytes: received,
        elapsed,
        interrupted: signal != 0,
        cut_short: count(CUT_SHORT) + count(job::INTERRUPTED_EARLY),
        not_started: count(NOT_STARTED),
        wants_token: m.failed > 0 && want_token == m.failed,
    };
    let html = HtmlContext {
        user: who.user,
        seconds: elapsed.as_secs_f64(),
        bars,
        access,
    };
    let root = ctx.dest.root();
    manifest::save(root, &ctx.dest.manifest_stem(), &m, &html)
        .with_context(|| format!("Cannot write the manifest in `{}`", root.display()))?;
    ctx.reporter.summary(&summary);
    Ok(match signal {
        130 => Exit::Interrupted,
        143 => Exit::Terminated,
        _ if summary.wants_token => Exit::NeedsToken,
        _ if m.failed > 0 => Exit::Failed,
        _ => Exit::Success,
    })
}

/// Who the run was, for the manifest and the exit code.
struct Who {
    /// The manifest's "Logged In User".
    user: String,
    /// `/whoami` said MAST did not accept the token.
    token_refused: bool,
}
