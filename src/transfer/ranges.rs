//! A large file as parallel byte ranges into one pre-sized `.part`: which
//! ranges are already done (the sidecar says, nothing else does), where each
//! range gets its connection (the bucket's own bound, or the archive's
//! budget: the job's slot plus extra ones nobody waits for), one range's
//! request with `If-Range` and its checks, and the rename only once every
//! range is listed.
//!
//! Without a validator `If-Range` can carry, every range after the first
//! starts [`RANGE_OVERLAP`] bytes before its boundary: those bytes are
//! kept, not written, and compared with what the range before it wrote
//! once both are on disk; every answer must name the same total. Any
//! difference discards the `.part` (the retry takes the file whole, in
//! one stream). Such a `.part` is not resumed by ranges in a later run:
//! the overlaps compared are not recorded.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::StatusCode;

use super::http::{header_str, status_error};
use super::part::{FileId, Meta, Part, Ranges, Validator};
use super::{
    etag_md5, finish, make_dirs, read_span, Answer, Attempt, Check, ContentRange, Creds, Done,
    Joined, Lead, OnDisk, Req, Span, TransferError, Written,
};
use crate::job::Downloader;

/// Objects larger than this are fetched as parallel byte ranges.
pub(crate) const RANGED_MIN: u64 = 16 << 20;
/// The size of one range.
pub(crate) const RANGE_CHUNK: u64 = 8 << 20;
/// The most ranges of one object in flight at once.
pub(crate) const RANGES_PER_OBJECT: usize = 8;
/// Without a validator, each range after the first starts this many bytes
/// before its boundary, to compare with the range before it.
pub(super) const RANGE_OVERLAP: u64 = 4 << 10;

/// The overlaps of ranges whose neighbour before them is not on disk yet:
/// range index → the bytes its answer started with.
type Pending = Mutex<HashMap<usize, Vec<u8>>>;

/// Returns which ranges of a `.part` for a file of `size` bytes with
/// validator `v` already hold their bytes: those a ranged sidecar for the
/// same file lists, or those inside the prefix a sequential attempt at the
/// same file left. Anything else is discarded: a pre-sized `.part`'s length
/// says nothing about its content. Without a validator `If-Range` can
/// carry, nothing is kept.
fn finished_ranges(part: &Part, size: u64, v: Option<&Validator>) -> Vec<bool> {
    let chunks = size.div_ceil(RANGE_CHUNK) as usize;
    let mut done = vec![false; chunks];
    let Some(v) = v.filter(|v| v.if_range().is_some()) else {
        part.discard();
        return done;
    };
    let same = |m: &Meta| m.total == Some(size) && m.validator.as_ref() == Some(v);
    match (part.file_len(), part.load()) {
        (Some(len), Some(m)) if same(&m) => match &m.ranged {
            Some(r) if r.chunk == RANGE_CHUNK && len == size => {
                for i in &r.done {
                    if let Some(d) = done.get_mut(*i) {
                        *d = true;
                    }
                }
            }
            Some(_) => part.discard(),
            None => {
                for (i, d) in done.iter_mut().enumerate() {
                    *d = (i as u64 + 1) * RANGE_CHUNK <= len.min(size);
                }
            }
        },
        (None, None) => {}
        _ => part.discard(),
    }
    done
}

