//! One transfer: request, redirects with the token kept where trusted,
//! `Range` resume, streaming to `PATH.part`, checks, and the rename to PATH.
//!
//! reqwest's own redirect handling drops `Authorization` on every change of
//! origin; the archive relies on it being kept (curl `--location-trusted`),
//! so redirects are followed here, hop by hop, deciding at each hop whether
//! the token goes along ([`Trust`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use md5::{Digest, Md5};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::progress::Reporter;
use crate::retry;
use crate::token::Token;

/// The most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;
/// The largest write buffer: large writes, few system calls.
const WRITE_BUFFER: usize = 1 << 20;
/// The smallest write buffer.
const MIN_WRITE_BUFFER: usize = 16 << 10;

/// Returns the write buffer for `remaining` bytes: never more than the body
/// (a 1 MiB buffer per small file would cost an mmap/munmap each).
fn write_buffer(remaining: Option<u64>) -> usize {
    remaining.map_or(WRITE_BUFFER, |r| {
        (r as usize).clamp(MIN_WRITE_BUFFER, WRITE_BUFFER)
    })
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with an error status.
    #[error("HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        detail: Option<String>,
    },
    /// The connection failed.
    #[error("{message}")]
    Network { message: String, fatal: bool },
    /// No bytes arrived for the stall timeout.
    #[error("stalled: no data for {}s", .0.as_secs())]
    Stall(Duration),
    /// The body ended before its announced length.
    #[error("truncated body: got {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    /// The body ran past its announced length.
    #[error("server sent more than the {expected} bytes it announced")]
    TooLong { expected: u64 },
    /// A 206 answered a range other than the one asked for.
    #[error("{0}")]
    RangeMismatch(String),
    /// A 200 whose body is an error page instead of the product.
    #[error("error page instead of the file: {0}")]
    ErrorPage(String),
    /// The server's size differs from the one the input promised.
    #[error("server size {got} differs from the expected size {expected}")]
    SizeMismatch { expected: u64, got: u64 },
    /// The bytes' MD5 differs from the object's ETag.
    #[error("MD5 mismatch: ETag says {expected}, the bytes hash to {got}")]
    Md5Mismatch { expected: String, got: String },
    /// A redirect could not be followed.
    #[error("{0}")]
    Redirect(String),
    /// The local disk failed.
    #[error("cannot write `{}`: {source}", path.display())]
    Disk { path: PathBuf, source: io::Error },
    /// The run was interrupted.
    #[error("interrupted")]
    Interrupted,
}

