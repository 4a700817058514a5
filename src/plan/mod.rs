//! The plan: entries from any input become download jobs.
//!
//! Pure: filters, deduplication by URI, the local path of every file (the
//! contract layout, a table's columns or a script's `--output`), collision
//! checks, the download URL, and the shard a URI belongs to. Nothing here
//! touches the network, and the disk only to keep a built plan in an
//! unnamed temporary file ([`PlanFile`]) for a run too large to hold it.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::str::FromStr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

use crate::input::filter::{self, ProductFilter};
use crate::input::{Entry, InputError, LocalHint, Origin};
use crate::layout;

use crate::manifest::Source;

pub(crate) mod ahead;

/// One file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// The identity of the file: its `mast:` URI.
    pub(crate) uri: String,
    /// The URL [`Route::Archive`] fetches it from (the archive's, or a
    /// script's own), and a bucket object's fallback.
    pub(crate) url: Url,
    /// The path below DEST, `/`-separated.
    pub(crate) rel: String,
    /// The size the input promised, if any.
    pub(crate) size: Option<u64>,
    /// Where the bytes come from: the archive unless the cloud step
    /// ([`crate::cloud::route`]) says otherwise.
    pub(crate) route: Route,
    /// Where the entry was read.
    pub(crate) origin: Origin,
    /// The input says the product changed (a change feed's reprocessed
    /// row): when complete, ask the source whether it differs and replace
    /// it when it does, as `--update` does for every file.
    pub(crate) update: bool,
}

/// Where a job's bytes come from, decided once by the plan (the archive)
/// and the cloud step ([`crate::cloud::route`]); `U` is the object's URL,
/// parsed or (in a [`Planned`]) text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<U = Url> {
    /// From the archive, at the job's URL.
    Archive,
    /// From the bucket's `object`; `fallback`: from the archive (the job's
    /// URL) when the bucket does not have it after all (403/404), as
    /// `--cloud` does; `--cloud-only` does not.
    Bucket { object: U, fallback: bool },
    /// `--cloud-only`, and the bucket does not have it: SKIPPED.
    NotInBucket,
}

impl<U> Route<U> {
    /// Returns the source the route starts from.
    pub(crate) fn source(&self) -> Source {
        match self {
            Route::Bucket { .. } => Source::Cloud,
            Route::Archive | Route::NotInBucket => Source::Mast,
        }
    }

    /// Returns the URL the route starts from, `archive` being the job's.
    pub(crate) fn url<'a>(&'a self, archive: &'a U) -> &'a U {
        match self {
            Route::Bucket { object, .. } => object,
            Route::Archive | Route::NotInBucket => archive,
        }
    }

    /// Returns the route with its object borrowed.
    pub(crate) fn borrowed(&self) -> Route<&U> {
        match self {
            Route::Archive => Route::Archive,
            Route::NotInBucket => Route::NotInBucket,
            Route::Bucket { object, fallback } => Route::Bucket {
                object,
                fallback: *fallback,
            },
        }
    }

    /// Returns where the bytes came from: the bucket's object, unless the
    /// transfer `fell_back` (or the route never named one) to `archive`,
    /// the job's archive URL.
    pub(crate) fn landed(self, archive: U, fell_back: bool) -> (U, Source) {
        match self {
            Route::Bucket { object, .. } if !fell_back => (object, Source::Cloud),
            _ => (archive, Source::Mast),
        }
    }
}

/// One of N disjoint parts of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    /// 0-based index.
    pub(crate) k: u32,
    /// Number of shards.
    pub(crate) n: u32,
}

impl Shard {
    /// Returns true if and only if `uri` belongs to this shard.
    pub(crate) fn contains(&self, uri: &str) -> bool {
        shard_of(uri, self.n) == self.k
    }

    /// Returns the file-name tag of this shard: `K-of-N`.
    pub(crate) fn tag(&self) -> String {
        format!("{}-of-{}", self.k, self.n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// The most shards a run can be split into.
pub(crate) const MAX_SHARDS: u32 = 100_000;

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("expected K/N (e.g. 0/4), got `{s}`"))?;
        let k: u32 = k
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index `{k}`"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count `{n}`"))?;
        if n > MAX_SHARDS {
            return Err(format!("at most {MAX_SHARDS} shards, got `{s}`"));
        }
        if n == 0 || k >= n {
            return Err(format!(
                "shard index must be below the count: `{s}` (0-based K/N)"
            ));
        }
        Ok(Shard { k, n })
    }
}

/// Returns the shard (0..n) of a URI: FNV-1a 64 of its bytes, modulo n.
/// Stable across runs, versions and platforms.
pub(crate) fn shard_of(uri: &str, n: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uri.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(n.max(1))) as u32
}

/// What shapes the plan besides the entries.
#[derive(Debug, Clone)]
pub(crate) struct PlanOptions {
    /// The archive root.
    pub(crate) base: Url,
    /// True if and only if the user set the base URL: script URLs then get
    /// its scheme, host and port.
    pub(crate) rebase: bool,
    /// `--flat`: every file straight into DEST.
    pub(crate) flat: bool,
    /// `--extension`: keep names ending with one of these (case-insensitive).
    pub(crate) extensions: Vec<String>,
    /// `--product-type`: keep entries of these types (when the input says).
    pub(crate) product_types: Vec<String>,
    /// `--calib-level`: keep entries at these levels (when the input says).
    pub(crate) calib_levels: Vec<i64>,
    /// `--mrp-only`: keep Minimum Recommended Products (when the input says).
    pub(crate) mrp_only: bool,
    /// `--shard K/N`.
    pub(crate) shard: Option<Shard>,
}

impl PlanOptions {
    /// Returns options with only the base URL set.
    pub(crate) fn new(base: Url) -> PlanOptions {
        PlanOptions {
            base,
            rebase: false,
            flat: false,
            extensions: Vec::new(),
            product_types: Vec::new(),
            calib_levels: Vec::new(),
            mrp_only: false,
            shard: None,
        }
    }
}

/// Characters percent-encoded in the `uri=` value: all but unreserved, `:` and `/`.
const URI_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':')
    .remove(b'/');

/// Returns the archive download URL of a `mast:` URI below `base`.
#[cfg(test)]
pub(crate) fn download_url(base: &Url, uri: &str) -> Result<Url, url::ParseError> {
    Ok(with_uri(&download_root(base)?, uri))
}

/// Returns `{base}/api/v0.1/Download/file`, to which [`with_uri`] adds the query.
pub(crate) fn download_root(base: &Url) -> Result<Url, url::ParseError> {
    let root = base.as_str().trim_end_matches('/');
    Url::parse(&format!("{root}/api/v0.1/Download/file"))
}