/// Where the ranges of one file get their connections.
#[derive(Clone, Copy)]
pub(crate) enum Slots<'a> {
    /// The bucket's own bound: every range waits for a permit.
    Bucket(&'a tokio::sync::Semaphore),
    /// The archive's budget: the job's own slot, plus extra ones while
    /// nobody is waiting for them (given back between ranges when a file
    /// is).
    Budget(&'a crate::budget::Throttle),
}

/// A range's hold on a connection slot of the budget.
enum Hold {
    /// The job's own slot (the bucket's ranges each wait for a permit).
    Own,
    Extra(tokio::sync::OwnedSemaphorePermit),
}

impl Downloader {
    /// Downloads a file of known `size` as parallel byte ranges into one
    /// pre-sized `.part` (at most [`RANGES_PER_OBJECT`] at once, each on a slot
    /// of `slots`). The sidecar, written before the file is sized, lists the
    /// ranges done (each synced to disk first), so a retry or a later run
    /// fetches only the missing ones. Every range names the validator in
    /// `If-Range` and its answer must carry it; without a validator `If-Range`
    /// can carry, the ranges overlap and are compared (see the module docs).
    /// For bucket objects a single-part ETag is checked as the MD5 of the
    /// whole file before the rename.
    pub(crate) async fn download_ranged(
        &self,
        t: &Attempt<'_>,
        size: u64,
        v: Option<&Validator>,
        slots: Slots<'_>,
    ) -> Result<Done, TransferError> {
        let part = Part::of(t.path);
        make_dirs(self.dest.root(), t)?;
        let done = finished_ranges(&part, size, v);
        let check = match v.and_then(|v| v.if_range()) {
            Some(_) => Check::Validator,
            None => Check::Overlap,
        };
        let meta = std::sync::Mutex::new(Meta {
            validator: v.cloned(),
            total: Some(size),
            ranged: Some(Ranges {
                chunk: RANGE_CHUNK,
                done: (0..done.len()).filter(|i| done[*i]).collect(),
            }),
        });
        // The sidecar first: a crash after sizing must not leave zeros that
        // look like content.
        if let Ok(m) = meta.lock() {
            part.save(&m).on_disk(&part.meta)?;
        }
        let file = part.open(false).on_disk(&part.path)?;
        file.set_len(size).on_disk(&part.path)?;
        let id = FileId::of(&file).on_disk(&part.path)?;
        drop(file);
        let have: u64 = done
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(i, _)| RANGE_CHUNK.min(size - i as u64 * RANGE_CHUNK))
            .sum();
        self.reporter.started(t.id, t.label, Some(size), have);
        let todo: Vec<usize> = (0..done.len()).filter(|i| !done[*i]).collect();
        let pending = Pending::default();
        let ranges = Book {
            part: &part,
            meta: &meta,
            pending: &pending,
            size,
            v,
        };
        let received = self.run_ranges(t, &ranges, todo, slots).await?;
        // Every range must be listed as done before the file may be renamed:
        // a range never fetched would leave zeros that look like content.
        let listed = meta
            .lock()
            .map(|m| m.ranged.as_ref().map_or(0, |r| r.done.len()))
            .unwrap_or(0);
        let unchecked = pending.lock().map_or(1, |p| p.len());
        if listed != done.len() || unchecked > 0 {
            part.discard();
            return Err(TransferError::RangeMismatch(format!(
            "only {listed} of {} ranges arrived ({unchecked} overlaps not compared); starting over",
            done.len()
        )));
        }
        let md5 = match (t.md5_from_etag, v) {
            (true, Some(Validator::Etag(e))) => etag_md5(e),
            _ => None,
        };
        let (etag, last_modified) = match v {
            Some(Validator::Etag(e)) => (Some(e.clone()), None),
            Some(Validator::LastModified(d)) => (None, Some(d.clone())),
            None => (None, None),
        };
        finish(
            &part,
            t.path,
            Written {
                file: None,
                id,
                sidecar: true,
            },
            md5.as_deref(),
            None,
            Done {
                size,
                received,
                http_status: StatusCode::PARTIAL_CONTENT.as_u16(),
                etag,
                last_modified,
                withheld: None,
                md5: None,
                joined: Some(Joined::Ranged { check }),
            },
        )
        .await
    }
}

/// What the ranges of one file share: its `.part`, the sidecar's content,
/// the overlaps not compared yet, its size and validator.
struct Book<'a> {
    part: &'a Part,
    meta: &'a Mutex<Meta>,
    pending: &'a Pending,
    size: u64,
    v: Option<&'a Validator>,
}

