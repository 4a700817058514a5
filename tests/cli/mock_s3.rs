//! A stand-in for an S3 bucket endpoint, path-style (`/{bucket}/{*key}`),
//! for tests of `--cloud`.
//!
//! It answers `GET` and `HEAD` the way S3 does for a public bucket:
//! `Content-Length`, `ETag`, `Last-Modified`, `Accept-Ranges: bytes`;
//! `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` with 206 and
//! `Content-Range` (416 `InvalidRange` past the end; a malformed or
//! multi-range header is ignored, as S3 does); errors as S3's XML bodies
//! (`<Error><Code>NoSuchKey</Code>…`), without a body on `HEAD`. An object
//! added with [`MockS3::add`] has the single-part ETag `"<md5>"`; with
//! [`MockS3::add_multipart`], `"<md5 of the parts' md5s>-N"`.
//!
//! Scripted misbehaviour: 403 `AccessDenied` for [`MockS3::forbid`]den keys,
//! 503 `SlowDown` for the first requests ([`MockS3::slow_down_first`]), a
//! flipped byte (ETag kept) in the first GETs of an object
//! ([`MockS3::corrupt_first`]), and a pause between body chunks
//! ([`MockS3::chunk_delay`]) so that overlapping transfers can be seen.
//!
//! Every request is recorded with its method, path, query, `Range` and all
//! its headers (so a test can assert that no `Authorization`, cookie or
//! `x-amz-*` credential ever arrives: [`MockS3::credentials_seen`]); body
//! bytes handed to the server are counted, and so is the most GETs in
//! flight at once (a GET is in flight until its body has been sent or
//! dropped).
//!
//! Mount it with its state:
//!
//! ```ignore
//! let s3 = Arc::new(MockS3::new());
//! s3.add("stpubdata/hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits", bytes(1, 1000));
//! let app = axum::Router::new().route(
//!     "/{bucket}/{*key}",
//!     axum::routing::get(mock_s3::get_object)
//!         .head(mock_s3::head_object)
//!         .with_state(s3.clone()),
//! );
//! // --s3-url http://127.0.0.1:PORT/stpubdata
//! ```

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use md5::{Digest, Md5};

/// The size of the body chunks the mock hands to the server.
pub const CHUNK: usize = 64 * 1024;

/// The `Last-Modified` of version 0 of every object: 2025-01-01T00:00:00Z.
const EPOCH_SECS: u64 = 1_735_689_600;

