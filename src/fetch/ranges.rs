//! A large file as parallel byte ranges into one pre-sized `.part`: which
//! ranges are already done (the sidecar says, nothing else does), where each
//! range gets its connection (the bucket's own bound, or the archive's
//! budget: the job's slot plus extra ones nobody waits for), one range's
//! request with `If-Range` and its checks, and the rename only once every
//! range is listed.

use std::io;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::StatusCode;

use super::http::{header_str, status_error};
use super::part::{FileId, Meta, Part, Ranges, Validator};
use super::{
    etag_md5, finish, make_dirs, stream_body, Answer, ContentRange, Creds, Done, FetchError, Http,
    Req, Span, Transfer,
};

/// Objects larger than this are fetched as parallel byte ranges.
pub const RANGED_MIN: u64 = 16 << 20;
/// The size of one range.
pub const RANGE_CHUNK: u64 = 8 << 20;
/// The most ranges of one object in flight at once.
pub const RANGES_PER_OBJECT: usize = 8;

/// Returns which ranges of a `.part` for a file of `size` bytes with
/// validator `v` already hold their bytes: those a ranged sidecar for the
/// same file lists, or those inside the prefix a sequential attempt at the
/// same file left. Anything else is discarded: a pre-sized `.part`'s length
/// says nothing about its content.
fn finished_ranges(part: &Part, size: u64, v: &Validator) -> Vec<bool> {
    let chunks = size.div_ceil(RANGE_CHUNK) as usize;
    let mut done = vec![false; chunks];
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
pub enum Slots<'a> {
    /// The bucket's own bound: every range waits for a permit.
    Bucket(&'a tokio::sync::Semaphore),
    /// The archive's budget: the job's own slot, plus extra ones while
    /// nobody is waiting for them (given back between ranges when a file
    /// is).
    Budget(&'a crate::budget::Budget),
}

/// A range's hold on a connection slot of the budget.
enum Hold {
    /// The job's own slot (the bucket's ranges each wait for a permit).
    Own,
    Extra(tokio::sync::OwnedSemaphorePermit),
}

/// Downloads a file of known `size` as parallel byte ranges into one
/// pre-sized `.part` (at most [`RANGES_PER_OBJECT`] at once, each on a slot
/// of `slots`). The sidecar, written before the file is sized, lists the
/// ranges done (each synced to disk first), so a retry or a later run
/// fetches only the missing ones. Every range names the validator in
/// `If-Range` and its answer must carry it. For bucket objects a
/// single-part ETag is checked as the MD5 of the whole file before the
/// rename.
pub async fn download_ranged(
    http: &Http,
    t: Transfer<'_>,
    size: u64,
    v: &Validator,
    slots: Slots<'_>,
) -> Result<Done, FetchError> {
    let part = Part::of(t.path);
    make_dirs(&t)?;
    let done = finished_ranges(&part, size, v);
    let meta = std::sync::Mutex::new(Meta {
        validator: Some(v.clone()),
        total: Some(size),
        ranged: Some(Ranges {
            chunk: RANGE_CHUNK,
            done: (0..done.len()).filter(|i| done[*i]).collect(),
        }),
    });
    // The sidecar first: a crash after sizing must not leave zeros that
    // look like content.
    if let Ok(m) = meta.lock() {
        part.save(&m).map_err(|e| FetchError::disk(&part.meta, e))?;
    }
    let file = part
        .open(false)
        .map_err(|e| FetchError::disk(&part.path, e))?;
    file.set_len(size)
        .map_err(|e| FetchError::disk(&part.path, e))?;
    let id = FileId::of(&file).map_err(|e| FetchError::disk(&part.path, e))?;
    drop(file);
    let have: u64 = done
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| RANGE_CHUNK.min(size - i as u64 * RANGE_CHUNK))
        .sum();
    t.reporter.started(t.id, t.label, Some(size), have);
    let todo: Vec<usize> = (0..done.len()).filter(|i| !done[*i]).collect();
    let received = run_ranges(http, &t, &part, &meta, size, v, todo, slots).await?;
    // Every range must be listed as done before the file may be renamed:
    // a range never fetched would leave zeros that look like content.
    let listed = meta
        .lock()
        .map(|m| m.ranged.as_ref().map_or(0, |r| r.done.len()))
        .unwrap_or(0);
    if listed != done.len() {
        part.discard();
        return Err(FetchError::RangeMismatch(format!(
            "only {listed} of {} ranges arrived; starting over",
            done.len()
        )));
    }
    let md5 = match (t.md5_from_etag, v) {
        (true, Validator::Etag(e)) => etag_md5(e),
        _ => None,
    };
    let (etag, last_modified) = match v {
        Validator::Etag(e) => (Some(e.clone()), None),
        Validator::LastModified(d) => (None, Some(d.clone())),
    };
    finish(
        &part,
        t.path,
        id,
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
        },
    )
    .await
}

