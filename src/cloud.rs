//! The bucket side of the plan: which products MAST mirrors in its public
//! AWS Open Data bucket, where each one lives there, and what an S3 ETag
//! promises about the bytes.
//!
//! [`route`] is the cloud step of the plan, the one place that decides
//! where each job's bytes come from (its [`Route`]): [`is_cloud_candidate`]
//! picks the URIs worth asking about; [`lookup`] asks the archive's
//! `path_lookup` service where they are; [`object_key`] turns each answer
//! into the bucket's object key and [`object_url`] into the URL to fetch
//! ([`crate::transfer::etag_md5`] says when an object's ETag is the MD5 of its
//! bytes). Everything but [`lookup`] and [`route`] is pure.
//!
//! # Sources
//!
//! astroquery (`astropy/astroquery`): the mission list is
//! `CloudAccess.supported_missions` in `astroquery/mast/cloud.py`; the
//! request, the 50-URI chunks and the path-to-key rules are
//! `mast_relative_path` in `astroquery/mast/utils.py`; the answer's shape is
//! its test data `astroquery/mast/tests/data/mast_relative_path.json`:
//!
//! ```text
//! {"mast:HST/product/u9o40504m_c3m.fits": {"status_code": 200, "path": "/hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits"},
//!  "mast:HST/product/does_not_exist.fits": {"status_code": 404, "path": null}}
//! ```
//!
//! # Where we differ from astroquery, on purpose
//!
//! The contract (`Cloud (AWS Open Data)`) states the rules as prefixes;
//! astroquery applies them with Python string methods that only agree with
//! that reading on well-formed paths:
//!
//! * GALEX: astroquery calls `path.lstrip("/mast/")`, which strips any run of
//!   the characters `/`, `m`, `a`, `s`, `t` (a character set, not a prefix).
//!   We drop the prefix `/mast/` only; a GALEX path without it just loses
//!   its leading `/`.
//! * PS1: astroquery replaces *every* `/ps1/` anywhere in the path (and then
//!   keeps a leading `/` if `/ps1/` was not at the start). We rewrite the
//!   leading `/ps1/` only; elsewhere it is an ordinary path segment.
//! * HLSP: astroquery tests `'hlsp' in path` and then replaces
//!   `/hlsp_local/public/`; a path holding `hlsp` but not that prefix would
//!   keep its leading `/`. We rewrite the leading `/hlsp_local/public/` and
//!   treat every other path by the default rule.
//! * A `null` path, a missing entry or an entry of another shape is "not in
//!   the cloud" here; astroquery raises on a missing entry.
//! * A key with empty, `.` or `..` segments, a backslash or a control
//!   character is refused (treated as not in the cloud): a URL parser would
//!   otherwise resolve `..` and step outside the bucket's path.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use serde_json::Value;
use url::Url;

use crate::error::{excerpt, UsageError};
use crate::plan::{Job, Route};
use crate::progress::{Level, Reporter};
use crate::retry::{self, Failure};
use crate::settings::{Cloud, Settings};
use crate::token::Token;
use crate::transfer::{Creds, Http, Req};

/// The URI prefixes (compared case-insensitively) of the missions MAST
/// mirrors in its public bucket.
pub(crate) const CLOUD_PREFIXES: [&str; 6] = [
    "mast:HST/product",
    "mast:TESS/product",
    "mast:JWST/product",
    "mast:Kepler",
    "mast:GALEX",
    "mast:PS1",
];

/// The most `uri` parameters in one `path_lookup` request (astroquery's
/// chunk size, chosen there to avoid "414 Request-URI Too Large").
pub(crate) const LOOKUP_CHUNK: usize = 50;
/// The most `path_lookup` requests in flight at once.
pub(crate) const LOOKUP_CONCURRENCY: usize = 4;
/// Tries per `path_lookup` request (the first one included).
pub(crate) const LOOKUP_ATTEMPTS: u32 = 4;
/// The longest wait for one `path_lookup` answer.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest `path_lookup` answer read (50 URIs' paths are a few KiB).
pub(crate) const LOOKUP_MAX_BODY: usize = 4 << 20;
/// The path of the lookup service below the archive root.
const LOOKUP_PATH: &str = "api/v0.1/path_lookup/";

