//! One transfer: request (through [`http`], where redirects and trust are
//! decided), `Range` resume checked against the validator of the first
//! bytes, streaming to the `.part` ([`part`]), length and MD5 checks, and
//! the rename to the final path. The transfers are methods of the run's
//! [`Downloader`] (the services, built once); each takes one [`Attempt`]
//! (the file).
//!
//! A sequential transfer resumes a `.part` only when its sidecar says what
//! the bytes came from: with a validator `If-Range` can carry, with
//! `If-Range` and a check of the answer's `Content-Range` and validator;
//! without one, from [`RESUME_OVERLAP`] bytes before the end of the
//! `.part`, those bytes compared with the `.part`'s and the total with the
//! one recorded when the `.part` was started. Anything else starts from
//! zero. A ranged transfer ([`Downloader::download_ranged`]) trusts only
//! the ranges its sidecar lists (with a validator) or the overlaps it
//! compared (without).

pub(crate) mod gate;
pub(crate) mod http;
pub(crate) mod part;
mod ranges;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use md5::{Digest, Md5};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use url::Url;

pub(crate) use crate::error::TransferError;
pub(crate) use http::{Answer, Creds, Http, Req, Trust};
pub(crate) use ranges::{Slots, RANGED_MIN, RANGE_CHUNK};

use crate::budget::{Event, Throttle};
use crate::job::Downloader;
use crate::token::Token;
use http::{body_excerpt, first_line, header_str, status_error, ERROR_EXCERPT_TIME};
use part::{FileId, Meta, Part, Validator};

/// A local disk failure at a path, as the transfer's error.
pub(crate) trait OnDisk<T> {
    /// Returns the value, or [`TransferError::Disk`] at `path`.
    fn on_disk(self, path: &Path) -> Result<T, TransferError>;
}

impl<T> OnDisk<T> for Result<T, io::Error> {
    fn on_disk(self, path: &Path) -> Result<T, TransferError> {
        self.map_err(|e| TransferError::disk(path, e))
    }
}

/// A blocking disk task that did not come back.
impl<T> OnDisk<T> for Result<T, tokio::task::JoinError> {
    fn on_disk(self, path: &Path) -> Result<T, TransferError> {
        self.map_err(|e| TransferError::disk(path, io::Error::other(e)))
    }
}

/// The largest write buffer: large writes, few system calls.
const WRITE_BUFFER: usize = 64 << 10;
/// The smallest write buffer.
const MIN_WRITE_BUFFER: usize = 16 << 10;
/// Without a validator, a resume asks again for this many bytes before the
/// end of the `.part` and compares them with the `.part`'s.
pub(crate) const RESUME_OVERLAP: u64 = 64 << 10;

/// Returns the write buffer for `remaining` bytes: never more than the body
/// (a 1 MiB buffer per small file would cost an mmap/munmap each).
fn write_buffer(remaining: Option<u64>) -> usize {
    remaining.map_or(WRITE_BUFFER, |r| {
        (r as usize).clamp(MIN_WRITE_BUFFER, WRITE_BUFFER)
    })
}

/// One attempt at one file: what the [`Downloader`]'s services are used
/// for (the services themselves are the downloader's).
pub(crate) struct Attempt<'a> {
    /// Where the bytes come from.
    pub(crate) url: &'a Url,
    /// The token, when this source may see it.
    pub(crate) token: Option<&'a Token>,
    /// The final path (DEST joined with `label`).
    pub(crate) path: &'a Path,
    /// The name shown in progress and logs (the path below DEST).
    pub(crate) label: &'a str,
    /// The transfer's id in progress.
    pub(crate) id: usize,
    /// The size the input promised.
    pub(crate) expect_size: Option<u64>,
    /// True if and only if a single-part ETag is the MD5 of the bytes (S3)
    /// and must be checked.
    pub(crate) md5_from_etag: bool,
    /// True if and only if a text body is an error page (binary products).
    pub(crate) binary: bool,
    /// Whether a large archive file may turn into parallel ranges (not
    /// after an attempt at that failed: a server that ignores `Range`).
    pub(crate) split: bool,
}

/// What a finished transfer left at its path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Done {
    /// The file's size.
    pub(crate) size: u64,
    /// Body bytes received by this transfer.
    pub(crate) received: u64,
    /// The last response's status.
    pub(crate) http_status: u16,
    /// Validators to record for `--update`.
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// A host a redirect led to that did not get the token.
    pub(crate) withheld: Option<String>,
    /// The MD5 of the file's bytes (lowercase hex), recorded for `verify`:
    /// hashed as the body streams in, or, for parallel ranges (which do
    /// not arrive in order), read back once before the rename.
    pub(crate) md5: Option<String>,
    /// How bytes from more than one answer were joined, when they were.
    pub(crate) joined: Option<Joined>,
}

