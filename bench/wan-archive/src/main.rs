//! wan-archive: MAST's download endpoint on 127.0.0.1 with the costs of a
//! wide-area link, for `bench/run.sh --wan`.
//!
//! `GET|HEAD /api/v0.1/Download/file?uri=mast:COLL/product/NAME` serves the
//! file `DIR/NAME` (the `uri` value raw or percent-encoded), with
//! `Accept-Ranges: bytes`, single `Range` requests (206 + `Content-Range`,
//! 416 when unsatisfiable), `Content-Length`, `ETag`, `Last-Modified` and
//! `If-Range`. Malformed `uri` → 400, unknown file → 404.
//!
//! The WAN costs, each a flag:
//! - `--ttfb-ms`: every response waits this long before its first byte (the
//!   round trip of the request);
//! - `--connect-ms`: a connection cannot answer before this long after it was
//!   accepted (TCP + TLS handshakes), so a connection's first request pays it
//!   once, on top of its time to first byte;
//! - `--rate`: bytes per second per connection; the streams of an HTTP/2
//!   connection share it (fair, in the order their chunks ask for it).
//!
//! `--http2` serves TLS with ALPN `h2` and `http/1.1` (a self-signed
//! certificate for `127.0.0.1` and `localhost`, written as PEM to
//! `--cert-out`, to pass to clients as their CA); otherwise plain HTTP/1.1.
//!
//! It counts connections opened, peak concurrent connections, requests,
//! peak concurrent requests, HTTP/2 connections and streams, and body bytes.
//! `GET /__stats` answers them as JSON (also written to `--stats-out`),
//! `POST /__reset` zeroes them; SIGTERM/SIGINT write them to `--stats-out`
//! and exit. The connection a control request comes on is not counted.
//!
//! Memory is bounded: bodies are read from the file and sent in chunks of at
//! most 64 KiB, one chunk in hand per response.

use std::convert::Infallible;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// The largest piece of a body read and sent at once.
const CHUNK: u64 = 64 * 1024;

const USAGE: &str = "\
usage: wan-archive --dir DIR [--port N] [--port-file FILE] [--ttfb-ms MS]
                   [--connect-ms MS] [--rate RATE] [--http2 --cert-out FILE]
                   [--stats-out FILE]

  --dir DIR         serve mast:COLL/product/NAME from DIR/NAME
  --port N          port on 127.0.0.1 (default 0: any free port)
  --port-file FILE  write the bound port there (it is also printed on stdout)
  --ttfb-ms MS      delay before each response's first byte (default 50)
  --connect-ms MS   extra delay on each connection's first request (default 100)
  --rate RATE       bytes per second per connection, shared by an HTTP/2
                    connection's streams; 500k, 20M, 1G (powers of 1024), 0 = no cap
                    (default 20M)
  --http2           TLS with ALPN h2 + http/1.1 (else plain HTTP/1.1)
  --cert-out FILE   with --http2: where the self-signed certificate (PEM) goes
  --stats-out FILE  stats JSON written here on GET /__stats and on SIGTERM/SIGINT
";

#[derive(Clone, Debug)]
struct Config {
    dir: PathBuf,
    port: u16,
    port_file: Option<PathBuf>,
    ttfb: Duration,
    connect: Duration,
    rate: u64,
    http2: bool,
    cert_out: Option<PathBuf>,
    stats_out: Option<PathBuf>,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad rate `{s}`"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("rate `{s}` too large"))
}

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config {
        dir: PathBuf::new(),
        port: 0,
        port_file: None,
        ttfb: Duration::from_millis(50),
        connect: Duration::from_millis(100),
        rate: 20 << 20,
        http2: false,
        cert_out: None,
        stats_out: None,
    };
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let ms = |v: String| -> Result<Duration, String> {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{flag}: bad milliseconds `{v}`"))
        };
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(val()?)),
            "--port" => cfg.port = val()?.parse().map_err(|_| "bad --port".to_string())?,
            "--port-file" => cfg.port_file = Some(PathBuf::from(val()?)),
            "--ttfb-ms" => cfg.ttfb = ms(val()?)?,
            "--connect-ms" => cfg.connect = ms(val()?)?,
            "--rate" => cfg.rate = parse_rate(&val()?)?,
            "--http2" => cfg.http2 = true,
            "--cert-out" => cfg.cert_out = Some(PathBuf::from(val()?)),
            "--stats-out" => cfg.stats_out = Some(PathBuf::from(val()?)),
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument `{a}`")),
        }
    }
    cfg.dir = dir.ok_or("--dir is required")?;
    if cfg.http2 && cfg.cert_out.is_none() {
        return Err("--http2 needs --cert-out FILE".into());
    }
    Ok(cfg)
}

