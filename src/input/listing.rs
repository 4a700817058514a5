//! Recursive wget lines: a [`Listing`] (what a parsed `wget -r` line asks
//! for) and [`Lister`], which expands it into ordinary entries by reading
//! the archive's Apache-style directory index pages, as wget would.
//!
//! Only `href` values are read. Sort links (`?C=N;O=D`), fragments, parent
//! and off-site links are ignored, and nothing outside the starting
//! directory is followed (always, as with `-np`). Every page read is bounded
//! in size ([`MAX_INDEX_PAGE_BYTES`]) and in time (the run's `--timeout`
//! stall, [`MAX_INDEX_PAGE_TIME`] in all); `-l0`/`-l inf` stop at
//! [`MAX_LISTING_DEPTH`]. The whole listing is bounded too ([`Bounds`]): in
//! pages read, in what it keeps in memory (the files it found and the
//! folders still to read, not the pages it read) and in time. Listings carry
//! no token: the archive's index pages are public. Names the server supplies
//! become paths only after the same checks as a script's `--output` paths;
//! a link whose name fails them is skipped (and said, see [`Listed`]), the
//! others are kept.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context as _;
use percent_encoding::percent_decode_str;
use url::Url;

use super::{Entry, InputError, LocalHint, Origin, ProductMeta};
use crate::layout;
use crate::transfer::http::Http;

/// The largest index page read (a directory of ~50,000 files).
pub(crate) const MAX_INDEX_PAGE_BYTES: usize = 8 << 20;

/// How deep `-l0` (infinite) goes.
pub(crate) const MAX_LISTING_DEPTH: u32 = 32;

/// The most index pages one listing reads.
pub(crate) const MAX_LISTING_PAGES: usize = 10_000;

/// The most one listing keeps in memory (256 MiB): the files it found and
/// the folders still to read, each counted as its names' bytes plus
/// [`KEPT_OVERHEAD`].
pub(crate) const MAX_LISTING_KEPT_BYTES: usize = 256 << 20;

/// What one kept file or queued folder costs beyond its names' bytes.
const KEPT_OVERHEAD: usize = 512;

/// The longest one listing may take, all its pages together (1 hour).
pub(crate) const MAX_LISTING_TIME: Duration = Duration::from_secs(3600);

/// The most skipped links one listing names; the rest are counted.
const MAX_SKIPS_NAMED: usize = 20;

/// The most redirects followed for one index page.
const MAX_REDIRECTS: usize = 5;

/// Where wget puts a file: `-P`, `-nH`, `--cut-dirs`, `-nd`/`-x`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Layout {
    /// `-P`: the folder files go below, as written (`""` when not given).
    pub(crate) prefix: String,
    /// `-nH`: no folder named after the host.
    pub(crate) no_host: bool,
    /// `--cut-dirs`: how many leading remote folders to drop.
    pub(crate) cut_dirs: usize,
    /// Whether remote folders are recreated (`-r` without `-nd`, or `-x`).
    pub(crate) dirs: bool,
}

impl Layout {
    /// Returns the `/`-separated local path of `url`'s file. Each folder and
    /// the name are percent-decoded and checked; the prefix is kept as
    /// written for the plan to check.
    pub(crate) fn path(&self, url: &Url) -> Result<String, String> {
        let segments: Vec<String> = url
            .path_segments()
            .map(|s| s.map(decoded).collect())
            .unwrap_or_default();
        let (name, folders) = match segments.split_last() {
            Some((name, folders)) if !name.is_empty() => (name.clone(), folders),
            Some((_, folders)) => ("index.html".to_string(), folders),
            None => ("index.html".to_string(), &[][..]),
        };
        let mut parts: Vec<String> = Vec::new();
        let prefix = self.prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix != "." {
            parts.push(prefix.trim_start_matches("./").to_string());
        }
        if self.dirs {
            if !self.no_host {
                parts.push(url.host_str().unwrap_or("").to_string());
            }
            parts.extend(folders.iter().skip(self.cut_dirs).cloned());
        }
        parts.push(name);
        for part in &parts[usize::from(!prefix.is_empty() && prefix != ".")..] {
            check_name(part)?;
        }
        Ok(parts.join("/"))
    }
}