impl Book<'_> {
    /// Lists range `i` as done (its bytes are on disk) and compares the
    /// overlaps it completes: its own `lead` with the range before it, and
    /// the one waiting for it of the range after it. A difference discards
    /// the `.part`.
    fn done(&self, i: usize, lead: Option<Vec<u8>>) -> Result<(), TransferError> {
        let poisoned = || TransferError::disk(&self.part.meta, io::Error::other("lock poisoned"));
        // One order: pending, then the sidecar.
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        let mut m = self.meta.lock().map_err(|_| poisoned())?;
        if let Some(r) = m.ranged.as_mut() {
            r.done.push(i);
        }
        let listed = |j: usize| m.ranged.as_ref().is_some_and(|r| r.done.contains(&j));
        let mut compare = Vec::new();
        if let Some(lead) = lead {
            if i > 0 && listed(i - 1) {
                compare.push((i, lead));
            } else {
                pending.insert(i, lead);
            }
        }
        if let Some(next) = pending.remove(&(i + 1)) {
            compare.push((i + 1, next));
        }
        for (j, lead) in compare {
            let boundary = j as u64 * RANGE_CHUNK;
            let theirs = read_span(self.part, boundary - lead.len() as u64, boundary)?;
            if theirs != lead {
                drop(m);
                self.part.discard();
                return Err(TransferError::RangeMismatch(format!(
                    "no validator, and ranges {} and {j} differ where they overlap (the {} bytes before byte {boundary}): the file changed on the server between them; it comes again whole",
                    j - 1,
                    lead.len()
                )));
            }
        }
        self.part.save(&m).on_disk(&self.part.meta)
    }
}

