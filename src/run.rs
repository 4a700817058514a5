//! The orchestrator: input → plan → (skip, fetch with retries) → manifest.
//!
//! One reqwest client for the whole run; at most `--jobs` transfers at once
//! (fewer after a 429, see [`Throttle`]); each file's outcome is collected,
//! never `?`-propagated, so one bad file never stops the others. SIGINT and
//! SIGTERM cancel the run: running transfers stop, `.part` files stay, the
//! manifest is written, and a second signal exits at once.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Auth, TOKEN_HELP};
use crate::cli::QueryArgs;
use crate::cloud;
use crate::dest::{Dest, StateRecord};
use crate::error::{Exit, UsageError};
use crate::fetch::http::{build_client, ClientError, ClientOptions};
use crate::fetch::{self, FetchError, Http, Transfer, Trust};
use crate::input::{self, Entry, InputError, Origin};
use crate::manifest::{self, Bar, FileRecord, HtmlContext, Manifest, Status, Timing};
use crate::plan::{Job, Planner, Source};
use crate::progress::{Bars, Json, Level, Lines, Reporter, Summary};
use crate::query;
use crate::retry::{self, Backoff, Throttle};
use crate::settings::{self, Cloud, Output, Settings};
use crate::token::Token;

/// The most connections to the bucket at once (S3 serves each at its own speed).
pub const BUCKET_CONNECTIONS: usize = 16;

/// The manifest message of a transfer cut short by Ctrl-C or SIGTERM.
pub const CUT_SHORT: &str = "interrupted; the `.part` was kept and the next run resumes it";
/// The manifest message of a file the interruption kept from starting.
pub const NOT_STARTED: &str = "not started: the run was interrupted";

/// Feeds the plan's jobs to `f`: the inputs' (or the `--query` search's)
/// entries, through one [`Planner`].
async fn plan_each(
    settings: &Settings,
    http: &Http,
    f: &mut dyn FnMut(Job) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut planner = Planner::new(settings.plan.clone());
    let mut failed: Option<anyhow::Error> = None;
    let mut push = |e: Entry| -> Result<(), InputError> {
        if let Some(job) = planner.push(e)? {
            if let Err(err) = f(job) {
                failed = Some(err);
                return Err(InputError::new("", 0, "stopped"));
            }
        }
        Ok(())
    };
    let result = match &settings.query {
        Some(criteria) => {
            let entries =
                query_entries(http, &settings.plan.base, settings.token.as_ref(), criteria).await?;
            entries
                .into_iter()
                .try_for_each(&mut push)
                .map_err(anyhow::Error::from)
        }
        None => {
            input::read::Reading::new(settings, http)
                .each_entry(&settings.inputs, &mut push)
                .await
        }
    };
    match failed {
        Some(err) => Err(err),
        None => result,
    }
}

/// Reads the inputs (or runs the `--query` search) and builds the plan.
pub async fn plan_jobs(settings: &Settings, http: &Http) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    plan_each(settings, http, &mut |job| {
        jobs.push(job);
        Ok(())
    })
    .await?;
    Ok(jobs)
}

/// Runs a MAST search and returns its products as entries.
async fn query_entries(
    http: &Http,
    base: &url::Url,
    token: Option<&Token>,
    criteria: &query::Criteria,
) -> anyhow::Result<Vec<Entry>> {
    let products = query::products(http, base, token, criteria).await?;
    Ok(products
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.to_entry(Origin {
                file: "<query>".into(),
                line: i + 1,
            })
        })
        .collect())
}