/// How bytes from more than one answer were shown to be of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Every answer carried the validator of the first (`If-Range`).
    Validator,
    /// No validator: overlapping bytes compared, every total the same.
    Overlap,
}

/// How a file's bytes came from more than one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joined {
    /// A `.part` of `at` bytes was resumed.
    Resumed { at: u64, check: Check },
    /// The file came as parallel ranges.
    Ranged { check: Check },
}

impl Joined {
    /// Returns what the manifest row says: "resumed at 41.2 MiB; no
    /// validator, overlap checked".
    pub(crate) fn describe(self) -> String {
        let how = |c: Check| match c {
            Check::Validator => "validator checked (If-Range)",
            Check::Overlap => "no validator, overlap checked",
        };
        match self {
            Joined::Resumed { at, check } => format!(
                "resumed at {}; {}",
                crate::manifest::human_bytes(at),
                how(check)
            ),
            Joined::Ranged { check } => format!("in parallel ranges; {}", how(check)),
        }
    }
}

/// What the next attempt keeps of a `.part`: its `have` bytes, asked for
/// again from `from` (`from < have`: the overlap to compare, without a
/// validator), and its sidecar.
#[derive(Debug)]
struct Resume {
    have: u64,
    from: u64,
    meta: Meta,
}

impl Resume {
    fn check(&self) -> Check {
        if self.from < self.have {
            Check::Overlap
        } else {
            Check::Validator
        }
    }
}

/// What a HEAD says about a source, for `--update`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) size: Option<u64>,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
}

/// Asks `url` (with redirects, as for a download) for its size and validators.
pub(crate) async fn head(
    http: &Http,
    url: &Url,
    token: Option<&Token>,
) -> Result<Head, TransferError> {
    let Answer { response, .. } = http
        .send(Req {
            method: Method::HEAD,
            ..Req::get(url, Creds::token(token))
        })
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
pub(crate) fn changed(
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

/// Returns true if and only if a file named `name` is a text product, for
/// which a text/html or text/plain answer is the product itself.
pub(crate) fn is_text_product(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.split('?').next().unwrap_or(&n);
    [
        ".txt", ".html", ".htm", ".csv", ".ecsv", ".xml", ".json", ".log", ".cat", ".reg", ".md",
        ".asc", ".dat", ".tbl", ".ipac",
    ]
    .iter()
    .any(|e| n.ends_with(e))
}

/// A parsed `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    /// `None` for the `*` form.
    pub(crate) start: Option<u64>,
    pub(crate) end: Option<u64>,
    /// `None` for `/*`.
    pub(crate) total: Option<u64>,
}

impl ContentRange {
    /// Parses a `Content-Range` value; `None` when malformed or inconsistent.
    pub(crate) fn parse(v: &str) -> Option<ContentRange> {
        let rest = v.trim().strip_prefix("bytes")?.trim_start();
        let (range, total) = rest.split_once('/')?;
        let total = match total.trim() {
            "*" => None,
            t => Some(t.parse().ok()?),
        };
        if range.trim() == "*" {
            return Some(ContentRange {
                start: None,
                end: None,
                total,
            });
        }
        let (start, end) = range.trim().split_once('-')?;
        let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
        if end < start || total.is_some_and(|t| end >= t) {
            return None;
        }
        Some(ContentRange {
            start: Some(start),
            end: Some(end),
            total,
        })
    }
}

/// Returns the MD5 (lowercase hex) an S3 ETag stands for: `Some` only for a
/// single-part ETag, 32 hex digits, quoted or not. A multipart ETag
/// (`"…-N"`) or a weak one (`W/"…"`) says nothing about the bytes' MD5.
pub(crate) fn etag_md5(etag: &str) -> Option<String> {
    let t = etag.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t);
    (t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

/// Sidecars are written when a transfer starts only for bodies of at
/// least this size (or of unknown size); smaller ones get one only when an
/// attempt fails part-way, so a `kill -9` costs them a restart, not a write
/// per file.
pub(crate) const SIDECAR_MIN: u64 = 4 << 20;

/// Returns the bytes of a `.part` a sequential attempt may keep, and what
/// is known about them: only a non-empty regular file whose sidecar says it
/// was written sequentially, and either a validator `If-Range` can carry
/// (a strong ETag or a date, RFC 9110 §13.1.5) or — without one — the
/// total recorded when it was started and at least [`RESUME_OVERLAP`]
/// bytes to compare. Anything else is discarded.
///
/// `have` is what [`Part::look`] found at the `.part` (its length, or
/// `None` for something else, removed); nothing there, nothing to resume,
/// and its sidecar is not looked for (a first run's every file).
fn resumable(part: &Part, have: Option<Option<u64>>) -> Option<Resume> {
    let have = have?;
    let meta = part.load();
    match (have, meta) {
        (Some(have), Some(meta))
            if have > 0 && meta.ranged.is_none() && meta.total.is_none_or(|t| have < t) =>
        {
            if meta
                .validator
                .as_ref()
                .is_some_and(|v| v.if_range().is_some())
            {
                return Some(Resume {
                    have,
                    from: have,
                    meta,
                });
            }
            if meta.total.is_some() && have >= RESUME_OVERLAP {
                return Some(Resume {
                    have,
                    from: have - RESUME_OVERLAP,
                    meta,
                });
            }
            part.discard();
            None
        }
        (None, None) => None,
        _ => {
            part.discard();
            None
        }
    }
}

/// Returns the `Range` (and, with a validator, `If-Range`) headers that
/// resume `resume`'s bytes.
fn resume_headers(resume: Option<&Resume>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(r) = resume {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-", r.from)) {
            headers.insert(header::RANGE, v);
        }
        if let Some(v) = r
            .meta
            .validator
            .as_ref()
            .and_then(|v| v.if_range())
            .filter(|_| r.check() == Check::Validator)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::IF_RANGE, v);
        }
    }
    headers
}