/// Returns `root?uri=…` with the URI percent-encoded except `:` and `/`.
pub(crate) fn with_uri(root: &Url, uri: &str) -> Url {
    let mut url = root.clone();
    url.set_query(Some(&format!(
        "uri={}",
        utf8_percent_encode(uri, URI_VALUE)
    )));
    url
}

/// Builds the jobs for `entries`: the whole plan, or one shard of it.
/// Every entry is checked before any is dropped by a shard, so all shards
/// refuse the same bad input.
#[cfg(test)]
pub(crate) fn build(entries: Vec<Entry>, opts: &PlanOptions) -> Result<Vec<Job>, InputError> {
    let mut planner = Planner::new(opts.clone());
    let mut jobs = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(job) = planner.push(e)? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// Builds the plan one entry at a time, keeping only what deduplication
/// and collision checks need: a 128-bit hash of every accepted URI, and a
/// 64-bit hash of its folded local path with where the entry was read. No
/// copy of a URI or path is kept: a million-line list plans in well under
/// 100 MiB whatever the length of its URIs.
pub(crate) struct Planner {
    /// What is checked of each entry alone.
    prepare: Prepare,
    /// The 128-bit hash of every accepted URI.
    uris: HashSet<u128, std::hash::BuildHasherDefault<KeyIsHash>>,
    /// Hash of a folded local path -> where its entry was read (an index
    /// into `files`, and the line).
    paths: U64Map<(u32, u32)>,
    /// The input names seen, for [`Planner::paths`].
    files: Vec<String>,
    /// Where [`Prepare::entry`] puts text, on this thread.
    text: String,
}

/// Works out what the plan checks of one entry alone (its URI, the
/// filters, its local path and URL): everything but whether an entry
/// before it took its URI or its path. It holds no state across entries,
/// so a second thread can run it ahead of the [`Planner`] ([`ahead`]).
#[derive(Clone)]
pub(crate) struct Prepare {
    opts: PlanOptions,
    /// The archive download URL without its query.
    root: Result<Url, url::ParseError>,
    /// Scratch space for a folded path.
    folded: String,
}

/// What [`Prepare::entry`] found of an entry: a refused URI, an entry a
/// filter drops (`None`), or what [`Planner`] needs to place it. Errors
/// are kept as found and reported in the order the plan checks them: a
/// duplicate URI is dropped before its path or URL is judged.
pub(crate) struct Prepared(Result<Option<Found>, String>);

/// An entry the filters keep, worked out alone. Its path and URL text
/// are kept in a buffer beside it (see [`Prepare::entry`]), so the thread
/// that frees them allocated them.
pub(crate) struct Found {
    uri_hash: u128,
    /// Where its local path is in the buffer, and the hash of the path
    /// folded; or why it has none.
    path: Result<(Range<usize>, u64), String>,
    link: Result<Link<Range<usize>>, String>,
}

/// Returns a 64-bit hash of `bytes`, the same in every run (fixed
/// constants): the key of the plan's and the state record's in-memory
/// indexes (never written anywhere).
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    mix_hash(
        bytes,
        [
            0xa076_1d64_78bd_642f,
            0xe703_7ed1_a0b4_28db,
            0x8ebc_6af0_9c88_c6e3,
        ],
    )
}

/// Returns the folded 128-bit product of `a` and `b`.
#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ (r >> 64) as u64
}

/// A fast non-cryptographic hash of `bytes` (wyhash's multiply-and-fold
/// mixing, eight bytes a step), keyed by the three odd constants `k`. Each
/// step is a bijection of the state for a given word, so no input prefix
/// loses what came before it; the length goes in first. Paths and URIs are
/// not chosen by an adversary: this replaces SipHash, a third of the
/// plan's time at a million URIs.
#[inline]
fn mix_hash(bytes: &[u8], k: [u64; 3]) -> u64 {
    let mut h = mum(bytes.len() as u64 ^ k[0], k[1]) ^ k[2];
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ mum(u64::from_le_bytes(w) ^ k[0], k[1]))
            .rotate_left(29)
            .wrapping_mul(k[2]);
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    h = (h ^ mum(u64::from_le_bytes(w) ^ k[1], k[0]))
        .rotate_left(29)
        .wrapping_mul(k[2]);
    mum(h ^ k[0], k[1] ^ k[2]) ^ h
}

/// A map keyed by a [`hash64`] value, which it uses as it is (no second hash).
pub(crate) type U64Map<V> = HashMap<u64, V, std::hash::BuildHasherDefault<KeyIsHash>>;

/// A map keyed by a [`hash128`].
pub(crate) type U128Map<V> = HashMap<u128, V, std::hash::BuildHasherDefault<KeyIsHash>>;

/// The hasher of [`U64Map`] and [`U128Map`] (and the plan's URI set):
/// the key is already a hash.
#[derive(Default)]
pub(crate) struct KeyIsHash(u64);

impl std::hash::Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64 ^ (n >> 64) as u64;
    }
}

/// Returns a 128-bit hash of `bytes`: two [`hash64`]-like hashes with
/// different constants (its low half is [`hash64`]), so two URIs (or two
/// recorded paths) taken for one are out of reach.
pub(crate) fn hash128(bytes: &[u8]) -> u128 {
    let high = mix_hash(
        bytes,
        [
            0x5899_65cc_7537_4cc3,
            0x1d8e_4e27_c47d_124f,
            0x9e37_79b9_7f4a_7c15,
        ],
    );
    u128::from(high) << 64 | u128::from(hash64(bytes))
}

impl Prepare {
    /// Returns the checks of `opts`.
    fn new(opts: PlanOptions) -> Prepare {
        Prepare {
            root: download_root(&opts.base),
            opts,
            folded: String::new(),
        }
    }

    /// Checks `e` alone, its local path (and its URL, as text when `text`
    /// allows) appended to `buf`.
    pub(crate) fn entry(&mut self, e: &Entry, text: bool, buf: &mut String) -> Prepared {
        let is_mast = layout::is_mast_uri(&e.uri);
        if is_mast {
            if let Err(m) = layout::check_uri(&e.uri) {
                return Prepared(Err(format!("{m}: `{}`", layout::escape(&e.uri))));
            }
        }
        if !keep(e, &self.opts) {
            return Prepared(Ok(None));
        }
        let uri_hash = hash128(e.uri.as_bytes());
        let path = local_path(e, self.opts.flat).and_then(|rel| {
            fold_into(&rel, &mut self.folded);
            if let Some(why) = reserved_folded(&self.folded) {
                return Err(format!(
                    "`{}` maps to `{}`, {why}: give it another local path (without `--flat`, or another `--output`)",
                    layout::escape(&e.uri),
                    layout::escape(&rel)
                ));
            }
            let at = buf.len();
            buf.push_str(&rel);
            Ok((at..buf.len(), hash64(self.folded.as_bytes())))
        });
        Prepared(Ok(Some(Found {
            uri_hash,
            path,
            link: self.link(e, is_mast, text, buf),
        })))
    }

