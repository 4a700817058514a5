//! The one HTTP client and the one place credentials are attached.
//!
//! Every request mastdl makes — downloads, HEADs for `--update`, `/whoami`,
//! `path_lookup`, searches — goes through [`Http::send`]. reqwest's own
//! redirect handling is off: redirects are followed here, hop by hop, and at
//! each hop the credential-bearing headers (`Authorization` and the
//! `mast_token` cookie) are attached only when [`Trust`] allows the hop's
//! URL. Callers never put credentials in the extra headers: any
//! `Authorization`, `Cookie` or `Proxy-Authorization` found there is dropped.
//!
//! Every body read whole (error excerpts, `/whoami`, lookups, search pages)
//! goes through [`read_body`]: capped in size and bounded in total time,
//! so a server that drips or never ends cannot hold the run or its memory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::FetchError;
use crate::retry;
use crate::token::Token;

/// The most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;
/// The longest connect wait, whatever `--timeout` says.
pub const MAX_CONNECT: Duration = Duration::from_secs(30);
/// How much of an error body is read for its message.
pub const ERROR_EXCERPT: usize = 4096;
/// The longest wait for an error body's excerpt.
pub const ERROR_EXCERPT_TIME: Duration = Duration::from_secs(5);

/// Which hosts see the credentials.
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

    /// Returns true if and only if credentials may be sent to `url`.
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

/// How the one client is built.
#[derive(Debug, Clone)]
pub struct ClientOptions<'a> {
    /// `--timeout`: also bounds connecting (at most [`MAX_CONNECT`]).
    pub stall: Duration,
    /// `--cacert`: extra PEM roots.
    pub cacert: Option<&'a Path>,
    /// Idle connections kept per host.
    pub pool_per_host: usize,
}

/// Why the client could not be built (a bad `--cacert`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Cannot read `--cacert` `{}`", path.display())]
    ReadCa {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("`--cacert` `{}` holds no PEM certificate", path.display())]
    NoCert { path: std::path::PathBuf },
    #[error("Cannot build the HTTP client")]
    Build(#[from] reqwest::Error),
}

/// Builds the run's one client: redirects off (followed by [`Http::send`]),
/// a connect timeout, the extra CA certificates, the proxy variables.
pub fn build_client(o: &ClientOptions<'_>) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mastdl/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(o.stall.min(MAX_CONNECT))
        .pool_max_idle_per_host(o.pool_per_host)
        .tcp_nodelay(true);
    if let Some(path) = o.cacert {
        let pem = std::fs::read(path).map_err(|source| ClientError::ReadCa {
            path: path.to_path_buf(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
        if certs.is_empty() {
            return Err(ClientError::NoCert {
                path: path.to_path_buf(),
            });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b.build()?)
}

/// The credentials a request may carry, attached hop by hop where trusted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Creds<'a> {
    /// Sent as `Authorization: token …`.
    pub token: Option<&'a Token>,
    /// Also send the token as the `mast_token` cookie (as astroquery does
    /// for `/whoami` and searches).
    pub cookie: bool,
}

impl<'a> Creds<'a> {
    /// Returns credentials of the token alone (no cookie).
    pub fn token(token: Option<&'a Token>) -> Creds<'a> {
        Creds {
            token,
            cookie: false,
        }
    }
}

/// One request to send.
pub struct Req<'a> {
    pub method: Method,
    pub url: &'a Url,
    pub creds: Creds<'a>,
    /// Extra headers (never credentials: those are dropped).
    pub headers: HeaderMap,
    /// A body (form data for searches); dropped when a 301/302/303 turns
    /// the request into a GET.
    pub body: Option<String>,
    /// The longest wait for the response headers (default: the stall timeout).
    pub timeout: Option<Duration>,
}

impl<'a> Req<'a> {
    /// Returns a GET of `url` with `creds`.
    pub fn get(url: &'a Url, creds: Creds<'a>) -> Req<'a> {
        Req {
            method: Method::GET,
            url,
            creds,
            headers: HeaderMap::new(),
            body: None,
            timeout: None,
        }
    }
}

/// The shared client, who sees the credentials, and the stall timeout.
#[derive(Clone)]
pub struct Http {
    /// The shared client (its own redirects off).
    pub client: reqwest::Client,
    /// Who sees the credentials.
    pub trust: Trust,
    /// `--timeout`: the longest wait for the next bytes.
    pub stall: Duration,
    /// A second connection to hosts that answer over HTTP/2.
    spare: Option<Arc<Spare>>,
}

/// A second client, so that a host answering over HTTP/2 gets two
/// connections instead of one: a server (or a path) that bounds each
/// connection's rate would otherwise cap the whole run at one connection's
/// rate, however many streams it carries. Hosts that answer over HTTP/1.1
/// never see it (there, the budget counts connections).
///
/// The spare connection to a host is opened by one request alone, after
/// the host's first HTTP/2 answer on the main client; once it answered
/// over HTTP/2, requests to the host take turns between the two.
struct Spare {
    client: reqwest::Client,
    hosts: Mutex<HashMap<String, Lane>>,
    turn: AtomicUsize,
}

/// The spare connection to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The host answered over HTTP/2; no spare connection yet.
    Cold,
    /// One request is opening it.
    Opening,
    /// Open: requests take turns.
    Open,
    /// It failed or did not speak HTTP/2: the main client alone.
    Off,
}

/// Which client a hop went out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Main,
    /// The spare, opening its connection.
    Opening,
    /// The spare, open.
    Spare,
}

