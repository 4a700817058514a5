//! The manifest: what was requested and what became of it, as
//! `MANIFEST.json` (for machines) and `MANIFEST.HTML` (for people).
//!
//! Both are written as streams, one row at a time (memory does not grow
//! with the number of rows), each to a temporary file renamed into place
//! at the end: a run cut short leaves the previous manifest or a complete
//! new one. When the disk has room to spare both are written at once (two
//! threads); otherwise `MANIFEST.json` comes first, then `MANIFEST.HTML`,
//! so a disk with room for one keeps the one machines read.
//!
//! The HTML is self-contained: inline CSS and SVG, no scripts, every value
//! escaped, only relative links. Up to [`DEFAULT_PAGE_ROWS`] rows it is
//! one page; beyond, `MANIFEST.HTML` holds the summary, the counts by
//! status and by collection, the failed files (up to
//! [`MAX_FAILURES_LISTED`]), the timeline and links to pages of rows in a
//! folder beside it (`MANIFEST.pages-XXXXXXXX/000001.html`, …), each page
//! linked to the next; a new manifest's folder replaces the old one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where a job's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Source {
    /// The MAST archive (or, from a script, the URL it names).
    Mast,
    /// MAST's public AWS Open Data bucket.
    Cloud,
}

/// What became of one requested file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Status {
    Complete,
    Skipped,
    Failed,
    /// Cut short or kept from starting by SIGINT/SIGTERM (the `.part`, if
    /// any, is kept for the next run).
    Interrupted,
}

impl Status {
    /// Returns the status as the manifest spells it.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Status::Complete => "COMPLETE",
            Status::Skipped => "SKIPPED",
            Status::Failed => "FAILED",
            Status::Interrupted => "INTERRUPTED",
        }
    }
}

/// One row of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    pub(crate) uri: String,
    pub(crate) url: String,
    pub(crate) path: String,
    pub(crate) status: Status,
    /// The file's size (0 when there is no file).
    pub(crate) bytes: u64,
    pub(crate) http_status: Option<u16>,
    pub(crate) attempts: u32,
    pub(crate) message: Option<String>,
    pub(crate) source: Source,
}

/// When a file's transfer ran, relative to the run's start (for the timeline).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Timing {
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    /// Body bytes received.
    pub(crate) received: u64,
}

/// One bar of the HTML timeline: a file's transfer, or a whole shard.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) status: Status,
    pub(crate) timing: Timing,
}

/// The whole manifest, exactly the contract's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) tool: String,
    pub(crate) version: String,
    pub(crate) started: String,
    pub(crate) finished: String,
    pub(crate) requested: usize,
    pub(crate) complete: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    /// Files the interruption cut short or kept from starting (absent in
    /// manifests written before the status existed).
    #[serde(default)]
    pub(crate) interrupted: usize,
    /// Body bytes this run transferred.
    pub(crate) bytes: u64,
    /// What the plan left out and why (links a wget listing skipped);
    /// absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) notes: Vec<String>,
    pub(crate) files: Vec<FileRecord>,
}

impl Manifest {
    /// Returns a manifest for `files`, with the totals counted.
    pub(crate) fn new(
        started: String,
        finished: String,
        bytes: u64,
        files: Vec<FileRecord>,
    ) -> Manifest {
        let count = |s: Status| files.iter().filter(|f| f.status == s).count();
        Manifest {
            tool: "mastdl".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            started,
            finished,
            requested: files.len(),
            complete: count(Status::Complete),
            skipped: count(Status::Skipped),
            failed: count(Status::Failed),
            interrupted: count(Status::Interrupted),
            bytes,
            notes: Vec::new(),
            files,
        }
    }
}

/// Extra facts for the HTML page.
#[derive(Debug, Clone, Default)]
pub(crate) struct HtmlContext {
    /// The "Logged In User": MAST's ezid, or `anonymous`.
    pub(crate) user: String,
    /// Seconds the run took.
    pub(crate) seconds: f64,
    /// The timeline's bars (at most [`MAX_BARS`] are drawn).
    pub(crate) bars: Vec<Bar>,
    /// The number of transfers, of which `bars` may hold only the first.
    pub(crate) transfers: usize,
}

/// The manifest's summary: everything but the rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    pub(crate) started: String,
    pub(crate) finished: String,
    pub(crate) requested: usize,
    pub(crate) complete: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    pub(crate) interrupted: usize,
    /// Body bytes this run transferred.
    pub(crate) bytes: u64,
    /// What the plan left out and why (none: no `notes` key).
    pub(crate) notes: Vec<String>,
}

impl Header {
    /// Returns the summary of `m`.
    pub(crate) fn of(m: &Manifest) -> Header {
        Header {
            started: m.started.clone(),
            finished: m.finished.clone(),
            requested: m.requested,
            complete: m.complete,
            skipped: m.skipped,
            failed: m.failed,
            interrupted: m.interrupted,
            bytes: m.bytes,
            notes: m.notes.clone(),
        }
    }
}

/// One row to write, with what the HTML's "Access" column says of it.
pub(crate) struct Row {
    pub(crate) file: FileRecord,
    pub(crate) access: &'static str,
}

/// What became of each manifest file.
#[derive(Debug)]
pub(crate) struct Saved {
    pub(crate) json: io::Result<()>,
    pub(crate) html: io::Result<()>,
}