impl Downloader {
    /// Fetches the ranges `todo` (indices of [`RANGE_CHUNK`]s), as many at once
    /// as `slots` allow, recording each in the sidecar once it is on disk.
    /// Returns the bytes received.
    async fn run_ranges(
        &self,
        t: &Attempt<'_>,
        book: &Book<'_>,
        todo: Vec<usize>,
        slots: Slots<'_>,
    ) -> Result<u64, TransferError> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let one = |i: usize, hold: Hold| async move {
            let _bucket = match slots {
                Slots::Bucket(sem) => Some(
                    sem.acquire()
                        .await
                        .map_err(|_| TransferError::Interrupted)?,
                ),
                Slots::Budget(_) => None,
            };
            let start = i as u64 * RANGE_CHUNK;
            let end = (start + RANGE_CHUNK).min(book.size) - 1;
            let (got, lead) = self.fetch_range(t, book, start, end).await?;
            book.done(i, lead)?;
            Ok::<(u64, Hold), TransferError>((got, hold))
        };
        let mut queue = todo.into_iter();
        let mut running = FuturesUnordered::new();
        let mut received = 0u64;
        if let Some(i) = queue.next() {
            running.push(one(i, Hold::Own));
        }
        loop {
            // Widen while slots are free and ranges are left.
            while running.len() < RANGES_PER_OBJECT && queue.len() > 0 {
                let extra = match slots {
                    Slots::Bucket(_) => Some(Hold::Own),
                    Slots::Budget(b) => b.try_extra().map(Hold::Extra),
                };
                // The slot first: a range is taken from the queue only with one.
                let Some(hold) = extra else {
                    break;
                };
                let Some(i) = queue.next() else {
                    break;
                };
                running.push(one(i, hold));
            }
            let Some(result) = running.next().await else {
                return Ok(received);
            };
            let (got, hold) = result?;
            received += got;
            let keep = match (&hold, slots) {
                // A file waits for this extra slot: give it back.
                (Hold::Extra(_), Slots::Budget(b)) => !b.wanted(),
                _ => true,
            };
            if keep {
                if let Some(i) = queue.next() {
                    running.push(one(i, hold));
                }
            } else if let (Hold::Extra(p), Slots::Budget(b)) = (hold, slots) {
                b.release(p);
            }
        }
    }

    /// Fetches bytes `start..=end` of the book's file into the `.part` at
    /// their offset, synced to disk. Without a validator `If-Range` can carry,
    /// the answer starts [`RANGE_OVERLAP`] bytes earlier (after the first
    /// range), and those bytes are returned, not written. Returns the bytes
    /// written and that overlap.
    async fn fetch_range(
        &self,
        t: &Attempt<'_>,
        book: &Book<'_>,
        start: u64,
        end: u64,
    ) -> Result<(u64, Option<Vec<u8>>), TransferError> {
        use std::io::{Seek, SeekFrom};
        let http = &self.http;
        let (part, size, v) = (book.part, book.size, book.v);
        let strong = v.and_then(|v| v.if_range());
        let overlap = if strong.is_some() {
            0
        } else {
            RANGE_OVERLAP.min(start)
        };
        let from = start - overlap;
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={from}-{end}")) {
            headers.insert(header::RANGE, v);
        }
        if let Some(h) = strong.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert(header::IF_RANGE, h);
        }
        let Answer { mut response, .. } = http
            .send(Req {
                headers,
                ..Req::get(t.url, Creds::token(t.token))
            })
            .await?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            if !response.status().is_success()
                && response.status() != StatusCode::RANGE_NOT_SATISFIABLE
            {
                return Err(status_error(response, http.stall).await);
            }
            // A whole file instead of a range: If-Range said it changed.
            part.discard();
            return Err(TransferError::RangeMismatch(format!(
                "asked for bytes {from}-{end}, got HTTP {} (did the file change?)",
                response.status().as_u16()
            )));
        }
        let raw = header_str(response.headers(), header::CONTENT_RANGE).unwrap_or_default();
        let want_range = ContentRange {
            start: Some(from),
            end: Some(end),
            total: Some(size),
        };
        if ContentRange::parse(&raw) != Some(want_range) {
            part.discard();
            return Err(TransferError::RangeMismatch(format!(
            "asked for bytes {from}-{end} of {size}, got Content-Range `{}` (did the object change?)",
            crate::layout::escape(&raw)
        )));
        }
        // An answer naming another version (a reprocessed file) is not ours:
        // it must name the version the other ranges came from.
        if let Some(v) = v {
            let h = response.headers();
            let (etag, modified) = (
                header_str(h, header::ETAG),
                header_str(h, header::LAST_MODIFIED),
            );
            if !v.matches(etag.as_deref(), modified.as_deref()) {
                part.discard();
                let (old, new) = match v {
                    Validator::Etag(e) => (format!("ETag {e}"), etag),
                    Validator::LastModified(d) => (format!("Last-Modified {d}"), modified),
                };
                let new = new.map_or("none".to_string(), |n| crate::layout::escape(&n));
                return Err(TransferError::RangeMismatch(format!(
                "asked for bytes {from}-{end} of {size}: the validator changed ({} -> {new}), so the file changed on the server; starting over",
                crate::layout::escape(&old)
            )));
            }
        }
        let mut file = part.open(false).on_disk(&part.path)?;
        file.seek(SeekFrom::Start(start)).on_disk(&part.path)?;
        let sync = file.try_clone().on_disk(&part.path)?;
        let want = end - start + 1;
        let mut lead = Lead::Keep(overlap as usize, Vec::with_capacity(overlap as usize));
        let span = Span {
            offset: start,
            want: Some(want),
        };
        let got = self
            .stream_body(
                t.id,
                (&mut response, &file),
                span,
                None,
                &part.path,
                &mut lead,
            )
            .await?;
        // On disk before the sidecar says so.
        tokio::task::spawn_blocking(move || sync.sync_data())
            .await
            .on_disk(&part.path)?
            .on_disk(&part.path)?;
        let lead = match lead {
            Lead::Keep(0, kept) if overlap > 0 => Some(kept),
            _ => None,
        };
        Ok((got, lead))
    }
}