// ------------------------------------------------------------------ stats

/// A counter of things open now, with its peak.
#[derive(Default)]
struct Gauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    fn inc(&self) {
        let n = self.now.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(n, Relaxed);
    }
    fn dec(&self) {
        self.now.fetch_sub(1, Relaxed);
    }
    fn reset(&self) {
        self.peak.store(self.now.load(Relaxed), Relaxed);
    }
}

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    open: Gauge,
    requests: AtomicU64,
    in_flight: Gauge,
    h2_connections: AtomicU64,
    h2_streams: AtomicU64,
    peak_streams_per_connection: AtomicU64,
    tls_handshake_failures: AtomicU64,
    body_bytes: AtomicU64,
    status_200: AtomicU64,
    status_206: AtomicU64,
    status_other: AtomicU64,
}

impl Stats {
    fn reset(&self) {
        for c in [
            &self.connections,
            &self.requests,
            &self.h2_connections,
            &self.h2_streams,
            &self.peak_streams_per_connection,
            &self.tls_handshake_failures,
            &self.body_bytes,
            &self.status_200,
            &self.status_206,
            &self.status_other,
        ] {
            c.store(0, Relaxed);
        }
        self.open.reset();
        self.in_flight.reset();
    }

    fn json(&self, cfg: &Config) -> String {
        let g = |c: &AtomicU64| c.load(Relaxed);
        serde_json::json!({
            "connections": g(&self.connections),
            "peak_connections": g(&self.open.peak),
            "open_connections": g(&self.open.now),
            "requests": g(&self.requests),
            "peak_requests": g(&self.in_flight.peak),
            "h2_connections": g(&self.h2_connections),
            "h2_streams": g(&self.h2_streams),
            "peak_streams_per_connection": g(&self.peak_streams_per_connection),
            "tls_handshake_failures": g(&self.tls_handshake_failures),
            "body_bytes": g(&self.body_bytes),
            "status": {"200": g(&self.status_200), "206": g(&self.status_206), "other": g(&self.status_other)},
            "profile": {
                "ttfb_ms": cfg.ttfb.as_millis() as u64,
                "connect_ms": cfg.connect.as_millis() as u64,
                "rate_bytes_per_s": cfg.rate,
                "tls": cfg.http2,
            },
        })
        .to_string()
    }

    fn write(&self, cfg: &Config) {
        if let Some(p) = &cfg.stats_out {
            let tmp = p.with_extension("tmp");
            if std::fs::write(&tmp, self.json(cfg) + "\n").is_ok() {
                let _ = std::fs::rename(&tmp, p);
            }
        }
    }
}

// ------------------------------------------------------------------ connections

/// Paces a connection's bytes at its rate; shared by its streams.
struct Pacer {
    /// Nanoseconds per byte; 0 = no cap.
    ns_per_byte: f64,
    /// When the bytes handed out so far have all been sent at the rate.
    next: Mutex<Instant>,
}

impl Pacer {
    /// Returns when `n` more bytes may go: the bytes are booked in the order
    /// the calls come, so streams of one connection share the rate fairly.
    fn book(&self, n: u64) -> Option<Instant> {
        if self.ns_per_byte == 0.0 {
            return None;
        }
        let mut next = self.next.lock().unwrap();
        let start = (*next).max(Instant::now());
        *next = start + Duration::from_nanos((n as f64 * self.ns_per_byte) as u64);
        Some(*next)
    }
}

struct Conn {
    ready_at: Instant,
    pacer: Pacer,
    /// Whether this connection is in the counts (a control client's is not).
    counted: AtomicBool,
    seen_request: AtomicBool,
    is_h2: AtomicBool,
    streams: Gauge,
}

struct Server {
    cfg: Config,
    stats: Stats,
}

/// Decrements a gauge when dropped (a response finished or was abandoned).
struct InFlight(Arc<Server>, Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats.in_flight.dec();
        self.1.streams.dec();
    }
}

fn status_count(s: &Server, code: StatusCode) {
    match code.as_u16() {
        200 => &s.stats.status_200,
        206 => &s.stats.status_206,
        _ => &s.stats.status_other,
    }
    .fetch_add(1, Relaxed);
}

