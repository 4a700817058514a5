//! `mastdl verify DEST`: a read-only check of a mirror, for the nightly job
//! that wants to know its data is still what was downloaded.
//!
//! Every file the state record (`DEST/.mastdl/state*.jsonl`) lists must be
//! a regular file at its path, of the recorded size, whose bytes hash to
//! the MD5 recorded as they streamed in. `--extra` also lists files below
//! DEST that no record lists; `--remote` asks each file's source (one HEAD
//! each, at most `-j` at once) whether its size or validators changed, so
//! a reprocessed product shows up without downloading it.
//!
//! Nothing is written below DEST: no lock, no record, no manifest. Files
//! are hashed in parallel (one thread per core, a 1 MiB buffer each), never
//! through a symlink. One line per problem and a summary go to stderr (or
//! JSON events), then the command that repairs what can be repaired; the
//! exit code is 0 when clean, 1 when not.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt as _};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use md5::{Digest as _, Md5};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::cli::VerifyArgs;
use crate::dest::{Dest, Spot, StateIndex, StateRecord, META_DIR};

/// The plan size whose state-record bound `verify` reads within.
const VERIFY_FILES: usize = 1 << 18;
use crate::error::{Exit, UsageError};
use crate::layout::escape;
use crate::manifest::human_bytes;
use crate::manifest::Source;
use crate::progress;
use crate::retry::{self, Policy};
use crate::settings::{Network, Output};
use crate::transfer::Http;

/// Retries of one `--remote` HEAD on transient errors.
const REMOTE_RETRIES: u32 = 2;

/// The read buffer of one hashing thread.
const HASH_BUFFER: usize = 1 << 20;

/// `verify`'s configuration, resolved once.
struct Config {
    dest: PathBuf,
    extra: bool,
    remote: bool,
    print_repair: bool,
    jobs: usize,
    /// The archive (recorded script URLs are re-rooted at a given
    /// `--base-url`), the token and the client's settings.
    network: Network,
    json: bool,
    bar: bool,
}

impl Config {
    fn resolve(args: VerifyArgs) -> Result<Config, UsageError> {
        let VerifyArgs {
            dest,
            extra,
            remote,
            print_repair,
            jobs,
            network,
            output,
        } = args;
        let (output, _quiet) = Output::resolve(output);
        Ok(Config {
            dest,
            extra,
            remote,
            print_repair,
            jobs: jobs.get(),
            network: Network::resolve(network)?,
            json: output == Output::Json,
            bar: output == Output::Bars,
        })
    }
}

/// What is wrong with one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// Recorded, and nothing is at its path.
    Missing,
    /// Recorded, and what is at its path is not a regular file (a
    /// directory, a symlink, a FIFO…).
    NotAFile,
    /// Recorded with another size.
    Size { recorded: u64, found: u64 },
    /// Same size, other bytes.
    Corrupt { recorded: String, found: String },
    /// The file could not be read.
    Unreadable(String),
    /// The record names no usable path (`..`, control characters…), or a
    /// folder on the path is a symlink or not a folder: never followed,
    /// never repaired (`fetch` would refuse it too).
    Unusable(String),
    /// Below DEST, and no record lists it (`--extra`).
    Extra,
    /// The source's size or validators changed (`--remote`).
    Changed(String),
    /// The source could not be asked (`--remote`).
    Unchecked(String),
}

/// The kinds of problem, in the order the summary names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    NotAFile,
    Size,
    Corrupt,
    Unreadable,
    Changed,
    Unchecked,
    Extra,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Missing,
        Kind::NotAFile,
        Kind::Size,
        Kind::Corrupt,
        Kind::Unreadable,
        Kind::Changed,
        Kind::Unchecked,
        Kind::Extra,
    ];

    /// Returns the word that starts a problem's line.
    fn word(self) -> &'static str {
        match self {
            Kind::Missing => "MISSING",
            Kind::NotAFile => "NOTFILE",
            Kind::Size => "SIZE",
            Kind::Corrupt => "CORRUPT",
            Kind::Unreadable => "UNREADABLE",
            Kind::Changed => "CHANGED",
            Kind::Unchecked => "UNCHECKED",
            Kind::Extra => "EXTRA",
        }
    }

    /// Returns the kind's key in JSON events.
    fn key(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::NotAFile => "not_a_file",
            Kind::Size => "size",
            Kind::Corrupt => "corrupt",
            Kind::Unreadable => "unreadable",
            Kind::Changed => "changed",
            Kind::Unchecked => "unchecked",
            Kind::Extra => "extra",
        }
    }

    /// Returns how the summary line counts the kind: `2 missing`.
    fn phrase(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::NotAFile => "not a file",
            Kind::Size => "of another size",
            Kind::Corrupt => "corrupt",
            Kind::Unreadable => "unreadable",
            Kind::Changed => "changed at the source",
            Kind::Unchecked => "not checked at the source",
            Kind::Extra => "extra",
        }
    }
}