/// Points the jobs the bucket has at the bucket (`--cloud`): asks the
/// archive's `path_lookup` for the cloud missions' URIs and gives each
/// found job its object URL, keeping the archive URL as the fallback.
/// Returns, per job, whether it is to be SKIPPED as "not in cloud"
/// (`--cloud-only`).
async fn resolve_cloud(
    jobs: &mut [Job],
    settings: &Settings,
    http: &Http,
    reporter: &dyn Reporter,
) -> anyhow::Result<Vec<bool>> {
    let mut not_in_cloud = vec![settings.cloud == Cloud::Only; jobs.len()];
    if settings.cloud == Cloud::Off {
        return Ok(not_in_cloud);
    }
    let uris: Vec<String> = jobs
        .iter()
        .filter(|j| cloud::is_cloud_candidate(&j.uri))
        .map(|j| j.uri.clone())
        .collect();
    if uris.is_empty() {
        return Ok(not_in_cloud);
    }
    let keys = match cloud::lookup(http, &settings.plan.base, settings.token.as_ref(), &uris).await
    {
        Ok(k) => k,
        Err(e) if settings.cloud == Cloud::Prefer => {
            reporter.message(
                Level::Warn,
                &format!("bucket path lookup failed, fetching from the archive: {e:#}"),
            );
            return Ok(not_in_cloud);
        }
        Err(e) => return Err(e.context("Cannot look up which files the bucket has")),
    };
    let mut found = 0;
    for (i, job) in jobs.iter_mut().enumerate() {
        let Some(Some(key)) = keys.get(&job.uri) else {
            continue;
        };
        let url = cloud::object_url(&settings.s3_url, key).map_err(|e| {
            UsageError(format!(
                "`--s3-url` `{}` cannot hold `{key}`: {e}",
                settings.s3_url
            ))
        })?;
        job.fallback = Some(std::mem::replace(&mut job.url, url));
        job.source = Source::Cloud;
        not_in_cloud[i] = false;
        found += 1;
    }
    reporter.message(
        Level::Info,
        &format!("{found} of {} files are in the bucket", jobs.len()),
    );
    Ok(not_in_cloud)
}

/// Runs `plan` (or `fetch --dry-run`): prints the plan as it is built
/// (URI, URL, PATH, TAB-separated), downloads nothing. A bad entry stops
/// it with exit 2 after the lines before it.
pub async fn plan(settings: Settings) -> anyhow::Result<Exit> {
    let http = run_http(&settings)?;
    if settings.cloud != Cloud::Off {
        // The bucket's answer is needed before the first line.
        let mut jobs = plan_jobs(&settings, &http).await?;
        let quiet = Lines { quiet: true };
        let skip = resolve_cloud(&mut jobs, &settings, &http, &quiet).await?;
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let written = jobs
            .iter()
            .zip(skip)
            .filter(|(_, skip)| !skip)
            .try_for_each(|(j, _)| writeln!(out, "{}\t{}\t{}", j.uri, j.url, j.rel))
            .and_then(|()| out.flush());
        return match written {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Exit::Success),
            other => other
                .map(|()| Exit::Success)
                .context("Cannot write the plan"),
        };
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = plan_each(&settings, &http, &mut |j| {
        writeln!(out, "{}\t{}\t{}", j.uri, j.url, j.rel)?;
        Ok(())
    })
    .await
    .and_then(|()| Ok(out.flush()?));
    match result {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(Exit::Success)
        }
        Err(e) => {
            let _ = out.flush();
            Err(e)
        }
        Ok(()) => Ok(Exit::Success),
    }
}

/// Runs `query`: the search's products as a URI list or a product table.
pub async fn query(args: QueryArgs) -> anyhow::Result<Exit> {
    if args.criteria.is_empty() {
        return Err(UsageError(
            "`query` needs search criteria, e.g. `--collection JWST --proposal 1073 --instrument NIRCAM*`".into(),
        )
        .into());
    }
    let base = settings::base_url(args.base_url)?;
    let token = settings::resolve_token(args.token.as_deref())?;
    let http = http(
        &base,
        &args.trusted_host,
        &ClientOptions {
            stall: Duration::from_secs(args.timeout.get()),
            cacert: args.cacert.as_deref(),
            pool_per_host: 4,
        },
    )?;
    let mut products = query::products(&http, &base, token.as_ref(), &args.criteria).await?;
    if !args.extension.is_empty() {
        products.retain(|p| {
            let name = p
                .product_filename
                .clone()
                .unwrap_or_else(|| crate::layout::filename(&p.data_uri).into_owned())
                .to_ascii_lowercase();
            args.extension
                .iter()
                .any(|x| name.ends_with(&x.to_ascii_lowercase()))
        });
    }
    let write = |w: &mut dyn Write| -> anyhow::Result<()> {
        match &args.table {
            Some(_) => query::write_table(w, &products),
            None => {
                for p in &products {
                    writeln!(w, "{}", p.data_uri)?;
                }
                Ok(w.flush()?)
            }
        }
    };
    match args.table.as_ref().or(args.output.as_ref()) {
        Some(path) => {
            let mut f = io::BufWriter::new(
                fs::File::create(path)
                    .with_context(|| format!("Cannot create `{}`", path.display()))?,
            );
            write(&mut f)?;
        }
        None => {
            let stdout = io::stdout();
            let mut out = io::BufWriter::new(stdout.lock());
            if let Err(e) = write(&mut out) {
                let broken = e
                    .downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe);
                if !broken {
                    return Err(e);
                }
            }
        }
    }
    eprintln!("{} products", products.len());
    Ok(Exit::Success)
}