fn decoded(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Checks one name a server supplied: it must be one plain path component.
fn check_name(name: &str) -> Result<(), String> {
    if name.contains('/') {
        return Err(format!("the name `{}` holds a `/`", layout::escape(name)));
    }
    layout::checked_components(name).map(|_| ())
}

/// A recursive wget pull of one archive directory, as the script asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    /// The starting URL, as the script spells it.
    pub(crate) url: String,
    /// `-A`: names to keep (suffixes, or globs with `*?[`); empty keeps all.
    pub(crate) accept: Vec<String>,
    /// `-R`: names to drop.
    pub(crate) reject: Vec<String>,
    /// `-l`: how deep to go (`None` for `0`/`inf`; wget's default is 5).
    pub(crate) level: Option<u32>,
    /// Where the files land.
    pub(crate) layout: Layout,
    /// The wget line.
    pub(crate) origin: Origin,
}

impl Listing {
    /// Returns true if and only if wget would keep a file named `name`.
    pub(crate) fn keeps(&self, name: &str) -> bool {
        let hit = |p: &String| {
            if p.contains(['*', '?', '[']) {
                glob(p.as_bytes(), name.as_bytes())
            } else {
                name.ends_with(p.as_str())
            }
        };
        (self.accept.is_empty() || self.accept.iter().any(hit)) && !self.reject.iter().any(hit)
    }

    fn error(&self, message: String) -> InputError {
        InputError {
            origin: self.origin.clone(),
            message,
        }
    }
}

/// Shell-style glob match (`*`, `?`, `[abc]`, `[a-z]`, `[!a]`), as wget's
/// `fnmatch`.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().skip(1).position(|&c| c == b']').map(|i| i + 1) else {
                return s.first() == Some(&b'[') && glob(rest, &s[1..]);
            };
            let Some((&c, tail)) = s.split_first() else {
                return false;
            };
            let (negate, set) = match rest[..end].split_first() {
                Some((b'!' | b'^', set)) => (true, set),
                _ => (false, &rest[..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob(&rest[end + 1..], tail)
        }
        Some((&c, rest)) => s.first() == Some(&c) && glob(rest, &s[1..]),
    }
}

/// Returns the `href` values of an HTML page, entities decoded, in order.
#[cfg(test)]
pub(crate) fn hrefs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    each_href(html, &mut |h| {
        out.push(h);
        Ok(())
    })
    .map(|_| out)
    .unwrap_or_default()
}

/// Hands the `href` values of an HTML page to `f`, entities decoded, in
/// order (one at a time: a page of half a million links is never a list).
fn each_href(html: &str, f: &mut dyn FnMut(String) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(k) = lower[from..].find("href") {
        let mut at = from + k + 4;
        from = at;
        let before = lower[..at - 4].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            continue;
        }
        at += lower[at..].len() - lower[at..].trim_start().len();
        if !lower[at..].starts_with('=') {
            continue;
        }
        at += 1;
        at += lower[at..].len() - lower[at..].trim_start().len();
        let rest = &html[at..];
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or(""),
        };
        from = at + value.len();
        f(unescape(value.trim()))?;
    }
    Ok(())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// A link on an index page below the starting directory.
#[derive(Debug, PartialEq, Eq)]
enum Link {
    Folder(Url),
    File(Url),
}

/// Hands the links of the page at `page` (whose folder is below `root`) to
/// `f`: folders and files below `root`, everything else dropped. A link
/// may come twice; the caller keeps each once.
fn each_link(
    page: &Url,
    root: &Url,
    html: &str,
    f: &mut dyn FnMut(Link) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    each_href(html, &mut |href| {
        if href.is_empty() || href.starts_with(['?', '#']) {
            return Ok(());
        }
        let Ok(mut url) = page.join(&href) else {
            return Ok(());
        };
        if url.query().is_some() {
            return Ok(());
        }
        url.set_fragment(None);
        let same_site = url.scheme() == root.scheme()
            && url.host_str() == root.host_str()
            && url.port_or_known_default() == root.port_or_known_default();
        if !same_site
            || !url.path().starts_with(root.path())
            || url.path().len() <= page.path().len() && url.path().ends_with('/')
        {
            return Ok(());
        }
        f(if url.path().ends_with('/') {
            Link::Folder(url)
        } else {
            Link::File(url)
        })
    })
}