impl Problem {
    /// Returns the problem's kind.
    fn kind(&self) -> Kind {
        match self {
            Problem::Missing => Kind::Missing,
            Problem::NotAFile => Kind::NotAFile,
            Problem::Size { .. } => Kind::Size,
            Problem::Corrupt { .. } => Kind::Corrupt,
            Problem::Unreadable(_) | Problem::Unusable(_) => Kind::Unreadable,
            Problem::Extra => Kind::Extra,
            Problem::Changed(_) => Kind::Changed,
            Problem::Unchecked(_) => Kind::Unchecked,
        }
    }

    /// Returns what to say after the path, if anything.
    fn detail(&self) -> Option<String> {
        match self {
            Problem::Missing => Some("recorded, not on disk".into()),
            Problem::NotAFile => Some("not a regular file (never followed)".into()),
            Problem::Size { recorded, found } => {
                Some(format!("recorded {recorded} bytes, found {found}"))
            }
            Problem::Corrupt { recorded, found } => Some(format!(
                "content changed: MD5 recorded {recorded}, the bytes hash to {found}"
            )),
            Problem::Unreadable(m)
            | Problem::Unusable(m)
            | Problem::Changed(m)
            | Problem::Unchecked(m) => Some(m.clone()),
            Problem::Extra => Some("no record lists this file".into()),
        }
    }

    /// Returns true if and only if `fetch --force` of the recorded source
    /// repairs it.
    fn repairable(&self) -> bool {
        !matches!(
            self,
            Problem::Extra | Problem::Unchecked(_) | Problem::Unusable(_)
        )
    }
}

/// What the local check found for one record.
enum Local {
    /// Present, the right size and, when `hashed`, the right MD5.
    Ok {
        hashed: bool,
    },
    Bad(Problem),
}

/// One problem found, with the record it concerns (none for an extra file).
struct Finding {
    path: String,
    problem: Problem,
    record: Option<Spot>,
}

/// Runs `verify`. Returns 0 when the mirror is clean, 1 when not.
pub(crate) async fn verify(args: VerifyArgs) -> anyhow::Result<Exit> {
    let cfg = Config::resolve(args)?;
    let t0 = Instant::now();
    let root = cfg.dest.clone();
    check_root(&root)?;
    // Bounded as for a plan of VERIFY_FILES files (4 GiB of records): never
    // followed, never blocked on, never read past that. The records stay
    // in a temporary file, read back one at a time: memory holds a few
    // bytes a file, not the records.
    let index = Dest::read_only(&root).load_state(VERIFY_FILES, true)?;
    if index.len() == 0 {
        return Err(UsageError(format!(
            "`{}` holds no record of downloaded files (`{META_DIR}/state.jsonl`): nothing to verify; is it a folder `mastdl fetch` filled?",
            root.display()
        ))
        .into());
    }
    // In the order they were recorded: the temporary file is read straight
    // through.
    let spots = index.spots();
    let recorded = Recorded {
        files: index.len(),
        bytes: index.total_size(),
    };
    let bar = progress_bar(cfg.bar, recorded.bytes);
    let local = check_local(&root, &index, &spots, &bar).await;
    bar.finish_and_clear();
    let local = local?;
    let Checked {
        mut findings,
        sound,
        unhashed,
    } = local;
    if cfg.remote {
        findings.extend(check_remote(&cfg, &index, &sound).await?);
    }
    if cfg.extra {
        findings.extend(extra_files(&root, &index));
    }
    findings.sort_by(|a, b| a.path.cmp(&b.path));
    let repair = Repair::of(&cfg, &index, &findings);
    // stderr first: the problems are reported, and the exit code is
    // theirs, whatever becomes of stdout (`| head`, a closed pipe).
    report(&cfg, recorded, &findings, &repair, unhashed, t0.elapsed());
    if cfg.print_repair {
        if let Err(e) = repair.print() {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(anyhow::Error::new(e).context("Cannot write the repair script"));
            }
            let text =
                "verify: standard output was closed: the repair script was not written in full";
            if cfg.json {
                progress::emit(json!({"ts": progress::ts(), "event": "message",
                    "level": "warn", "message": text}));
            } else {
                progress::say(text);
            }
        }
    }
    Ok(if findings.is_empty() {
        Exit::Success
    } else {
        Exit::Failed
    })
}