/// Returns the reporter the settings ask for.
pub fn reporter(settings: &Settings) -> Arc<dyn Reporter> {
    match settings.output {
        Output::Bars => Arc::new(Bars::new(settings.quiet)),
        Output::Lines => Arc::new(Lines {
            quiet: settings.quiet,
        }),
        Output::Json => Arc::new(Json),
    }
}

/// Everything the transfers share.
struct Ctx {
    http: Http,
    dest: Dest,
    auth: Auth,
    reporter: Arc<dyn Reporter>,
    throttle: Throttle,
    backoff: Backoff,
    retries: u32,
    cancel: CancellationToken,
    origin: Instant,
    received: AtomicU64,
    /// `--cloud` / `--cloud-only`.
    cloud: Cloud,
    /// The run-wide bound on connections to the bucket.
    bucket: Semaphore,
    /// `--limit-rate`.
    limiter: crate::rate::RateLimiter,
}

/// One file's outcome.
struct Outcome {
    row: FileRecord,
    timing: Option<Timing>,
    access: &'static str,
}

impl Outcome {
    /// Returns the outcome of a file that was not transferred.
    fn untransferred(row: FileRecord) -> Outcome {
        Outcome {
            row,
            timing: None,
            access: "",
        }
    }
}

/// Builds the one HTTP client (with its trust rules) for every request
/// of a command.
pub fn http(
    base: &url::Url,
    trusted_hosts: &[String],
    options: &ClientOptions<'_>,
) -> anyhow::Result<Http> {
    let client = build_client(options).map_err(|e| match e {
        e @ (ClientError::ReadCa { .. } | ClientError::NoCert { .. }) => {
            anyhow::Error::new(UsageError(crate::error::chain(&e)))
        }
        e => anyhow::Error::new(e),
    })?;
    Ok(Http {
        client,
        trust: Trust::new(base.clone(), trusted_hosts.to_vec()),
        stall: options.stall,
    })
}

/// Returns the one HTTP client of a `fetch` or `plan` run.
fn run_http(settings: &Settings) -> anyhow::Result<Http> {
    http(
        &settings.plan.base,
        &settings.trusted_hosts,
        &ClientOptions {
            stall: settings.stall,
            cacert: settings.cacert.as_deref(),
            pool_per_host: settings.jobs.max(16),
        },
    )
}