impl FetchError {
    /// Returns the HTTP status behind the error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn network(e: &reqwest::Error) -> FetchError {
        let kind = if e.is_connect() {
            "connection failed"
        } else if e.is_timeout() {
            "timed out"
        } else {
            "network error"
        };
        let message = match std::error::Error::source(e) {
            Some(cause) => format!("{kind}: {}", crate::error::chain(cause)),
            None => kind.to_string(),
        };
        FetchError::Network {
            message,
            fatal: retry::is_fatal_network(e),
        }
    }

    fn disk(path: &Path, source: io::Error) -> FetchError {
        FetchError::Disk {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Which hosts see the token on a redirect.
#[derive(Debug, Clone)]
pub struct Trust {
    base: Url,
    extra: Vec<String>,
}

impl Trust {
    /// Returns the trust rules: the base URL's host on any port,
    /// `*.stsci.edu`, and the `extra` hosts (`--trusted-host`).
    pub fn new(base: Url, extra: Vec<String>) -> Trust {
        let extra = extra.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        Trust { base, extra }
    }

    /// Returns true if and only if the token may be sent to `url`.
    pub fn allows(&self, url: &Url) -> bool {
        if url.scheme() == "http" && self.base.scheme() != "http" {
            return false;
        }
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
            return false;
        };
        host == self.base.host_str().unwrap_or("").to_ascii_lowercase()
            || host == "stsci.edu"
            || host.ends_with(".stsci.edu")
            || self.extra.contains(&host)
    }
}

/// What the transfer needs from the run.
pub struct Http {
    /// The shared client (its own redirects off).
    pub client: reqwest::Client,
    /// Who sees the token.
    pub trust: Trust,
    /// `--timeout`: the longest wait for the next bytes.
    pub stall: Duration,
}

/// A finished request's answer, after redirects.
pub struct Answer {
    /// The response of the last hop.
    pub response: Response,
    /// Hosts a redirect led to that did not get the token.
    pub withheld: Option<String>,
}

impl Http {
    /// Sends `method url`, following redirects: the token rides along to
    /// trusted hosts only; loops and more than [`MAX_REDIRECTS`] hops fail.
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        token: Option<&Token>,
        extra: HeaderMap,
    ) -> Result<Answer, FetchError> {
        let mut url = url.clone();
        let mut seen = vec![url.clone()];
        let mut withheld = None;
        loop {
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .headers(extra.clone());
            match token {
                Some(t) if self.trust.allows(&url) => {
                    if let Some(v) = t.header_value() {
                        req = req.header(header::AUTHORIZATION, v);
                    }
                }
                Some(_) => withheld = url.host_str().map(str::to_string),
                None => {}
            }
            let resp = tokio::time::timeout(self.stall, req.send())
                .await
                .map_err(|_| FetchError::Stall(self.stall))?
                .map_err(|e| FetchError::network(&e))?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(Answer {
                    response: resp,
                    withheld,
                });
            }
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    FetchError::Redirect(format!(
                        "HTTP {} without a Location",
                        resp.status().as_u16()
                    ))
                })?;
            let next = url
                .join(location)
                .map_err(|e| FetchError::Redirect(format!("bad redirect target: {e}")))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(FetchError::Redirect(format!(
                    "redirect to unsupported scheme `{}`",
                    next.scheme()
                )));
            }
            if seen.contains(&next) {
                return Err(FetchError::Redirect(format!(
                    "redirect loop at {}",
                    crate::layout::escape(next.as_str())
                )));
            }
            if seen.len() > MAX_REDIRECTS {
                return Err(FetchError::Redirect(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            seen.push(next.clone());
            url = next;
        }
    }
}

/// One file to transfer.
pub struct Transfer<'a> {
    /// Where the bytes come from.
    pub url: &'a Url,
    /// The final path.
    pub path: &'a Path,
    /// The token, when this source may see it.
    pub token: Option<&'a Token>,
    /// The size the input promised.
    pub expect_size: Option<u64>,
    /// True if and only if a single-part ETag is the MD5 of the bytes (S3)
    /// and must be checked.
    pub md5_from_etag: bool,
    /// True if and only if a text body is an error page (binary products).
    pub binary: bool,
    /// Whether to resume a `.part` left behind.
    pub resume: bool,
    /// The name shown in progress and logs (the path below DEST).
    pub label: &'a str,
    /// The progress sink and this transfer's id there.
    pub reporter: &'a dyn Reporter,
    pub id: usize,
}

/// What a finished transfer left at its path.
#[derive(Debug, Clone, Default)]
pub struct Done {
    /// The file's size.
    pub size: u64,
    /// Body bytes received by this transfer.
    pub received: u64,
    /// The last response's status.
    pub http_status: u16,
    /// Validators to record for `--update`.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// A host a redirect led to that did not get the token.
    pub withheld: Option<String>,
}

/// What a HEAD says about a source, for `--update`.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub status: u16,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Asks `url` (with redirects, as for a download) for its size and validators.
pub async fn head(http: &Http, url: &Url, token: Option<&Token>) -> Result<Head, FetchError> {
    let Answer { response, .. } = http
        .send(Method::HEAD, url, token, HeaderMap::new())
        .await?;
    if !response.status().is_success() {
        return Err(status_error(response, http.stall).await);
    }
    let h = response.headers();
    Ok(Head {
        status: response.status().as_u16(),
        size: h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        etag: header_str(h, header::ETAG),
        last_modified: header_str(h, header::LAST_MODIFIED),
    })
}