impl Saved {
    /// Returns the first error, naming the file it cost.
    pub(crate) fn error(&self, dest: &Path, stem: &str) -> Option<String> {
        let (name, e) = match (&self.json, &self.html) {
            (Err(e), _) => (format!("{stem}.json"), e),
            (_, Err(e)) => (format!("{stem}.HTML"), e),
            _ => return None,
        };
        Some(format!("Cannot write `{}`: {e}", dest.join(name).display()))
    }
}

/// Rows per HTML page (and the most a one-page manifest holds).
pub(crate) const DEFAULT_PAGE_ROWS: usize = 1000;
/// The test knob that sets the rows per HTML page.
pub(crate) const PAGE_ROWS_ENV: &str = "MASTDL_HTML_PAGE_ROWS";
/// The most failed files the first page of a paged manifest lists.
pub(crate) const MAX_FAILURES_LISTED: usize = 1000;
/// The most transfers the timeline draws.
pub(crate) const MAX_BARS: usize = 500;

/// Returns the rows per HTML page: [`DEFAULT_PAGE_ROWS`], or the test knob.
fn page_rows() -> usize {
    std::env::var(PAGE_ROWS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_PAGE_ROWS)
}

/// Returns the current time as RFC 3339 (UTC, seconds).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: a temporary file beside it with an
/// unpredictable name, created exclusively (never through a planted
/// symlink), synced, then renamed over `path` (a rename replaces a symlink
/// at `path`, it does not follow it). On any failure the temporary file is
/// removed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `DEST/<stem>.json` and `DEST/<stem>.HTML` for a manifest held
/// in memory (see [`save_streamed`]).
pub(crate) fn save(dest: &Path, stem: &str, m: &Manifest, ctx: &HtmlContext) -> Saved {
    let rows = |start: usize| {
        Ok(m.files.iter().skip(start).map(|f| {
            Ok(Row {
                file: f.clone(),
                access: "",
            })
        }))
    };
    save_streamed(dest, stem, &Header::of(m), ctx, rows)
}

/// Writes `DEST/<stem>.json`, then `DEST/<stem>.HTML` (and its pages),
/// each from its own passes over the rows (`rows(k)`: the rows from row `k`
/// on; the HTML pages are written in two halves, each on its own thread),
/// every registered secret scrubbed (a
/// server may have echoed the token into a message). Each file is written
/// to a temporary file and renamed into place only when whole; one that
/// cannot be written (a full disk) leaves the previous one and no
/// temporary, and does not keep the other from being written.
pub(crate) fn save_streamed<I>(
    dest: &Path,
    stem: &str,
    header: &Header,
    ctx: &HtmlContext,
    rows: impl Fn(usize) -> io::Result<I> + Sync,
) -> Saved
where
    I: Iterator<Item = io::Result<Row>>,
{
    if let Err(e) = fs::create_dir_all(dest) {
        let again = io::Error::new(e.kind(), e.to_string());
        return Saved {
            json: Err(e),
            html: Err(again),
        };
    }
    remove_stale_temporaries(dest, stem);
    let json = || rows(0).and_then(|rows| write_json(dest, stem, header, rows));
    let html = || write_html(dest, stem, header, ctx, &rows);
    if room_for_both(dest, header.requested) {
        // Room to spare: both at once, on two cores.
        return std::thread::scope(|s| {
            let page = s.spawn(html);
            let json = json();
            let html = page
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the HTML writer panicked")));
            Saved { json, html }
        });
    }
    let json = json();
    let html = html();
    Saved { json, html }
}

/// Returns true if and only if DEST's file system has room for both
/// manifests of `rows` many times over (then they are written at once;
/// otherwise one after the other, `MANIFEST.json` first).
fn room_for_both(dest: &Path, rows: usize) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dest.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: an all-zero `statvfs` is a valid value for statvfs to fill.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid place for the answer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return false;
        }
        let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
        // About 300 bytes a row in each manifest, and four times that spare.
        free / 4 > (rows as u64).saturating_mul(600).saturating_add(1 << 20)
    }
    #[cfg(not(unix))]
    {
        let _ = (dest, rows);
        false
    }
}

/// Removes the temporary files a run of `stem` killed while writing its
/// manifests left (DEST's lock keeps every other run of `stem` away).
fn remove_stale_temporaries(dest: &Path, stem: &str) {
    let prefixes = [format!(".{stem}.json."), format!(".{stem}.HTML.")];
    let Ok(entries) = fs::read_dir(dest) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = prefixes.iter().any(|p| {
            name.strip_prefix(p.as_str())
                .and_then(|r| r.strip_suffix(".tmp"))
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
        });
        if ours && e.file_type().is_ok_and(|t| !t.is_dir()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Returns a temporary file beside `path` with an unpredictable name,
/// created exclusively (never through a planted symlink).
fn temp_beside(dir: &Path, name: &str) -> io::Result<tempfile::NamedTempFile> {
    umask_decides(&mut tempfile::Builder::new(), 0o666)
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
}

/// Makes `b` create with `mode` less the umask, as every other file is
/// created (not the 0600 of a temporary file).
fn umask_decides<'a, 'b>(
    b: &'b mut tempfile::Builder<'a, 'a>,
    mode: u32,
) -> &'b mut tempfile::Builder<'a, 'a> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        b
    }
}