/// The longest one index page may take to arrive.
pub(crate) const MAX_INDEX_PAGE_TIME: Duration = Duration::from_secs(120);

/// What one listing may cost; [`Bounds::RUN`] is what every run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// The most index pages read.
    pub(crate) pages: usize,
    /// The most bytes kept (see [`MAX_LISTING_KEPT_BYTES`]).
    pub(crate) kept_bytes: usize,
    /// The longest one page may take, from request to last byte.
    pub(crate) page_time: Duration,
    /// The longest the whole listing may take.
    pub(crate) total_time: Duration,
}

impl Bounds {
    /// The bounds of a run.
    pub(crate) const RUN: Bounds = Bounds {
        pages: MAX_LISTING_PAGES,
        kept_bytes: MAX_LISTING_KEPT_BYTES,
        page_time: MAX_INDEX_PAGE_TIME,
        total_time: MAX_LISTING_TIME,
    };
}

/// What a listing found: how many files it kept, and the links it skipped
/// because their names cannot be local files (the rest of the listing is
/// kept all the same).
#[derive(Debug, Default)]
pub(crate) struct Listed {
    /// Files handed on.
    pub(crate) kept: usize,
    /// Why each skipped link was skipped, the first [`MAX_SKIPS_NAMED`].
    pub(crate) skipped: Vec<String>,
    /// Skipped links in all.
    pub(crate) skipped_count: usize,
}

impl Listed {
    fn skip(&mut self, why: String) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_SKIPS_NAMED {
            self.skipped.push(why);
        }
    }

    /// Returns the one note that says what was skipped, if anything was.
    pub(crate) fn note(&self, listing: &Listing) -> Option<String> {
        if self.skipped_count == 0 {
            return None;
        }
        let more = self.skipped_count - self.skipped.len();
        let more = match more {
            0 => String::new(),
            n => format!("; and {n} more"),
        };
        Some(format!(
            "{}: Skipped {} link(s) on the index pages of `{}` whose names cannot be local files, and kept the rest: {}{more}",
            listing.origin,
            self.skipped_count,
            layout::escape(&listing.url),
            self.skipped.join("; ")
        ))
    }
}

/// Expands listings over HTTP, with the run's one client (no credentials
/// are ever sent for listings: archive index pages are public).
pub(crate) struct Lister {
    http: Http,
    /// `--base-url`, when the user set one: script URLs take its scheme,
    /// host and port.
    rebase: Option<Url>,
    flat: bool,
    bounds: Bounds,
}

impl Lister {
    /// Returns a lister using `http` (never with credentials; its stall
    /// timeout bounds the wait for the next bytes), re-rooting and checking
    /// paths as `plan` says.
    pub(crate) fn new(http: &Http, rebase: Option<Url>, flat: bool) -> Lister {
        Lister {
            http: http.clone(),
            rebase,
            flat,
            bounds: Bounds::RUN,
        }
    }

    /// Returns this lister with other bounds (tests).
    #[cfg(test)]
    pub(crate) fn with_bounds(mut self, bounds: Bounds) -> Lister {
        self.bounds = bounds;
        self
    }

    /// Checks what can be checked of `listing` without a request: its `-P`
    /// folder and its URL. Returns the starting URL.
    pub(crate) fn check(&self, listing: &Listing) -> Result<Url, InputError> {
        let prefix = listing.layout.prefix.trim_start_matches("./");
        if !self.flat && !prefix.is_empty() && prefix != "." {
            layout::checked_components(prefix.trim_end_matches('/')).map_err(|m| {
                listing.error(format!(
                    "The wget `-P` folder must stay inside DEST: {m}. Pass `--flat` to put every file straight into DEST, or edit `-P` to a relative folder without `..`"
                ))
            })?;
        }
        Url::parse(&listing.url)
            .map_err(|e| listing.error(format!("Bad URL `{}`: {e}", layout::escape(&listing.url))))
    }