/// Returns why the source differs from the local copy described by `size`
/// and the validators recorded when it was fetched, or `None` when it
/// does not (validators the source or the record lacks are not compared).
pub fn changed(
    head: &Head,
    size: u64,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Option<String> {
    if let Some(s) = head.size.filter(|s| *s != size) {
        return Some(format!("size {size} -> {s}"));
    }
    if let (Some(old), Some(new)) = (etag, head.etag.as_deref()) {
        if old != new {
            return Some(format!("ETag {old} -> {new}"));
        }
    }
    if let (Some(old), Some(new)) = (last_modified, head.last_modified.as_deref()) {
        if old != new {
            return Some(format!("Last-Modified {old} -> {new}"));
        }
    }
    None
}

/// Returns the `.part` path beside `path`.
pub fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".part");
    PathBuf::from(s)
}

/// Returns true if and only if a file named `name` is a text product, for
/// which a text/html or text/plain answer is the product itself.
pub fn is_text_product(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.split('?').next().unwrap_or(&n);
    [
        ".txt", ".html", ".htm", ".csv", ".ecsv", ".xml", ".json", ".log", ".cat", ".reg", ".md",
        ".asc", ".dat", ".tbl", ".ipac",
    ]
    .iter()
    .any(|e| n.ends_with(e))
}

/// Parses `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`).
/// Returns `(start, total)`; `start` is `None` for the `*` form.
pub fn parse_content_range(v: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if range.trim() == "*" {
        return Some((None, total));
    }
    let (start, end) = range.trim().split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((Some(start), total))
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_string)
}

/// Returns the first meaningful line of an error body, tags stripped.
pub fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push('\n');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(200).filter(|c| !c.is_control()).collect())
        .unwrap_or_else(|| "(empty body)".to_string())
}

/// Reads at most `limit` bytes of a body, for messages.
async fn body_prefix(resp: &mut Response, limit: usize, stall: Duration) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match tokio::time::timeout(stall, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(limit);
    buf
}

/// Returns the error for a non-success answer.
async fn status_error(mut resp: Response, stall: Duration) -> FetchError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    let body = body_prefix(&mut resp, 2048, stall.min(Duration::from_secs(5))).await;
    let detail = (!body.is_empty()).then(|| first_line(&body));
    FetchError::Status {
        status,
        retry_after,
        detail,
    }
}