/// Refuses a DEST that is not a folder, and a symlinked `.mastdl`.
fn check_root(root: &Path) -> Result<(), UsageError> {
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(UsageError(format!("`{}` is not a folder", root.display()))),
        Err(e) => return Err(UsageError(format!("Cannot read `{}`: {e}", root.display()))),
    }
    let meta = root.join(META_DIR);
    if fs::symlink_metadata(&meta).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(UsageError(format!(
            "`{}` is a symlink: mastdl never follows one there",
            meta.display()
        )));
    }
    Ok(())
}

/// Returns the hashing progress bar: drawn on stderr when `shown`, hidden
/// otherwise.
fn progress_bar(shown: bool, total: u64) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template(
            "verify [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// How many files the records list, and their bytes.
#[derive(Debug, Clone, Copy)]
struct Recorded {
    files: usize,
    bytes: u64,
}

/// What the local check found: the problems, where the records of the
/// sound files lie (in order), and how many had no MD5 to check.
struct Checked {
    findings: Vec<Finding>,
    sound: Vec<Spot>,
    unhashed: usize,
}

/// Checks the file of every record at `spots`, one hashing thread per
/// core at most, reading the records back one at a time.
async fn check_local(
    root: &Path,
    index: &StateIndex,
    spots: &[Spot],
    bar: &ProgressBar,
) -> anyhow::Result<Checked> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(16));
    let mut out = Checked {
        findings: Vec::new(),
        sound: Vec::new(),
        unhashed: 0,
    };
    let mut checks = stream::iter(records_of(index, spots)?)
        .map(|read| {
            let (root, bar) = (root.to_path_buf(), bar.clone());
            async move {
                let (spot, r) = read?;
                let path = r.path.clone();
                let checked = tokio::task::spawn_blocking(move || check_one(&root, &r, &bar))
                    .await
                    .unwrap_or_else(|e| Local::Bad(Problem::Unreadable(e.to_string())));
                anyhow::Ok((spot, path, checked))
            }
        })
        .buffer_unordered(threads);
    while let Some(checked) = checks.next().await {
        match checked? {
            (spot, _, Local::Ok { hashed }) => {
                out.unhashed += usize::from(!hashed);
                out.sound.push(spot);
            }
            (spot, path, Local::Bad(problem)) => out.findings.push(Finding {
                path,
                problem,
                record: Some(spot),
            }),
        }
    }
    out.sound.sort_unstable();
    Ok(out)
}

/// Reads back the records at `spots`, in order.
fn records_of<'a>(
    index: &StateIndex,
    spots: &'a [Spot],
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(Spot, StateRecord)>> + 'a> {
    let context = "Cannot read the state records back from their temporary file";
    Ok(index
        .records(spots)
        .map_err(|e| anyhow::Error::new(e).context(context))?
        .map(move |r| r.map_err(|e| anyhow::Error::new(e).context(context))))
}