fn full(code: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `mast:COLL/product/NAME` (raw or percent-encoded) → NAME.
fn file_name(query: &str) -> Option<String> {
    let raw = query.split('&').find_map(|kv| kv.strip_prefix("uri="))?;
    let uri = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    let rest = uri.strip_prefix("mast:")?;
    let (coll, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("product/")?;
    let ok_coll = !coll.is_empty() && coll.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let ok_name = name
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    (ok_coll && ok_name).then(|| name.to_string())
}

/// A single `bytes=` range against `size` → (start, end inclusive);
/// `Err(())` when unsatisfiable; `Ok(None)` when absent or not single.
#[allow(clippy::result_unit_err)]
fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.wrapping_sub(1))
    } else {
        let s: u64 = a.parse().map_err(|_| ())?;
        let e: u64 = if b.is_empty() {
            size.wrapping_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(size.wrapping_sub(1))
        };
        (s, e)
    };
    if size == 0 || r.0 >= size || r.0 > r.1 {
        return Err(());
    }
    Ok(Some(r))
}

async fn handle(srv: Arc<Server>, conn: Arc<Conn>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let first = !conn.seen_request.swap(true, Relaxed);
    if path.starts_with("/__") {
        if first && conn.counted.swap(false, Relaxed) {
            srv.stats.connections.fetch_sub(1, Relaxed);
            srv.stats.open.dec();
        }
        return match (req.method(), path.as_str()) {
            (&Method::GET, "/__stats") => {
                srv.stats.write(&srv.cfg);
                let mut r = Response::new(
                    Full::new(Bytes::from(srv.stats.json(&srv.cfg)))
                        .map_err(|never: Infallible| match never {})
                        .boxed_unsync(),
                );
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }
            (&Method::POST, "/__reset") => {
                srv.stats.reset();
                full(StatusCode::OK, "reset\n")
            }
            _ => full(StatusCode::NOT_FOUND, "not found\n"),
        };
    }

    srv.stats.requests.fetch_add(1, Relaxed);
    srv.stats.in_flight.inc();
    conn.streams.inc();
    let guard = InFlight(srv.clone(), conn.clone());
    if req.version() == Version::HTTP_2 {
        srv.stats.h2_streams.fetch_add(1, Relaxed);
        if !conn.is_h2.swap(true, Relaxed) {
            srv.stats.h2_connections.fetch_add(1, Relaxed);
        }
        srv.stats
            .peak_streams_per_connection
            .fetch_max(conn.streams.now.load(Relaxed), Relaxed);
    }

    // The link's costs: the handshake (once per connection), then the round trip.
    tokio::time::sleep_until(conn.ready_at).await;
    tokio::time::sleep(srv.cfg.ttfb).await;

    let resp = respond(&srv, &conn, &req, guard);
    status_count(&srv, resp.status());
    resp
}

fn respond(
    srv: &Arc<Server>,
    conn: &Arc<Conn>,
    req: &Request<Incoming>,
    guard: InFlight,
) -> Response<Body> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return full(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n"),
    };
    if req.uri().path() != "/api/v0.1/Download/file" {
        return full(StatusCode::NOT_FOUND, "not found\n");
    }
    let Some(name) = file_name(req.uri().query().unwrap_or("")) else {
        return full(StatusCode::BAD_REQUEST, "bad uri\n");
    };
    let path = srv.cfg.dir.join(&name);
    let (file, meta) = match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
        Ok((f, m)) if m.is_file() => (f, m),
        _ => return full(StatusCode::NOT_FOUND, "no such file\n"),
    };
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let mtime_ns = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let etag = format!("\"{size:x}-{mtime_ns:x}\"");
    let last_modified = httpdate::fmt_http_date(mtime);

    let h = req.headers();
    let if_range_ok = match h.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) if v.starts_with('"') || v.starts_with("W/") => v == etag,
        Some(v) => v == last_modified,
    };
    let range = match h.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_ok => parse_range(v, size),
        _ => Ok(None),
    };
    let (code, start, len) = match range {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Err(()) => {
            let mut r = full(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).unwrap(),
            );
            return r;
        }
    };

    let body: Body = if head || len == 0 {
        http_body_util::Empty::new()
            .map_err(|never: Infallible| match never {})
            .boxed_unsync()
    } else {
        file_body(srv.clone(), conn.clone(), file, start, len, guard)
    };
    let mut r = Response::new(body);
    *r.status_mut() = code;
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    hs.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    hs.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hs.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap());
    hs.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&last_modified).unwrap(),
    );
    if code == StatusCode::PARTIAL_CONTENT {
        hs.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", start, start + len - 1)).unwrap(),
        );
    }
    r
}