    /// Returns the URL of `e` (a script's own, or the archive's for its
    /// URI); text goes into `buf`.
    fn link(
        &self,
        e: &Entry,
        is_mast: bool,
        text: bool,
        buf: &mut String,
    ) -> Result<Link<Range<usize>>, String> {
        match &e.url {
            Some(u) => script_url(u, &self.opts).map(Link::Parsed),
            None if is_mast => match &self.root {
                Ok(root) if text && root.query().is_none() && root.fragment().is_none() => {
                    // What `with_uri` gives, without parsing it again: the
                    // encoded value holds nothing a query escapes further.
                    let at = buf.len();
                    let t = buf;
                    t.push_str(root.as_str());
                    t.push_str("?uri=");
                    let plain = |b: u8| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'/')
                    };
                    if e.uri.bytes().all(plain) {
                        // Nothing to encode (nearly every URI): no `fmt`.
                        t.push_str(&e.uri);
                    } else {
                        let _ = write!(t, "{}", utf8_percent_encode(&e.uri, URI_VALUE));
                    }
                    Ok(Link::Text(at..t.len()))
                }
                Ok(root) => Ok(Link::Parsed(with_uri(root, &e.uri))),
                Err(err) => Err(format!("cannot build a URL: {err}")),
            },
            None => Err(format!("Not a `mast:` URI: `{}`", layout::escape(&e.uri))),
        }
    }
}

impl Planner {
    /// Returns a planner for `opts`.
    pub(crate) fn new(opts: PlanOptions) -> Planner {
        Planner {
            prepare: Prepare::new(opts),
            uris: HashSet::default(),
            paths: U64Map::default(),
            files: Vec::new(),
            text: String::new(),
        }
    }

    /// Returns the checks of one entry alone, for another thread to run.
    pub(crate) fn prepare(&self) -> Prepare {
        self.prepare.clone()
    }

    /// Returns the index of the input named `file` in `files`.
    fn file_index(&mut self, file: &str) -> u32 {
        // Entries come input by input: the last name is almost always it.
        match self.files.iter().rposition(|f| f == file) {
            Some(i) => i as u32,
            None => {
                self.files.push(file.to_string());
                (self.files.len() - 1) as u32
            }
        }
    }

    /// Checks `e` and returns its job, or `None` when a filter, a
    /// duplicate URI or the shard drops it.
    #[cfg(test)]
    pub(crate) fn push(&mut self, e: Entry) -> Result<Option<Job>, InputError> {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let prepared = self.prepare.entry(&e, false, &mut text);
        let placed = self.place(&e, prepared, &text);
        self.text = text;
        let Some((rel, link)) = placed? else {
            return Ok(None);
        };
        let url = match link {
            Link::Parsed(u) => u,
            Link::Text(t) => Url::parse(&t).map_err(|err| InputError {
                origin: e.origin.clone(),
                message: format!("cannot build a URL: {err}"),
            })?,
        };
        Ok(Some(Job {
            update: reprocessed(&e),
            uri: e.uri,
            url,
            rel,
            size: e.size,
            route: Route::Archive,
            origin: e.origin,
        }))
    }

    /// Checks `e` as [`Planner::push`] does and returns its job with the
    /// URL as text, built without parsing it again (the fast path of a
    /// plan that is printed or kept on disk).
    pub(crate) fn push_planned(&mut self, e: Entry) -> Result<Option<Planned>, InputError> {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        let prepared = self.prepare.entry(&e, true, &mut text);
        let mut e = e;
        let planned = self.push_prepared(&mut e, prepared, &text);
        self.text = text;
        planned
    }

    /// [`Planner::push_planned`] of an entry whose checks alone are done
    /// ([`Prepare::entry`] with `text` true, which put its text in `text`).
    /// A job takes the entry's URI and origin out of it (an entry is
    /// large: it is not moved).
    pub(crate) fn push_prepared(
        &mut self,
        e: &mut Entry,
        prepared: Prepared,
        text: &str,
    ) -> Result<Option<Planned>, InputError> {
        let Some((rel, link)) = self.place(e, prepared, text)? else {
            return Ok(None);
        };
        Ok(Some(Planned {
            update: reprocessed(e),
            url: match link {
                Link::Parsed(u) => u.into(),
                Link::Text(t) => t,
            },
            uri: std::mem::take(&mut e.uri),
            rel,
            size: e.size,
            route: Route::Archive,
            origin: std::mem::take(&mut e.origin),
        }))
    }

    /// Places `e` among the entries before it: returns its local path and
    /// URL, or `None` when it is dropped (a filter, a duplicate URI, the
    /// shard). Its own refusals come in the order the checks run.
    fn place(
        &mut self,
        e: &Entry,
        prepared: Prepared,
        text: &str,
    ) -> Result<Option<(String, Link)>, InputError> {
        let bad = |m: String| InputError {
            origin: e.origin.clone(),
            message: m,
        };
        let Some(found) = prepared.0.map_err(bad)? else {
            return Ok(None);
        };
        if self.uris.contains(&found.uri_hash) {
            return Ok(None);
        }
        let (rel_at, rel_hash) = found.path.map_err(bad)?;
        let rel = text.get(rel_at).unwrap_or_default().to_string();
        let file = self.file_index(&e.origin.file);
        let slot = match self.paths.entry(rel_hash) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let (file, line) = *o.get();
                let file = self.files.get(file as usize).map_or("", String::as_str);
                let other = if file == e.origin.file {
                    format!("line {line}")
                } else {
                    format!("{file}:{line}")
                };
                return Err(bad(format!(
                    "`{}` and the entry on {other} both map to the local path `{}` (paths that differ only in case or Unicode normalisation collide on macOS and Windows)",
                    layout::escape(&e.uri),
                    layout::escape(&rel)
                )));
            }
            std::collections::hash_map::Entry::Vacant(v) => v,
        };
        let link = match found.link.map_err(bad)? {
            Link::Parsed(u) => Link::Parsed(u),
            Link::Text(at) => Link::Text(text.get(at).unwrap_or_default().to_string()),
        };
        let line = u32::try_from(e.origin.line).unwrap_or(u32::MAX);
        slot.insert((file, line));
        self.uris.insert(found.uri_hash);
        if self.prepare.opts.shard.is_some_and(|s| !s.contains(&e.uri)) {
            return Ok(None);
        }
        Ok(Some((rel, link)))
    }
}