/// Flushes `w`, syncs its file and renames it over `path`.
fn persist(w: BufWriter<tempfile::NamedTempFile>, path: &Path) -> io::Result<()> {
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `bytes` scrubbed of secrets.
fn put(w: &mut impl Write, text: &str) -> io::Result<()> {
    w.write_all(crate::token::scrub(text).as_bytes())
}

/// Writes `DEST/<stem>.json`: the schema's keys in their order, then one
/// row per line.
fn write_json(
    dest: &Path,
    stem: &str,
    h: &Header,
    rows: impl Iterator<Item = io::Result<Row>>,
) -> io::Result<()> {
    let name = format!("{stem}.json");
    let mut w = BufWriter::with_capacity(1 << 16, temp_beside(dest, &name)?);
    let s = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let head = format!(
        "{{\n  \"tool\": \"mastdl\",\n  \"version\": {},\n  \"started\": {},\n  \"finished\": {},\n  \
         \"requested\": {},\n  \"complete\": {},\n  \"skipped\": {},\n  \"failed\": {},\n  \"interrupted\": {},\n  \"bytes\": {},\n  {}\"files\": [",
        s(env!("CARGO_PKG_VERSION")),
        s(&h.started),
        s(&h.finished),
        h.requested,
        h.complete,
        h.skipped,
        h.failed,
        h.interrupted,
        h.bytes,
        notes_json(&h.notes)
    );
    put(&mut w, &head)?;
    // One buffer for every row: serialised into it, scrubbed, written.
    let mut line: Vec<u8> = Vec::with_capacity(512);
    let (mut sent, mut marked) = (0u64, 0u64);
    for (i, row) in rows.enumerate() {
        let row = row?;
        line.clear();
        line.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
        json_row(&mut line, &row.file)?;
        w.write_all(&crate::token::scrub_bytes(&line))?;
        sent += line.len() as u64;
        if sent - marked >= WRITEBACK_STEP {
            let on_file = sent - w.buffer().len() as u64;
            start_writeback(w.get_ref().as_file(), marked, on_file);
            marked = on_file;
        }
    }
    put(&mut w, "\n  ]\n}\n")?;
    persist(w, &dest.join(name))
}

/// How much of a large manifest is written before its writing back to
/// disk is started ([`start_writeback`]).
const WRITEBACK_STEP: u64 = 32 << 20;

/// Starts writing bytes `from..to` of `file` back to disk without waiting
/// (Linux's `sync_file_range`), so the `fsync` before the manifest's
/// rename finds little left to write; elsewhere nothing.
fn start_writeback(file: &File, from: u64, to: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let (Ok(at), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from)))
        else {
            return;
        };
        // SAFETY: an open descriptor; the call only starts the writeback
        // of that range (a failure costs nothing: the fsync still waits).
        let _ = unsafe {
            libc::sync_file_range(file.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, to);
}