/// The body: chunks of at most [`CHUNK`] bytes read from `file` at `start`,
/// each released when the connection's pacer says its bytes may go.
fn file_body(
    srv: Arc<Server>,
    conn: Arc<Conn>,
    file: File,
    start: u64,
    len: u64,
    guard: InFlight,
) -> Body {
    let state = (file, start, len, guard);
    let s = stream::unfold(state, move |(file, pos, left, guard)| {
        let (srv, conn) = (srv.clone(), conn.clone());
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK);
            let mut buf = vec![0u8; n as usize];
            // The source is in the page cache: a positioned read does not block for long.
            if let Err(e) = file.read_exact_at(&mut buf, pos) {
                return Some((Err(e), (file, pos, 0, guard)));
            }
            if let Some(at) = conn.pacer.book(n) {
                tokio::time::sleep_until(at).await;
            }
            srv.stats.body_bytes.fetch_add(n, Relaxed);
            Some((
                Ok(Frame::data(Bytes::from(buf))),
                (file, pos + n, left - n, guard),
            ))
        }
    });
    StreamBody::new(s).boxed_unsync()
}

// ------------------------------------------------------------------ main

fn tls_config(cfg: &Config) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    use tokio_rustls::rustls;
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| format!("certificate: {e}"))?;
    let out = cfg.cert_out.as_ref().expect("checked in parse_args");
    std::fs::write(out, cert.cert.pem()).map_err(|e| format!("{}: {e}", out.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(|e| format!("key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn serve_conn<I>(srv: Arc<Server>, conn: Arc<Conn>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let (srv, conn) = (srv.clone(), conn.clone());
        async move { Ok::<_, Infallible>(handle(srv, conn, req).await) }
    });
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1().keep_alive(true);
    b.http2().max_concurrent_streams(256);
    let _ = b.serve_connection(TokioIo::new(io), svc).await;
}

fn write_atomic(p: &Path, text: &str) -> io::Result<()> {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, p)
}

#[tokio::main]
async fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wan-archive: error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cfg).await {
        eprintln!("wan-archive: error: {e}");
        std::process::exit(1);
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    let tls = if cfg.http2 {
        Some(tokio_rustls::TlsAcceptor::from(tls_config(&cfg)?))
    } else {
        None
    };
    let listener = TcpListener::bind(("127.0.0.1", cfg.port))
        .await
        .map_err(|e| format!("bind 127.0.0.1:{}: {e}", cfg.port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    if let Some(p) = &cfg.port_file {
        write_atomic(p, &format!("{port}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!(
        "wan-archive listening on {}://127.0.0.1:{port} (ttfb {} ms, connect {} ms, rate {} B/s per connection)",
        if tls.is_some() { "https" } else { "http" },
        cfg.ttfb.as_millis(),
        cfg.connect.as_millis(),
        cfg.rate
    );
    let ns_per_byte = if cfg.rate == 0 {
        0.0
    } else {
        1e9 / cfg.rate as f64
    };
    let srv = Arc::new(Server {
        cfg,
        stats: Stats::default(),
    });

    let stop = {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    };
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
            },
        };
        let _ = tcp.set_nodelay(true);
        srv.stats.connections.fetch_add(1, Relaxed);
        srv.stats.open.inc();
        let conn = Arc::new(Conn {
            ready_at: Instant::now() + srv.cfg.connect,
            pacer: Pacer {
                ns_per_byte,
                next: Mutex::new(Instant::now()),
            },
            counted: AtomicBool::new(true),
            seen_request: AtomicBool::new(false),
            is_h2: AtomicBool::new(false),
            streams: Gauge::default(),
        });
        let (srv, tls) = (srv.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_conn(srv.clone(), conn.clone(), tcp).await,
                Some(acc) => match acc.accept(tcp).await {
                    Ok(s) => serve_conn(srv.clone(), conn.clone(), s).await,
                    Err(_) => {
                        srv.stats.tls_handshake_failures.fetch_add(1, Relaxed);
                    }
                },
            }
            if conn.counted.load(Relaxed) {
                srv.stats.open.dec();
            }
        });
    }
    srv.stats.write(&srv.cfg);
    eprintln!("wan-archive: stopped; {}", srv.stats.json(&srv.cfg));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            file_name("uri=mast:BENCH/product/a_1.fits").as_deref(),
            Some("a_1.fits")
        );
        assert_eq!(
            file_name("uri=mast%3ABENCH%2fproduct%2Fa_1.fits").as_deref(),
            Some("a_1.fits")
        );
        assert_eq!(file_name("uri=mast:BENCH/product/../x"), None);
        assert_eq!(file_name("uri=junk"), None);
        assert_eq!(file_name("x=1"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20M"), Ok(20 << 20));
        assert_eq!(parse_rate("500k"), Ok(500 << 10));
        assert_eq!(parse_rate("123"), Ok(123));
        assert!(parse_rate("x").is_err());
    }
}