/// A planned URL: parsed, or text known to parse to itself (`T`: the
/// text, or where it is in a buffer).
pub(crate) enum Link<T = String> {
    Parsed(Url),
    Text(T),
}

/// The plan kept on disk while a run works through it: every job, in plan
/// order, in an unnamed temporary file (gone when the run ends, however it
/// ends). A run reads it a few times from the start instead of holding a
/// million jobs in memory.
pub(crate) struct PlanFile {
    out: io::BufWriter<fs::File>,
    len: usize,
    /// Jobs whose input says they changed.
    updates: usize,
    /// Bytes written.
    bytes: u64,
    /// Where job `k * MARK_EVERY` starts, for each `k`: a reader can start
    /// at any job without reading those before it.
    marks: Vec<u64>,
}

/// Jobs between two marks of a [`PlanFile`].
const MARK_EVERY: usize = 1024;

/// One job as read back from a [`PlanFile`], its URLs still text.
pub(crate) struct Planned {
    pub(crate) uri: String,
    /// Its archive URL (see [`Job::url`]).
    pub(crate) url: String,
    pub(crate) rel: String,
    pub(crate) size: Option<u64>,
    pub(crate) route: Route<String>,
    pub(crate) origin: Origin,
    /// A change feed's reprocessed row (see [`Job::update`]).
    pub(crate) update: bool,
}

impl Planned {
    /// Returns the job to run (its URLs parsed again), or itself with why not.
    #[allow(clippy::result_large_err)]
    pub(crate) fn job(self) -> Result<Job, (Planned, url::ParseError)> {
        let route = match &self.route {
            Route::Archive => Ok(Route::Archive),
            Route::NotInBucket => Ok(Route::NotInBucket),
            Route::Bucket { object, fallback } => Url::parse(object).map(|object| Route::Bucket {
                object,
                fallback: *fallback,
            }),
        };
        let (url, route) = match Url::parse(&self.url).and_then(|u| Ok((u, route?))) {
            Ok(parsed) => parsed,
            Err(e) => return Err((self, e)),
        };
        Ok(Job {
            url,
            route,
            uri: self.uri,
            rel: self.rel,
            size: self.size,
            origin: self.origin,
            update: self.update,
        })
    }
}

/// Returns true if and only if `e` is a change feed's reprocessed row.
fn reprocessed(e: &Entry) -> bool {
    matches!(
        e.local,
        LocalHint::Feed {
            reprocessed: true,
            ..
        }
    )
}

impl PlanFile {
    /// Returns an empty plan file in the system's temporary folder.
    pub(crate) fn new() -> io::Result<PlanFile> {
        Ok(PlanFile {
            out: io::BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
            len: 0,
            updates: 0,
            bytes: 0,
            marks: Vec::new(),
        })
    }

    /// Returns the number of jobs.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Returns the number of jobs the input says changed (a change feed's
    /// reprocessed rows), which are checked as `--update` checks.
    pub(crate) fn updates(&self) -> usize {
        self.updates
    }

    /// Appends `job`.
    pub(crate) fn push(&mut self, job: &Job) -> io::Result<()> {
        let (route, object) = Record::route(&job.route, Url::as_str);
        let texts = [job.uri.as_str(), job.url.as_str(), job.rel.as_str(), object];
        self.put(Record {
            texts,
            origin: &job.origin,
            size: job.size,
            route,
            update: job.update,
        })
    }

    /// Appends a job planned as text.
    pub(crate) fn push_planned(&mut self, p: &Planned) -> io::Result<()> {
        let (route, object) = Record::route(&p.route, String::as_str);
        let texts = [p.uri.as_str(), p.url.as_str(), p.rel.as_str(), object];
        self.put(Record {
            texts,
            origin: &p.origin,
            size: p.size,
            route,
            update: p.update,
        })
    }

    fn put(&mut self, r: Record<'_>) -> io::Result<()> {
        if self.len.is_multiple_of(MARK_EVERY) {
            self.marks.push(self.bytes);
        }
        let w = &mut self.out;
        let origin = r.origin;
        for s in r.texts.into_iter().chain([origin.file.as_str()]) {
            w.write_all(&(s.len() as u64).to_le_bytes())?;
            w.write_all(s.as_bytes())?;
            self.bytes += 8 + s.len() as u64;
        }
        w.write_all(&r.size.map_or(0, |s| s.saturating_add(1)).to_le_bytes())?;
        w.write_all(&(origin.line as u64).to_le_bytes())?;
        w.write_all(&[r.route, u8::from(r.update) << 1])?;
        self.bytes += FIXED;
        self.len += 1;
        self.updates += usize::from(r.update);
        Ok(())
    }

    /// Writes out what is buffered: call once every job is pushed.
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Returns the jobs from the first, in plan order, once sealed. Each
    /// reader keeps its own place: several may read at once.
    pub(crate) fn read(&self) -> io::Result<PlanReader> {
        self.read_from(0)
    }

    /// Returns a reader of the jobs from job `start` (0-based) on: from
    /// the mark before it, skipping at most [`MARK_EVERY`] jobs unread.
    pub(crate) fn read_from(&self, start: usize) -> io::Result<PlanReader> {
        if !self.out.buffer().is_empty() {
            return Err(io::Error::other(
                "the plan file is read before it is sealed",
            ));
        }
        let start = start.min(self.len);
        let mark = (start / MARK_EVERY).min(self.marks.len().saturating_sub(1));
        let pos = self.marks.get(mark).copied().unwrap_or(0);
        let file = self.out.get_ref().try_clone()?;
        let mut reader = PlanReader {
            input: io::BufReader::with_capacity(1 << 16, At { file, pos }),
            left: self.len - (mark * MARK_EVERY).min(self.len),
            origins: true,
        };
        reader.pass_jobs(start - (mark * MARK_EVERY).min(start))?;
        Ok(reader)
    }
}

/// One job as [`PlanFile`] writes it: its texts (URI, archive URL, path,
/// bucket object URL) and facts, whether it comes as a [`Job`] or a
/// [`Planned`].
struct Record<'a> {
    texts: [&'a str; 4],
    origin: &'a Origin,
    size: Option<u64>,
    /// The route's byte: [`ROUTE_ARCHIVE`], [`ROUTE_BUCKET`] (with
    /// [`ROUTE_FALLBACK`]) or [`ROUTE_NOT_IN_BUCKET`].
    route: u8,
    update: bool,
}

/// The route bytes of a [`Record`].
const ROUTE_ARCHIVE: u8 = 0;
const ROUTE_BUCKET: u8 = 1;
const ROUTE_NOT_IN_BUCKET: u8 = 2;
/// Added to [`ROUTE_BUCKET`]: falls back to the archive.
const ROUTE_FALLBACK: u8 = 4;

