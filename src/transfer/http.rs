//! The run's HTTP clients and the one place credentials are attached.
//!
//! Every request mastdl makes — downloads, HEADs for `--update`, `/whoami`,
//! `path_lookup`, searches, index pages — goes through [`Http`]: one set
//! of clients per host, whose connections a [`Gate`] counts (at most `-j`
//! open to the host), with a second connection to hosts that answer over
//! HTTP/2 (see `Host`). reqwest's own
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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::gate::{self, Gate, GateLayer};
use super::TransferError;
use crate::retry;
use crate::token::Token;

/// The most redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 10;
/// The longest connect wait, whatever `--timeout` says.
pub(crate) const MAX_CONNECT: Duration = Duration::from_secs(30);
/// How much of an error body is read for its message.
pub(crate) const ERROR_EXCERPT: usize = 4096;
/// The longest wait for an error body's excerpt.
pub(crate) const ERROR_EXCERPT_TIME: Duration = Duration::from_secs(5);
/// How many times one hop is sent again at once after an HTTP/2 server
/// refused it unprocessed (see [`unprocessed`]).
const MAX_RESEND: u32 = 3;

/// Which hosts see the credentials.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    base: Url,
    extra: Vec<String>,
}

impl Trust {
    /// Returns the trust rules: the base URL's host on any port,
    /// `*.stsci.edu`, and the `extra` hosts (`--trusted-host`).
    pub(crate) fn new(base: Url, extra: Vec<String>) -> Trust {
        let extra = extra.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        Trust { base, extra }
    }