/// Returns true if and only if `uri` belongs to a mission MAST mirrors in
/// its public bucket: it starts (case-insensitively) with one of
/// [`CLOUD_PREFIXES`].
pub(crate) fn is_cloud_candidate(uri: &str) -> bool {
    CLOUD_PREFIXES.iter().any(|p| {
        uri.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    })
}

/// Returns the object key for a `path_lookup` path, by the contract's
/// rules: the leading `/` goes; a path containing `galex` drops its leading
/// `/mast/` instead; a leading `/ps1/` becomes `panstarrs/ps1/public/`; a
/// leading `/hlsp_local/public/` becomes `mast/`. Returns `None` for a path
/// that gives no safe key (see the module's notes on astroquery).
pub(crate) fn object_key(path: &str) -> Option<String> {
    let path = path.trim();
    let key = if path.contains("galex") && path.starts_with("/mast/") {
        path["/mast/".len()..].to_string()
    } else if let Some(rest) = path.strip_prefix("/ps1/") {
        format!("panstarrs/ps1/public/{rest}")
    } else if let Some(rest) = path.strip_prefix("/hlsp_local/public/") {
        format!("mast/{rest}")
    } else {
        path.strip_prefix('/').unwrap_or(path).to_string()
    };
    let safe = !key.is_empty()
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && !key.chars().any(|c| c == '\\' || c.is_control());
    safe.then_some(key)
}

/// Characters percent-encoded in a key segment: all but RFC 3986's
/// unreserved ones (`+` included, which S3 could read as a space).
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Returns the object URL `{s3_url}/{key}`: `s3_url` without its trailing
/// slash, query or fragment; each segment of `key` percent-encoded where it
/// holds anything but unreserved characters.
pub(crate) fn object_url(s3_url: &Url, key: &str) -> Result<Url, url::ParseError> {
    if s3_url.cannot_be_a_base() {
        return Err(url::ParseError::RelativeUrlWithCannotBeABaseBase);
    }
    let encoded: Vec<String> = key
        .split('/')
        .map(|seg| utf8_percent_encode(seg, KEY_SEGMENT).to_string())
        .collect();
    let mut url = s3_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let path = format!("{}/{}", url.path().trim_end_matches('/'), encoded.join("/"));
    url.set_path(&path);
    Ok(url)
}

/// The knobs of the lookup loop; tests shrink the waits.
#[derive(Debug, Clone)]
struct Tuning {
    chunk: usize,
    concurrency: usize,
    attempts: u32,
    backoff: retry::Backoff,
    timeout: Duration,
}

impl Tuning {
    /// The defaults, with the first backoff step from
    /// [`retry::BASE_DELAY_ENV`] when set (the CLI tests set it to 0).
    fn from_env() -> Tuning {
        Tuning {
            chunk: LOOKUP_CHUNK,
            concurrency: LOOKUP_CONCURRENCY,
            attempts: LOOKUP_ATTEMPTS,
            backoff: retry::Backoff::from_env(),
            timeout: LOOKUP_TIMEOUT,
        }
    }
}

/// Asks the archive where `uris` live in the bucket:
/// `GET {base}/api/v0.1/path_lookup/?uri=A&uri=B…`, at most
/// [`LOOKUP_CHUNK`] URIs a request and [`LOOKUP_CONCURRENCY`] requests at
/// once, each retried on transport errors, 408, 429 and 5xx. Returns every
/// given URI mapped to its object key, or `None` when the archive knows no
/// path for it (`"path": null`, no entry, or a path that gives no safe key).
///
/// It asks about every URI given; callers pass those
/// [`is_cloud_candidate`] keeps. The token, when given, goes to the archive
/// as `Authorization: token …`; it never appears in an error.
pub(crate) async fn lookup(
    http: &Http,
    base: &Url,
    token: Option<&Token>,
    uris: &[String],
) -> anyhow::Result<HashMap<String, Option<String>>> {
    lookup_with(http, base, token, uris, Tuning::from_env()).await
}