/// Returns the local path of `rel` below `root`.
fn local(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(rel.split('/'));
    p
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

fn row(
    job: &Job,
    status: Status,
    bytes: u64,
    http_status: Option<u16>,
    attempts: u32,
    message: Option<String>,
) -> FileRecord {
    row_from(
        job,
        &job.url,
        job.source,
        status,
        bytes,
        http_status,
        attempts,
        message,
    )
}

/// Returns a manifest row for `job` fetched (or not) from `url` at `source`.
#[allow(clippy::too_many_arguments)]
fn row_from(
    job: &Job,
    url: &url::Url,
    source: Source,
    status: Status,
    bytes: u64,
    http_status: Option<u16>,
    attempts: u32,
    message: Option<String>,
) -> FileRecord {
    FileRecord {
        uri: job.uri.clone(),
        url: url.to_string(),
        path: job.rel.clone(),
        status,
        bytes,
        http_status,
        attempts,
        message,
        source,
    }
}

/// What to do with a job.
enum Task {
    /// Download it (resuming a `.part`).
    Fetch,
    /// `--update`: it is complete; ask the source whether it changed.
    Check {
        size: u64,
        record: Option<StateRecord>,
    },
}

/// `--update` for one complete file: a HEAD to its source; a changed file
/// is fetched again to `.part` and renamed over the old one only when
/// complete, so a failed replacement leaves the old file as it was.
async fn update_one(
    ctx: &Ctx,
    id: usize,
    job: &Job,
    size: u64,
    record: Option<StateRecord>,
) -> Outcome {
    let token = match job.source {
        Source::Mast => ctx.auth.current(),
        Source::Cloud => None,
    };
    let mut failures = 0u32;
    let head = loop {
        let result = tokio::select! {
            r = fetch::head(&ctx.http, &job.url, token.as_ref()) => r,
            _ = ctx.cancel.cancelled() => Err(FetchError::Interrupted),
        };
        match result {
            Ok(h) => break h,
            Err(e)
                if retry::is_transient(&e)
                    && failures < ctx.retries
                    && !ctx.cancel.is_cancelled() =>
            {
                failures += 1;
                let delay = ctx.backoff.delay(failures, None);
                ctx.reporter
                    .retrying(id, &job.rel, failures, &e.to_string(), delay);
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                let message = if ctx.cancel.is_cancelled() {
                    "interrupted".to_string()
                } else {
                    format!(
                        "could not check for an update ({}); the local file is unchanged",
                        failure_message(&e, token.is_some(), failures)
                    )
                };
                return Outcome::untransferred(row(
                    job,
                    Status::Failed,
                    size,
                    e.status(),
                    failures + 1,
                    Some(message),
                ));
            }
        }
    };
    // Validators recorded from another source (archive vs bucket) say nothing
    // about this one: then only the size is compared.
    let (etag, modified) = match &record {
        Some(r) if r.source == job.source => (r.etag.as_deref(), r.last_modified.as_deref()),
        _ => (None, None),
    };
    match fetch::changed(&head, size, etag, modified) {
        Some(why) => fetch_one(ctx, id, job, false, Some(&format!("updated: {why}"))).await,
        None => {
            if record.as_ref().is_none_or(|r| {
                r.source != job.source || (r.etag.is_none() && r.last_modified.is_none())
            }) {
                // Nothing was recorded to compare with: remember the source's
                // validators now, so the next --update can.
                let _ = ctx.dest.record(&StateRecord {
                    path: job.rel.clone(),
                    uri: job.uri.clone(),
                    size,
                    etag: head.etag.clone(),
                    last_modified: head.last_modified.clone(),
                    source: job.source,
                });
            }
            Outcome::untransferred(row(job, Status::Skipped, size, Some(head.status), 0, None))
        }
    }
}

/// Downloads one job with retries; `resume` continues a `.part` left
/// behind, and `note` goes into the manifest message on success. A bucket
/// object the bucket turns out not to have (403/404) comes from the archive
/// instead (with `--cloud-only` it is SKIPPED).
async fn fetch_one(ctx: &Ctx, id: usize, job: &Job, resume: bool, note: Option<&str>) -> Outcome {
    let path = local(ctx.dest.root(), &job.rel);
    let name = job.rel.rsplit('/').next().unwrap_or(&job.rel);
    let binary = !fetch::is_text_product(name);
    let mut url = job.url.clone();
    let mut source = job.source;
    let mut token = match source {
        Source::Mast => ctx.auth.current(),
        Source::Cloud => None,
    };
    // The bucket object's size and ETag, asked once with a HEAD.
    let mut object: Option<(u64, String)> = None;
    let mut attempts = 0u32;
    let mut failures = 0u32;
    let start = ctx.origin.elapsed();
    let timing = |received: u64| {
        Some(Timing {
            start_ms: start.as_millis() as u64,
            end_ms: ctx.origin.elapsed().as_millis() as u64,
            received,
        })
    };
    let mut received_total = 0u64;
    loop {
        attempts += 1;
        let transfer = Transfer {
            url: &url,
            path: &path,
            token: token.as_ref(),
            expect_size: job.size,
            md5_from_etag: source == Source::Cloud,
            binary,
            resume: resume || attempts > 1,
            label: &job.rel,
            limiter: &ctx.limiter,
            reporter: ctx.reporter.as_ref(),
            id,
        };
        let attempt = async {
            if source == Source::Mast {
                return fetch::download(&ctx.http, transfer).await;
            }
            if object.is_none() {
                let _permit = ctx
                    .bucket
                    .acquire()
                    .await
                    .map_err(|_| FetchError::Interrupted)?;
                let h = fetch::head(&ctx.http, &url, None).await?;
                object = Some((h.size.unwrap_or(0), h.etag.unwrap_or_default()));
            }
            match &object {
                Some((size, etag)) if *size > fetch::RANGED_MIN && !etag.is_empty() => {
                    fetch::download_ranged(&ctx.http, transfer, *size, etag, &ctx.bucket).await
                }
                _ => {
                    let _permit = ctx
                        .bucket
                        .acquire()
                        .await
                        .map_err(|_| FetchError::Interrupted)?;
                    fetch::download(&ctx.http, transfer).await
                }
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = ctx.cancel.cancelled() => Err(FetchError::Interrupted),
        };
        let err = match result {
            Ok(done) => {
                ctx.received.fetch_add(done.received, Ordering::Relaxed);
                received_total += done.received;
                ctx.throttle.success();
                let _ = ctx.dest.record(&StateRecord {
                    path: job.rel.clone(),
                    uri: job.uri.clone(),
                    size: done.size,
                    etag: done.etag.clone(),
                    last_modified: done.last_modified.clone(),
                    source,
                });
                let withheld = done
                    .withheld
                    .map(|h| format!("token withheld from untrusted host `{h}`"));
                let message = match (note, withheld) {
                    (Some(n), Some(w)) => Some(format!("{n}; {w}")),
                    (Some(n), None) => Some(n.to_string()),
                    (None, w) => w,
                };
                return Outcome {
                    row: row_from(
                        job,
                        &url,
                        source,
                        Status::Complete,
                        done.size,
                        Some(done.http_status),
                        attempts,
                        message,
                    ),
                    timing: timing(received_total),
                    access: if token.is_some() { "token" } else { "public" },
                };
            }
            Err(e) => e,
        };
        let status = err.status();
        if source == Source::Cloud && matches!(status, Some(403 | 404)) {
            match (&job.fallback, ctx.cloud) {
                (Some(archive), Cloud::Prefer) => {
                    url = archive.clone();
                    source = Source::Mast;
                    token = ctx.auth.current();
                    continue;
                }
                _ => {
                    return Outcome {
                        row: row_from(
                            job,
                            &url,
                            source,
                            Status::Skipped,
                            0,
                            status,
                            attempts,
                            Some(format!("not in cloud ({err})")),
                        ),
                        timing: None,
                        access: "public",
                    };
                }
            }
        }
        if matches!(status, Some(401 | 403)) && token.is_none() && source == Source::Mast {
            if let Some(t) = ctx.auth.ask(ctx.reporter.as_ref()).await {
                token = Some(t);
                continue;
            }
        }
        if retry::is_transient(&err) && failures < ctx.retries && !ctx.cancel.is_cancelled() {
            failures += 1;
            let retry_after = match &err {
                FetchError::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            if status == Some(429) {
                let now = ctx.throttle.slow_down();
                ctx.reporter.message(
                    Level::Warn,
                    &format!("the archive asks to slow down (HTTP 429): {now} transfer(s) at once for a while"),
                );
            }
            let delay = ctx.backoff.delay(failures, retry_after);
            ctx.reporter
                .retrying(id, &job.rel, attempts, &err.to_string(), delay);
            tokio::select! {
                _ = tokio::time::sleep(delay) => continue,
                _ = ctx.cancel.cancelled() => {}
            }
        }
        let interrupted = ctx.cancel.is_cancelled();
        let message = if interrupted {
            let kept = fetch::part::Part::of(&path)
                .file_len()
                .is_some_and(|n| n > 0);
            if kept {
                CUT_SHORT.to_string()
            } else {
                "interrupted before any byte arrived".to_string()
            }
        } else {
            failure_message(&err, token.is_some(), failures)
        };
        return Outcome {
            row: row_from(
                job,
                &url,
                source,
                Status::Failed,
                0,
                status,
                attempts,
                Some(message),
            ),
            timing: timing(received_total),
            access: if matches!(status, Some(401 | 403)) {
                "denied"
            } else if token.is_some() {
                "token"
            } else {
                "public"
            },
        };
    }
}

/// Returns the manifest message of a failure, with what to do about it.
fn failure_message(err: &FetchError, had_token: bool, retries: u32) -> String {
    let base = err.to_string();
    let hint = match (err.status(), had_token) {
        (Some(401), true) => " — the token was rejected: MAST tokens expire after 10 days unused or 60 days after creation; get a new one at https://auth.mast.stsci.edu/token".to_string(),
        (Some(403), true) => " — the token does not grant access to this file (exclusive-access data?)".to_string(),
        (Some(401 | 403), false) => format!(" — this file needs a MAST token: {TOKEN_HELP}"),
        _ => String::new(),
    };
    if retries == 1 {
        format!("{base}{hint} (after 1 retry)")
    } else if retries > 1 {
        format!("{base}{hint} (after {retries} retries)")
    } else {
        format!("{base}{hint}")
    }
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
            let message = Some("not in cloud".to_string());
            outcomes.push(Some(Outcome::untransferred(row(
                job,
                Status::Skipped,
                0,
                None,
                0,
                message,
            ))));
            continue;
        }
        match complete_size(&local(dest.root(), &job.rel), job, &state) {
            Some(size) if settings.update => {
                outcomes.push(None);
                let record = state.remove(&job.rel);
                todo.push((i, Task::Check { size, record }));
            }
            Some(size) if !settings.force => {
                outcomes.push(Some(Outcome::untransferred(row(
                    job,
                    Status::Skipped,
                    size,
                    None,
                    0,
                    None,
                ))));
            }
            _ => {
                outcomes.push(None);
                todo.push((i, Task::Fetch));
            }
        }
    }
    (outcomes, todo)
}

/// Runs `fetch`: plan, lock, download, manifest. Returns the exit code.
pub async fn fetch(mut settings: Settings) -> anyhow::Result<Exit> {
    let http = run_http(&settings)?;
    let mut jobs = plan_jobs(&settings, &http).await?;
    let dest = Dest::open(&settings.dest, settings.plan.shard)?;
    let reporter = reporter(&settings);
    let fit = crate::dest::fit_open_files(settings.jobs);
    if fit < settings.jobs {
        reporter.message(
            Level::Warn,
            &format!(
                "`-j {}` needs more open files than this process may have (`ulimit -n`): running {fit} transfers at once",
                settings.jobs
            ),
        );
        settings.jobs = fit;
    }
    let not_in_cloud = resolve_cloud(&mut jobs, &settings, &http, reporter.as_ref()).await?;
    let started_at = manifest::now_rfc3339();
    let origin = Instant::now();

    let cancel = CancellationToken::new();
    let signalled = Arc::new(AtomicI32::new(0));
    {
        let cancel = cancel.clone();
        let signalled = signalled.clone();
        tokio::spawn(async move {
            let first = signal().await;
            signalled.store(first as i32, Ordering::SeqCst);
            cancel.cancel();
            signal().await;
            std::process::exit(first as i32);
        });
    }

    let mut user = match &settings.token {
        Some(t) => auth::whoami(&http, &settings.plan.base, t, reporter.as_ref(), &cancel)
            .await
            .label(),
        None => "anonymous".to_string(),
    };
    let ctx = Arc::new(Ctx {
        http,
        dest,
        auth: Auth::new(settings.token.clone(), settings.interactive),
        reporter: reporter.clone(),
        throttle: Throttle::new(settings.jobs),
        backoff: Backoff::from_env(),
        retries: settings.retries,
        cancel: cancel.clone(),
        origin,
        received: AtomicU64::new(0),
        cloud: settings.cloud,
        bucket: Semaphore::new(BUCKET_CONNECTIONS),
        limiter: crate::rate::RateLimiter::from_rate(settings.limit_rate),
    });

    let (mut outcomes, todo) = classify(&jobs, &ctx.dest, &settings, &not_in_cloud);
    reporter.planned(jobs.len(), todo.len());
    for o in outcomes.iter().flatten() {
        reporter.finished(usize::MAX, &o.row, Duration::ZERO);
    }

    let jobs = Arc::new(jobs);
    let mut set: JoinSet<(usize, Outcome)> = JoinSet::new();
    for (i, task) in todo {
        let permit = tokio::select! {
            p = ctx.throttle.acquire() => p,
            _ = cancel.cancelled() => None,
        };
        let Some(permit) = permit else {
            let message = Some(NOT_STARTED.to_string());
            outcomes[i] = Some(Outcome::untransferred(row(
                &jobs[i],
                Status::Failed,
                0,
                None,
                0,
                message,
            )));
            continue;
        };
        let (ctx, jobs) = (ctx.clone(), jobs.clone());
        set.spawn(async move {
            let t0 = Instant::now();
            let out = match task {
                Task::Fetch => fetch_one(&ctx, i, &jobs[i], true, None).await,
                Task::Check { size, record } => update_one(&ctx, i, &jobs[i], size, record).await,
            };
            ctx.throttle.release(permit);
            ctx.reporter.finished(i, &out.row, t0.elapsed());
            (i, out)
        });
        while let Some(done) = set.try_join_next() {
            if let Ok((i, out)) = done {
                outcomes[i] = Some(out);
            }
        }
    }
    while let Some(done) = set.join_next().await {
        if let Ok((i, out)) = done {
            outcomes[i] = Some(out);
        }
    }

    let mut rows = Vec::with_capacity(outcomes.len());
    let mut bars = Vec::new();
    let mut access = Vec::with_capacity(outcomes.len());
    for (i, o) in outcomes.into_iter().enumerate() {
        let o = o.unwrap_or_else(|| {
            // Never started (interrupted), or its task died.
            let message = if cancel.is_cancelled() {
                NOT_STARTED
            } else {
                "internal error: the transfer ended unexpectedly"
            };
            Outcome::untransferred(row(
                &jobs[i],
                Status::Failed,
                0,
                None,
                0,
                Some(message.into()),
            ))
        });
        if let Some(timing) = o.timing {
            bars.push(Bar {
                label: o.row.path.clone(),
                status: o.row.status,
                timing,
            });
        }
        rows.push(o.row);
        access.push(o.access.to_string());
    }
    if let (None, Some(t)) = (&settings.token, ctx.auth.current()) {
        // A token typed at the prompt: the manifest names its owner too.
        user = auth::whoami(
            &ctx.http,
            &settings.plan.base,
            &t,
            reporter.as_ref(),
            &cancel,
        )
        .await
        .label();
    }
    if let Err(e) = ctx.dest.flush() {
        reporter.message(
            Level::Warn,
            &format!(
                "cannot write the state record in `{}`: {e}",
                ctx.dest.root().display()
            ),
        );
    }
    let elapsed = origin.elapsed();
    let received = ctx.received.load(Ordering::Relaxed);
    let m = Manifest::new(started_at, manifest::now_rfc3339(), received, rows);
    let count = |what: &str| {
        m.files
            .iter()
            .filter(|r| r.status == Status::Failed && r.message.as_deref() == Some(what))
            .count()
    };
    let signal_code = signalled.load(Ordering::SeqCst);
    let summary = Summary {
        complete: m.complete,
        skipped: m.skipped,
        failed: m.failed,
        bytes: received,
        elapsed,
        interrupted: signal_code != 0,
        cut_short: count(CUT_SHORT),
        not_started: count(NOT_STARTED),
    };
    let ctx_html = HtmlContext {
        user,
        seconds: elapsed.as_secs_f64(),
        bars,
        access,
    };
    manifest::save(ctx.dest.root(), &ctx.dest.manifest_stem(), &m, &ctx_html).with_context(
        || {
            format!(
                "Cannot write the manifest in `{}`",
                ctx.dest.root().display()
            )
        },
    )?;
    reporter.summary(&summary);
    Ok(match signal_code {
        130 => Exit::Interrupted,
        143 => Exit::Terminated,
        _ if m.failed > 0 => Exit::Failed,
        _ => Exit::Success,
    })
}