/// Hashes the bytes already in a `.part`, for a resumed MD5 check.
fn hash_existing(part: &Path, hasher: &mut Md5) -> io::Result<()> {
    let mut f = File::open(part)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// Downloads one file: resumes its `.part` when asked, streams the body,
/// checks length (and MD5 when known), then renames to the final path.
/// The final path never holds a partial file.
pub async fn download(http: &Http, t: Transfer<'_>) -> Result<Done, FetchError> {
    let part = part_path(t.path);
    let have = if t.resume {
        fs::metadata(&part).map(|m| m.len()).unwrap_or(0)
    } else {
        0
    };
    let mut headers = HeaderMap::new();
    if have > 0 {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={have}-")) {
            headers.insert(header::RANGE, v);
        }
    }
    let Answer {
        mut response,
        withheld,
    } = http.send(Method::GET, t.url, t.token, headers).await?;
    let status = response.status();
    let h = response.headers().clone();
    let etag = header_str(&h, header::ETAG);
    let last_modified = header_str(&h, header::LAST_MODIFIED);
    let content_range = header_str(&h, header::CONTENT_RANGE).and_then(|v| parse_content_range(&v));
    let expect_md5 = match (t.md5_from_etag, &etag) {
        (true, Some(e)) => crate::cloud::etag_md5(e),
        _ => None,
    };

    if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
        // The .part may already hold every byte: re-validate against the total.
        if let Some((None, Some(total))) = content_range {
            if total == have {
                return finish(
                    &part,
                    t.path,
                    have,
                    0,
                    expect_md5.as_deref(),
                    None,
                    Done {
                        size: have,
                        received: 0,
                        http_status: status.as_u16(),
                        etag,
                        last_modified,
                        withheld,
                    },
                );
            }
        }
        let _ = fs::remove_file(&part);
        return Err(FetchError::RangeMismatch(format!(
            "server refused to resume from byte {have}; restarting"
        )));
    }
    if !status.is_success() {
        return Err(status_error(response, http.stall).await);
    }
    let (offset, total) = if status == StatusCode::PARTIAL_CONTENT && have > 0 {
        match content_range {
            Some((Some(start), total)) if start == have => (have, total),
            _ => {
                let _ = fs::remove_file(&part);
                return Err(FetchError::RangeMismatch(format!(
                    "asked for bytes from {have}, got Content-Range `{}`",
                    header_str(&h, header::CONTENT_RANGE).unwrap_or_default()
                )));
            }
        }
    } else {
        (0, response.content_length())
    };
    if t.binary {
        let ctype = header_str(&h, header::CONTENT_TYPE)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if ctype.starts_with("text/html") || ctype.starts_with("text/plain") {
            let body = body_prefix(&mut response, 4096, http.stall).await;
            return Err(FetchError::ErrorPage(first_line(&body)));
        }
    }
    if let (Some(expected), Some(got)) = (t.expect_size, total) {
        if expected != got {
            return Err(FetchError::SizeMismatch { expected, got });
        }
    }
    t.reporter.started(t.id, t.label, total, offset);

    if let Some(dir) = t.path.parent() {
        fs::create_dir_all(dir).map_err(|e| FetchError::disk(dir, e))?;
    }
    let file = if offset > 0 {
        OpenOptions::new().append(true).open(&part)
    } else {
        File::create(&part)
    }
    .map_err(|e| FetchError::disk(&part, e))?;
    let mut hasher = expect_md5.as_ref().map(|_| Md5::new());
    if let (Some(hs), true) = (hasher.as_mut(), offset > 0) {
        hash_existing(&part, hs).map_err(|e| FetchError::disk(&part, e))?;
    }
    let mut out =
        io::BufWriter::with_capacity(write_buffer(total.map(|t| t.saturating_sub(offset))), file);
    let mut received: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(http.stall, response.chunk()).await {
            Err(_) => return Err(FetchError::Stall(http.stall)),
            Ok(Err(e)) => {
                out.flush().map_err(|e| FetchError::disk(&part, e))?;
                let got = offset + received;
                return Err(match total {
                    Some(expected) if got < expected => FetchError::Truncated { got, expected },
                    _ => FetchError::network(&e),
                });
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        received += chunk.len() as u64;
        if let Some(expected) = total {
            if offset + received > expected {
                drop(out);
                let _ = fs::remove_file(&part);
                return Err(FetchError::TooLong { expected });
            }
        }
        if let Some(hs) = hasher.as_mut() {
            hs.update(&chunk);
        }
        out.write_all(&chunk)
            .map_err(|e| FetchError::disk(&part, e))?;
        t.reporter.progress(t.id, chunk.len() as u64);
    }
    out.flush().map_err(|e| FetchError::disk(&part, e))?;
    drop(out);
    let size = offset + received;
    if let Some(expected) = total {
        if size < expected {
            return Err(FetchError::Truncated {
                got: size,
                expected,
            });
        }
    }
    if let Some(expected) = t.expect_size {
        if expected != size {
            let _ = fs::remove_file(&part);
            return Err(FetchError::SizeMismatch {
                expected,
                got: size,
            });
        }
    }
    finish(
        &part,
        t.path,
        size,
        received,
        expect_md5.as_deref(),
        hasher,
        Done {
            size,
            received,
            http_status: status.as_u16(),
            etag,
            last_modified,
            withheld,
        },
    )
}