impl<'a> Record<'a> {
    /// Returns the byte of `route` and its object URL's text ("" when none).
    fn route<U>(route: &'a Route<U>, text: impl Fn(&'a U) -> &'a str) -> (u8, &'a str) {
        match route {
            Route::Archive => (ROUTE_ARCHIVE, ""),
            Route::NotInBucket => (ROUTE_NOT_IN_BUCKET, ""),
            Route::Bucket { object, fallback } => (
                ROUTE_BUCKET | if *fallback { ROUTE_FALLBACK } else { 0 },
                text(object),
            ),
        }
    }
}

/// Reads a [`PlanFile`] back, job by job.
pub(crate) struct PlanReader {
    input: io::BufReader<At>,
    left: usize,
    /// Each job's input name is read (else passed over: a manifest row
    /// does not name it).
    origins: bool,
}

/// A file read at its own position (positional reads: the handles of one
/// open file share their offset).
struct At {
    file: fs::File,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, self.pos)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The bytes of a record besides its texts: size, line, route, flags.
const FIXED: u64 = 8 + 8 + 2;

impl PlanReader {
    /// Makes the jobs read come without their input's name (an empty
    /// `origin.file`; the line is kept): what a manifest row needs.
    pub(crate) fn without_origins(mut self) -> PlanReader {
        self.origins = false;
        self
    }

    /// Passes over `jobs` jobs without reading their texts.
    fn pass_jobs(&mut self, jobs: usize) -> io::Result<()> {
        for _ in 0..jobs.min(self.left) {
            for _ in 0..5 {
                let n = self.number()?;
                self.pass(n)?;
            }
            self.pass(FIXED)?;
            self.left -= 1;
        }
        Ok(())
    }

    /// Passes over `n` bytes.
    fn pass(&mut self, mut n: u64) -> io::Result<()> {
        use io::BufRead as _;
        while n > 0 {
            let buffered = self.input.fill_buf()?.len();
            if buffered == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let k = usize::try_from(n).map_or(buffered, |n| n.min(buffered));
            self.input.consume(k);
            n -= k as u64;
        }
        Ok(())
    }

    fn text(&mut self) -> io::Result<String> {
        use io::BufRead as _;
        let n = self.number()?;
        // Copied straight out of the reader's buffer when it holds the
        // whole text (nearly always): no zeroed buffer, no second copy.
        let buffered = self.input.buffer();
        let b = match usize::try_from(n).ok().and_then(|n| buffered.get(..n)) {
            Some(text) => {
                let b = text.to_vec();
                self.input.consume(b.len());
                b
            }
            None => {
                let mut b = Vec::new();
                (&mut self.input).take(n).read_to_end(&mut b)?;
                if b.len() as u64 != n {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                b
            }
        };
        String::from_utf8(b).map_err(io::Error::other)
    }

    fn number(&mut self) -> io::Result<u64> {
        let mut n = [0u8; 8];
        self.input.read_exact(&mut n)?;
        Ok(u64::from_le_bytes(n))
    }

    fn next_job(&mut self) -> io::Result<Planned> {
        let (uri, url, rel, object) = (self.text()?, self.text()?, self.text()?, self.text()?);
        let file = if self.origins {
            self.text()?
        } else {
            let n = self.number()?;
            self.pass(n)?;
            String::new()
        };
        let size = self.number()?.checked_sub(1);
        let line = self.number()? as usize;
        let mut flags = [0u8; 2];
        self.input.read_exact(&mut flags)?;
        Ok(Planned {
            uri,
            url,
            rel,
            size,
            route: match flags[0] & !ROUTE_FALLBACK {
                ROUTE_BUCKET => Route::Bucket {
                    object,
                    fallback: flags[0] & ROUTE_FALLBACK != 0,
                },
                ROUTE_NOT_IN_BUCKET => Route::NotInBucket,
                ROUTE_ARCHIVE => Route::Archive,
                other => {
                    let e = format!("the plan file holds an unknown route ({other})");
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            },
            origin: Origin { file, line },
            update: flags[1] & 2 == 2,
        })
    }
}

impl Iterator for PlanReader {
    type Item = io::Result<Planned>;

    fn next(&mut self) -> Option<io::Result<Planned>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.next_job())
    }
}

/// Puts into `out` the path as the most forgiving file systems see it
/// (macOS, Windows): case folded and in Unicode normalisation form C, so
/// paths that would land on the same file there are seen as one. An ASCII
/// path (almost every MAST path) is in NFC already: only its case is folded.
fn fold_into(rel: &str, out: &mut String) {
    out.clear();
    if rel.is_ascii() {
        out.push_str(rel);
        out.make_ascii_lowercase();
    } else {
        use unicode_normalization::UnicodeNormalization;
        let nfc: String = rel.nfc().collect();
        out.push_str(&nfc.to_lowercase());
    }
}

/// Returns why `rel` cannot be a product's path: mastdl's own files in
/// DEST (the manifests, `.mastdl/`, `.part` temporaries) are not for products.
#[cfg(test)]
fn reserved(rel: &str) -> Option<&'static str> {
    let lower = rel.to_ascii_lowercase();
    reserved_folded(&lower)
}

/// [`reserved`] of a path already in lower case (folded).
fn reserved_folded(lower: &str) -> Option<&'static str> {
    let first = lower.split('/').next().unwrap_or("");
    let last = lower.rsplit('/').next().unwrap_or("");
    if first == layout::META_DIR {
        return Some("inside mastdl's own `.mastdl` folder");
    }
    let manifest = lower
        .strip_prefix("manifest.")
        .is_some_and(|rest| rest.ends_with("json") || rest.ends_with("html"));
    if !lower.contains('/') && manifest {
        return Some("the name of mastdl's own manifest");
    }
    if first.starts_with("manifest.") && first.contains(".pages-") {
        return Some("the name of the folder of mastdl's own manifest pages");
    }
    let hashed = last
        .rsplit_once('~')
        .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hashed {
        return Some(
            "a name of the shape mastdl gives the `.part` of a long name (`~` and 16 hex digits)",
        );
    }
    if last.ends_with(".part") || last.ends_with(".part.meta") || last.ends_with(".part.ranges") {
        return Some("a name mastdl uses for files being downloaded");
    }
    None
}