    /// Checks a script's single-file `entry` as the plan will, without a
    /// request: its `mast:` URI and its local path (the `--flat` rule
    /// included), so a line that will be refused is refused before any
    /// listing of the same script goes out.
    pub(crate) fn check_entry(&self, entry: &Entry) -> Result<(), InputError> {
        let bad = |message: String| InputError {
            origin: entry.origin.clone(),
            message,
        };
        if layout::is_mast_uri(&entry.uri) {
            layout::check_uri(&entry.uri)
                .map_err(|m| bad(format!("{m}: `{}`", layout::escape(&entry.uri))))?;
        }
        crate::plan::local_path(entry, self.flat)
            .map(drop)
            .map_err(bad)
    }

    /// Lists `listing`'s directory tree and hands each file it keeps to
    /// `push`, as an entry whose URI and URL are the file's URL (on the
    /// script's host) and whose local path is where wget would put it. A
    /// file whose name cannot be a local file, or that `push` refuses, is
    /// skipped and counted in the result; the listing goes on. Fails when a
    /// bound is hit, naming the wget line.
    pub(crate) async fn expand(
        &self,
        listing: &Listing,
        push: &mut dyn FnMut(Entry) -> Result<(), InputError>,
    ) -> anyhow::Result<Listed> {
        let start = self.check(listing)?;
        let mut root = self.reroot(&start);
        root.set_query(None);
        root.set_fragment(None);
        let folder = root.path()[..=root.path().rfind('/').unwrap_or(0)].to_string();
        root.set_path(&folder);
        let depth_cap = listing
            .level
            .unwrap_or(MAX_LISTING_DEPTH)
            .min(MAX_LISTING_DEPTH);
        let bounds = self.bounds;
        let deadline = Instant::now() + bounds.total_time;
        let first = self.reroot(&start);
        let mut kept_bytes = first.as_str().len() + KEPT_OVERHEAD;
        let mut seen_pages = HashSet::from([first.path().to_string()]);
        let mut queue = VecDeque::from([(first, 0u32)]);
        let mut pages = 0;
        let mut seen_files = HashSet::new();
        let mut listed = Listed::default();
        let too_much = |kept_bytes: usize, listed: &Listed, queued: usize| {
            (kept_bytes > bounds.kept_bytes).then(|| {
                listing.error(format!(
                    "This listing keeps more than {} in memory ({} files found, {queued} folders still to read): pull a smaller directory, narrow `-A`, or lower `-l`",
                    crate::manifest::human_bytes(bounds.kept_bytes as u64),
                    listed.kept
                ))
            })
        };
        while let Some((page, depth)) = queue.pop_front() {
            kept_bytes = kept_bytes.saturating_sub(page.as_str().len() + KEPT_OVERHEAD);
            pages += 1;
            if pages > bounds.pages {
                return Err(listing
                    .error(format!(
                        "This listing reads more than {} index pages: pull a smaller directory, or lower `-l`",
                        bounds.pages
                    ))
                    .into());
            }
            let page_deadline = Instant::now() + bounds.page_time;
            let cut = page_deadline.min(deadline);
            let (page, html) = match tokio::time::timeout_at(cut, self.page(listing, &page)).await
            {
                Ok(read) => read?,
                Err(_) if cut == deadline => anyhow::bail!(
                    "{}: This listing took longer than {:?} in all ({} index pages read): pull a smaller directory, or lower `-l`",
                    listing.origin,
                    bounds.total_time,
                    pages - 1
                ),
                Err(_) => anyhow::bail!(
                    "Cannot list `{page}` ({}): the index page was too slow in total, still arriving after {:?} (the most one page may take)",
                    listing.origin,
                    bounds.page_time
                ),
            };
            let Some(html) = html else {
                continue;
            };
            each_link(&page, &root, &html, &mut |link| {
                match link {
                    Link::Folder(url) => {
                        if depth + 1 < depth_cap && seen_pages.insert(url.path().to_string()) {
                            kept_bytes += url.as_str().len() * 2 + KEPT_OVERHEAD;
                            queue.push_back((url, depth + 1));
                        }
                    }
                    Link::File(url) => {
                        let name = decoded(
                            url.path_segments()
                                .and_then(|mut s| s.next_back())
                                .unwrap_or(""),
                        );
                        if depth >= depth_cap
                            || !listing.keeps(&name)
                            || !seen_files.insert(url.path().to_string())
                        {
                            return Ok(());
                        }
                        // The path stays in `seen_files`; the entry only
                        // when the plan keeps it.
                        kept_bytes += url.path().len();
                        let entry = match self.entry(listing, &start, &url) {
                            Ok(e) => e,
                            Err(e) => {
                                listed.skip(e.message);
                                return Ok(());
                            }
                        };
                        let weight = entry.uri.len() * 2
                            + match &entry.local {
                                LocalHint::Path(p) => p.len(),
                                _ => 0,
                            }
                            + KEPT_OVERHEAD;
                        match push(entry) {
                            Ok(()) => {
                                listed.kept += 1;
                                kept_bytes += weight;
                            }
                            Err(e) => listed.skip(e.message),
                        }
                    }
                }
                match too_much(kept_bytes, &listed, queue.len()) {
                    Some(e) => Err(e.into()),
                    None => Ok(()),
                }
            })?;
        }
        Ok(listed)
    }