impl Spare {
    fn key(url: &Url) -> String {
        format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        )
    }

    /// Returns which client the next hop to `url` takes.
    fn pick(&self, url: &Url) -> Via {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        match hosts.get_mut(&Self::key(url)) {
            Some(lane @ Lane::Cold) => {
                *lane = Lane::Opening;
                Via::Opening
            }
            Some(Lane::Open) if self.turn.fetch_add(1, Ordering::Relaxed) % 2 == 1 => Via::Spare,
            _ => Via::Main,
        }
    }

    /// Learns from a hop's outcome (`Some(version)`, or `None` if it failed).
    fn learn(&self, url: &Url, via: Via, version: Option<reqwest::Version>) {
        let h2 = version == Some(reqwest::Version::HTTP_2);
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        match via {
            Via::Main if h2 => {
                hosts.entry(Self::key(url)).or_insert(Lane::Cold);
            }
            Via::Opening => {
                hosts.insert(Self::key(url), if h2 { Lane::Open } else { Lane::Off });
            }
            // Lost: opened again by one request alone.
            Via::Spare if version.is_none() => {
                hosts.insert(Self::key(url), Lane::Cold);
            }
            Via::Spare if !h2 => {
                hosts.insert(Self::key(url), Lane::Off);
            }
            _ => {}
        }
    }
}

/// A finished request's answer, after redirects.
pub struct Answer {
    /// The response of the last hop.
    pub response: Response,
    /// A host a redirect led to that did not get the token.
    pub withheld: Option<String>,
}

impl Http {
    /// Returns the client of one connection per host (or one per request
    /// in flight over HTTP/1.1).
    pub fn new(client: reqwest::Client, trust: Trust, stall: Duration) -> Http {
        Http {
            client,
            trust,
            stall,
            spare: None,
        }
    }

    /// Returns this client with a second connection to HTTP/2 hosts,
    /// made by `spare` (a client built like the main one).
    pub fn with_spare(mut self, spare: reqwest::Client) -> Http {
        self.spare = Some(Arc::new(Spare {
            client: spare,
            hosts: Mutex::new(HashMap::new()),
            turn: AtomicUsize::new(0),
        }));
        self
    }

    /// Sends `req`, following redirects: the credentials ride along to
    /// trusted URLs only, on every hop; loops and more than
    /// [`MAX_REDIRECTS`] hops fail.
    pub async fn send(&self, req: Req<'_>) -> Result<Answer, FetchError> {
        let Req {
            mut method,
            url,
            creds,
            mut headers,
            mut body,
            timeout,
        } = req;
        for name in [
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ] {
            headers.remove(name);
        }
        let mut url = url.clone();
        let mut seen = vec![url.clone()];
        let mut withheld = None;
        loop {
            let via = self.spare.as_ref().map_or(Via::Main, |s| s.pick(&url));
            let client = match (&self.spare, via) {
                (Some(s), Via::Opening | Via::Spare) => &s.client,
                _ => &self.client,
            };
            let mut r = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = &body {
                r = r.body(b.clone());
            }
            match creds.token {
                Some(t) if self.trust.allows(&url) => r = with_credentials(r, t, creds.cookie),
                Some(_) => withheld = url.host_str().map(str::to_string),
                None => {}
            }
            let wait = timeout.unwrap_or(self.stall);
            let sent = tokio::time::timeout(wait, r.send()).await;
            if let Some(s) = &self.spare {
                let version = match &sent {
                    Ok(Ok(resp)) => Some(resp.version()),
                    _ => None,
                };
                s.learn(&url, via, version);
            }
            let resp = sent
                .map_err(|_| FetchError::Stall(wait))?
                .map_err(|e| network_error(&e))?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(Answer {
                    response: resp,
                    withheld,
                });
            }
            let next = redirect_target(&resp, &url, &seen)?;
            let status = resp.status();
            if matches!(status.as_u16(), 301..=303) && method != Method::HEAD {
                // As browsers and curl do: the next hop is a GET without a body.
                method = Method::GET;
                body = None;
                headers.remove(header::CONTENT_TYPE);
            }
            seen.push(next.clone());
            url = next;
        }
    }
}