/// Returns true if and only if the filters keep `e`. The product filters
/// judge entries whose source states product facts (tables with those
/// columns, searches) strictly, blank cells failing; the others (URI
/// lists, scripts) pass them.
fn keep(e: &Entry, opts: &PlanOptions) -> bool {
    if opts.extensions.is_empty() && !e.meta.judged {
        return true;
    }
    let name = match &e.local {
        LocalHint::Parts {
            filename: Some(f), ..
        } => f.clone(),
        LocalHint::Path(p) => p.rsplit('/').next().unwrap_or(p).to_string(),
        LocalHint::Feed { filename, .. } => filename.clone(),
        _ => layout::filename(&e.uri).into_owned(),
    };
    let ext_ok = filter::has_extension(&name, &opts.extensions);
    if !ext_ok || !e.meta.judged {
        return ext_ok;
    }
    ProductFilter {
        product_types: &opts.product_types,
        calib_levels: &opts.calib_levels,
        mrp_only: opts.mrp_only,
    }
    .keeps_meta(&e.meta)
}

/// Returns the checked `/`-separated path of an entry below DEST.
pub(crate) fn local_path(e: &Entry, flat: bool) -> Result<String, String> {
    let uri_name = || layout::filename(&e.uri).into_owned();
    let parts: Vec<String> = match &e.local {
        LocalHint::Path(p) if flat => vec![p.rsplit('/').next().unwrap_or(p).to_string()],
        LocalHint::Path(p) => layout::checked_components(p.trim_start_matches("./"))
            .map_err(|m| {
                format!(
                    "This output path cannot be used below DEST ({m}): pass `--flat` to put every \
                     file straight into DEST, or make the script's output paths relative (run \
                     its commands from a folder)"
                )
            })?
            .into_iter()
            .map(str::to_string)
            .collect(),
        LocalHint::Parts {
            collection,
            obs_id,
            filename,
        } => {
            let name = filename.clone().unwrap_or_else(uri_name);
            if flat {
                vec![name]
            } else {
                let coll = collection
                    .clone()
                    .unwrap_or_else(|| layout::collection(&e.uri).to_string());
                let obs = obs_id
                    .clone()
                    .unwrap_or_else(|| layout::obs_id(&name).to_string());
                vec![coll, obs, name]
            }
        }
        LocalHint::Feed { filename, .. } if flat => vec![filename.clone()],
        LocalHint::Feed {
            mission,
            fileset: Some(fileset),
            filename,
            ..
        } => vec![mission.clone(), fileset.clone(), filename.clone()],
        LocalHint::Feed { fileset: None, .. } => {
            return Err(
                "This row has no `fileset` or `dataset`, which names its folder \
                 (`mission/FILESET/FILENAME`): add one, or pass `--flat` to put every file \
                 straight into DEST"
                    .into(),
            )
        }
        LocalHint::None => {
            // The common case (a URI list), built without a copy per part.
            let name = layout::filename(&e.uri);
            let mut rel = String::with_capacity(e.uri.len() + 16);
            if !flat {
                rel.push_str(&layout::portable(layout::collection(&e.uri)));
                rel.push('/');
                rel.push_str(&layout::portable(layout::obs_id(&name)));
                rel.push('/');
            }
            rel.push_str(&layout::portable(&name));
            layout::check_components(&rel)?;
            return Ok(rel);
        }
    };
    let parts: Vec<String> = parts
        .iter()
        .map(|p| layout::portable(p).into_owned())
        .collect();
    let rel = parts.join("/");
    layout::check_components(&rel)?;
    Ok(rel)
}