/// Reads the bytes `from..to` of a `.part` (never through a symlink).
fn read_span(part: &Part, from: u64, to: u64) -> Result<Vec<u8>, TransferError> {
    use std::io::{Seek, SeekFrom};
    let mut f = part.open_read().on_disk(&part.path)?;
    f.seek(SeekFrom::Start(from)).on_disk(&part.path)?;
    let mut buf = vec![0u8; (to - from) as usize];
    f.read_exact(&mut buf).on_disk(&part.path)?;
    Ok(buf)
}

/// Returns where an accepted answer's body starts in the file, and the
/// file's total: `(start, total)`. A 206 must be the resume asked for (or
/// cover the whole file); a 200 starts from zero.
fn span_of(
    response: &Response,
    resume: Option<&Resume>,
) -> Result<(u64, Option<u64>), TransferError> {
    let h = response.headers();
    if response.status() != StatusCode::PARTIAL_CONTENT {
        return Ok((0, response.content_length()));
    }
    let raw = header_str(h, header::CONTENT_RANGE).unwrap_or_default();
    let range = ContentRange::parse(&raw);
    match resume {
        Some(r) => check_resumed(
            r,
            range,
            &raw,
            header_str(h, header::ETAG).as_deref(),
            header_str(h, header::LAST_MODIFIED).as_deref(),
        )
        .map(|total| (r.from, total)),
        None => whole_from_partial(range, &raw),
    }
}

/// Refuses an answer that is not the product: a text page for a binary
/// product (its first line is the message), or another size than the
/// input promised.
async fn check_content(
    http: &Http,
    t: &Attempt<'_>,
    response: &mut Response,
    total: Option<u64>,
) -> Result<(), TransferError> {
    if t.binary {
        let ctype = header_str(response.headers(), header::CONTENT_TYPE)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if ctype.starts_with("text/html") || ctype.starts_with("text/plain") {
            let body = body_excerpt(response, 4096, http.stall.min(ERROR_EXCERPT_TIME)).await;
            return Err(TransferError::ErrorPage(first_line(&body)));
        }
    }
    match (t.expect_size, total) {
        (Some(expected), Some(got)) if expected != got => {
            Err(TransferError::SizeMismatch { expected, got })
        }
        _ => Ok(()),
    }
}

/// Returns `(0, total)` for a 206 nobody asked for, which will do only
/// when it covers the whole file.
fn whole_from_partial(
    range: Option<ContentRange>,
    raw: &str,
) -> Result<(u64, Option<u64>), TransferError> {
    match range {
        Some(ContentRange {
            start: Some(0),
            end: Some(end),
            total: Some(total),
        }) if end + 1 == total => Ok((0, Some(total))),
        _ => Err(TransferError::RangeMismatch(format!(
            "asked for the whole file, got part of it (Content-Range `{}`)",
            crate::layout::escape(raw)
        ))),
    }
}

/// Checks that an answer's body can be verified: a length known (or a
/// chunked / HTTP/2 body, whose end is marked), and a `Content-Length`
/// that adds up to the total from `offset`.
fn check_framing(
    response: &Response,
    h: &HeaderMap,
    offset: u64,
    total: Option<u64>,
) -> Result<(), TransferError> {
    let chunked = header_str(h, header::TRANSFER_ENCODING)
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if total.is_none() && !chunked && response.version() < reqwest::Version::HTTP_2 {
        // Close-delimited: a cut connection looks just like the end.
        return Err(TransferError::NoLength);
    }
    if let (Some(len), Some(total)) = (response.content_length(), total) {
        if offset + len != total {
            return Err(TransferError::RangeMismatch(format!(
                "Content-Length {len} from byte {offset} does not add up to the total {total}"
            )));
        }
    }
    Ok(())
}