/// Returns the error for a failed exchange, classified by [`retry`].
pub fn network_error(e: &reqwest::Error) -> FetchError {
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

/// Adds the credentials of `token` to a request: `Authorization`, and the
/// `mast_token` cookie when asked; both marked sensitive.
fn with_credentials(
    mut r: reqwest::RequestBuilder,
    token: &Token,
    cookie: bool,
) -> reqwest::RequestBuilder {
    if let Some(v) = token.header_value() {
        r = r.header(header::AUTHORIZATION, v);
    }
    if cookie {
        if let Ok(mut v) = HeaderValue::from_str(&format!("mast_token={}", token.expose())) {
            v.set_sensitive(true);
            r = r.header(header::COOKIE, v);
        }
    }
    r
}

/// Returns where a redirect answer leads: an http(s) URL not seen before,
/// within [`MAX_REDIRECTS`] hops.
fn redirect_target(resp: &Response, url: &Url, seen: &[Url]) -> Result<Url, FetchError> {
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
            crate::layout::escape(next.scheme())
        )));
    }
    if seen.contains(&next) {
        return Err(FetchError::Redirect(format!(
            "redirect loop at {}",
            crate::layout::escape(&crate::layout::redact_url(&next))
        )));
    }
    if seen.len() > MAX_REDIRECTS {
        return Err(FetchError::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects"
        )));
    }
    Ok(next)
}

/// Returns a header's value as text, if it is text.
pub fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_string)
}

/// Reads a whole body of at most `limit` bytes within `within` (and no
/// more than `stall` between chunks). A longer body is an error, as is a
/// body that takes too long.
pub async fn read_body(
    resp: &mut Response,
    limit: usize,
    stall: Duration,
    within: Duration,
) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::BodyTooLarge { limit });
    }
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(stall);
        let chunk = match tokio::time::timeout(wait, resp.chunk()).await {
            Err(_) => return Err(FetchError::Stall(wait.max(Duration::from_secs(1)))),
            Ok(Err(e)) => return Err(network_error(&e)),
            Ok(Ok(None)) => return Ok(buf),
            Ok(Ok(Some(c))) => c,
        };
        if buf.len() + chunk.len() > limit {
            return Err(FetchError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
}

/// Reads at most `limit` bytes of a body, for messages, within `within`
/// in all: whatever arrived by then.
pub async fn body_excerpt(resp: &mut Response, limit: usize, within: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = Vec::new();
    while buf.len() < limit {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(limit);
    buf
}

/// Returns the `Retry-After` of a response, if any (capped by [`retry`]).
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
}

/// Returns the error for a non-success answer, with the first line of its
/// body (read for at most [`ERROR_EXCERPT_TIME`]).
pub async fn status_error(mut resp: Response, stall: Duration) -> FetchError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = body_excerpt(&mut resp, ERROR_EXCERPT, stall.min(ERROR_EXCERPT_TIME)).await;
    let detail = (!body.is_empty()).then(|| first_line(&body));
    FetchError::Status {
        status,
        retry_after,
        detail,
    }
}

/// Returns the first meaningful line of an error body, tags stripped,
/// control characters dropped and secrets scrubbed.
pub fn first_line(body: &[u8]) -> String {
    // Secrets go before the cut, or a cut one would survive in part.
    let lossy = String::from_utf8_lossy(body);
    let text = crate::token::scrub(&lossy);
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
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(200).filter(|c| !c.is_control()).collect())
        .unwrap_or_else(|| "(empty body)".to_string());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!ok("ftp://mast.stsci.edu/x"));
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
}