/// Checks one record's file: present, a regular file, its size, its MD5.
fn check_one(root: &Path, r: &StateRecord, bar: &ProgressBar) -> Local {
    if let Err(m) = crate::layout::checked_components(&r.path) {
        return Local::Bad(Problem::Unusable(format!(
            "the record's path is unusable: {m}"
        )));
    }
    if let Some(folder) = crate::transfer::part::foreign_folder(root, &r.path) {
        return Local::Bad(Problem::Unusable(format!(
            "`{}` is not a folder of DEST's own (a symlink or a file): never followed",
            escape(&folder)
        )));
    }
    let path = crate::job::local(root, &r.path);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Local::Bad(Problem::Missing),
        Err(e) => return Local::Bad(Problem::Unreadable(e.to_string())),
    };
    if !meta.is_file() {
        return Local::Bad(Problem::NotAFile);
    }
    if meta.len() != r.size {
        bar.inc(r.size);
        return Local::Bad(Problem::Size {
            recorded: r.size,
            found: meta.len(),
        });
    }
    let Some(recorded) = &r.md5 else {
        bar.inc(r.size);
        return Local::Ok { hashed: false };
    };
    match md5_of(&path, bar) {
        Ok(None) => Local::Bad(Problem::NotAFile),
        Ok(Some(found)) if found.eq_ignore_ascii_case(recorded) => Local::Ok { hashed: true },
        Ok(Some(found)) => Local::Bad(Problem::Corrupt {
            recorded: recorded.clone(),
            found,
        }),
        Err(e) => Local::Bad(Problem::Unreadable(e.to_string())),
    }
}