/// Objects larger than this are fetched as parallel byte ranges.
pub const RANGED_MIN: u64 = 16 << 20;
/// The size of one range.
pub const RANGE_CHUNK: u64 = 8 << 20;
/// The most ranges of one object in flight at once.
pub const RANGES_PER_OBJECT: usize = 8;

/// Returns the sidecar beside a ranged `.part` that lists its finished ranges.
fn ranges_path(part: &Path) -> PathBuf {
    let mut s = part.as_os_str().to_os_string();
    s.push(".ranges");
    PathBuf::from(s)
}

/// Returns the ranges of a pre-sized `.part` already finished: those its
/// sidecar lists when written for the same ETag, or those wholly inside a
/// plain `.part` prefix left by a sequential attempt.
fn finished_ranges(part: &Path, size: u64, etag: &str) -> Vec<bool> {
    let chunks = size.div_ceil(RANGE_CHUNK) as usize;
    let mut done = vec![false; chunks];
    let Ok(len) = fs::metadata(part).map(|m| m.len()) else {
        return done;
    };
    match fs::read_to_string(ranges_path(part)) {
        Ok(text) => {
            let mut lines = text.lines();
            if len == size && lines.next() == Some(etag) {
                for i in lines.filter_map(|l| l.trim().parse::<usize>().ok()) {
                    if let Some(d) = done.get_mut(i) {
                        *d = true;
                    }
                }
            }
        }
        Err(_) => {
            for (i, d) in done.iter_mut().enumerate() {
                *d = (i as u64 + 1) * RANGE_CHUNK <= len.min(size);
            }
        }
    }
    done
}

/// Downloads an object of known `size` as parallel byte ranges into one
/// pre-sized `.part` (at most [`RANGES_PER_OBJECT`] at once, each holding a
/// permit of `bucket`, the run-wide bound on connections to the bucket).
/// Finished ranges are listed in `PATH.part.ranges`, so a retry or a later
/// run fetches only the missing ones. A single-part ETag is checked as the
/// MD5 of the whole file before the rename.
pub async fn download_ranged(
    http: &Http,
    t: Transfer<'_>,
    size: u64,
    etag: &str,
    bucket: &tokio::sync::Semaphore,
) -> Result<Done, FetchError> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let part = part_path(t.path);
    let sidecar = ranges_path(&part);
    if let Some(dir) = t.path.parent() {
        fs::create_dir_all(dir).map_err(|e| FetchError::disk(dir, e))?;
    }
    let done = finished_ranges(&part, size, etag);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&part)
        .map_err(|e| FetchError::disk(&part, e))?;
    file.set_len(size).map_err(|e| FetchError::disk(&part, e))?;
    drop(file);
    let mut listed = String::with_capacity(16 * done.len());
    listed.push_str(etag);
    listed.push('\n');
    for (i, _) in done.iter().enumerate().filter(|(_, d)| **d) {
        listed.push_str(&format!("{i}\n"));
    }
    fs::write(&sidecar, listed).map_err(|e| FetchError::disk(&sidecar, e))?;
    let sidecar_file = std::sync::Mutex::new(
        OpenOptions::new()
            .append(true)
            .open(&sidecar)
            .map_err(|e| FetchError::disk(&sidecar, e))?,
    );
    let have: u64 = done
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| RANGE_CHUNK.min(size - i as u64 * RANGE_CHUNK))
        .sum();
    t.reporter.started(t.id, t.label, Some(size), have);
    let todo: Vec<usize> = (0..done.len()).filter(|i| !done[*i]).collect();
    let tr = &t;
    let received: u64 = stream::iter(todo.into_iter().map(|i| {
        let (part, sidecar_file) = (&part, &sidecar_file);
        async move {
            let _permit = bucket
                .acquire()
                .await
                .map_err(|_| FetchError::Interrupted)?;
            let start = i as u64 * RANGE_CHUNK;
            let end = (start + RANGE_CHUNK).min(size) - 1;
            let got = fetch_range(http, tr, part, start, end, size).await?;
            let mut f = sidecar_file
                .lock()
                .map_err(|_| FetchError::disk(part, io::Error::other("lock poisoned")))?;
            f.write_all(format!("{i}\n").as_bytes())
                .map_err(|e| FetchError::disk(part, e))?;
            Ok::<u64, FetchError>(got)
        }
    }))
    .buffer_unordered(RANGES_PER_OBJECT)
    .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
    .await?;
    let md5 = crate::cloud::etag_md5(etag);
    let done = finish(
        &part,
        t.path,
        size,
        received,
        md5.as_deref(),
        None,
        Done {
            size,
            received,
            http_status: StatusCode::PARTIAL_CONTENT.as_u16(),
            etag: Some(etag.to_string()),
            last_modified: None,
            withheld: None,
        },
    );
    if matches!(done, Ok(_) | Err(FetchError::Md5Mismatch { .. })) {
        let _ = fs::remove_file(&sidecar);
    }
    done
}