/// Returns the lowercase hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the ETag S3 gives an object uploaded in `parts` equal parts (the
/// last one shorter): `"<md5 of the concatenated part MD5s>-N"`.
pub fn multipart_etag(bytes: &[u8], parts: usize) -> String {
    let size = bytes.len().div_ceil(parts.max(1)).max(1);
    let mut chunks: Vec<&[u8]> = bytes.chunks(size).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let mut all = Md5::new();
    for c in &chunks {
        all.update(Md5::digest(c));
    }
    format!("\"{}-{}\"", hex(&all.finalize()), chunks.len())
}

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct S3Request {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path as sent (still percent-encoded), e.g. `/stpubdata/hst/public/x.fits`.
    pub path: String,
    /// The query string, if any (a presigned URL would carry its signature here).
    pub query: Option<String>,
    /// `bucket/key`, decoded.
    pub bucket_key: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// Every header, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl S3Request {
    /// Returns the first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
struct Object {
    body: Bytes,
    etag: String,
    last_modified: String,
}

#[derive(Default)]
struct Inner {
    buckets: HashSet<String>,
    objects: HashMap<String, Object>,
    forbidden: HashSet<String>,
    slow_down: usize,
    slow_down_for: HashMap<String, usize>,
    corrupt_each: usize,
    corrupt_for: HashMap<String, usize>,
    gets: HashMap<String, usize>,
    requests: Vec<S3Request>,
    chunk_delay: Option<Duration>,
    version: u64,
}

/// The bucket's objects, its scripted misbehaviour, and what it has seen.
#[derive(Default)]
pub struct MockS3 {
    inner: Mutex<Inner>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    body_bytes: AtomicU64,
}

impl MockS3 {
    /// Returns an empty endpoint: every bucket unknown until an object is added.
    pub fn new() -> MockS3 {
        MockS3::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, bucket_key: &str, body: Vec<u8>, etag: String) -> &MockS3 {
        let bucket_key = bucket_key.trim_start_matches('/');
        let mut s = self.lock();
        if let Some((bucket, _)) = bucket_key.split_once('/') {
            s.buckets.insert(bucket.to_string());
        }
        s.version += 1;
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS + s.version);
        s.objects.insert(
            bucket_key.to_string(),
            Object {
                body: Bytes::from(body),
                etag,
                last_modified: httpdate::fmt_http_date(when),
            },
        );
        drop(s);
        self
    }

    /// Adds (or replaces, with a newer `Last-Modified`) the object
    /// `bucket/key` with a single-part ETag: the quoted MD5 of `bytes`.
    pub fn add(&self, bucket_key: &str, bytes: impl Into<Vec<u8>>) -> &MockS3 {
        let bytes = bytes.into();
        let etag = format!("\"{}\"", md5_hex(&bytes));
        self.put(bucket_key, bytes, etag)
    }

    /// Adds (or replaces) the object `bucket/key` as if uploaded in `parts`
    /// parts: its ETag is `"<md5 of md5s>-N"`, not the MD5 of the bytes.
    pub fn add_multipart(
        &self,
        bucket_key: &str,
        bytes: impl Into<Vec<u8>>,
        parts: usize,
    ) -> &MockS3 {
        let bytes = bytes.into();
        let etag = multipart_etag(&bytes, parts);
        self.put(bucket_key, bytes, etag)
    }

    /// Removes the object `bucket/key` (its bucket stays known).
    pub fn remove(&self, bucket_key: &str) -> &MockS3 {
        self.lock()
            .objects
            .remove(bucket_key.trim_start_matches('/'));
        self
    }

    /// Makes `bucket` known, empty until objects are added: its missing
    /// keys answer `NoSuchKey` rather than `NoSuchBucket`.
    pub fn bucket(&self, bucket: &str) -> &MockS3 {
        self.lock().buckets.insert(bucket.to_string());
        self
    }

    /// Answers every request for `bucket/key` with 403 `AccessDenied`
    /// (what S3 says for an object the anonymous user may not read, and for
    /// a missing key when listing the bucket is not allowed).
    pub fn forbid(&self, bucket_key: &str) -> &MockS3 {
        let bucket_key = bucket_key.trim_start_matches('/');
        let mut s = self.lock();
        if let Some((bucket, _)) = bucket_key.split_once('/') {
            s.buckets.insert(bucket.to_string());
        }
        s.forbidden.insert(bucket_key.to_string());
        drop(s);
        self
    }

    /// Answers the next `n` requests, whatever their key, with 503 `SlowDown`.
    pub fn slow_down_first(&self, n: usize) -> &MockS3 {
        self.lock().slow_down = n;
        self
    }

    /// Answers the next `n` requests for `bucket/key` with 503 `SlowDown`.
    pub fn slow_down_first_for(&self, bucket_key: &str, n: usize) -> &MockS3 {
        self.lock()
            .slow_down_for
            .insert(bucket_key.trim_start_matches('/').to_string(), n);
        self
    }

    /// Flips one byte (the first of the body sent) in the next `n` GETs of
    /// every object (each ranged GET counts); headers, ETag included, stay
    /// right.
    pub fn corrupt_first(&self, n: usize) -> &MockS3 {
        let mut s = self.lock();
        s.corrupt_each = n;
        s.gets.clear();
        drop(s);
        self
    }

    /// Flips one byte in the next `n` GETs of `bucket/key` only.
    pub fn corrupt_first_for(&self, bucket_key: &str, n: usize) -> &MockS3 {
        self.lock()
            .corrupt_for
            .insert(bucket_key.trim_start_matches('/').to_string(), n);
        self
    }

    /// Pauses `d` before each [`CHUNK`] of every body.
    pub fn chunk_delay(&self, d: Duration) -> &MockS3 {
        self.lock().chunk_delay = Some(d);
        self
    }

    /// Returns the ETag of `bucket/key`, quotes included.
    pub fn etag(&self, bucket_key: &str) -> Option<String> {
        self.lock()
            .objects
            .get(bucket_key.trim_start_matches('/'))
            .map(|o| o.etag.clone())
    }

    /// Returns the `Last-Modified` of `bucket/key`.
    pub fn last_modified(&self, bucket_key: &str) -> Option<String> {
        self.lock()
            .objects
            .get(bucket_key.trim_start_matches('/'))
            .map(|o| o.last_modified.clone())
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<S3Request> {
        self.lock().requests.clone()
    }

    /// The requests for `bucket/key`.
    pub fn requests_for(&self, bucket_key: &str) -> Vec<S3Request> {
        let k = bucket_key.trim_start_matches('/');
        self.requests()
            .into_iter()
            .filter(|r| r.bucket_key == k)
            .collect()
    }

    /// The number of GET requests seen so far (any key, any answer).
    pub fn gets(&self) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == "GET")
            .count()
    }

    /// Every credential that reached the bucket: headers named
    /// `authorization`, `proxy-authorization`, `cookie` or `x-amz-*`, and
    /// queries carrying a signature (`X-Amz-…`, `Signature=`,
    /// `AWSAccessKeyId=`), as `(name, value)` pairs. Empty when all is well.
    pub fn credentials_seen(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in self.requests() {
            for (n, v) in &r.headers {
                if matches!(
                    n.as_str(),
                    "authorization" | "proxy-authorization" | "cookie"
                ) || n.starts_with("x-amz-")
                {
                    out.push((n.clone(), v.clone()));
                }
            }
            if let Some(q) = &r.query {
                let lower = q.to_ascii_lowercase();
                if lower.contains("x-amz-")
                    || lower.contains("signature=")
                    || lower.contains("awsaccesskeyid=")
                {
                    out.push(("query".to_string(), q.clone()));
                }
            }
        }
        out
    }

    /// The body bytes handed to the server so far (a body cut short by the
    /// client counts only the chunks produced before it went away).
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::SeqCst)
    }

    /// The most GETs that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// The GETs in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Forgets recorded requests, byte counts and the in-flight peak (not
    /// the objects nor the misbehaviour counters).
    pub fn reset_log(&self) {
        self.lock().requests.clear();
        self.body_bytes.store(0, Ordering::SeqCst);
        self.max_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// The axum handler for `GET /{bucket}/{*key}`; state `Arc<MockS3>`.
pub async fn get_object(
    State(s3): State<Arc<MockS3>>,
    Path((bucket, key)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // A GET router also answers HEAD when no HEAD handler is mounted.
    let head = method == Method::HEAD;
    serve(s3, &bucket, &key, head, &uri, &headers)
}

/// The axum handler for `HEAD /{bucket}/{*key}`; state `Arc<MockS3>`.
pub async fn head_object(
    State(s3): State<Arc<MockS3>>,
    Path((bucket, key)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    serve(s3, &bucket, &key, true, &uri, &headers)
}

/// What one `Range` header asks of an object of `total` bytes.
#[derive(Debug, PartialEq)]
enum Want {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Reads a `Range` header as S3 does: one `bytes=` range or nothing.
fn parse_range(value: &str, total: u64) -> Want {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Want::Whole;
    };
    if spec.contains(',') {
        return Want::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Want::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => Want::Unsatisfiable,
            Ok(_) if total == 0 => Want::Unsatisfiable,
            Ok(n) => Want::Part(total.saturating_sub(n), total - 1),
            Err(_) => Want::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return Want::Whole;
    };
    let end = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => Some(e),
            _ => return Want::Whole,
        }
    };
    if start >= total {
        return Want::Unsatisfiable;
    }
    Want::Part(start, end.map_or(total - 1, |e| e.min(total - 1)))
}

/// Takes one from the counter under `key` if it is above zero.
fn take(map: &mut HashMap<String, usize>, key: &str) -> bool {
    match map.get_mut(key) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// An S3 error: XML body (none on HEAD), `x-amz-request-id`. `extra` is
/// the element S3 adds for the code (`("Key", key)` for `NoSuchKey`,
/// `("BucketName", bucket)` for `NoSuchBucket`), if any.
fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: Option<(&str, &str)>,
    head: bool,
) -> Response {
    let extra = extra
        .map(|(name, value)| format!("<{name}>{}</{name}>", xml_escape(value)))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message>{extra}<RequestId>MOCKREQUEST0001</RequestId><HostId>mock-s3</HostId></Error>",
        xml_escape(message),
    );
    let builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml")
        .header("x-amz-request-id", "MOCKREQUEST0001");
    let resp = if head {
        builder.body(Body::empty())
    } else {
        builder
            .header(header::CONTENT_LENGTH, body.len().to_string())
            .body(Body::from(body))
    };
    resp.unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Decides the answer, records the request, and counts the GET in flight.
fn serve(
    s3: Arc<MockS3>,
    bucket: &str,
    key: &str,
    head: bool,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let bucket_key = format!("{bucket}/{key}");
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut record = S3Request {
        method: if head { "HEAD" } else { "GET" }.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        bucket_key: bucket_key.clone(),
        range: range.clone(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        status: 0,
    };

    let mut s = s3.lock();
    let bucket_known = s.buckets.contains(bucket);
    let answer: Result<(Object, Want, bool), Response> = if s.slow_down > 0 {
        s.slow_down -= 1;
        Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
            None,
            head,
        ))
    } else if take(&mut s.slow_down_for, &bucket_key) {
        Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
            None,
            head,
        ))
    } else if !bucket_known {
        Err(error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
            Some(("BucketName", bucket)),
            head,
        ))
    } else if s.forbidden.contains(&bucket_key) {
        Err(error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access Denied",
            None,
            head,
        ))
    } else if let Some(obj) = s.objects.get(&bucket_key).cloned() {
        let want = range
            .as_deref()
            .map_or(Want::Whole, |r| parse_range(r, obj.body.len() as u64));
        if want == Want::Unsatisfiable {
            let mut r = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
                None,
                head,
            );
            if let Ok(v) = format!("bytes */{}", obj.body.len()).parse() {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            Err(r)
        } else {
            let corrupt = !head && {
                let n = s.gets.entry(bucket_key.clone()).or_insert(0);
                *n += 1;
                let nth = *n;
                let each = nth <= s.corrupt_each;
                take(&mut s.corrupt_for, &bucket_key) || each
            };
            Ok((obj, want, corrupt))
        }
    } else {
        Err(error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
            Some(("Key", key)),
            head,
        ))
    };
    let delay = s.chunk_delay;
    let (obj, want, corrupt) = match answer {
        Ok(a) => a,
        Err(resp) => {
            record.status = resp.status().as_u16();
            s.requests.push(record);
            return resp;
        }
    };

    let total = obj.body.len() as u64;
    let (status, slice) = match want {
        Want::Part(a, b) => (
            StatusCode::PARTIAL_CONTENT,
            obj.body.slice(a as usize..(b + 1) as usize),
        ),
        _ => (StatusCode::OK, obj.body.clone()),
    };
    record.status = status.as_u16();
    s.requests.push(record);
    drop(s);

    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "binary/octet-stream")
        .header(header::CONTENT_LENGTH, slice.len().to_string())
        .header(header::ETAG, obj.etag.as_str())
        .header(header::LAST_MODIFIED, obj.last_modified.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-amz-request-id", "MOCKREQUEST0001");
    if let Want::Part(a, b) = want {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{total}"));
    }
    if head {
        return builder
            .body(Body::empty())
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    let data = if corrupt && !slice.is_empty() {
        let mut v = slice.to_vec();
        v[0] ^= 0xFF;
        Bytes::from(v)
    } else {
        slice
    };
    let now = s3.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s3.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let stream = BodyStream {
        data,
        pos: 0,
        delay,
        sleep: None,
        s3,
    };
    builder
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A body handed out in [`CHUNK`]s, counted as they go; the GET stays in
/// flight until the stream is dropped (sent in full, or the client left).
struct BodyStream {
    data: Bytes,
    pos: usize,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    s3: Arc<MockS3>,
}

impl futures_core::Stream for BodyStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.pos >= self.data.len() {
            return Poll::Ready(None);
        }
        if let Some(d) = self.delay {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        let end = (self.pos + CHUNK).min(self.data.len());
        let chunk = self.data.slice(self.pos..end);
        self.pos = end;
        self.s3
            .body_bytes
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        self.s3.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

// The mock's own checks; they run in the test binary that mounts it.
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_s3_reads_them() {
        assert_eq!(parse_range("bytes=0-9", 100), Want::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Want::Part(90, 99));
        assert_eq!(parse_range("bytes=90-1000", 100), Want::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Want::Part(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Want::Part(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Want::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Want::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Want::Unsatisfiable);
        assert_eq!(parse_range("bytes=9-1", 100), Want::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Want::Whole);
        assert_eq!(parse_range("items=0-1", 100), Want::Whole);
        assert_eq!(parse_range("bytes=x-", 100), Want::Whole);
    }

    #[test]
    fn etags_are_md5_or_md5_of_md5s() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        let e = multipart_etag(b"abcdef", 2);
        let mut all = Md5::new();
        all.update(Md5::digest(b"abc"));
        all.update(Md5::digest(b"def"));
        assert_eq!(e, format!("\"{}-2\"", hex(&all.finalize())));
    }
}