/// Appends `f` as `serde_json` writes it (compact, fields in their
/// order), without its per-byte escaping loop for the strings that need no
/// escape (nearly all).
fn json_row(out: &mut Vec<u8>, f: &FileRecord) -> io::Result<()> {
    out.extend_from_slice(b"{\"uri\":");
    json_str(out, &f.uri)?;
    out.extend_from_slice(b",\"url\":");
    json_str(out, &f.url)?;
    out.extend_from_slice(b",\"path\":");
    json_str(out, &f.path)?;
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(f.status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"bytes\":");
    push_digits(out, f.bytes);
    out.extend_from_slice(b",\"http_status\":");
    match f.http_status {
        Some(h) => push_digits(out, u64::from(h)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"attempts\":");
    push_digits(out, u64::from(f.attempts));
    out.extend_from_slice(b",\"message\":");
    match &f.message {
        Some(m) => json_str(out, m)?,
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(match f.source {
        Source::Mast => b",\"source\":\"mast\"}",
        Source::Cloud => b",\"source\":\"cloud\"}",
    });
    Ok(())
}

/// Appends `s` as a JSON string, as `serde_json` writes it.
fn json_str(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    // Told 16 bytes at a time, without a branch per byte.
    let escaped = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = s.as_bytes().chunks_exact(16);
    let plain = blocks.all(|c| !c.iter().fold(false, |any, &b| any | escaped(b)))
        && !blocks.remainder().iter().any(|&b| escaped(b));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    // Writing a string into memory cannot fail.
    serde_json::to_writer(&mut *out, s).map_err(io::Error::other)
}

/// Appends `n` in decimal to `out` (what `{}` writes).
fn push_digits(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Returns the `"notes"` member and its separator, or nothing when there
/// are no notes (the key is then absent).
fn notes_json(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let list = serde_json::to_string(notes).unwrap_or_else(|_| "[]".into());
    format!("\"notes\": {list},\n  ")
}

/// Writes `DEST/<stem>.HTML`: one page, or a first page and pages of rows.
fn write_html<I>(
    dest: &Path,
    stem: &str,
    h: &Header,
    ctx: &HtmlContext,
    rows: &(impl Fn(usize) -> io::Result<I> + Sync),
) -> io::Result<()>
where
    I: Iterator<Item = io::Result<Row>>,
{
    let name = format!("{stem}.HTML");
    let per_page = page_rows();
    let mut w = BufWriter::with_capacity(1 << 16, temp_beside(dest, &name)?);
    if h.requested <= per_page {
        put(&mut w, &page_head(h, ctx, "MAST download manifest"))?;
        put(&mut w, &timeline(ctx))?;
        put(&mut w, TABLE_HEAD)?;
        let mut line = String::new();
        for (i, row) in rows(0)?.enumerate() {
            line.clear();
            row_html(&mut line, i, &row?, &ctx.user, "");
            put(&mut w, &line)?;
        }
        put(&mut w, "</table>\n</body></html>\n")?;
        persist(w, &dest.join(&name))?;
        remove_old_pages(dest, stem, None);
        return Ok(());
    }
    let dir = umask_decides(&mut tempfile::Builder::new(), 0o777)
        .prefix(&format!("{stem}.pages-"))
        .suffix("")
        .rand_bytes(8)
        .tempdir_in(dest)?;
    let dir_name = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pages = h.requested.div_ceil(per_page);
    // The pages in two halves, each on its own thread (a second core,
    // beside the JSON writer's), each with its digest of what it wrote.
    let half = pages.div_ceil(2);
    let write = |from: usize, to: usize| {
        let at = PageAt {
            n: from,
            pages,
            per_page,
            requested: h.requested,
        };
        let rows = rows((from - 1) * per_page)?.take((to + 1 - from) * per_page);
        write_pages(dir.path(), stem, &ctx.user, at, to, rows)
    };
    let (first, second) = std::thread::scope(|s| {
        let second = (half < pages).then(|| s.spawn(|| write(half + 1, pages)));
        let first = write(1, half);
        let second = second.map(|t| {
            t.join()
                .unwrap_or_else(|_| Err(io::Error::other("the HTML writer panicked")))
        });
        (first, second)
    });
    let mut digest = first?;
    if let Some(rest) = second {
        digest.merge(rest?);
    }
    put(&mut w, &page_head(h, ctx, "MAST download manifest"))?;
    put(&mut w, &digest.html(&dir_name, h))?;
    put(&mut w, &timeline(ctx))?;
    put(&mut w, &index_html(&dir_name, h.requested, per_page, pages))?;
    put(&mut w, "</body></html>\n")?;
    // The pages first, then the page that links them: a cut run leaves
    // the old first page with its old folder, or the new with the new.
    let kept = dir.keep();
    if let Err(e) = persist(w, &dest.join(&name)) {
        let _ = fs::remove_dir_all(&kept);
        return Err(e);
    }
    remove_old_pages(dest, stem, Some(&dir_name));
    Ok(())
}

/// Writes pages `at.n` to `last` of the rows in `dir` (`rows`: theirs, from
/// the first row of page `at.n`); returns the digest of those rows.
fn write_pages(
    dir: &Path,
    stem: &str,
    user: &str,
    at: PageAt,
    last: usize,
    rows: impl Iterator<Item = io::Result<Row>>,
) -> io::Result<Digest> {
    let PageAt {
        n: from,
        pages,
        per_page,
        requested,
    } = at;
    let mut digest = Digest::default();
    let mut page: Option<BufWriter<File>> = None;
    let mut line = String::new();
    let first = (from - 1) * per_page;
    for (i, row) in (first..).zip(rows) {
        let row = row?;
        let n = i / per_page + 1;
        if i % per_page == 0 {
            if let Some(p) = page.take() {
                end_page(p, n - 1, pages, stem)?;
            }
            let at = PageAt {
                n,
                pages,
                per_page,
                requested,
            };
            page = Some(start_page(dir, at, i, stem)?);
        }
        digest.add(i, n, &row);
        if let Some(p) = page.as_mut() {
            line.clear();
            row_html(&mut line, i, &row, user, "../");
            put(p, &line)?;
        }
    }
    if let Some(p) = page.take() {
        end_page(p, last, pages, stem)?;
    }
    Ok(digest)
}

/// Returns true if and only if `rest` is what follows `.pages-` in the
/// name of a manifest's pages folder: 8 random letters and digits.
fn is_pages_id(rest: &str) -> bool {
    rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Returns true if and only if `name`, at DEST's top, is the pages folder
/// of a manifest (`MANIFEST.pages-XXXXXXXX`, a shard's
/// `MANIFEST.K-of-N.pages-XXXXXXXX`): mastdl's own, no product.
pub(crate) fn is_pages_folder(name: &str) -> bool {
    name.starts_with("MANIFEST")
        && name
            .rsplit_once(".pages-")
            .is_some_and(|(_, rest)| is_pages_id(rest))
}

/// Removes the page folders of earlier manifests of `stem` (all but `keep`).
fn remove_old_pages(dest: &Path, stem: &str, keep: Option<&str>) {
    let prefix = format!("{stem}.pages-");
    let Ok(entries) = fs::read_dir(dest) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.strip_prefix(&prefix).is_some_and(is_pages_id);
        if ours && Some(name.as_str()) != keep {
            // A symlink there is removed, never followed.
            let _ = match e.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(e.path()),
                _ => fs::remove_file(e.path()),
            };
        }
    }
}

/// Returns the file name of page `n` (1-based).
fn page_file(n: usize) -> String {
    format!("{n:06}.html")
}

/// Where a page is in the pages folder.
struct PageAt {
    /// 1-based.
    n: usize,
    pages: usize,
    per_page: usize,
    requested: usize,
}

/// Starts page `at.n`, whose first row is row `first` (0-based).
fn start_page(dir: &Path, at: PageAt, first: usize, stem: &str) -> io::Result<BufWriter<File>> {
    let PageAt {
        n,
        pages,
        per_page,
        requested,
    } = at;
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    let mut w = BufWriter::with_capacity(1 << 16, o.open(dir.join(page_file(n)))?);
    let last = (first + per_page).min(requested);
    let title = format!(
        "MAST download manifest: rows {}&ndash;{last} (page {n} of {pages})",
        first + 1
    );
    put(
        &mut w,
        &format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>{CSS}</style></head><body>\n<h1>{title}</h1>\n{}{TABLE_HEAD}",
            nav(n, pages, stem)
        ),
    )?;
    Ok(w)
}

/// Ends page `n` of `pages` and closes it.
fn end_page(mut w: BufWriter<File>, n: usize, pages: usize, stem: &str) -> io::Result<()> {
    put(
        &mut w,
        &format!("</table>\n{}</body></html>\n", nav(n, pages, stem)),
    )?;
    w.flush()
}

/// Returns the links of page `n`: the first page, the previous, the next.
fn nav(n: usize, pages: usize, stem: &str) -> String {
    // Our own names (`MANIFEST.K-of-N.HTML`, `000001.html`) need no encoding.
    let mut s = format!(
        "<p class=\"nav\"><a href=\"../{}.HTML\">summary</a>",
        escape_html(stem)
    );
    if n > 1 {
        let _ = write!(
            s,
            " &middot; <a href=\"{}\" rel=\"prev\">previous page</a>",
            page_file(n - 1)
        );
    }
    if n < pages {
        let _ = write!(
            s,
            " &middot; <a href=\"{}\" rel=\"next\">next page</a>",
            page_file(n + 1)
        );
    }
    s.push_str("</p>\n");
    s
}

/// What the first page of a paged manifest sums up while the rows pass.
#[derive(Default)]
struct Digest {
    /// Collection -> files by status (complete, skipped, failed, interrupted).
    collections: BTreeMap<String, [usize; 4]>,
    /// The first failed rows: (row, page, path, message).
    failures: Vec<(usize, usize, String, String)>,
    failed: usize,
}

impl Digest {
    fn add(&mut self, i: usize, page: usize, row: &Row) {
        let f = &row.file;
        let coll = crate::layout::collection(&f.uri);
        let coll = if coll.is_empty() {
            f.path.split('/').next().unwrap_or("")
        } else {
            coll
        };
        let slot = match f.status {
            Status::Complete => 0,
            Status::Skipped => 1,
            Status::Failed => 2,
            Status::Interrupted => 3,
        };
        match self.collections.get_mut(coll) {
            Some(c) => c[slot] += 1,
            None => {
                let mut c = [0; 4];
                c[slot] = 1;
                self.collections.insert(coll.to_string(), c);
            }
        }
        if f.status == Status::Failed {
            self.failed += 1;
            if self.failures.len() < MAX_FAILURES_LISTED {
                let message = f.message.clone().unwrap_or_default();
                self.failures.push((i, page, f.path.clone(), message));
            }
        }
    }

    /// Adds the digest of the rows after this one's.
    fn merge(&mut self, later: Digest) {
        for (c, counts) in later.collections {
            let mine = self.collections.entry(c).or_default();
            for (m, n) in mine.iter_mut().zip(counts) {
                *m += n;
            }
        }
        self.failed += later.failed;
        let room = MAX_FAILURES_LISTED.saturating_sub(self.failures.len());
        self.failures.extend(later.failures.into_iter().take(room));
    }

    fn html(&self, dir: &str, h: &Header) -> String {
        let e = escape_html;
        let mut s = String::new();
        let _ = write!(
            s,
            "<h2>By status</h2>\n<table><tr><th>Status</th><th>Files</th></tr>\n\
<tr><td class=\"COMPLETE\">COMPLETE</td><td class=\"n\">{}</td></tr>\n\
<tr><td class=\"SKIPPED\">SKIPPED</td><td class=\"n\">{}</td></tr>\n\
<tr><td class=\"FAILED\">FAILED</td><td class=\"n\">{}</td></tr>\n\
<tr><td class=\"INTERRUPTED\">INTERRUPTED</td><td class=\"n\">{}</td></tr>\n</table>\n\
<h2>By collection</h2>\n<table><tr><th>Collection</th><th>Complete</th><th>Skipped</th><th>Failed</th><th>Interrupted</th></tr>\n",
            h.complete, h.skipped, h.failed, h.interrupted
        );
        for (c, [ok, skip, fail, cut]) in &self.collections {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td class=\"n\">{ok}</td><td class=\"n\">{skip}</td><td class=\"n\">{fail}</td><td class=\"n\">{cut}</td></tr>",
                e(c)
            );
        }
        s.push_str("</table>\n");
        let _ = writeln!(s, "<h2>Failed files: {}</h2>", self.failed);
        if !self.failures.is_empty() {
            s.push_str("<table><tr><th>Row</th><th>File</th><th>Message</th></tr>\n");
            for (i, page, path, message) in &self.failures {
                let _ = writeln!(
                    s,
                    "<tr><td class=\"n\"><a href=\"{}/{}#r{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
                    e(dir),
                    page_file(*page),
                    i + 1,
                    i + 1,
                    e(path),
                    e(message)
                );
            }
            s.push_str("</table>\n");
        }
        if self.failed > self.failures.len() {
            let _ = writeln!(
                s,
                "<p>The first {} failed files are listed; the other {} are marked FAILED in the pages \
                 below (and in the JSON manifest).</p>",
                self.failures.len(),
                self.failed - self.failures.len()
            );
        }
        s
    }
}