    /// Returns true if and only if credentials may be sent to `url`.
    pub(crate) fn allows(&self, url: &Url) -> bool {
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

/// How the run's clients are built.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions<'a> {
    /// `--timeout`: also bounds connecting (at most [`MAX_CONNECT`]).
    pub(crate) stall: Duration,
    /// `--cacert`: extra PEM roots.
    pub(crate) cacert: Option<&'a Path>,
    /// The most connections open to one host (`-j`; see [`super::gate`]).
    pub(crate) per_host: usize,
    /// Hosts allowed more than `per_host` (the bucket), by URL.
    pub(crate) wider: Vec<(Url, usize)>,
    /// Ignore the proxy variables (tests against loopback servers).
    pub(crate) no_proxy: bool,
}

/// Why the client could not be built (a bad `--cacert`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
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

/// How each host's clients are built: [`ClientOptions`] with the
/// `--cacert` roots read once.
struct Spec {
    stall: Duration,
    roots: Vec<reqwest::Certificate>,
    per_host: usize,
    /// Caps above `per_host`, by host key.
    wider: HashMap<String, usize>,
    no_proxy: bool,
}

impl Spec {
    fn new(o: &ClientOptions<'_>) -> Result<Spec, ClientError> {
        let mut roots = Vec::new();
        if let Some(path) = o.cacert {
            let pem = std::fs::read(path).map_err(|source| ClientError::ReadCa {
                path: path.to_path_buf(),
                source,
            })?;
            roots = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
            if roots.is_empty() {
                return Err(ClientError::NoCert {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(Spec {
            stall: o.stall,
            roots,
            per_host: o.per_host.max(1),
            wider: o.wider.iter().map(|(u, n)| (host_key(u), *n)).collect(),
            no_proxy: o.no_proxy,
        })
    }

    /// Builds a client whose connections `gate` counts: redirects off
    /// (followed by [`Http::send`]), a connect timeout, the extra CA
    /// certificates, the proxy variables.
    fn client(&self, gate: &Arc<Gate>) -> Result<reqwest::Client, reqwest::Error> {
        let per_host = gate.cap();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mastdl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.stall.min(MAX_CONNECT))
            .connector_layer(GateLayer(gate.clone()))
            .pool_max_idle_per_host(per_host)
            .tcp_nodelay(true);
        for c in &self.roots {
            b = b.add_root_certificate(c.clone());
        }
        if self.no_proxy {
            b = b.no_proxy();
        }
        b.build()
    }

    /// Returns the clients of the host `key`.
    fn host(&self, key: &str) -> Result<Host, reqwest::Error> {
        let cap = self
            .wider
            .get(key)
            .map_or(self.per_host, |&n| n.max(self.per_host));
        let gate = Gate::new(cap, gate::WAIT.min(self.stall / 2));
        Ok(Host {
            main: self.client(&gate)?,
            // Two connections to an HTTP/2 host, unless `-j 1` asks for one.
            spare: if cap >= 2 {
                Some(OnceLock::new())
            } else {
                None
            },
            lane: Mutex::new(None),
            busy: Arc::new(AtomicUsize::new(0)),
            turn: AtomicUsize::new(0),
            gate,
        })
    }
}

/// The credentials a request may carry, attached hop by hop where trusted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Creds<'a> {
    /// Sent as `Authorization: token …`.
    pub(crate) token: Option<&'a Token>,
    /// Also send the token as the `mast_token` cookie (as astroquery does
    /// for `/whoami` and searches).
    pub(crate) cookie: bool,
}

impl<'a> Creds<'a> {
    /// Returns credentials of the token alone (no cookie).
    pub(crate) fn token(token: Option<&'a Token>) -> Creds<'a> {
        Creds {
            token,
            cookie: false,
        }
    }
}

/// One request to send.
pub(crate) struct Req<'a> {
    pub(crate) method: Method,
    pub(crate) url: &'a Url,
    pub(crate) creds: Creds<'a>,
    /// Extra headers (never credentials: those are dropped).
    pub(crate) headers: HeaderMap,
    /// A body (form data for searches); dropped when a 301/302/303 turns
    /// the request into a GET.
    pub(crate) body: Option<String>,
    /// The longest wait for the response headers (default: the stall timeout).
    pub(crate) timeout: Option<Duration>,
}

impl<'a> Req<'a> {
    /// Returns a GET of `url` with `creds`.
    pub(crate) fn get(url: &'a Url, creds: Creds<'a>) -> Req<'a> {
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

/// The run's clients (one set per host), who sees the credentials, and
/// the stall timeout.
#[derive(Clone)]
pub(crate) struct Http {
    /// Who sees the credentials.
    pub(crate) trust: Trust,
    /// `--timeout`: the longest wait for the next bytes.
    pub(crate) stall: Duration,
    hosts: Arc<Hosts>,
}

/// Each host's clients, built when the host is first asked for.
struct Hosts {
    spec: Spec,
    by_key: Mutex<HashMap<String, Arc<Host>>>,
}

/// One host's clients. Their connections are counted by one [`Gate`]
/// (at most `-j` open at once).
///
/// `spare` is a second client, so that a host answering over HTTP/2 gets
/// two connections instead of one: a server (or a path) that bounds each
/// connection's rate would otherwise cap the whole run at one connection's
/// rate, however many streams it carries. Hosts that answer over HTTP/1.1
/// never see it. The spare connection is opened by one request alone,
/// after the host's first HTTP/2 answer on the main client; once it
/// answered over HTTP/2, requests take turns between the two.
struct Host {
    main: reqwest::Client,
    /// Built when first needed (`None`: never, `-j 1`).
    spare: Option<OnceLock<reqwest::Client>>,
    /// The spare connection; `None` until the host answers over HTTP/2
    /// (so `Some` means it did, even with no spare).
    lane: Mutex<Option<Lane>>,
    /// Requests to the host from sending until their response is dropped.
    busy: Arc<AtomicUsize>,
    turn: AtomicUsize,
    gate: Arc<Gate>,
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
    /// It did not speak HTTP/2: the main client alone.
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

impl Host {
    fn lane(&self) -> std::sync::MutexGuard<'_, Option<Lane>> {
        self.lane.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides, for a request whose connect was refused at the cap with
    /// nothing moving, whether a counted connection closed unseen: over
    /// HTTP/2 any live connection would have served it; over HTTP/1.1 each
    /// request in flight holds one, so if there are no more requests (this
    /// one included) than counted connections, one of those is gone.
    fn saturated(&self) {
        let busy = self.busy.load(Ordering::SeqCst);
        if self.lane().is_some() || busy <= self.gate.open() {
            self.gate.lost();
        }
    }

    /// Returns which client the next request takes (building the spare
    /// with `spec` when it is first needed).
    fn pick(&self, spec: &Spec) -> (Via, &reqwest::Client) {
        let Some(spare) = &self.spare else {
            return (Via::Main, &self.main);
        };
        if spare.get().is_none() && *self.lane() == Some(Lane::Cold) {
            // Built outside the lane's lock (it reads the system's roots).
            match spec.client(&self.gate) {
                Ok(c) => {
                    let _ = spare.set(c);
                }
                Err(_) => *self.lane() = Some(Lane::Off),
            }
        }
        let mut lane = self.lane();
        match *lane {
            Some(Lane::Cold) => match spare.get() {
                Some(c) => {
                    *lane = Some(Lane::Opening);
                    (Via::Opening, c)
                }
                None => (Via::Main, &self.main),
            },
            Some(Lane::Open) if self.turn.fetch_add(1, Ordering::Relaxed) % 2 == 1 => spare
                .get()
                .map_or((Via::Main, &self.main), |c| (Via::Spare, c)),
            _ => (Via::Main, &self.main),
        }
    }

    /// Learns from a request's outcome (`Some(version)`, or `None` if it
    /// failed).
    fn learn(&self, via: Via, version: Option<reqwest::Version>) {
        let h2 = version == Some(reqwest::Version::HTTP_2);
        if h2 {
            self.gate.multiplexed();
        }
        let mut lane = self.lane();
        *lane = match (via, h2, version) {
            (Via::Main, true, _) => Some(lane.unwrap_or(Lane::Cold)),
            (Via::Opening, true, _) => Some(Lane::Open),
            // Lost: opened again by one request alone.
            (Via::Opening | Via::Spare, false, None) => Some(Lane::Cold),
            (Via::Opening | Via::Spare, false, Some(_)) => Some(Lane::Off),
            _ => return,
        };
    }
}

/// A finished request's answer, after redirects.
pub(crate) struct Answer {
    /// The response of the last hop.
    pub(crate) response: Response,
    /// A host a redirect led to that did not get the token.
    pub(crate) withheld: Option<String>,
}

impl Http {
    /// Returns the run's clients (built per host as hosts are met): at
    /// most `per_host` connections to each host, `trust` deciding who sees
    /// the credentials.
    pub(crate) fn new(options: &ClientOptions<'_>, trust: Trust) -> Result<Http, ClientError> {
        let spec = Spec::new(options)?;
        // The archive's clients are built now, so that a client that cannot
        // be built fails here.
        let key = host_key(&trust.base);
        let archive = Arc::new(spec.host(&key)?);
        Ok(Http {
            trust,
            stall: options.stall,
            hosts: Arc::new(Hosts {
                spec,
                by_key: Mutex::new(HashMap::from([(key, archive)])),
            }),
        })
    }

    /// Returns the clients of `url`'s host.
    fn host(&self, url: &Url) -> Result<Arc<Host>, TransferError> {
        let key = host_key(url);
        let hosts = || self.hosts.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosts().get(&key) {
            return Ok(h.clone());
        }
        // Built outside the lock (it reads the system's roots); if another
        // request built this host's meanwhile, theirs is kept.
        let host = Arc::new(self.hosts.spec.host(&key).map_err(|e| network_error(&e))?);
        Ok(hosts().entry(key).or_insert(host).clone())
    }

    /// Sends one request of a small API (the search service, the bucket
    /// lookup) and reads its answer whole: at most `max_body` bytes, no
    /// more than `stall` between chunks, within the request's timeout.
    /// Returns the body's text, or why the request failed (a 401/403 says
    /// whether a token may help; `Retry-After` is kept for the retry loop).
    pub(crate) async fn send_once(
        &self,
        req: Req<'_>,
        max_body: usize,
        stall: Duration,
    ) -> Result<String, retry::Failure> {
        let failed = |what: &str, e: TransferError| retry::Failure {
            transient: retry::is_transient(&e),
            retry_after: None,
            message: format!("{what} failed: {e}"),
        };
        let within = req.timeout.unwrap_or(self.stall);
        let has_token = req.creds.token.is_some();
        let mut answer = self.send(req).await.map_err(|e| failed("request", e))?;
        let status = answer.response.status();
        let retry_after = retry_after(answer.response.headers());
        let body = read_body(&mut answer.response, max_body, stall, within)
            .await
            .map_err(|e| failed("reading the reply", e))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            return Ok(text);
        }
        let mut message = format!("HTTP {status}");
        let excerpt = crate::error::excerpt(&text);
        if !excerpt.is_empty() {
            message.push_str(": ");
            message.push_str(&excerpt);
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            message.push_str(if has_token {
                " (is the MAST API token valid?)"
            } else {
                " (this may need a MAST API token)"
            });
        }
        Err(retry::Failure {
            transient: retry::is_transient_status(status.as_u16()),
            retry_after,
            message,
        })
    }

    /// Sends `req`, following redirects: the credentials ride along to
    /// trusted URLs only, on every hop; loops and more than
    /// [`MAX_REDIRECTS`] hops fail.
    pub(crate) async fn send(&self, req: Req<'_>) -> Result<Answer, TransferError> {
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
            let token = match creds.token {
                Some(t) if self.trust.allows(&url) => Some(t),
                Some(_) => {
                    withheld = url.host_str().map(str::to_string);
                    None
                }
                None => None,
            };
            let hop = Hop {
                method: &method,
                url: &url,
                headers: &headers,
                body: body.as_deref(),
                token,
                cookie: creds.cookie,
                wait: timeout.unwrap_or(self.stall),
            };
            let resp = self.exchange(&hop).await?;
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

    /// Returns a client for tests against loopback servers (proxy
    /// variables ignored, 4 connections per host).
    #[cfg(test)]
    pub(crate) fn loopback() -> Http {
        let options = ClientOptions {
            stall: Duration::from_secs(30),
            cacert: None,
            per_host: 4,
            wider: Vec::new(),
            no_proxy: true,
        };
        let trust = Trust::new(Url::parse("http://127.0.0.1").expect("a URL"), vec![]);
        Http::new(&options, trust).expect("a loopback client")
    }

    /// GETs `url` without credentials and without following redirects.
    pub(crate) async fn get_one(&self, url: &Url) -> Result<Response, TransferError> {
        self.exchange(&Hop {
            method: &Method::GET,
            url,
            headers: &HeaderMap::new(),
            body: None,
            token: None,
            cookie: false,
            wait: self.stall,
        })
        .await
    }

    /// Sends one hop on its host's clients. A connect refused at the
    /// connection cap (see [`gate`]) is sent again, after correcting the
    /// count when a connection closed unseen (`Host::saturated`), until
    /// the hop's wait is spent. A request an HTTP/2 server refused
    /// unprocessed while closing its connection (a GOAWAY) is sent again at
    /// once, on a new connection, up to [`MAX_RESEND`] times: it costs no
    /// retry and no backoff.
    async fn exchange(&self, hop: &Hop<'_>) -> Result<Response, TransferError> {
        let host = self.host(hop.url)?;
        let started = Instant::now();
        let mut resent = 0;
        loop {
            let (via, client) = host.pick(&self.hosts.spec);
            let mut r = client
                .request(hop.method.clone(), hop.url.clone())
                .headers(hop.headers.clone());
            if let Some(b) = hop.body {
                r = r.body(b.to_string());
            }
            if let Some(t) = hop.token {
                r = with_credentials(r, t, hop.cookie);
            }
            let busy = Busy::new(&host.busy);
            // Learns how it went even if this future is dropped.
            let mut attempt = Attempt {
                host: &host,
                via,
                version: None,
            };
            let sent = tokio::time::timeout(hop.wait, r.send()).await;
            match sent {
                Ok(Ok(mut resp)) => {
                    attempt.version = Some(resp.version());
                    if will_close(resp.version(), resp.headers()) {
                        // Its connection closes once this answer is done:
                        // it leaves the count then, not a wait later.
                        resp.extensions_mut()
                            .insert(Closing(Arc::new(Closes(host.gate.clone()))));
                    }
                    resp.extensions_mut().insert(busy);
                    return Ok(resp);
                }
                Ok(Err(e)) if gate::is_saturated(&e) && started.elapsed() < hop.wait => {
                    host.saturated();
                }
                Ok(Err(e))
                    if unprocessed(&e) && resent < MAX_RESEND && started.elapsed() < hop.wait =>
                {
                    resent += 1;
                }
                Ok(Err(e)) => return Err(network_error(&e)),
                Err(_) => return Err(TransferError::Stall(hop.wait)),
            }
        }
    }
}

/// A request counted in its host's `busy` until dropped (it rides in the
/// response's extensions; a clone counts again).
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(n: &Arc<AtomicUsize>) -> Busy {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n.clone())
    }
}

impl Clone for Busy {
    fn clone(&self) -> Busy {
        Busy::new(&self.0)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Returns true if and only if `e` says an HTTP/2 server did not process
/// the request: it refused the stream (`REFUSED_STREAM`), or closed the
/// connection with a graceful GOAWAY (`NO_ERROR`, as nginx does after
/// `keepalive_requests`) before it was answered. RFC 9113 §8.7: such a
/// request may be sent again.
pub(crate) fn unprocessed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(err) = at {
        if let Some(h) = err.downcast_ref::<h2::Error>() {
            let graceful =
                h.is_go_away() && h.is_remote() && h.reason() == Some(h2::Reason::NO_ERROR);
            return graceful || h.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        at = err.source();
    }
    false
}

/// Returns true if and only if an answer says its connection closes after
/// it: `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`
/// (RFC 9112 §9.3). hyper then closes the connection once the body ends
/// (or the answer is dropped) and never pools it.
pub(crate) fn will_close(version: reqwest::Version, h: &HeaderMap) -> bool {
    let says = |token: &str| {
        h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    match version {
        reqwest::Version::HTTP_09 => true,
        reqwest::Version::HTTP_10 => !says("keep-alive"),
        reqwest::Version::HTTP_11 => says("close"),
        // HTTP/2 and later have no `Connection` header; their closes are
        // GOAWAY frames, corrected at the gate (see `Host::saturated`).
        _ => false,
    }
}

/// The connection of an answer that says it closes: leaves its host's
/// count when the answer is dropped (it rides in the answer's extensions,
/// which need `Clone`; clones share the one [`Closes`]).
#[derive(Clone)]
struct Closing(#[allow(dead_code)] Arc<Closes>);

/// Takes a connection off its gate's count when dropped.
struct Closes(Arc<Gate>);

impl Drop for Closes {
    fn drop(&mut self) {
        self.0.lost();
    }
}

/// One request on one of a host's clients: what it learned about the
/// spare connection is recorded when it ends, however it ends.
struct Attempt<'a> {
    host: &'a Host,
    via: Via,
    version: Option<reqwest::Version>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.host.learn(self.via, self.version);
    }
}

/// Returns the key of `url`'s host: scheme, host and port.
fn host_key(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// One request of a redirect chain, its credentials already decided.
struct Hop<'a> {
    method: &'a Method,
    url: &'a Url,
    headers: &'a HeaderMap,
    body: Option<&'a str>,
    /// The token, only where trusted.
    token: Option<&'a Token>,
    cookie: bool,
    /// The longest wait for the response headers.
    wait: Duration,
}

/// Returns the error for a failed exchange, classified by [`retry`].
pub(crate) fn network_error(e: &reqwest::Error) -> TransferError {
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
    TransferError::Network {
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
fn redirect_target(resp: &Response, url: &Url, seen: &[Url]) -> Result<Url, TransferError> {
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            TransferError::Redirect(format!(
                "HTTP {} without a Location",
                resp.status().as_u16()
            ))
        })?;
    let next = url
        .join(location)
        .map_err(|e| TransferError::Redirect(format!("bad redirect target: {e}")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(TransferError::Redirect(format!(
            "redirect to unsupported scheme `{}`",
            crate::layout::escape(next.scheme())
        )));
    }
    if seen.contains(&next) {
        return Err(TransferError::Redirect(format!(
            "redirect loop at {}",
            crate::layout::escape(&crate::layout::redact_url(&next))
        )));
    }
    if seen.len() > MAX_REDIRECTS {
        return Err(TransferError::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects"
        )));
    }
    Ok(next)
}

/// Returns a header's value as text, if it is text.
pub(crate) fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_string)
}

/// Reads a whole body of at most `limit` bytes within `within` (and no
/// more than `stall` between chunks). A longer body is an error, as is a
/// body that takes too long.
pub(crate) async fn read_body(
    resp: &mut Response,
    limit: usize,
    stall: Duration,
    within: Duration,
) -> Result<Vec<u8>, TransferError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(TransferError::BodyTooLarge { limit });
    }
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(stall);
        let chunk = match tokio::time::timeout(wait, resp.chunk()).await {
            Err(_) => return Err(TransferError::Stall(wait.max(Duration::from_secs(1)))),
            Ok(Err(e)) => return Err(network_error(&e)),
            Ok(Ok(None)) => return Ok(buf),
            Ok(Ok(Some(c))) => c,
        };
        if buf.len() + chunk.len() > limit {
            return Err(TransferError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
}

/// Reads at most `limit` bytes of a body, for messages, within `within`
/// in all: whatever arrived by then.
pub(crate) async fn body_excerpt(resp: &mut Response, limit: usize, within: Duration) -> Vec<u8> {
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
pub(crate) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
}

/// Returns the error for a non-success answer, with the first line of its
/// body (read for at most [`ERROR_EXCERPT_TIME`]).
pub(crate) async fn status_error(mut resp: Response, stall: Duration) -> TransferError {
    let status = resp.status().as_u16();
    let from = Some(Box::new(resp.url().clone()));
    let retry_after = retry_after(resp.headers());
    let body = body_excerpt(&mut resp, ERROR_EXCERPT, stall.min(ERROR_EXCERPT_TIME)).await;
    let detail = (!body.is_empty()).then(|| first_line(&body));
    TransferError::Status {
        status,
        retry_after,
        detail,
        from,
    }
}

/// Returns the first meaningful line of an error body, tags stripped,
/// control characters dropped and secrets scrubbed.
pub(crate) fn first_line(body: &[u8]) -> String {
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

    /// Issue 20 §2: a connection whose answer says it closes leaves its
    /// host's count when the answer is done, not a wait later; a
    /// keep-alive one stays counted (it is pooled).
    #[tokio::test]
    async fn a_connection_that_says_it_closes_leaves_the_count_at_once() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let heads = [
            ("HTTP/1.1 200 OK\r\nConnection: close\r\n", true),
            ("HTTP/1.0 200 OK\r\n", true),
            ("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\n", true),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", false),
            ("HTTP/1.1 200 OK\r\n", false),
        ];
        for (head, closes) in heads {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = Url::parse(&format!("http://{}/f", l.local_addr().unwrap())).unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await.unwrap();
                let answer = format!("{head}Content-Length: 2\r\n\r\nok");
                s.write_all(answer.as_bytes()).await.unwrap();
                if closes {
                    s.shutdown().await.unwrap();
                } else {
                    // Held open until the client goes.
                    let _ = s.read(&mut buf).await;
                }
            });
            let http = Http::loopback();
            let mut resp = http.get_one(&url).await.unwrap();
            let host = http.host(&url).unwrap();
            assert_eq!(host.gate.open(), 1, "{head}");
            assert_eq!(resp.chunk().await.unwrap().as_deref(), Some(&b"ok"[..]));
            drop(resp);
            let want = usize::from(!closes);
            assert_eq!(host.gate.open(), want, "{head}");
            drop(http);
            drop(host);
            server.await.unwrap();
        }
    }

    #[test]
    fn only_requests_an_http2_server_refused_unprocessed_go_again() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrap(#[source] Box<dyn std::error::Error + Send + Sync>);
        let refused = Wrap(Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM)));
        assert!(unprocessed(&refused));
        let reset = Wrap(Box::new(h2::Error::from(h2::Reason::INTERNAL_ERROR)));
        assert!(!unprocessed(&reset));
        assert!(!unprocessed(&Wrap("connection reset".into())));
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