/// Fetches bytes `start..=end` of an object of `size` bytes into `part` at
/// their offset. Returns the bytes received.
async fn fetch_range(
    http: &Http,
    t: &Transfer<'_>,
    part: &Path,
    start: u64,
    end: u64,
    size: u64,
) -> Result<u64, FetchError> {
    use std::io::{Seek, SeekFrom};
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes={start}-{end}")) {
        headers.insert(header::RANGE, v);
    }
    let Answer { mut response, .. } = http.send(Method::GET, t.url, None, headers).await?;
    if response.status() != StatusCode::PARTIAL_CONTENT {
        if !response.status().is_success() {
            return Err(status_error(response, http.stall).await);
        }
        return Err(FetchError::RangeMismatch(format!(
            "asked for bytes {start}-{end}, got HTTP {}",
            response.status().as_u16()
        )));
    }
    let range =
        header_str(response.headers(), header::CONTENT_RANGE).and_then(|v| parse_content_range(&v));
    if range != Some((Some(start), Some(size))) {
        return Err(FetchError::RangeMismatch(format!(
            "asked for bytes {start}-{end} of {size}, got Content-Range `{}` (did the object change?)",
            header_str(response.headers(), header::CONTENT_RANGE).unwrap_or_default()
        )));
    }
    let mut file = OpenOptions::new()
        .write(true)
        .open(part)
        .map_err(|e| FetchError::disk(part, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| FetchError::disk(part, e))?;
    let want = end - start + 1;
    let mut out = io::BufWriter::with_capacity(write_buffer(Some(want)), file);
    let mut got = 0u64;
    loop {
        let chunk = match tokio::time::timeout(http.stall, response.chunk()).await {
            Err(_) => return Err(FetchError::Stall(http.stall)),
            Ok(Err(e)) if got < want => {
                let _ = e;
                return Err(FetchError::Truncated {
                    got,
                    expected: want,
                });
            }
            Ok(Err(e)) => return Err(FetchError::network(&e)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(c))) => c,
        };
        got += chunk.len() as u64;
        if got > want {
            return Err(FetchError::TooLong { expected: want });
        }
        out.write_all(&chunk)
            .map_err(|e| FetchError::disk(part, e))?;
        t.reporter.progress(t.id, chunk.len() as u64);
    }
    out.flush().map_err(|e| FetchError::disk(part, e))?;
    if got < want {
        return Err(FetchError::Truncated {
            got,
            expected: want,
        });
    }
    Ok(got)
}