async fn lookup_with(
    http: &Http,
    base: &Url,
    token: Option<&Token>,
    uris: &[String],
    tuning: Tuning,
) -> anyhow::Result<HashMap<String, Option<String>>> {
    let mut seen = HashSet::with_capacity(uris.len());
    let unique: Vec<String> = uris
        .iter()
        .filter(|u| seen.insert(u.as_str()))
        .cloned()
        .collect();
    let endpoint = lookup_endpoint(base)?;
    let chunks: Vec<Vec<String>> = unique
        .chunks(tuning.chunk.max(1))
        .map(<[String]>::to_vec)
        .collect();
    let total = chunks.len();

    let mut out = HashMap::with_capacity(unique.len());
    let mut pending = chunks.into_iter().enumerate();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < tuning.concurrency.max(1) {
            let Some((i, chunk)) = pending.next() else {
                break;
            };
            let req = Request {
                http: http.clone(),
                url: chunk_url(&endpoint, &chunk),
                token: token.cloned(),
                tuning: tuning.clone(),
            };
            running.spawn(async move {
                let what = format!("`path_lookup` request {} of {total}", i + 1);
                let reply = req.send(&what).await;
                (chunk, reply)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (chunk, reply) = joined.map_err(|e| anyhow!("A `path_lookup` task failed: {e}"))?;
        let reply = reply.map_err(|e| anyhow!(crate::token::scrub(&e.to_string()).into_owned()))?;
        for uri in chunk {
            let key = path_of(&reply, &uri).and_then(object_key);
            out.insert(uri, key);
        }
    }
    Ok(out)
}

/// The cloud step of the plan (`--cloud`, `--cloud-only`): asks the
/// archive's `path_lookup` for the cloud missions' URIs and routes each job
/// the bucket has to its object (with `--cloud`, falling back to the
/// archive when the bucket does not have it after all); with
/// `--cloud-only` every other job is [`Route::NotInBucket`]. What it finds,
/// and a failed lookup `--cloud` gets over, is said to `reporter`.
pub(crate) async fn route(
    jobs: &mut [Job],
    settings: &Settings,
    http: &Http,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let (elsewhere, fallback) = match settings.cloud {
        Cloud::Off => return Ok(()),
        Cloud::Prefer => (Route::Archive, true),
        Cloud::Only => (Route::NotInBucket, false),
    };
    for job in jobs.iter_mut() {
        job.route = elsewhere.clone();
    }
    let uris: Vec<String> = jobs
        .iter()
        .filter(|j| is_cloud_candidate(&j.uri))
        .map(|j| j.uri.clone())
        .collect();
    if uris.is_empty() {
        return Ok(());
    }
    let keys = match lookup(http, &settings.plan.base, settings.token.as_ref(), &uris).await {
        Ok(k) => k,
        Err(e) if settings.cloud == Cloud::Prefer => {
            reporter.message(
                Level::Warn,
                &format!("bucket path lookup failed, fetching from the archive: {e:#}"),
            );
            return Ok(());
        }
        Err(e) => return Err(e.context("Cannot look up which files the bucket has")),
    };
    let mut found = 0;
    for job in jobs.iter_mut() {
        let Some(Some(key)) = keys.get(&job.uri) else {
            continue;
        };
        let object = object_url(&settings.s3_url, key).map_err(|e| {
            UsageError(format!(
                "`--s3-url` `{}` cannot hold `{key}`: {e}",
                settings.s3_url
            ))
        })?;
        job.route = Route::Bucket { object, fallback };
        found += 1;
    }
    reporter.message(
        Level::Info,
        &format!("{found} of {} files are in the bucket", jobs.len()),
    );
    Ok(())
}

/// Returns `{base}/api/v0.1/path_lookup/`, keeping a path prefix of `base`.
fn lookup_endpoint(base: &Url) -> anyhow::Result<Url> {
    if base.cannot_be_a_base() {
        bail!("The base URL `{base}` cannot hold a path");
    }
    let mut url = base.clone();
    let path = format!("{}/{LOOKUP_PATH}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Returns the endpoint with one `uri=` parameter (form-encoded) per URI.
fn chunk_url(endpoint: &Url, uris: &[String]) -> Url {
    let mut url = endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        for u in uris {
            q.append_pair("uri", u);
        }
    }
    url
}

/// Returns the `path` the answer gives for `uri`: its entry's `path`
/// string (or the entry itself when it is a string). Entries are matched
/// exactly: file names are case-sensitive, and a near match could fetch
/// another file's bytes.
fn path_of<'a>(reply: &'a serde_json::Map<String, Value>, uri: &str) -> Option<&'a str> {
    match reply.get(uri)? {
        Value::Object(o) => o.get("path").and_then(Value::as_str),
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// One chunk's request and what it needs to be retried.
struct Request {
    http: Http,
    url: Url,
    token: Option<Token>,
    tuning: Tuning,
}

impl Request {
    /// Sends the request, retrying what is transient; returns the answer's
    /// top-level JSON object.
    async fn send(&self, what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
        retry::with_retries(self.tuning.attempts, &self.tuning.backoff, || {
            self.send_once()
        })
        .await
        .map_err(|f| anyhow!("{what} failed: {}", f.message()))
    }

    async fn send_once(&self) -> Result<serde_json::Map<String, Value>, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let req = Req {
            headers,
            timeout: Some(self.tuning.timeout),
            ..Req::get(&self.url, Creds::token(self.token.as_ref()))
        };
        let text = self
            .http
            .send_once(req, LOOKUP_MAX_BODY, self.http.stall)
            .await?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(Failure {
                transient: false,
                retry_after: None,
                message: format!("the answer is not a JSON object: {}", excerpt(&text)),
            }),
            Err(e) => Err(Failure {
                transient: false,
                retry_after: None,
                message: format!("the answer is not JSON ({e}): {}", excerpt(&text)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, StatusCode as AxumStatus};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;
    use serde_json::json;

    use super::*;

    #[test]
    fn candidates_are_the_mirrored_missions_in_any_case() {
        let yes = [
            "mast:HST/product/u9o40504m_c3m.fits",
            "MAST:hst/PRODUCT/x.fits",
            "mast:TESS/product/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits",
            "mast:JWST/product/jw01345001001_10201_00001_nrca2_cal.fits",
            "mast:Kepler/url/missions/kepler/lightcurves/0118/011804465/kplr011804465-2009131105131_llc.fits",
            "mast:KEPLER/x",
            "mast:GALEX/url/data/GR6/pipe/x.fits.gz",
            "mast:PS1/product/rings.v3.skycell.1784.059.stk.g.unconv.fits",
        ];
        for u in yes {
            assert!(is_cloud_candidate(u), "{u}");
        }
        let no = [
            "mast:HST/url/x.fits",
            "mast:TESS/url/x.fits",
            "mast:JWST/url/x.fits",
            "mast:IUE/url/pub/lwp13058.mxlo.gz",
            "mast:HLSP/x.fits",
            "mast:K2/url/x.fits",
            "mast:HS",
            "",
            "https://mast.stsci.edu/x",
            "mast:É/x",
        ];
        for u in no {
            assert!(!is_cloud_candidate(u), "{u}");
        }
    }

    #[test]
    fn object_keys_follow_the_contract() {
        let table: [(&str, Option<&str>); 16] = [
            (
                "/hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits",
                Some("hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits"),
            ),
            (
                "/tess/public/tid/s0001/0000/0000/2515/5310/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits",
                Some("tess/public/tid/s0001/0000/0000/2515/5310/tess2018206045859-s0001-0000000025155310-0120-s_lc.fits"),
            ),
            (
                "/jwst/public/jw01345/jw01345001001/jw01345001001_10201_00001_nrca2_cal.fits",
                Some("jwst/public/jw01345/jw01345001001/jw01345001001_10201_00001_nrca2_cal.fits"),
            ),
            (
                "/kepler/public/lightcurves/0118/011804465/kplr011804465-2009131105131_llc.fits",
                Some("kepler/public/lightcurves/0118/011804465/kplr011804465-2009131105131_llc.fits"),
            ),
            // GALEX: `/mast/` goes, not just the slash.
            (
                "/mast/galex/GR6/pipe/01-vsn/50000-MISDR1_24278_0266/d/01-main/0001-img/07-try/x-nd-int.fits.gz",
                Some("galex/GR6/pipe/01-vsn/50000-MISDR1_24278_0266/d/01-main/0001-img/07-try/x-nd-int.fits.gz"),
            ),
            // A GALEX path without `/mast/`: only the slash goes (astroquery's
            // lstrip gives the same here).
            ("/galex/GR6/x.fits", Some("galex/GR6/x.fits")),
            // `/mast/` without galex is an ordinary prefix.
            ("/mast/other/x.fits", Some("mast/other/x.fits")),
            // A character-set lstrip would eat `mast/t…`; a prefix does not.
            (
                "/mast/tgalex/x.fits",
                Some("tgalex/x.fits"),
            ),
            (
                "/ps1/rings.v3.skycell/1784/059/rings.v3.skycell.1784.059.stk.g.unconv.fits",
                Some("panstarrs/ps1/public/rings.v3.skycell/1784/059/rings.v3.skycell.1784.059.stk.g.unconv.fits"),
            ),
            // `/ps1/` is rewritten at the start only.
            ("/hst/public/ps1/x.fits", Some("hst/public/ps1/x.fits")),
            (
                "/hlsp_local/public/hlsp/tglc/s0014/hlsp_tglc_tess_ffi_x_llc.fits",
                Some("mast/hlsp/tglc/s0014/hlsp_tglc_tess_ffi_x_llc.fits"),
            ),
            // `hlsp` elsewhere: the default rule, no leading slash left.
            ("/hst/public/hlsp_x/y.fits", Some("hst/public/hlsp_x/y.fits")),
            // Nothing safe to fetch.
            ("", None),
            ("/", None),
            ("/hst/public/../../secret", None),
            ("/hst//x.fits", None),
        ];
        for (path, want) in table {
            assert_eq!(object_key(path).as_deref(), want, "{path:?}");
        }
        assert_eq!(object_key("/hst/./x"), None);
        assert_eq!(object_key("/hst/a\\b"), None);
        assert_eq!(object_key("/hst/a\nb"), None);
        assert_eq!(object_key("/hst/x.fits/"), None);
    }

    #[test]
    fn object_urls_join_and_encode_only_what_needs_it() {
        let s3 = Url::parse("https://stpubdata.s3.us-east-1.amazonaws.com").unwrap();
        assert_eq!(
            object_url(&s3, "hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits")
                .unwrap()
                .as_str(),
            "https://stpubdata.s3.us-east-1.amazonaws.com/hst/public/u9o4/u9o40504m/u9o40504m_c3m.fits"
        );
        // Path-style, with and without a trailing slash; query and fragment dropped.
        for s in [
            "http://127.0.0.1:9000/stpubdata",
            "http://127.0.0.1:9000/stpubdata/",
            "http://127.0.0.1:9000/stpubdata/?x=1#f",
        ] {
            let s3 = Url::parse(s).unwrap();
            assert_eq!(
                object_url(&s3, "panstarrs/ps1/public/a b+c%d~e.fits")
                    .unwrap()
                    .as_str(),
                "http://127.0.0.1:9000/stpubdata/panstarrs/ps1/public/a%20b%2Bc%25d~e.fits",
                "{s}"
            );
        }
        let s3 = Url::parse("http://h/b").unwrap();
        assert_eq!(
            object_url(&s3, "a/é?#.fits").unwrap().as_str(),
            "http://h/b/a/%C3%A9%3F%23.fits"
        );
        assert!(object_url(&Url::parse("mailto:x@y").unwrap(), "k").is_err());
    }

    #[test]
    fn answers_are_read_leniently() {
        let reply: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "mast:HST/product/a.fits": {"path": "/hst/public/a.fits"},
            "mast:HST/product/b.fits": "/hst/public/b.fits",
            "mast:HST/product/c.fits": {"status_code": 404},
            "mast:HST/product/d.fits": 7,
            "MAST:HST/product/E.fits": {"path": "/hst/public/E.fits"},
        }))
        .unwrap();
        assert_eq!(
            path_of(&reply, "mast:HST/product/a.fits"),
            Some("/hst/public/a.fits")
        );
        assert_eq!(
            path_of(&reply, "mast:HST/product/b.fits"),
            Some("/hst/public/b.fits")
        );
        assert_eq!(path_of(&reply, "mast:HST/product/c.fits"), None);
        assert_eq!(path_of(&reply, "mast:HST/product/d.fits"), None);
        assert_eq!(path_of(&reply, "mast:hst/product/e.fits"), None);
        assert_eq!(path_of(&reply, "mast:HST/product/z.fits"), None);
    }

    /// What the fake archive saw and how it misbehaves.
    #[derive(Default)]
    struct Archive {
        queries: Mutex<Vec<Vec<String>>>,
        authorizations: Mutex<Vec<Option<String>>>,
        fail_first: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    /// `path_lookup` as MAST answers it: every URI whose name holds
    /// `missing` gets `null`, those holding `absent` get no entry at all,
    /// the rest a path built from the name.
    async fn path_lookup(
        State(a): State<Arc<Archive>>,
        headers: HeaderMap,
        RawQuery(q): RawQuery,
    ) -> Response {
        a.authorizations.lock().unwrap().push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        );
        let now = a.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        a.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
        let fail = a
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok();
        if fail {
            return (AxumStatus::SERVICE_UNAVAILABLE, "busy").into_response();
        }
        let uris: Vec<String> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == "uri")
            .map(|(_, v)| v.into_owned())
            .collect();
        a.queries.lock().unwrap().push(uris.clone());
        let mut reply = serde_json::Map::new();
        for u in uris {
            let name = u.rsplit('/').next().unwrap_or("").to_string();
            if name.contains("absent") {
                continue;
            }
            let entry = if name.contains("missing") {
                json!({"status_code": 404, "path": null})
            } else {
                json!({"status_code": 200, "path": format!("/hst/public/{name}")})
            };
            reply.insert(u, entry);
        }
        axum::Json(Value::Object(reply)).into_response()
    }

    async fn serve(a: Arc<Archive>) -> Url {
        let app = Router::new()
            .route("/api/v0.1/path_lookup/", get(path_lookup))
            .with_state(a);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    fn fast() -> Tuning {
        Tuning {
            backoff: retry::Backoff::new(Duration::from_millis(1)),
            ..Tuning::from_env()
        }
    }

    fn client() -> Http {
        Http::loopback()
    }

    #[tokio::test]
    async fn lookup_chunks_retries_and_maps_nulls() {
        let archive = Arc::new(Archive::default());
        archive.fail_first.store(1, Ordering::SeqCst);
        let base = serve(archive.clone()).await;
        let mut uris: Vec<String> = (0..120)
            .map(|i| match i {
                7 => "mast:HST/product/x7_missing.fits".to_string(),
                8 => "mast:HST/product/x8_absent.fits".to_string(),
                // A URI carrying its own query and a space must arrive whole.
                9 => "mast:HST/product/x9 a&b=c?d.fits".to_string(),
                _ => format!("mast:HST/product/x{i}_flt.fits"),
            })
            .collect();
        uris.push(uris[0].clone());
        let token = Token::new("s3cr3t").unwrap();
        let got = lookup_with(&client(), &base, Some(&token), &uris, fast())
            .await
            .unwrap();

        let queries = archive.queries.lock().unwrap().clone();
        assert_eq!(queries.len(), 3, "120 distinct URIs are 3 requests");
        assert!(queries.iter().all(|q| q.len() <= LOOKUP_CHUNK));
        let mut asked: Vec<String> = queries.concat();
        asked.sort();
        let mut want = uris[..120].to_vec();
        want.sort();
        assert_eq!(asked, want, "each URI asked once, decoded intact");
        // 3 answered + 1 refused with 503 and retried.
        let auths = archive.authorizations.lock().unwrap().clone();
        assert_eq!(auths.len(), 4);
        assert!(auths.iter().all(|a| a.as_deref() == Some("token s3cr3t")));
        assert!(archive.max_in_flight.load(Ordering::SeqCst) <= LOOKUP_CONCURRENCY);

        assert_eq!(got.len(), 120);
        assert_eq!(
            got["mast:HST/product/x0_flt.fits"].as_deref(),
            Some("hst/public/x0_flt.fits")
        );
        assert_eq!(got["mast:HST/product/x7_missing.fits"], None);
        assert_eq!(got["mast:HST/product/x8_absent.fits"], None);
        assert_eq!(
            got["mast:HST/product/x9 a&b=c?d.fits"].as_deref(),
            Some("hst/public/x9 a&b=c?d.fits")
        );
    }

    #[tokio::test]
    async fn lookup_without_token_sends_no_authorization_and_keeps_a_base_path() {
        let archive = Arc::new(Archive::default());
        let app = Router::new()
            .route("/prefix/api/v0.1/path_lookup/", get(path_lookup))
            .with_state(archive.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = Url::parse(&format!("http://{addr}/prefix/")).unwrap();
        let got = lookup_with(
            &client(),
            &base,
            None,
            &["mast:JWST/product/a_b.fits".to_string()],
            fast(),
        )
        .await
        .unwrap();
        assert_eq!(
            got["mast:JWST/product/a_b.fits"].as_deref(),
            Some("hst/public/a_b.fits")
        );
        assert_eq!(*archive.authorizations.lock().unwrap(), vec![None]);
        // Nothing to ask: no request.
        let got = lookup_with(&client(), &base, None, &[], fast())
            .await
            .unwrap();
        assert!(got.is_empty());
        assert_eq!(archive.authorizations.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn lasting_failures_name_the_status_and_never_the_token() {
        let archive = Arc::new(Archive::default());
        archive.fail_first.store(100, Ordering::SeqCst);
        let base = serve(archive.clone()).await;
        let token = Token::new("s3cr3t").unwrap();
        let err = lookup_with(
            &client(),
            &base,
            Some(&token),
            &["mast:HST/product/a_b.fits".to_string()],
            fast(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("503"), "{err}");
        assert!(err.contains("failed after 3 retries in "), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        assert_eq!(archive.authorizations.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_404_or_a_non_object_is_not_retried() {
        async fn not_found() -> Response {
            (AxumStatus::NOT_FOUND, "<html>no such page</html>").into_response()
        }
        async fn list() -> Response {
            axum::Json(json!(["/hst/public/x"])).into_response()
        }
        let hits = Arc::new(AtomicUsize::new(0));
        let h1 = hits.clone();
        let h2 = hits.clone();
        let app = Router::new()
            .route(
                "/a/api/v0.1/path_lookup/",
                get(move || {
                    h1.fetch_add(1, Ordering::SeqCst);
                    not_found()
                }),
            )
            .route(
                "/b/api/v0.1/path_lookup/",
                get(move || {
                    h2.fetch_add(1, Ordering::SeqCst);
                    list()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let uris = ["mast:HST/product/a_b.fits".to_string()];
        let a = Url::parse(&format!("http://{addr}/a")).unwrap();
        let err = lookup_with(&client(), &a, None, &uris, fast())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("404") && err.contains("no such page"), "{err}");
        let b = Url::parse(&format!("http://{addr}/b")).unwrap();
        let err = lookup_with(&client(), &b, None, &uris, fast())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JSON object"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}