/// Returns the first page's index of the pages of rows.
fn index_html(dir: &str, rows: usize, per_page: usize, pages: usize) -> String {
    let mut s = format!(
        "<h2>All files</h2>\n<p>{rows} rows in {pages} pages of {per_page}, in the order of the \
         input:</p>\n<ol class=\"pages\">\n"
    );
    let dir = escape_html(dir);
    for n in 1..=pages {
        let first = (n - 1) * per_page + 1;
        let last = (n * per_page).min(rows);
        let _ = writeln!(
            s,
            "<li><a href=\"{dir}/{}\">rows {first}&ndash;{last}</a></li>",
            page_file(n)
        );
    }
    s.push_str("</ol>\n");
    s
}

/// Reads a manifest JSON file.
pub(crate) fn load(path: &Path) -> anyhow::Result<Manifest> {
    let text = fs::read(path)?;
    Ok(serde_json::from_slice(&text)?)
}

/// Returns `s` escaped for HTML text and attributes.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// Appends `s` escaped for HTML text and attributes to `out`.
fn escape_into(out: &mut String, s: &str) {
    // Most values need no escape: copy runs of plain bytes at once.
    let plain = |b: u8| {
        !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'') && (b >= 0x20 && b != 0x7f) && b < 0x80
    };
    // A value plain throughout (nearly every one) is told 16 bytes at a
    // time, without a branch per byte, and copied whole.
    let mut blocks = s.as_bytes().chunks_exact(16);
    if blocks.all(|c| c.iter().fold(true, |ok, &b| ok & plain(b)))
        && blocks.remainder().iter().all(|&b| plain(b))
    {
        out.push_str(s);
        return;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(|&b| plain(b)).count();
        out.push_str(&rest[..n]);
        rest = &rest[n..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
}

/// Appends the relative link of a `/`-separated path to `out`,
/// percent-encoded (so nothing in it needs an HTML escape).
fn href_into(out: &mut String, path: &str) {
    // Each segment percent-encoded as `NON_ALPHANUMERIC` does (every byte
    // but an ASCII letter or digit, upper-case hex), byte by byte.
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = path;
    while !rest.is_empty() {
        // A run of bytes kept as they are, copied at once.
        let n = rest
            .bytes()
            .take_while(|&b| b == b'/' || b.is_ascii_alphanumeric())
            .count();
        out.push_str(&rest[..n]);
        let Some(&b) = rest.as_bytes().get(n) else {
            break;
        };
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
        // The bytes of a character beyond ASCII are encoded one by one.
        let mut next = n + 1;
        while !rest.is_char_boundary(next) {
            let b = rest.as_bytes()[next];
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
            next += 1;
        }
        rest = &rest[next..];
    }
}

/// Returns a byte count for people: `1.5 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;font-size:.85em}\
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#eee}td.n{text-align:right}.COMPLETE{color:#1a7f37}.SKIPPED{color:#555}\
.FAILED{color:#c62828;font-weight:bold}.INTERRUPTED{color:#ef6c00}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}\
dt{font-weight:bold}svg{border:1px solid #ccc;background:#fafafa}";

/// The header row of the table of files.
const TABLE_HEAD: &str =
    "<table>\n<tr><th>URI</th><th>File</th><th>Access</th><th>Status</th><th>Logged In User</th>\
<th>Size</th><th>HTTP</th><th>Attempts</th><th>Source</th><th>Message</th></tr>\n";

/// Returns the top of a page: the title and the run's summary.
fn page_head(h: &Header, ctx: &HtmlContext, title: &str) -> String {
    let e = escape_html;
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
<style>{CSS}</style></head><body>\n<h1>{title}</h1>\n<h2>Total Files: {}</h2>\n<dl>\
<dt>Tool</dt><dd>mastdl {}</dd><dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd>\
<dt>Duration</dt><dd>{:.1} s</dd><dt>Logged In User</dt><dd>{}</dd><dt>Requested</dt><dd>{}</dd>\
<dt>Complete</dt><dd>{}</dd><dt>Skipped</dt><dd>{}</dd><dt>Failed</dt><dd>{}</dd>\
<dt>Interrupted</dt><dd>{}</dd><dt>Transferred</dt><dd>{} ({} bytes)</dd></dl>\n{}",
        h.requested,
        e(env!("CARGO_PKG_VERSION")),
        e(&h.started),
        e(&h.finished),
        ctx.seconds,
        e(&ctx.user),
        h.requested,
        h.complete,
        h.skipped,
        h.failed,
        h.interrupted,
        human_bytes(h.bytes),
        h.bytes,
        notes_html(&h.notes)
    )
}

/// Returns the "Notes" list of a page's head (empty without notes).
fn notes_html(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut s = String::from("<h2>Notes</h2>\n<ul>\n");
    for n in notes {
        let _ = writeln!(s, "<li>{}</li>", escape_html(n));
    }
    s.push_str("</ul>\n");
    s
}

/// Appends row `i` (0-based) of the table to `out`; `up` leads the link
/// to the file from a page in the pages folder.
fn row_html(out: &mut String, i: usize, row: &Row, user: &str, up: &str) {
    let f = &row.file;
    let status = f.status.as_str();
    out.push_str("<tr id=\"r");
    push_number(out, i as u64 + 1);
    out.push_str("\"><td>");
    escape_into(out, &f.uri);
    out.push_str("</td><td>");
    if matches!(f.status, Status::Failed | Status::Interrupted) {
        escape_into(out, &f.path);
    } else {
        out.push_str("<a href=\"");
        out.push_str(up);
        href_into(out, &f.path);
        out.push_str("\">");
        escape_into(out, &f.path);
        out.push_str("</a>");
    }
    out.push_str("</td><td>");
    escape_into(out, row.access);
    out.push_str("</td><td class=\"");
    out.push_str(status);
    out.push_str("\">");
    out.push_str(status);
    out.push_str("</td><td>");
    escape_into(out, user);
    out.push_str("</td><td class=\"n\">");
    push_number(out, f.bytes);
    out.push_str("</td><td class=\"n\">");
    if let Some(h) = f.http_status {
        push_number(out, u64::from(h));
    }
    let source = match f.source {
        Source::Mast => "mast",
        Source::Cloud => "cloud",
    };
    out.push_str("</td><td class=\"n\">");
    push_number(out, u64::from(f.attempts));
    out.push_str("</td><td>");
    out.push_str(source);
    out.push_str("</td><td>");
    escape_into(out, f.message.as_deref().unwrap_or(""));
    out.push_str("</td></tr>\n");
}

/// Appends `n` in decimal to `out` (what `{}` writes, without `fmt`).
fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// Returns the one-page HTML of a manifest held in memory.
#[cfg(test)]
pub(crate) fn html(m: &Manifest, ctx: &HtmlContext) -> String {
    let mut h = page_head(&Header::of(m), ctx, "MAST download manifest");
    h.push_str(&timeline(ctx));
    h.push_str(TABLE_HEAD);
    for (i, f) in m.files.iter().enumerate() {
        let row = Row {
            file: f.clone(),
            access: "",
        };
        row_html(&mut h, i, &row, &ctx.user, "");
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

/// Returns an inline SVG timeline: one bar per transfer (or shard),
/// coloured by status, with its throughput in the bar's tooltip. Empty
/// when there is nothing to show.
fn timeline(ctx: &HtmlContext) -> String {
    let bars = &ctx.bars;
    if bars.is_empty() {
        return String::new();
    }
    let shown = &bars[..bars.len().min(MAX_BARS)];
    let end = shown
        .iter()
        .map(|b| b.timing.end_ms)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (width, row) = (900.0, if shown.len() <= 40 { 14.0 } else { 6.0 });
    let height = shown.len() as f64 * row + 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<h2>Timeline</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" \
aria-label=\"transfer timeline\">",
        width + 10.0
    );
    for (i, b) in shown.iter().enumerate() {
        let t = b.timing;
        let x = t.start_ms as f64 / end * width;
        let w = ((t.end_ms.saturating_sub(t.start_ms)) as f64 / end * width).max(1.0);
        let secs = (t.end_ms.saturating_sub(t.start_ms)) as f64 / 1000.0;
        let rate = if secs > 0.0 {
            (t.received as f64 / secs) as u64
        } else {
            t.received
        };
        let colour = match b.status {
            Status::Complete => "#2e7d32",
            Status::Skipped => "#9e9e9e",
            Status::Failed => "#c62828",
            Status::Interrupted => "#ef6c00",
        };
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{} {} {:.2}s {}/s</title></rect>",
            i as f64 * row,
            row - 1.0,
            escape_html(&b.label),
            b.status.as_str(),
            secs,
            human_bytes(rate)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"0\" y=\"{:.1}\" font-size=\"11\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.1} s</text></svg>",
        height - 4.0,
        width,
        height - 4.0,
        end / 1000.0
    );
    s.push_str(
        "<p class=\"legend\"><span style=\"color:#2e7d32\">&#9632;</span> complete \
<span style=\"color:#9e9e9e\">&#9632;</span> skipped <span style=\"color:#c62828\">&#9632;</span> failed \
<span style=\"color:#ef6c00\">&#9632;</span> interrupted \
&mdash; hover a bar for the file, its duration and throughput</p>\n",
    );
    let transfers = ctx.transfers.max(bars.len());
    if transfers > shown.len() {
        let _ = writeln!(
            s,
            "<p>(first {} of {transfers} transfers shown)</p>",
            shown.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 4096, 1_000_000, u64::MAX] {
            let mut s = String::from("x");
            push_number(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn links_are_encoded_as_percent_encoding_encodes_each_segment() {
        for path in [
            "HST/o6h/o6h_x.fits",
            "a b/c%d/é ü/x?y#z&w",
            "JWST/jw01/jw01-o001_t001_nircam_clear-f090w_i2d.fits",
            "",
            "/lead/",
        ] {
            let want = path
                .split('/')
                .map(|s| {
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("/");
            let mut got = String::new();
            href_into(&mut got, path);
            assert_eq!(got, want, "{path}");
        }
    }

    fn record(status: Status, message: Option<&str>) -> FileRecord {
        FileRecord {
            uri: "mast:HST/product/a_b.fits".into(),
            url: "https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a_b.fits"
                .into(),
            path: "HST/a/a_b.fits".into(),
            status,
            bytes: 10,
            http_status: Some(200),
            attempts: 1,
            message: message.map(str::to_string),
            source: Source::Mast,
        }
    }

    #[test]
    fn json_rows_are_what_serde_json_writes() {
        let hostile = "a\"b\\c\u{1}\n\t\u{7f}\u{e9}</td>\u{2028}";
        let mut records = vec![
            record(Status::Complete, None),
            record(Status::Failed, Some(hostile)),
        ];
        let mut r = record(Status::Skipped, Some(""));
        r.uri = hostile.into();
        r.url = format!("http://h/?uri={hostile}");
        r.path = hostile.into();
        r.http_status = Some(404);
        r.bytes = u64::MAX;
        r.attempts = u32::MAX;
        r.source = Source::Cloud;
        records.push(r);
        records[0].http_status = None;
        for r in records {
            let mut mine = Vec::new();
            json_row(&mut mine, &r).unwrap();
            assert_eq!(
                String::from_utf8(mine).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let m = Manifest::new(
            "s".into(),
            "f".into(),
            10,
            vec![record(Status::Complete, None)],
        );
        let v = serde_json::to_value(&m).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "bytes",
                "complete",
                "failed",
                "files",
                "finished",
                "interrupted",
                "requested",
                "skipped",
                "started",
                "tool",
                "version"
            ]
        );
        let f = v["files"][0].as_object().unwrap();
        let keys: Vec<&String> = f.keys().collect();
        assert_eq!(
            keys,
            [
                "attempts",
                "bytes",
                "http_status",
                "message",
                "path",
                "source",
                "status",
                "uri",
                "url"
            ]
        );
        assert_eq!(v["files"][0]["status"], "COMPLETE");
        assert_eq!(v["files"][0]["source"], "mast");
        assert!(v["files"][0]["message"].is_null());
    }

    #[test]
    fn the_streamed_json_reads_back_as_the_manifest() {
        let d = tempfile::tempdir().unwrap();
        let m = Manifest::new(
            "s".into(),
            "f".into(),
            10,
            vec![
                record(Status::Complete, None),
                record(Status::Failed, Some("a \"quoted\"\nmessage")),
            ],
        );
        let saved = save(d.path(), "MANIFEST", &m, &HtmlContext::default());
        assert!(saved.json.is_ok() && saved.html.is_ok(), "{saved:?}");
        assert_eq!(load(&d.path().join("MANIFEST.json")).unwrap(), m);
        let empty = Manifest::new("s".into(), "f".into(), 0, vec![]);
        let saved = save(d.path(), "MANIFEST", &empty, &HtmlContext::default());
        assert!(saved.json.is_ok());
        assert_eq!(load(&d.path().join("MANIFEST.json")).unwrap(), empty);
    }

    #[test]
    fn links_and_escapes_copy_plain_runs_as_the_byte_loop_wrote_them() {
        // What the byte-by-byte loops wrote, for each byte or character.
        fn href_bytewise(path: &str) -> String {
            path.bytes()
                .map(|b| match b {
                    b'/' => "/".to_string(),
                    b if b.is_ascii_alphanumeric() => char::from(b).to_string(),
                    b => format!("%{b:02X}"),
                })
                .collect()
        }
        for s in [
            "",
            "SCALE/o00000/o00000_0000000.fits",
            "a b/ü_é.fits",
            "€",
            "x%2F/y?z#w",
            "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
        ] {
            let mut got = String::new();
            href_into(&mut got, s);
            assert_eq!(got, href_bytewise(s), "{s}");
        }
        for s in [
            "plain text of 16+ bytes here",
            "a<b",
            "0123456789abcdef&",
            "tab\there",
            "ü",
        ] {
            let mut got = String::new();
            escape_into(&mut got, s);
            let want: String = s
                .chars()
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    '"' => "&quot;".to_string(),
                    '\'' => "&#39;".to_string(),
                    c if c.is_control() && c != '\n' => format!("&#{};", c as u32),
                    c => c.to_string(),
                })
                .collect();
            assert_eq!(got, want, "{s}");
        }
        let mut n = String::new();
        for v in [0, 7, 10, 1_000_000, u64::MAX] {
            n.clear();
            push_number(&mut n, v);
            assert_eq!(n, v.to_string());
        }
    }

    #[test]
    fn html_escapes_hostile_values() {
        let m = Manifest::new(
            "s".into(),
            "f".into(),
            0,
            vec![record(Status::Failed, Some("<script>alert('x')</script>&"))],
        );
        let page = html(
            &m,
            &HtmlContext {
                user: "<b>".into(),
                ..Default::default()
            },
        );
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
        assert!(page.contains("&lt;b&gt;"));
        assert!(page.contains("Total Files: 1"));
    }

    #[test]
    fn interrupted_rows_have_their_own_word_and_count() {
        let m = Manifest::new(
            "s".into(),
            "f".into(),
            0,
            vec![
                record(Status::Interrupted, Some("not started")),
                record(Status::Failed, None),
            ],
        );
        assert_eq!((m.failed, m.interrupted), (1, 1));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["files"][0]["status"], "INTERRUPTED");
        assert_eq!(v["interrupted"], 1);
    }

    #[test]
    fn streamed_notes_and_interrupted_read_back() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Manifest::new(
            "s".into(),
            "f".into(),
            0,
            vec![record(Status::Interrupted, Some("not started"))],
        );
        m.notes = vec!["skipped 1 link".into()];
        let saved = save(d.path(), "MANIFEST", &m, &HtmlContext::default());
        assert!(saved.json.is_ok() && saved.html.is_ok());
        assert_eq!(load(&d.path().join("MANIFEST.json")).unwrap(), m);
        let page = fs::read_to_string(d.path().join("MANIFEST.HTML")).unwrap();
        assert!(page.contains("<li>skipped 1 link</li>") && page.contains("INTERRUPTED"));
    }

    #[cfg(unix)]
    #[test]
    fn manifests_leave_the_mode_to_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let m = Manifest::new("s".into(), "f".into(), 0, vec![]);
        let saved = save(d.path(), "MANIFEST", &m, &HtmlContext::default());
        assert!(saved.json.is_ok() && saved.html.is_ok());
        // What a plain create gets here, under this process's umask.
        let plain = d.path().join("plain");
        fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.path().join("MANIFEST.json")), mode(&plain));
        assert_eq!(mode(&d.path().join("MANIFEST.HTML")), mode(&plain));
    }
}