    /// The entry for a file found at `url` (on the fetched host).
    fn entry(&self, listing: &Listing, start: &Url, url: &Url) -> Result<Entry, InputError> {
        let mut original = start.clone();
        original.set_path(url.path());
        original.set_query(None);
        original.set_fragment(None);
        let path = listing.layout.path(&original).map_err(|m| {
            listing.error(format!(
                "`{}` cannot be a local file name: {m}",
                layout::escape(original.as_str())
            ))
        })?;
        Ok(Entry {
            uri: original.to_string(),
            url: Some(original.to_string()),
            local: LocalHint::Path(path),
            size: None,
            meta: ProductMeta::default(),
            origin: listing.origin.clone(),
        })
    }

    /// `url` with the base URL's scheme, host and port when the user set one.
    fn reroot(&self, url: &Url) -> Url {
        let mut out = url.clone();
        if let Some(b) = &self.rebase {
            let _ = out.set_scheme(b.scheme());
            let _ = out.set_host(b.host_str());
            let _ = out.set_port(b.port());
        }
        out
    }

    /// Reads one index page (following same-site redirects); returns the
    /// URL it was read from and its text, `None` when the answer is not
    /// HTML (a file, not a folder: wget follows no links there).
    async fn page(&self, listing: &Listing, url: &Url) -> anyhow::Result<(Url, Option<String>)> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let answer = self
                .http
                .get_one(&url)
                .await
                .with_context(|| format!("Cannot list `{url}` ({})", listing.origin))?;
            let status = answer.status();
            if status.is_redirection() {
                let next = answer
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .filter(|n| n.host_str() == url.host_str() && n.port() == url.port());
                url = next.ok_or_else(|| {
                    listing.error(format!("The index page `{url}` redirects off the site"))
                })?;
                continue;
            }
            if status.is_client_error() {
                return Err(listing
                    .error(format!(
                        "Cannot list `{url}`: the archive answered {status}; check the URL on this wget line"
                    ))
                    .into());
            }
            if !status.is_success() {
                anyhow::bail!(
                    "Cannot list `{url}` ({}): the archive answered {status}",
                    listing.origin
                );
            }
            let html = answer
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|t| t.to_ascii_lowercase().contains("html"));
            if !html {
                return Ok((url, None));
            }
            let body = self
                .body(answer)
                .await
                .with_context(|| format!("Cannot list `{url}` ({})", listing.origin))?;
            return Ok((url, Some(body)));
        }
        Err(listing
            .error(format!(
                "The index page `{url}` redirects more than {MAX_REDIRECTS} times"
            ))
            .into())
    }

    /// Reads a body, at most [`MAX_INDEX_PAGE_BYTES`], waiting at most the
    /// stall time for each piece ([`Lister::expand`] bounds the whole page
    /// in time: the limit given here is only a backstop past it).
    async fn body(&self, mut answer: reqwest::Response) -> anyhow::Result<String> {
        let bytes = crate::transfer::http::read_body(
            &mut answer,
            MAX_INDEX_PAGE_BYTES,
            self.http.stall,
            self.bounds.page_time.saturating_mul(2),
        )
        .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The links of a page, each once.
    fn links(page: &Url, root: &Url, html: &str) -> Vec<Link> {
        let (mut out, mut seen) = (Vec::new(), HashSet::new());
        each_link(page, root, html, &mut |l| {
            let (Link::Folder(u) | Link::File(u)) = &l;
            if seen.insert(u.path().to_string()) {
                out.push(l);
            }
            Ok(())
        })
        .unwrap();
        out
    }

    fn listing(accept: &[&str], reject: &[&str]) -> Listing {
        Listing {
            url: "http://h.org/pub/k/".into(),
            accept: accept.iter().map(|s| s.to_string()).collect(),
            reject: reject.iter().map(|s| s.to_string()).collect(),
            level: None,
            layout: Layout::default(),
            origin: Origin {
                file: "k.sh".into(),
                line: 1,
            },
        }
    }

    /// A loopback server: `/big/` links to 300 files and 300 folders (which
    /// are empty), `/slow/` sends a few bytes every 20 ms for ever, and
    /// `/deep/…/` answers after 50 ms with one sub-folder.
    async fn serve() -> Url {
        use axum::body::Body;
        use axum::routing::get;
        let big = || async {
            let mut html = String::from("<html><body>");
            for i in 0..300 {
                html.push_str(&format!(
                    "<a href=\"f{i:04}_llc.fits\">f</a><a href=\"d{i}/\">d</a>\n"
                ));
            }
            ([("content-type", "text/html")], html)
        };
        let slow = || async {
            let chunks = futures_util::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, std::io::Error>(format!("<p>{n}</p>\n")), n + 1))
            });
            ([("content-type", "text/html")], Body::from_stream(chunks))
        };
        let deep = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ([("content-type", "text/html")], "<a href=\"n/\">n</a>")
        };
        let app = axum::Router::new()
            .route("/big/", get(big))
            .route(
                "/big/{d}/",
                get(|| async { ([("content-type", "text/html")], "") }),
            )
            .route("/slow/", get(slow))
            .route("/deep/", get(deep))
            .route("/deep/{*rest}", get(deep));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    fn at(base: &Url, path: &str, accept: &[&str]) -> Listing {
        Listing {
            url: base.join(path).unwrap().to_string(),
            ..listing(accept, &[])
        }
    }

    async fn expand(lister: &Lister, l: &Listing) -> anyhow::Result<Listed> {
        lister.expand(l, &mut |_| Ok(())).await
    }

    #[tokio::test]
    async fn a_listing_is_bounded_in_what_it_keeps_not_in_what_it_reads() {
        let base = serve().await;
        let small = Bounds {
            kept_bytes: 64 << 10,
            ..Bounds::RUN
        };
        let lister = Lister::new(&Http::loopback(), None, false);
        let all = expand(&lister, &at(&base, "big/", &[])).await.unwrap();
        assert_eq!(all.kept, 300);
        let lister = lister.with_bounds(small);
        let err = expand(&lister, &at(&base, "big/", &[])).await.unwrap_err();
        let err = err.downcast::<InputError>().unwrap();
        assert_eq!(err.origin.line, 1);
        assert!(err.message.contains("keeps more than 64.00 KiB"), "{err}");
        // The same pages, keeping nothing of them (`-A`) and no folder
        // (`-l1`), stay within the bound.
        let mut l = at(&base, "big/", &["_xyz.fits"]);
        l.level = Some(1);
        let none = expand(&lister, &l).await.unwrap();
        assert_eq!(none.kept, 0);
    }

    #[tokio::test]
    async fn a_page_too_slow_in_total_says_so_not_stalled() {
        let base = serve().await;
        let lister = Lister::new(&Http::loopback(), None, false).with_bounds(Bounds {
            page_time: Duration::from_millis(300),
            ..Bounds::RUN
        });
        let err = expand(&lister, &at(&base, "slow/", &[])).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("too slow in total"), "{text}");
        assert!(text.contains("k.sh:1"), "{text}");
        assert!(!text.contains("stall"), "{text}");
    }

    #[tokio::test]
    async fn a_listing_is_bounded_in_time_in_all() {
        let base = serve().await;
        let lister = Lister::new(&Http::loopback(), None, false).with_bounds(Bounds {
            total_time: Duration::from_millis(300),
            ..Bounds::RUN
        });
        let err = expand(&lister, &at(&base, "deep/", &[])).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("k.sh:1: This listing took longer than 300ms in all"),
            "{text}"
        );
    }

    #[test]
    fn accept_and_reject_are_suffixes_or_globs() {
        let l = listing(&["_llc.fits"], &["index*"]);
        assert!(l.keeps("kplr002439243-2009131105131_llc.fits"));
        assert!(!l.keeps("kplr002439243-2009131105131_slc.fits"));
        assert!(!l.keeps("index_llc.fits"));
        let l = listing(&["kplr*_[ls]lc.fits", "*.txt"], &[]);
        assert!(l.keeps("kplr1_slc.fits") && l.keeps("a.txt"));
        assert!(!l.keeps("kplr1_xlc.fits") && !l.keeps("x_llc.fits"));
        assert!(listing(&[], &[]).keeps("anything"));
        assert!(glob(b"a[!b]c", b"axc") && !glob(b"a[!b]c", b"abc"));
        assert!(glob(b"a?c*", b"abcdef"));
    }

    #[test]
    fn hrefs_are_read_from_apache_index_html() {
        let html = r#"<html><body><h1>Index of /pub/k</h1>
<table><tr><th><a href="?C=N;O=D">Name</a></th></tr>
<tr><td><a href="/pub/">Parent Directory</a></td></tr>
<tr><td><A HREF='a_llc.fits'>a_llc.fits</A></td></tr>
<tr><td><a class=x href=sub/>sub/</a></td></tr>
<tr><td><a data-href="no" href="b&amp;c.fits">b</a></td></tr>
</table></body></html>"#;
        assert_eq!(
            hrefs(html),
            ["?C=N;O=D", "/pub/", "a_llc.fits", "sub/", "b&c.fits"]
        );
    }

    #[test]
    fn links_stay_below_the_start_folder() {
        let root = Url::parse("http://h.org/pub/k/").unwrap();
        let page = Url::parse("http://h.org/pub/k/").unwrap();
        let html = r#"<a href="?C=M;O=A">s</a><a href="../">up</a><a href="/pub/">up</a>
<a href="http://other.org/pub/k/x.fits">off</a><a href="https://h.org/pub/k/y.fits">scheme</a>
<a href="a.fits">a</a><a href="a.fits#top">again</a><a href="sub/">sub</a><a href="./">self</a>
<a href="/pub/k/sub/b.fits">abs</a><a href="mailto:x@y">m</a>"#;
        let got = links(&page, &root, html);
        let want = vec![
            Link::File(Url::parse("http://h.org/pub/k/a.fits").unwrap()),
            Link::Folder(Url::parse("http://h.org/pub/k/sub/").unwrap()),
            Link::File(Url::parse("http://h.org/pub/k/sub/b.fits").unwrap()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn layout_follows_wget() {
        let url =
            Url::parse("http://archive.stsci.edu/pub/kepler/lightcurves/0024/002439243/k_llc.fits")
                .unwrap();
        let mut l = Layout {
            prefix: "kepler/0024/002439243".into(),
            no_host: true,
            cut_dirs: 6,
            dirs: true,
        };
        assert_eq!(l.path(&url).unwrap(), "kepler/0024/002439243/k_llc.fits");
        l.cut_dirs = 3;
        assert_eq!(
            l.path(&url).unwrap(),
            "kepler/0024/002439243/0024/002439243/k_llc.fits"
        );
        l.no_host = false;
        l.prefix = String::new();
        assert_eq!(
            l.path(&url).unwrap(),
            "archive.stsci.edu/0024/002439243/k_llc.fits"
        );
        l.dirs = false;
        assert_eq!(l.path(&url).unwrap(), "k_llc.fits");
        let bad = Url::parse("http://h.org/pub/a%2F..%2Fb.fits").unwrap();
        assert!(l.path(&bad).is_err());
        let bad = Url::parse("http://h.org/pub/a%5Cb.fits").unwrap();
        assert!(l.path(&bad).is_err());
        let bad = Url::parse("http://h.org/pub/a%0Ab.fits").unwrap();
        assert!(l.path(&bad).is_err());
    }
}