/// Returns a script's URL, re-rooted at the base URL when the user set one.
fn script_url(raw: &str, opts: &PlanOptions) -> Result<Url, String> {
    let mut url = Url::parse(raw).map_err(|e| format!("bad URL `{}`: {e}", layout::escape(raw)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("not an http(s) URL: `{}`", layout::escape(raw)));
    }
    if opts.rebase {
        let b = &opts.base;
        url.set_scheme(b.scheme())
            .and_then(|_| url.set_host(b.host_str()).map_err(|_| ()))
            .and_then(|_| url.set_port(b.port()))
            .map_err(|_| format!("cannot re-root `{}` at the base URL", layout::escape(raw)))?;
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_fixed_and_tell_near_inputs_apart() {
        assert_eq!(hash64(b"mast:HST/a_b.fits"), hash64(b"mast:HST/a_b.fits"));
        let mut seen = std::collections::HashSet::new();
        let mut seen128 = std::collections::HashSet::new();
        for i in 0..200_000u32 {
            let s = format!("mast:SCALE/product/o{:05}_{i:07}.fits", i / 100);
            assert!(seen.insert(hash64(s.as_bytes())), "{s}");
            assert!(seen128.insert(hash128(s.as_bytes())), "{s}");
        }
        // Lengths, trailing zero bytes and single bits all count.
        let inputs: [&[u8]; 6] = [b"", b"\0", b"\0\0", b"a", b"a\0", b"12345678\0"];
        let hashes: std::collections::HashSet<u64> = inputs.iter().map(|b| hash64(b)).collect();
        assert_eq!(hashes.len(), inputs.len());
    }

    #[test]
    fn mastdls_own_names_are_reserved() {
        for r in [
            "MANIFEST.json",
            "manifest.html",
            "MANIFEST.pages-0a1b2c3d/p00001.html",
            "MANIFEST.0-of-2.pages-0a1b2c3d",
            "MANIFEST.0-of-4.json",
            ".mastdl/state.jsonl",
            ".MASTDL/x",
            "HST/x/a.fits.part",
            "HST/x/a.fits.part.meta",
        ] {
            assert!(reserved(r).is_some(), "{r}");
        }
        for ok in [
            "HST/MANIFEST.json",
            "HST/x/a.fits",
            "manifest.fits",
            "HST/.mastdlx/a",
        ] {
            assert!(reserved(ok).is_none(), "{ok}");
        }
    }

    fn fold(rel: &str) -> String {
        let mut out = String::new();
        fold_into(rel, &mut out);
        out
    }

    #[test]
    fn paths_differing_in_case_or_normalisation_fold_alike() {
        assert_eq!(fold("X/CAF\u{c9}.fits"), fold("x/cafe\u{301}.FITS"));
        assert_eq!(fold("HST/A/A_x.fits"), fold("hst/a/a_x.fits"));
        assert_eq!(fold("X/caf\u{e9}.fits"), fold("X/cafe\u{301}.fits"));
        assert_ne!(fold("X/a.fits"), fold("X/b.fits"));
    }
    use crate::input::list;

    fn opts() -> PlanOptions {
        PlanOptions::new(Url::parse("https://mast.stsci.edu").unwrap())
    }

    fn plan(text: &str, o: &PlanOptions) -> Result<Vec<Job>, InputError> {
        build(list::parse("u.txt", text).unwrap(), o)
    }

    #[test]
    fn the_plan_file_is_read_from_any_job_on() {
        let o = opts();
        let text: String = (0..2 * MARK_EVERY + 100)
            .map(|i| format!("mast:A/x{}/f_{i}.fits\n", "y".repeat(i % 7)))
            .collect();
        let jobs = plan(&text, &o).unwrap();
        let mut file = PlanFile::new().unwrap();
        for j in &jobs {
            file.push(j).unwrap();
        }
        file.seal().unwrap();
        let n = jobs.len();
        for start in [
            0,
            1,
            MARK_EVERY - 1,
            MARK_EVERY,
            MARK_EVERY + 1,
            2 * MARK_EVERY,
            n - 1,
            n,
            n + 5,
        ] {
            let back: Vec<String> = file
                .read_from(start)
                .unwrap()
                .map(|p| p.unwrap().uri)
                .collect();
            let want: Vec<String> = jobs.iter().skip(start).map(|j| j.uri.clone()).collect();
            assert_eq!(back, want, "from {start}");
            let rows: Vec<(String, String, usize)> = file
                .read_from(start)
                .unwrap()
                .without_origins()
                .map(|p| p.unwrap())
                .map(|p| (p.uri, p.origin.file, p.origin.line))
                .collect();
            let want: Vec<(String, String, usize)> = jobs
                .iter()
                .skip(start)
                .map(|j| (j.uri.clone(), String::new(), j.origin.line))
                .collect();
            assert_eq!(rows, want, "rows from {start}");
        }
    }

    #[test]
    fn the_plan_file_keeps_each_route_and_the_routes_say_where_bytes_land() {
        let o = opts();
        let text = "mast:A/x/f_1.fits\nmast:A/x/f_2.fits\nmast:A/x/f_3.fits\nmast:A/x/f_4.fits\n";
        let mut jobs = plan(text, &o).unwrap();
        let object = |n: u32| Url::parse(&format!("https://bucket.example/a/f_{n}.fits")).unwrap();
        jobs[1].route = Route::Bucket {
            object: object(2),
            fallback: true,
        };
        jobs[2].route = Route::Bucket {
            object: object(3),
            fallback: false,
        };
        jobs[3].route = Route::NotInBucket;
        jobs[3].update = true;
        let mut file = PlanFile::new().unwrap();
        for j in &jobs {
            file.push(j).unwrap();
        }
        // A job planned as text keeps its route too.
        let mut planner = Planner::new(o.clone());
        let mut extra = planner
            .push_planned(list::parse("u.txt", "mast:A/x/f_5.fits").unwrap().remove(0))
            .unwrap()
            .unwrap();
        assert_eq!(extra.route, Route::Archive);
        extra.route = Route::Bucket {
            object: object(5).to_string(),
            fallback: true,
        };
        file.push_planned(&extra).unwrap();
        file.seal().unwrap();
        assert_eq!((file.len(), file.updates()), (5, 1));
        let back: Vec<Job> = file
            .read()
            .unwrap()
            .map(|p| p.unwrap().job().map_err(|(_, e)| e).unwrap())
            .collect();
        assert_eq!(&back[..4], &jobs[..]);
        assert_eq!(back[4].route.source(), Source::Cloud);
        assert_eq!(back[4].route.url(&back[4].url), &object(5));
        // Where the bytes of each come from, and where they landed.
        let archive = back[1].url.clone();
        assert_eq!(back[0].route.source(), Source::Mast);
        assert_eq!(back[1].route.url(&back[1].url), &object(2));
        fn landed(j: &Job, fell_back: bool) -> (&Url, Source) {
            j.route.borrowed().landed(&j.url, fell_back)
        }
        assert_eq!(landed(&back[1], false), (&object(2), Source::Cloud));
        assert_eq!(landed(&back[1], true), (&archive, Source::Mast));
        assert_eq!(landed(&back[3], false), (&back[3].url, Source::Mast));
    }

    #[test]
    fn download_url_encodes_all_but_colon_and_slash() {
        let b = Url::parse("http://127.0.0.1:8080/").unwrap();
        let u = download_url(&b, "mast:HLA/url/cgi-bin/fitscut.cgi?red=a b&blue=c").unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/api/v0.1/Download/file?uri=mast:HLA/url/cgi-bin/fitscut.cgi%3Fred%3Da%20b%26blue%3Dc"
        );
        let b = Url::parse("http://h/prefix/").unwrap();
        assert_eq!(
            download_url(&b, "mast:HST/product/a_b.fits")
                .unwrap()
                .as_str(),
            "http://h/prefix/api/v0.1/Download/file?uri=mast:HST/product/a_b.fits"
        );
    }

    #[test]
    fn layout_dedupe_and_flat() {
        let text = "mast:JWST/product/jw1_t2_i2d.fits\nmast:IUE/url/pub/lwp13058.mxlo.gz\nmast:JWST/product/jw1_t2_i2d.fits\n";
        let jobs = plan(text, &opts()).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].rel, "JWST/jw1_t2/jw1_t2_i2d.fits");
        assert_eq!(jobs[1].rel, "IUE/lwp13058/lwp13058.mxlo.gz");
        let mut o = opts();
        o.flat = true;
        assert_eq!(plan(text, &o).unwrap()[1].rel, "lwp13058.mxlo.gz");
    }

    #[test]
    fn collisions_name_both_entries_and_hostile_uris_name_the_line() {
        let e = plan("mast:A/x/f_1.fits\nmast:A/y/f_1.fits\n", &opts()).unwrap_err();
        assert_eq!(e.origin.line, 2);
        assert!(
            e.message.contains("mast:A/y/f_1.fits") && e.message.contains("the entry on line 1"),
            "{}",
            e.message
        );
        let e = plan("mast:A/x/f_1.fits\nmast:A/../f.fits\n", &opts()).unwrap_err();
        assert_eq!(e.origin.line, 2);
    }

    #[test]
    fn urls_built_as_text_are_what_the_parsed_ones_say() {
        for base in [
            "http://127.0.0.1:8080/",
            "https://mast.stsci.edu",
            "http://u:p@h:1/x/",
        ] {
            let mut o = opts();
            o.base = Url::parse(base).unwrap();
            for uri in [
                "mast:HST/product/a_b.fits",
                "mast:HLA/url/cgi-bin/fitscut.cgi?red=a b&blue=c#d%e",
                "mast:JWST/product/caf\u{e9}_x.fits",
                "mast:X/y/\"<>'`{}|^[]_z.fits",
            ] {
                let e = || list::parse("u.txt", uri).unwrap().remove(0);
                let parsed = Planner::new(o.clone()).push(e()).unwrap().unwrap();
                let text = Planner::new(o.clone()).push_planned(e()).unwrap().unwrap();
                assert_eq!(parsed.url.as_str(), text.url, "{base} {uri}");
                assert_eq!(parsed.rel, text.rel);
            }
        }
    }

    #[test]
    fn extension_filter_is_a_case_insensitive_suffix() {
        let mut o = opts();
        o.extensions = vec!["FITS".into()];
        let jobs = plan("mast:A/x/f_1.fits\nmast:A/x/f_1.jpg\n", &o).unwrap();
        assert_eq!(jobs.len(), 1);
    }

    #[test]
    fn script_urls_are_rerooted_only_when_asked() {
        let mut e = Entry::from_uri(
            "mast:JWST/product/a_b.fits".into(),
            Origin {
                file: "s.sh".into(),
                line: 3,
            },
        );
        e.url = Some("https://mast.stsci.edu/jwst/api/v0.1/Download/file?bundle_name=B&uri=mast:JWST/product/a_b.fits".into());
        e.local = LocalHint::Path("JWST/a/a_b.fits".into());
        let mut o = opts();
        let j = build(vec![e.clone()], &o).unwrap();
        assert_eq!(j[0].url.host_str(), Some("mast.stsci.edu"));
        assert_eq!(j[0].rel, "JWST/a/a_b.fits");
        o.base = Url::parse("http://127.0.0.1:9/").unwrap();
        o.rebase = true;
        let j = build(vec![e.clone()], &o).unwrap();
        assert_eq!(
            j[0].url.as_str(),
            "http://127.0.0.1:9/jwst/api/v0.1/Download/file?bundle_name=B&uri=mast:JWST/product/a_b.fits"
        );
        e.local = LocalHint::Path("../../etc/passwd".into());
        assert!(build(vec![e], &o).is_err());
    }

    #[test]
    fn absolute_script_paths_say_what_to_do_and_flat_keeps_the_name() {
        let mut e = Entry::from_uri(
            "mast:HST/product/a_flt.fits".into(),
            Origin {
                file: "mine.sh".into(),
                line: 7,
            },
        );
        e.url = Some(
            "https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a_flt.fits".into(),
        );
        e.local = LocalHint::Path("/Users/me/data/a_flt.fits".into());
        let err = build(vec![e.clone()], &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mine.sh:7: This output path cannot be used below DEST (absolute path \
             `/Users/me/data/a_flt.fits`): pass `--flat` to put every file straight into DEST, \
             or make the script's output paths relative (run its commands from a folder)"
        );
        let mut o = opts();
        o.flat = true;
        assert_eq!(build(vec![e.clone()], &o).unwrap()[0].rel, "a_flt.fits");
        e.local = LocalHint::Path("../up/..".into());
        assert!(
            build(vec![e], &o).is_err(),
            "the name itself is still checked"
        );
    }

    #[test]
    fn hla_getdata_uris_land_in_the_observation_folder() {
        let jobs = plan(
            "mast:HLA/url/cgi-bin/getdata.cgi?dataset=hst_10268_05_acs_wfc_f606w_09_drz.fits\n",
            &opts(),
        )
        .unwrap();
        assert_eq!(
            jobs[0].rel,
            "HLA/hst_10268_05_acs_wfc_f606w_09/hst_10268_05_acs_wfc_f606w_09_drz.fits"
        );
    }

    #[test]
    fn shards_are_disjoint_and_cover() {
        let uris: Vec<String> = (0..10_000)
            .map(|i| format!("mast:HST/product/f{i}_x.fits"))
            .collect();
        for n in 1..=16u32 {
            for u in &uris {
                let owners = (0..n).filter(|&k| Shard { k, n }.contains(u)).count();
                assert_eq!(owners, 1, "{u} in {owners} of {n} shards");
            }
        }
        // Through the planner too, in a shuffled order: the same files per shard.
        let text = uris.join("\n");
        let mut rev = uris.clone();
        rev.reverse();
        let rev = rev.join("\n");
        let mut total = 0;
        for k in 0..3 {
            let mut o = opts();
            o.shard = Some(Shard { k, n: 3 });
            let mut a: Vec<String> = plan(&text, &o)
                .unwrap()
                .into_iter()
                .map(|j| j.uri)
                .collect();
            let mut b: Vec<String> = plan(&rev, &o).unwrap().into_iter().map(|j| j.uri).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
            total += a.len();
        }
        assert_eq!(total, 10_000);
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { k: 2, n: 3 });
        assert!("3/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;
        use std::path::{Component, Path};

        fn hostile_line() -> impl Strategy<Value = String> {
            let atoms = prop_oneof![
                Just("mast:".to_string()),
                Just("..".to_string()),
                Just("/".to_string()),
                Just("\\".to_string()),
                Just(".".to_string()),
                Just("?".to_string()),
                Just("_".to_string()),
                Just("\u{0}".to_string()),
                Just("\n".to_string()),
                Just("HST".to_string()),
                Just("CON".to_string()),
                "[a-z]{1,5}",
                any::<char>().prop_map(|c| c.to_string()),
            ];
            proptest::collection::vec(atoms, 0..12).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// No input makes the reader or planner panic, and every planned
            /// path stays below DEST: relative, with only normal components.
            #[test]
            fn no_panic_and_no_path_escapes(lines in proptest::collection::vec(hostile_line(), 0..6), flat in any::<bool>()) {
                let text = lines.join("\n");
                let mut o = opts();
                o.flat = flat;
                if let Ok(entries) = crate::input::parse("p.txt", &text) {
                    if let Ok(jobs) = build(entries, &o) {
                        for j in jobs {
                            let p = Path::new(&j.rel);
                            prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))), "{:?}", j.rel);
                            prop_assert!(!j.rel.is_empty());
                            prop_assert!(!j.rel.contains('\\'));
                        }
                    }
                }
            }

            /// The same for a script's `--output` path and a table's columns.
            #[test]
            fn hostile_local_hints_never_escape(path in hostile_line(), coll in hostile_line(), obs in hostile_line(), name in hostile_line()) {
                let origin = Origin { file: "s.sh".into(), line: 1 };
                let mut a = Entry::from_uri("mast:HST/product/a_b.fits".into(), origin.clone());
                a.local = LocalHint::Path(path);
                let mut b = Entry::from_uri("mast:HST/product/c_d.fits".into(), origin);
                b.local = LocalHint::Parts { collection: Some(coll), obs_id: Some(obs), filename: Some(name) };
                for e in [a, b] {
                    if let Ok(jobs) = build(vec![e], &opts()) {
                        for j in jobs {
                            prop_assert!(Path::new(&j.rel).components().all(|c| matches!(c, Component::Normal(_))), "{:?}", j.rel);
                        }
                    }
                }
            }
        }
    }
}