/// Returns the size and validator (if any: without one `If-Range` cannot
/// be sent, and the ranges overlap instead) with which an archive
/// file's first answer turns into parallel ranges: a fresh 200 of at least
/// [`RANGED_MIN`] bytes with `Accept-Ranges: bytes`, unless `--limit-rate`
/// caps the `throttle`.
fn split_here(
    t: &Attempt<'_>,
    throttle: &Throttle,
    status: StatusCode,
    offset: u64,
    total: Option<u64>,
    h: &HeaderMap,
) -> Option<(u64, Option<Validator>)> {
    let size = total.filter(|s| *s >= RANGED_MIN)?;
    if throttle.is_rate_limited() {
        // Under `--limit-rate` the cap, not a connection, is the limit:
        // more streams would only hold more buffers.
        return None;
    }
    let ranges =
        header_str(h, header::ACCEPT_RANGES).is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
    if !t.split || t.md5_from_etag || status != StatusCode::OK || offset != 0 || !ranges {
        return None;
    }
    let v = Validator::of(
        header_str(h, header::ETAG).as_deref(),
        header_str(h, header::LAST_MODIFIED).as_deref(),
    );
    Some((size, v))
}

/// Returns what a `.part` that an earlier attempt filled by ranges needs
/// to go on by ranges: its total and validator. `have`: as for
/// [`resumable`] (nothing at the `.part`, no ranges done).
fn ranged_resume(
    t: &Attempt<'_>,
    part: &Part,
    have: Option<Option<u64>>,
) -> Option<(u64, Validator)> {
    if t.md5_from_etag {
        return None;
    }
    have?;
    let m = part.load()?;
    let v = m.validator?;
    v.if_range()?;
    (m.ranged?.chunk == RANGE_CHUNK).then_some(())?;
    let total = m.total?;
    if t.expect_size.is_some_and(|s| s != total) {
        part.discard();
        return None;
    }
    Some((total, v))
}