/// Fetches the ranges `todo` (indices of [`RANGE_CHUNK`]s), as many at once
/// as `slots` allow, recording each in the sidecar once it is on disk.
/// Returns the bytes received.
#[allow(clippy::too_many_arguments)]
async fn run_ranges(
    http: &Http,
    t: &Transfer<'_>,
    part: &Part,
    meta: &std::sync::Mutex<Meta>,
    size: u64,
    v: &Validator,
    todo: Vec<usize>,
    slots: Slots<'_>,
) -> Result<u64, FetchError> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let one = |i: usize, hold: Hold| async move {
        let _bucket = match slots {
            Slots::Bucket(sem) => Some(sem.acquire().await.map_err(|_| FetchError::Interrupted)?),
            Slots::Budget(_) => None,
        };
        let start = i as u64 * RANGE_CHUNK;
        let end = (start + RANGE_CHUNK).min(size) - 1;
        let got = fetch_range(http, t, part, start, end, size, v).await?;
        let mut m = meta
            .lock()
            .map_err(|_| FetchError::disk(&part.meta, io::Error::other("lock poisoned")))?;
        if let Some(r) = m.ranged.as_mut() {
            r.done.push(i);
        }
        part.save(&m).map_err(|e| FetchError::disk(&part.meta, e))?;
        Ok::<(u64, Hold), FetchError>((got, hold))
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

/// Fetches bytes `start..=end` of a file of `size` bytes with validator
/// `v` into the `.part` at their offset, synced to disk. Returns the bytes
/// received.
async fn fetch_range(
    http: &Http,
    t: &Transfer<'_>,
    part: &Part,
    start: u64,
    end: u64,
    size: u64,
    v: &Validator,
) -> Result<u64, FetchError> {
    use std::io::{Seek, SeekFrom};
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes={start}-{end}")) {
        headers.insert(header::RANGE, v);
    }
    if let Some(h) = v.if_range().and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(header::IF_RANGE, h);
    }
    let Answer { mut response, .. } = http
        .send(Req {
            headers,
            ..Req::get(t.url, Creds::token(t.token))
        })
        .await?;
    if response.status() != StatusCode::PARTIAL_CONTENT {
        if !response.status().is_success() && response.status() != StatusCode::RANGE_NOT_SATISFIABLE
        {
            return Err(status_error(response, http.stall).await);
        }
        // A whole file instead of a range: If-Range said it changed.
        part.discard();
        return Err(FetchError::RangeMismatch(format!(
            "asked for bytes {start}-{end}, got HTTP {} (did the file change?)",
            response.status().as_u16()
        )));
    }
    let raw = header_str(response.headers(), header::CONTENT_RANGE).unwrap_or_default();
    let want_range = ContentRange {
        start: Some(start),
        end: Some(end),
        total: Some(size),
    };
    // An answer naming another version (a reprocessed file) is not ours.
    // The answer must name the version the other ranges came from.
    let same_etag = v.matches(
        header_str(response.headers(), header::ETAG).as_deref(),
        header_str(response.headers(), header::LAST_MODIFIED).as_deref(),
    );
    if ContentRange::parse(&raw) != Some(want_range) || !same_etag {
        part.discard();
        return Err(FetchError::RangeMismatch(format!(
            "asked for bytes {start}-{end} of {size}, got Content-Range `{}` (did the object change?)",
            crate::layout::escape(&raw)
        )));
    }
    let mut file = part
        .open(false)
        .map_err(|e| FetchError::disk(&part.path, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| FetchError::disk(&part.path, e))?;
    let sync = file
        .try_clone()
        .map_err(|e| FetchError::disk(&part.path, e))?;
    let want = end - start + 1;
    let got = stream_body(
        &mut response,
        file,
        Span {
            offset: start,
            want: Some(want),
        },
        http.stall,
        None,
        t,
        &part.path,
    )
    .await?;
    // On disk before the sidecar says so.
    tokio::task::spawn_blocking(move || sync.sync_data())
        .await
        .map_err(|e| FetchError::disk(&part.path, io::Error::other(e)))?
        .map_err(|e| FetchError::disk(&part.path, e))?;
    Ok(got)
}