/// Returns the MD5 (lowercase hex) of the file at `path`, opened without
/// following a symlink nor blocking on a FIFO swapped in, read with a
/// bounded buffer; `None` when what was opened is not a regular file.
fn md5_of(path: &Path, bar: &ProgressBar) -> io::Result<Option<String>> {
    let mut o = OpenOptions::new();
    o.read(true);
    crate::transfer::part::nofollow(&mut o);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut f = match o.open(path) {
        Ok(f) => f,
        // O_NOFOLLOW on a symlink swapped in since the check.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mut h = Md5::new();
    // No larger than the file (a small file costs no 1 MiB to zero).
    let fits = usize::try_from(meta.len().saturating_add(1)).unwrap_or(HASH_BUFFER);
    let mut buf = vec![0u8; fits.clamp(4096, HASH_BUFFER)];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        bar.inc(n as u64);
    }
    Ok(Some(
        h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// Returns where the record's file came from: the archive's download URL
/// for a `mast:` URI, the recorded URL itself otherwise (re-rooted at
/// `--base-url` when given, as `fetch` re-roots script URLs).
fn source_url(cfg: &Config, r: &StateRecord) -> Option<Url> {
    if crate::layout::is_mast_uri(&r.uri) {
        let root = crate::plan::download_root(&cfg.network.base).ok()?;
        return Some(crate::plan::with_uri(&root, &r.uri));
    }
    let mut url = Url::parse(&r.uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    if cfg.network.rebase {
        url.set_scheme(cfg.network.base.scheme()).ok()?;
        url.set_host(cfg.network.base.host_str()).ok()?;
        url.set_port(cfg.network.base.port()).ok()?;
    }
    Some(url)
}

/// Asks the source of each sound file (`sound`: where their records lie,
/// in order) whether it changed, at most `-j` at once.
async fn check_remote(
    cfg: &Config,
    index: &StateIndex,
    sound: &[Spot],
) -> anyhow::Result<Vec<Finding>> {
    let net = &cfg.network;
    let http: Http = super::http(&net.base, &net.client, cfg.jobs, Vec::new())?;
    let policy = Policy::new(REMOTE_RETRIES);
    let cancel = CancellationToken::new();
    let (http, policy, cancel) = (&http, &policy, &cancel);
    let found: Vec<anyhow::Result<Option<Finding>>> = stream::iter(records_of(index, sound)?)
        .map(|read| async move {
            let (spot, r) = read?;
            let r = &r;
            let problem = match source_url(cfg, r) {
                None => Some(Problem::Unchecked(format!(
                    "no source URL is known for `{}`",
                    escape(&r.uri)
                ))),
                Some(url) => {
                    let asked = retry::run(
                        policy,
                        cancel,
                        None,
                        |_| crate::transfer::head(http, &url, cfg.network.token.as_ref()),
                        |_, _, _| {},
                    )
                    .await;
                    match asked {
                        Ok((head, _)) => {
                            // Validators recorded from the bucket say
                            // nothing of the archive's: then only the size.
                            let (etag, modified) = match r.source {
                                Source::Mast => (r.etag.as_deref(), r.last_modified.as_deref()),
                                Source::Cloud => (None, None),
                            };
                            crate::transfer::changed(&head, r.size, etag, modified)
                                .map(|why| Problem::Changed(format!("the source changed: {why}")))
                        }
                        Err(f) => Some(Problem::Unchecked(format!(
                            "cannot ask the source: {}",
                            f.message()
                        ))),
                    }
                }
            };
            Ok(problem.map(|problem| Finding {
                path: r.path.clone(),
                problem,
                record: Some(spot),
            }))
        })
        .buffer_unordered(cfg.jobs)
        .collect()
        .await;
    let mut out = Vec::new();
    for f in found {
        out.extend(f?);
    }
    Ok(out)
}

/// Returns true if and only if a file's name is mastdl's own bookkeeping:
/// a `.part`, its sidecar, a manifest (top level) or a manifest being
/// written.
fn is_own(rel: &str, top: bool) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let part = [".part", ".part.meta", ".part.ranges"]
        .iter()
        .any(|s| name.ends_with(s));
    let manifest =
        top && name.starts_with("MANIFEST") && (name.ends_with(".json") || name.ends_with(".HTML"));
    let temp = name.starts_with(".MANIFEST") && name.ends_with(".tmp");
    part || manifest || temp
}

/// Lists what lies below DEST that no record lists (symlinks are listed,
/// never followed; `.mastdl` and the manifests' pages folders are
/// skipped).
fn extra_files(root: &Path, index: &StateIndex) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut todo = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = todo.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                found.push(Finding {
                    path: if rel.is_empty() { ".".into() } else { rel },
                    problem: Problem::Unreadable(format!("cannot list this folder: {e}")),
                    record: None,
                });
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let top = rel.is_empty();
            if top && name == META_DIR {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && top && crate::manifest::is_pages_folder(&name) {
                // A multi-page MANIFEST.HTML's pages.
                continue;
            }
            let path = if top { name } else { format!("{rel}/{name}") };
            if is_dir {
                todo.push((entry.path(), path));
            } else if !index.lists(&path) && !is_own(&path, top) {
                found.push(Finding {
                    path,
                    problem: Problem::Extra,
                    record: None,
                });
            }
        }
    }
    found
}

/// Returns `s` quoted for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Returns the command that repairs what can be repaired: long options
/// with `=` and `--` before DEST, so a DEST starting with `-` stays one.
fn repair_command(cfg: &Config) -> String {
    let dest = sh_quote(&cfg.dest.display().to_string());
    let remote = if cfg.remote { " --remote" } else { "" };
    let base = if cfg.network.rebase {
        format!(" --base-url={}", sh_quote(cfg.network.base.as_str()))
    } else {
        String::new()
    };
    format!(
        "mastdl verify{remote}{base} --print-repair -- {dest} | mastdl fetch --force --dest={dest}{base} -"
    )
}

/// What `--print-repair` prints: one `curl -o PATH URL` line per file to
/// fetch again, and the repairable records left out of it.
struct Repair {
    lines: Vec<String>,
    /// The escaped path of each repairable record left out, and why.
    left_out: Vec<(String, &'static str)>,
}

impl Repair {
    /// Returns the repair script's lines for the repairable findings.
    /// A record with no known source, or whose path or URL holds a control
    /// character, is left out (said on stderr): the script never carries
    /// one to the terminal or the reader.
    fn of(cfg: &Config, index: &StateIndex, findings: &[Finding]) -> Repair {
        let mut repair = Repair {
            lines: Vec::new(),
            left_out: Vec::new(),
        };
        let mut seen = HashSet::new();
        for f in findings.iter().filter(|f| f.problem.repairable()) {
            let Some(spot) = f.record else {
                continue;
            };
            if !seen.insert(spot) {
                continue;
            }
            let r = match index.read(spot) {
                Ok(r) => r,
                Err(_) => {
                    let why = "its record could not be read back";
                    repair.left_out.push((escape(&f.path), why));
                    continue;
                }
            };
            let r = &r;
            let Some(url) = source_url(cfg, r) else {
                repair
                    .left_out
                    .push((escape(&r.path), "no source URL is known"));
                continue;
            };
            let control = |s: &str| s.chars().any(char::is_control);
            if control(&r.path) || control(url.as_str()) {
                repair
                    .left_out
                    .push((escape(&r.path), "its path or URL holds a control character"));
                continue;
            }
            repair.lines.push(format!(
                "curl -o {} {}",
                sh_quote(&r.path),
                sh_quote(url.as_str())
            ));
        }
        repair
    }

    /// Prints the script on stdout. With nothing to repair it is a lone
    /// comment: an empty list, which `mastdl fetch` reads as nothing to
    /// do (exit 0), so `verify --print-repair | fetch -` passes on a
    /// clean mirror.
    fn print(&self) -> io::Result<()> {
        use std::io::Write as _;
        let mut out = io::BufWriter::new(io::stdout().lock());
        if self.lines.is_empty() {
            writeln!(out, "# mastdl verify --print-repair: nothing to repair")?;
            return out.flush();
        }
        writeln!(out, "#!/bin/sh")?;
        writeln!(
            out,
            "# Written by `mastdl verify --print-repair`: run with `mastdl fetch --force --dest=DEST -`, never with sh."
        )?;
        for line in &self.lines {
            writeln!(out, "{line}")?;
        }
        out.flush()
    }
}

/// Prints one line (or JSON event) per problem, the summary and the
/// repair command on stderr.
fn report(
    cfg: &Config,
    recorded: Recorded,
    findings: &[Finding],
    repair: &Repair,
    unhashed: usize,
    elapsed: Duration,
) {
    let count = |kind: Kind| findings.iter().filter(|f| f.problem.kind() == kind).count();
    let bad_records: HashSet<Spot> = findings.iter().filter_map(|f| f.record).collect();
    let ok = recorded.files.saturating_sub(bad_records.len());
    let bytes = recorded.bytes;
    let left_out =
        |path: &str, why: &str| format!("verify: `{path}` is left out of the repair script: {why}");
    let command = (!repair.lines.is_empty()).then(|| repair_command(cfg));
    if cfg.json {
        for f in findings {
            progress::emit(json!({"ts": progress::ts(), "event": "problem",
                "problem": f.problem.kind().key(), "path": f.path,
                "message": f.problem.detail()}));
        }
        for (path, why) in &repair.left_out {
            progress::emit(json!({"ts": progress::ts(), "event": "message",
                "level": "warn", "message": left_out(path, why)}));
        }
        let mut summary = json!({"ts": progress::ts(), "event": "summary",
            "recorded": recorded.files, "ok": ok,
            "unhashed": unhashed, "bytes": bytes, "duration_ms": elapsed.as_millis() as u64,
            "clean": findings.is_empty(), "repair": command});
        for kind in Kind::ALL {
            summary[kind.key()] = json!(count(kind));
        }
        progress::emit(summary);
        return;
    }
    for f in findings {
        let detail = f
            .problem
            .detail()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        progress::say(format!(
            "{:<10} {}{}",
            f.problem.kind().word(),
            escape(&f.path),
            escape(&detail)
        ));
    }
    for (path, why) in &repair.left_out {
        progress::say(left_out(path, why));
    }
    let mut parts = vec![format!("{ok} ok")];
    for kind in Kind::ALL {
        let n = count(kind);
        if n > 0 {
            parts.push(format!("{n} {}", kind.phrase()));
        }
    }
    let unhashed = if unhashed > 0 {
        format!(" ({unhashed} without a recorded MD5: size checked only)")
    } else {
        String::new()
    };
    progress::say(format!(
        "verify: {} files recorded ({}): {} in {:.1}s{unhashed}",
        recorded.files,
        human_bytes(bytes),
        parts.join(", "),
        elapsed.as_secs_f64()
    ));
    if let Some(cmd) = command {
        progress::say(format!("repair: {cmd}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_files_are_not_extra() {
        assert!(is_own("HST/a/x.fits.part", false));
        assert!(is_own("HST/a/x.fits.part.meta", false));
        assert!(is_own("MANIFEST.json", true));
        assert!(is_own("MANIFEST.0-of-2.HTML", true));
        assert!(!is_own("HST/MANIFEST.json", false));
        assert!(!is_own("HST/a/x.fits", false));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_swapped_in_is_never_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.fits");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // As if swapped in after `check_one` saw a regular file there.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(md5_of(&fifo, &ProgressBar::hidden()).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("md5_of blocked on a FIFO");
        assert_eq!(got, Ok(None));
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