/// Checks a 206 answering `Range: bytes=FROM-`: its `Content-Range` must
/// start at `from`, run to the end, and announce the total recorded with
/// the first bytes (without a validator that total must be announced);
/// its validator must be the one recorded (without one, a weak ETag
/// recorded must still be the same). Returns the total.
fn check_resumed(
    r: &Resume,
    range: Option<ContentRange>,
    raw: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Result<Option<u64>, TransferError> {
    let meta = &r.meta;
    let overlap = r.check() == Check::Overlap;
    let ok = match range {
        Some(ContentRange {
            start: Some(start),
            end: Some(end),
            total,
        }) => {
            start == r.from
                && total.is_none_or(|t| end + 1 == t)
                && (meta.total.is_none() || total.is_none() || meta.total == total)
                && (!overlap || (total.is_some() && total == meta.total))
        }
        _ => false,
    };
    if !ok {
        let recorded = match (overlap, meta.total) {
            (true, Some(t)) => format!(
                " (no validator: the total must be the {t} recorded when the `.part` was started)"
            ),
            _ => String::new(),
        };
        return Err(TransferError::RangeMismatch(format!(
            "asked for bytes from {}, got Content-Range `{}`{recorded}; restarting from zero",
            r.from,
            crate::layout::escape(raw)
        )));
    }
    let same = match &meta.validator {
        Some(v) => v.matches(etag, last_modified),
        None => overlap,
    };
    if !same {
        return Err(TransferError::RangeMismatch(
            "the file changed on the server since its first bytes arrived (ETag or Last-Modified differ); restarting from zero".into(),
        ));
    }
    Ok(range.and_then(|r| r.total).or(meta.total))
}

/// What an accepted answer said, for saving its body: where its bytes go
/// and what to check them against, and what the [`Done`] will say of it
/// (its size and bytes received still to come).
struct Accepted {
    /// Where its new bytes go (the `.part`'s length when resumed).
    offset: u64,
    /// The bytes its body starts with, to compare with the `.part`'s end.
    lead: Vec<u8>,
    total: Option<u64>,
    expect_md5: Option<String>,
    done: Done,
}

impl Downloader {
    /// Downloads one file: resumes its `.part` (when its sidecar says the
    /// bytes are still good), streams the body, checks length (and MD5 when
    /// known), then renames to the final path. The final path never holds a
    /// partial or foreign file.
    pub(crate) async fn download(&self, t: &Attempt<'_>) -> Result<Done, TransferError> {
        let http = &self.http;
        let part = Part::of(t.path);
        // One look at the `.part` serves both checks; for a first run's
        // every file it finds nothing, and no sidecar is looked for.
        let have = part.look();
        if let Some((total, v)) = ranged_resume(t, &part, have) {
            let slots = Slots::Budget(&self.throttle);
            return self.download_ranged(t, total, Some(&v), slots).await;
        }
        let resume = resumable(&part, have);
        let have = resume.as_ref().map_or(0, |r| r.have);
        let headers = resume_headers(resume.as_ref());
        let Answer {
            mut response,
            withheld,
        } = http
            .send(Req {
                headers,
                ..Req::get(t.url, Creds::token(t.token))
            })
            .await?;
        let status = response.status();
        let h = response.headers().clone();
        let etag = header_str(&h, header::ETAG);
        let last_modified = header_str(&h, header::LAST_MODIFIED);
        let expect_md5 = match (t.md5_from_etag, &etag) {
            (true, Some(e)) => etag_md5(e),
            _ => None,
        };
        if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
            // The .part's bytes cannot be checked against anything: start over.
            part.discard();
            return Err(TransferError::RangeMismatch(format!(
                "server refused to resume from byte {have}; restarting from zero"
            )));
        }
        if !status.is_success() {
            return Err(status_error(response, http.stall).await);
        }
        let (start, total) = span_of(&response, resume.as_ref()).inspect_err(|_| {
            if resume.is_some() {
                part.discard();
            }
        })?;
        // A resumed answer starts at `from`: the bytes up to `have` are the
        // overlap, compared with the `.part`'s, not written (empty with a
        // validator). Its new bytes go after the `.part`'s.
        let (offset, lead, joined) = match &resume {
            Some(r) if start > 0 => {
                let lead = read_span(&part, r.from, r.have).inspect_err(|_| part.discard())?;
                let joined = Joined::Resumed {
                    at: r.have,
                    check: r.check(),
                };
                (r.have, lead, Some(joined))
            }
            _ => (0, Vec::new(), None),
        };
        self.throttle.on(Event::Answered {
            http2: response.version() == reqwest::Version::HTTP_2,
        });
        check_framing(&response, &h, start, total)?;
        check_content(http, t, &mut response, total).await?;
        if let Some((size, v)) = split_here(t, &self.throttle, status, start, total, &h) {
            // Large, and the archive serves ranges: the rest comes in parallel
            // ranges (this answer is dropped unread, its connection closed).
            drop(response);
            let slots = Slots::Budget(&self.throttle);
            return self.download_ranged(t, size, v.as_ref(), slots).await;
        }
        let answer = Accepted {
            offset,
            lead,
            total,
            expect_md5,
            done: Done {
                http_status: status.as_u16(),
                etag,
                last_modified,
                withheld,
                joined,
                ..Done::default()
            },
        };
        self.save(t, &part, &mut response, answer).await
    }

    /// Saves an accepted answer's body: streamed into the `.part`, checked
    /// against the size promised and the MD5 when known, renamed into place.
    async fn save(
        &self,
        t: &Attempt<'_>,
        part: &Part,
        response: &mut Response,
        a: Accepted,
    ) -> Result<Done, TransferError> {
        let Accepted {
            offset,
            lead,
            total,
            expect_md5,
            done,
        } = a;
        self.reporter.started(t.id, t.label, total, offset);
        make_dirs(self.dest.root(), t)?;
        let meta = Meta {
            validator: Validator::of(done.etag.as_deref(), done.last_modified.as_deref()),
            total,
            ranged: None,
        };
        let (received, written, hasher) = self
            .receive(t, part, response, (offset, total), &meta, &lead)
            .await?;
        let size = offset + received;
        if let Some(expected) = t.expect_size {
            if expected != size {
                part.discard();
                return Err(TransferError::SizeMismatch {
                    expected,
                    got: size,
                });
            }
        }
        finish(
            part,
            t.path,
            written,
            expect_md5.as_deref(),
            hasher,
            Done {
                size,
                received,
                ..done
            },
        )
        .await
    }

    /// Streams an accepted answer's body into the `.part` from `offset` (of
    /// `total`): a new `.part` (with its sidecar at once when large) or the
    /// old one appended to; on failure the bytes stay with their sidecar for
    /// the next attempt (unless too long, or the disk is full). Returns the
    /// bytes received, the file's identity and the MD5 of the whole file so
    /// far (a resumed `.part`'s bytes are read back once to start it). A body
    /// that starts with other bytes than `lead` (the overlap of a resume
    /// without validator) discards the `.part`.
    async fn receive(
        &self,
        t: &Attempt<'_>,
        part: &Part,
        response: &mut Response,
        (offset, total): (u64, Option<u64>),
        meta: &Meta,
        lead: &[u8],
    ) -> Result<(u64, Written, Option<Md5>), TransferError> {
        let file = if offset > 0 {
            part.open_append()
        } else {
            part.open(true)
        }
        .on_disk(&part.path)?;
        let id = FileId::of(&file).on_disk(&part.path)?;
        let mut keep = KeepPart {
            part,
            meta,
            armed: offset == 0,
        };
        // A resumed `.part` has its sidecar; a new one gets it now if large.
        let mut sidecar = offset > 0;
        if offset == 0 && total.is_none_or(|t| t >= SIDECAR_MIN) {
            part.save(meta).on_disk(&part.meta)?;
            keep.armed = false;
            sidecar = true;
        }
        let mut hasher = Md5::new();
        if offset > 0 {
            hasher = hash_file(part, hasher).await?;
        }
        let mut hasher = Some(hasher);
        let span = Span {
            offset,
            want: total.map(|t| t - offset),
        };
        let streamed = self
            .stream_body(
                t.id,
                (response, &file),
                span,
                hasher.as_mut(),
                &part.path,
                &mut Lead::Equal(lead),
            )
            .await;
        match streamed {
            Ok(n) => {
                keep.armed = false;
                let file = Some(file);
                Ok((n, Written { file, id, sidecar }, hasher))
            }
            Err(e) => {
                if matches!(
                    &e,
                    TransferError::TooLong { .. } | TransferError::RangeMismatch(_)
                ) || e.is_disk_full()
                {
                    // Nothing worth keeping (or the file changed), or the
                    // space is needed.
                    keep.armed = false;
                    part.discard();
                }
                Err(e)
            }
        }
    }
}