/// Checks the MD5 (when known) and renames the `.part` over the final path.
fn finish(
    part: &Path,
    path: &Path,
    size: u64,
    received: u64,
    expect_md5: Option<&str>,
    hasher: Option<Md5>,
    done: Done,
) -> Result<Done, FetchError> {
    if let Some(expected) = expect_md5 {
        let got = match hasher {
            Some(h) => hex(&h.finalize()),
            None => {
                let mut h = Md5::new();
                hash_existing(part, &mut h).map_err(|e| FetchError::disk(part, e))?;
                hex(&h.finalize())
            }
        };
        if !got.eq_ignore_ascii_case(expected) {
            let _ = fs::remove_file(part);
            return Err(FetchError::Md5Mismatch {
                expected: expected.to_string(),
                got,
            });
        }
    }
    fs::rename(part, path).map_err(|e| FetchError::disk(path, e))?;
    Ok(Done {
        size,
        received,
        ..done
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_table() {
        type Parsed = Option<(Option<u64>, Option<u64>)>;
        let cases: &[(&str, Parsed)] = &[
            ("bytes 0-99/100", Some((Some(0), Some(100)))),
            ("bytes 50-99/100", Some((Some(50), Some(100)))),
            ("bytes 50-99/*", Some((Some(50), None))),
            ("bytes */100", Some((None, Some(100)))),
            ("bytes 50-100/100", None),
            ("bytes 60-50/100", None),
            ("bytes x-50/100", None),
            ("items 0-1/2", None),
            ("bytes 0-1", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_content_range(input), *want, "{input}");
        }
    }

    #[test]
    fn changes_are_seen_in_size_etag_or_date_only_when_both_sides_know() {
        let h = Head {
            status: 200,
            size: Some(10),
            etag: Some("\"b\"".into()),
            last_modified: Some("Tue".into()),
        };
        assert!(changed(&h, 10, Some("\"b\""), Some("Tue")).is_none());
        assert!(changed(&h, 10, None, None).is_none());
        assert!(changed(&h, 11, Some("\"b\""), Some("Tue"))
            .unwrap()
            .contains("size"));
        assert!(changed(&h, 10, Some("\"a\""), Some("Tue"))
            .unwrap()
            .contains("ETag"));
        assert!(changed(&h, 10, None, Some("Mon"))
            .unwrap()
            .contains("Last-Modified"));
        let bare = Head {
            status: 200,
            ..Head::default()
        };
        assert!(changed(&bare, 10, Some("x"), Some("y")).is_none());
    }

    #[test]
    fn trust_rules() {
        let t = Trust::new(
            Url::parse("https://mast.stsci.edu").unwrap(),
            vec!["Data.Example.org".into()],
        );
        let ok = |u: &str| t.allows(&Url::parse(u).unwrap());
        assert!(ok("https://mast.stsci.edu:8443/x"));
        assert!(ok("https://archive.stsci.edu/x"));
        assert!(ok("https://data.example.org/x"));
        assert!(!ok("http://mast.stsci.edu/x"));
        assert!(!ok("https://evil.example.com/x"));
        assert!(!ok("https://stsci.edu.evil.com/x"));
        let t = Trust::new(Url::parse("http://127.0.0.1:1234").unwrap(), vec![]);
        assert!(t.allows(&Url::parse("http://127.0.0.1:999/x").unwrap()));
        assert!(!t.allows(&Url::parse("http://localhost:999/x").unwrap()));
    }

    #[test]
    fn error_page_first_line() {
        assert_eq!(
            first_line(b"<html><body>\n<h1>Access Denied</h1></body>"),
            "Access Denied"
        );
        assert_eq!(
            first_line(b"\n\n  dataset parameter is required\nmore"),
            "dataset parameter is required"
        );
        assert_eq!(first_line(b""), "(empty body)");
    }

    #[test]
    fn text_products() {
        assert!(is_text_product("x_cat.ecsv"));
        assert!(!is_text_product("x_i2d.fits"));
        assert!(!is_text_product("fitscut.cgi?red=a.txt"));
    }
}