/// The `.part` a transfer wrote, for [`finish`].
pub(crate) struct Written {
    /// The `.part` still open, when it is (its date is set through it
    /// rather than by opening the path again).
    pub(crate) file: Option<File>,
    /// Its identity, to rename it only if it is still the one written.
    pub(crate) id: FileId,
    /// Whether a sidecar may be beside it (one was read or written in this
    /// transfer): removed after the rename. A new `.part` started with its
    /// sidecar removed and none written needs no second removal.
    pub(crate) sidecar: bool,
}

/// Writes the sidecar of a `.part` when dropped armed: an attempt that
/// fails or is cancelled (Ctrl-C) part-way leaves its bytes with what they
/// came from, so the next attempt can resume them.
struct KeepPart<'a> {
    part: &'a Part,
    meta: &'a Meta,
    armed: bool,
}

impl Drop for KeepPart<'_> {
    fn drop(&mut self) {
        if self.armed && self.part.file_len().is_some_and(|n| n > 0) {
            let _ = self.part.save(self.meta);
        }
    }
}

/// Where a body's bytes go in the `.part`: from `offset`, `want` of them
/// when known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    offset: u64,
    want: Option<u64>,
}

/// The bytes a body starts with before those it writes: an overlap with
/// bytes already on disk, without a validator.
pub(crate) enum Lead<'a> {
    /// They must equal these (a resume; empty: none).
    Equal(&'a [u8]),
    /// Keep this many more of them here, to compare later (a range).
    Keep(usize, Vec<u8>),
}

impl Lead<'_> {
    /// Takes the lead's share of `chunk`; returns the rest, or `None` when
    /// it differs from the bytes expected.
    fn eat<'c>(&mut self, chunk: &'c [u8]) -> Option<&'c [u8]> {
        match self {
            Lead::Equal(want) => {
                let n = want.len().min(chunk.len());
                if chunk[..n] != want[..n] {
                    return None;
                }
                *want = &want[n..];
                Some(&chunk[n..])
            }
            Lead::Keep(left, kept) => {
                let n = (*left).min(chunk.len());
                kept.extend_from_slice(&chunk[..n]);
                *left -= n;
                Some(&chunk[n..])
            }
        }
    }
}

impl Downloader {
    /// Streams a response body into `file` (positioned at the span's offset),
    /// for transfer `id`: first the `lead` (compared or kept, not written),
    /// then no more than the client's stall time between chunks, never more
    /// than `want` bytes, and exactly `want` when known; each chunk is metered
    /// by the throttle and reported. Returns the bytes written.
    pub(crate) async fn stream_body(
        &self,
        id: usize,
        (response, file): (&mut Response, &File),
        span: Span,
        mut hasher: Option<&mut Md5>,
        path: &Path,
        lead: &mut Lead<'_>,
    ) -> Result<u64, TransferError> {
        let stall = self.http.stall;
        let mut out = io::BufWriter::with_capacity(write_buffer(span.want), file);
        let mut got: u64 = 0;
        loop {
            let chunk = match tokio::time::timeout(stall, response.chunk()).await {
                Err(_) => {
                    out.flush().on_disk(path)?;
                    return Err(TransferError::Stall(stall));
                }
                Ok(Err(e)) => {
                    out.flush().on_disk(path)?;
                    return Err(match span.want {
                        Some(want) if got < want => TransferError::Truncated {
                            got: span.offset + got,
                            expected: span.offset + want,
                        },
                        _ => http::network_error(&e),
                    });
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            self.throttle.streamed(chunk.len()).await;
            let Some(chunk) = lead.eat(&chunk) else {
                return Err(TransferError::RangeMismatch(format!(
                "no validator, and the bytes before byte {} differ from those already in the `.part`: the file changed on the server; starting over",
                span.offset
            )));
            };
            if chunk.is_empty() {
                continue;
            }
            got += chunk.len() as u64;
            if let Some(want) = span.want {
                if got > want {
                    return Err(TransferError::TooLong {
                        expected: span.offset + want,
                    });
                }
            }
            if let Some(hs) = hasher.as_mut() {
                hs.update(chunk);
            }
            out.write_all(chunk).on_disk(path)?;
            self.reporter.progress(id, chunk.len() as u64);
        }
        out.flush().on_disk(path)?;
        if let Some(want) = span.want {
            if got < want {
                return Err(TransferError::Truncated {
                    got: span.offset + got,
                    expected: span.offset + want,
                });
            }
        }
        Ok(got)
    }
}

/// Creates the folders of a transfer's path below DEST (`root`), none a
/// symlink.
pub(crate) fn make_dirs(root: &Path, t: &Attempt<'_>) -> Result<(), TransferError> {
    let rel_dir = t.label.rsplit_once('/').map_or("", |(d, _)| d);
    part::create_dirs(root, rel_dir).on_disk(t.path)
}

/// Hashes the bytes already in a `.part` into `hasher`, off the runtime's
/// workers (never through a symlink).
async fn hash_file(part: &Part, mut hasher: Md5) -> Result<Md5, TransferError> {
    let path = part.path.clone();
    let p = part.clone();
    tokio::task::spawn_blocking(move || -> io::Result<Md5> {
        let mut f = p.open_read()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
    .on_disk(&path)?
    .on_disk(&path)
}

/// Checks the MD5 (when known) and renames the `.part` over the final path,
/// only if it is still the file that was written. The file's MD5 goes into
/// the returned [`Done`] for the state record: `hasher` when the body was
/// hashed as it streamed, else (parallel ranges) the `.part` read back once.
pub(crate) async fn finish(
    part: &Part,
    path: &Path,
    written: Written,
    expect_md5: Option<&str>,
    hasher: Option<Md5>,
    mut done: Done,
) -> Result<Done, TransferError> {
    let h = match hasher {
        Some(h) => h,
        None => hash_file(part, Md5::new()).await?,
    };
    let got = hex(&h.finalize());
    if let Some(expected) = expect_md5 {
        if !got.eq_ignore_ascii_case(expected) {
            part.discard();
            return Err(TransferError::Md5Mismatch {
                expected: expected.to_string(),
                got,
            });
        }
    }
    done.md5 = Some(got);
    if let Some(when) = done
        .last_modified
        .as_deref()
        .and_then(|d| httpdate::parse_http_date(d).ok())
    {
        // The file carries the source's date, as `curl -R` does.
        match &written.file {
            Some(f) => {
                let _ = f.set_modified(when);
            }
            None => {
                if let Ok(f) = part.open_append() {
                    let _ = f.set_modified(when);
                }
            }
        }
    }
    part::commit(part, path, Some(written.id), written.sidecar).on_disk(path)?;
    Ok(done)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first run does not read a sidecar beside a `.part` that is not
    /// there, but one left without its `.part` (a crash) is removed when
    /// the new `.part` is started, so it is never paired with new bytes.
    #[test]
    fn a_fresh_transfer_never_pairs_a_stale_sidecar_with_new_bytes() {
        let d = tempfile::tempdir().unwrap();
        let fin = d.path().join("a.fits");
        let part = Part::of(&fin);
        std::fs::write(&part.meta, b"{}").unwrap();
        assert!(resumable(&part, part.look()).is_none());
        drop(part.open(true).unwrap());
        assert!(
            !part.meta.exists(),
            "a stale sidecar goes with the new .part"
        );
        part::commit(&part, &fin, None, true).unwrap();
        // One written (or read) is removed with the `.part`.
        let fin = d.path().join("b.fits");
        let part = Part::of(&fin);
        std::fs::write(&part.path, b"bytes").unwrap();
        let meta = part::Meta {
            validator: None,
            total: Some(9),
            ranged: None,
        };
        part.save(&meta).unwrap();
        part::commit(&part, &fin, None, true).unwrap();
        assert!(!part.meta.exists());
        assert_eq!(std::fs::read(&fin).unwrap(), b"bytes");
    }

    #[test]
    fn content_range_table() {
        let r = |start, end, total| {
            Some(ContentRange {
                start: Some(start),
                end: Some(end),
                total,
            })
        };
        let cases: &[(&str, Option<ContentRange>)] = &[
            ("bytes 0-99/100", r(0, 99, Some(100))),
            ("bytes 50-99/100", r(50, 99, Some(100))),
            ("bytes 50-59/100", r(50, 59, Some(100))),
            ("bytes 50-99/*", r(50, 99, None)),
            (
                "bytes */100",
                Some(ContentRange {
                    start: None,
                    end: None,
                    total: Some(100),
                }),
            ),
            ("bytes 50-100/100", None),
            ("bytes 60-50/100", None),
            ("bytes x-50/100", None),
            ("items 0-1/2", None),
            ("bytes 0-1", None),
        ];
        for (input, want) in cases {
            assert_eq!(ContentRange::parse(input), *want, "{input}");
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
    fn only_single_part_etags_are_md5s() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(etag_md5(&format!("\"{md5}\"")).as_deref(), Some(md5));
        assert_eq!(etag_md5(md5).as_deref(), Some(md5));
        assert_eq!(
            etag_md5(" \"D41D8CD98F00B204E9800998ECF8427E\" ").as_deref(),
            Some(md5)
        );
        for bad in [
            "\"d41d8cd98f00b204e9800998ecf8427e-2\"",
            "\"0123456789abcdef0123456789abcdef-12\"",
            "W/\"d41d8cd98f00b204e9800998ecf8427e\"",
            "\"d41d8cd98f00b204e9800998ecf8427\"",
            "\"d41d8cd98f00b204e9800998ecf8427ef\"",
            "\"g41d8cd98f00b204e9800998ecf8427e\"",
            "\"d41d8cd98f00b204e9800998ecf8427e",
            "",
            "\"\"",
        ] {
            assert_eq!(etag_md5(bad), None, "{bad}");
        }
    }

    /// Issue 20 §1: without a validator, a resume's answer must start at
    /// the overlap asked for and name the total recorded when the `.part`
    /// was started (an unknown total will not do); with one, its validator.
    #[test]
    fn a_resume_without_validator_needs_the_recorded_total() {
        let r = Resume {
            have: 100_000,
            from: 100_000 - RESUME_OVERLAP,
            meta: Meta {
                validator: None,
                total: Some(200_000),
                ranged: None,
            },
        };
        assert_eq!(r.check(), Check::Overlap);
        let answer = |raw: &str| check_resumed(&r, ContentRange::parse(raw), raw, None, None);
        let from = r.from;
        assert_eq!(
            answer(&format!("bytes {from}-199999/200000")).unwrap(),
            Some(200_000)
        );
        for bad in [
            format!("bytes {from}-299999/300000"),
            format!("bytes {from}-199999/*"),
            "bytes 100000-199999/200000".to_string(),
        ] {
            assert!(answer(&bad).is_err(), "{bad}");
        }
        let strong = Resume {
            from: 100_000,
            meta: Meta {
                validator: Some(Validator::Etag("\"a\"".into())),
                ..r.meta.clone()
            },
            ..r
        };
        assert_eq!(strong.check(), Check::Validator);
        let raw = "bytes 100000-199999/200000";
        let ok = check_resumed(&strong, ContentRange::parse(raw), raw, Some("\"a\""), None);
        assert_eq!(ok.unwrap(), Some(200_000));
        let changed = check_resumed(&strong, ContentRange::parse(raw), raw, Some("\"b\""), None);
        assert!(changed.is_err());
    }

    #[test]
    fn a_lead_is_compared_or_kept_across_chunks() {
        let mut equal = Lead::Equal(b"abcd");
        assert_eq!(equal.eat(b"ab"), Some(&b""[..]));
        assert_eq!(equal.eat(b"cdef"), Some(&b"ef"[..]));
        assert_eq!(equal.eat(b"gh"), Some(&b"gh"[..]));
        assert_eq!(Lead::Equal(b"abcd").eat(b"abXd"), None);
        let mut keep = Lead::Keep(3, Vec::new());
        assert_eq!(keep.eat(b"ab"), Some(&b""[..]));
        assert_eq!(keep.eat(b"cde"), Some(&b"de"[..]));
        assert!(matches!(keep, Lead::Keep(0, ref k) if k == b"abc"));
        assert_eq!(
            Joined::Resumed {
                at: 43_201_331,
                check: Check::Overlap
            }
            .describe(),
            "resumed at 41.20 MiB; no validator, overlap checked"
        );
    }

    #[test]
    fn text_products() {
        assert!(is_text_product("x_cat.ecsv"));
        assert!(!is_text_product("x_i2d.fits"));
        assert!(!is_text_product("fitscut.cgi?red=a.txt"));
    }
}
