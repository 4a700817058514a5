//! A mock MAST archive on loopback that can misbehave.
//!
//! Two listeners share one state: `base` (127.0.0.1, the archive) and
//! `other` (localhost on another port: a different origin and host, for
//! cross-origin and untrusted redirects). Every request is recorded with
//! the headers tests assert on; body bytes sent are counted.

// Not every test uses every knob of the mock.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::mock_invoke::MockInvoke;
use crate::mock_s3::MockS3;
use axum::Router;

/// The token the mock accepts.
pub const TOKEN: &str = "s3cr3t-T0KEN-value";

/// Where a product's first hop sends the client.
#[derive(Clone, Debug, PartialEq)]
pub enum Redirect {
    /// To the same file on the other listener (`/files?uri=…`), cross-origin.
    Other,
    /// To the same file on the base host but another port: cross-origin, trusted.
    OtherPortSameHost,
    /// Redirects to itself forever.
    Loop,
    /// More than ten hops.
    Chain(usize),
}

/// One product and how the archive misbehaves for it.
#[derive(Clone, Debug, Default)]
pub struct Product {
    pub body: Vec<u8>,
    /// Content-Type (default `application/octet-stream`).
    pub content_type: Option<&'static str>,
    /// 401 without the right token.
    pub need_token: bool,
    pub redirect: Option<Redirect>,
    /// Statuses answered to the first requests, in order (e.g. `[503, 503]`).
    pub fail_first: Vec<u16>,
    /// `Retry-After` sent with those failures.
    pub retry_after: Option<&'static str>,
    /// Number of first requests whose body stops halfway (connection cut).
    pub truncate_first: usize,
    /// Number of first requests whose body stalls halfway.
    pub stall_first: usize,
    /// Ignore `Range` (always 200 with the whole body).
    pub no_range: bool,
    /// Answer 200 with this text/html body instead of the file.
    pub error_page: Option<&'static str>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Statuses answered to the first GETs only (HEADs pass).
    pub get_fail_first: Vec<u16>,
}

impl Product {
    pub fn new(body: Vec<u8>) -> Product {
        Product {
            body,
            ..Product::default()
        }
    }
}

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub host: String,
    pub path_and_query: String,
    pub uri: Option<String>,
    pub authorization: Option<String>,
    pub cookie: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

#[derive(Default)]
pub struct Inner {
    pub products: HashMap<String, Product>,
    pub hits: HashMap<String, usize>,
    pub get_hits: HashMap<String, usize>,
    /// `path_lookup` answers: URI -> bucket path (None: `"path": null`).
    pub cloud_paths: HashMap<String, Option<String>>,
    /// `uri=` parameters per `path_lookup` request.
    pub lookups: Vec<usize>,
    pub seen: Vec<Seen>,
    pub body_bytes: u64,
    pub other_port: u16,
    pub base_port: u16,
    pub alt_port: u16,
    /// The protocol each TLS connection negotiated (ALPN), in accept order.
    pub tls_connections: Vec<String>,
}

pub type Shared = Arc<Mutex<Inner>>;

/// A running mock archive. Stops when dropped.
pub struct Mock {
    /// `http://127.0.0.1:PORT`: the archive.
    pub base: String,
    /// `https://localhost:PORT`: the same archive over TLS (self-signed, see `cert_pem`).
    pub tls_base: String,
    /// The TLS listener's certificate (PEM), for `--cacert`.
    pub cert_pem: String,
    /// `http://127.0.0.1:PORT/stpubdata`: the bucket, for `--s3-url`.
    pub s3_url: String,
    /// `http://localhost:PORT`: another host.
    pub other: String,
    pub state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Returns `n` deterministic bytes for a seed.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

impl Mock {
    pub fn start() -> Mock {
        Mock::start_with(None)
    }

    /// Starts the mock with MAST's search endpoint `/api/v0/invoke` too.
    pub fn start_with(invoke: Option<Arc<MockInvoke>>) -> Mock {
        Mock::start_full(invoke, None)
    }

    /// Starts the mock with, optionally, the search endpoint and a bucket
    /// (served on its own listener: `s3_url`).
    pub fn start_full(invoke: Option<Arc<MockInvoke>>, s3: Option<Arc<MockS3>>) -> Mock {
        let s3_listener = StdListener::bind("127.0.0.1:0").expect("bind");
        s3_listener.set_nonblocking(true).expect("nonblocking");
        let s3_port = s3_listener.local_addr().unwrap().port();
        let listeners: Vec<StdListener> = (0..3)
            .map(|_| {
                let l = StdListener::bind("127.0.0.1:0").expect("bind");
                l.set_nonblocking(true).expect("nonblocking");
                l
            })
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let tls_listener = StdListener::bind("127.0.0.1:0").expect("bind");
        tls_listener.set_nonblocking(true).expect("nonblocking");
        let tls_port = tls_listener.local_addr().unwrap().port();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let cert_pem = cert.cert.pem();
        let tls_config = tls_server_config(&cert);
        let state: Shared = Arc::new(Mutex::new(Inner {
            base_port: ports[0],
            other_port: ports[1],
            alt_port: ports[2],
            ..Inner::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let st2 = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = router(st, invoke);
                let mut tasks = Vec::new();
                for l in listeners {
                    let l = tokio::net::TcpListener::from_std(l).expect("listener");
                    let app = app.clone();
                    tasks.push(tokio::spawn(async move {
                        let _ = axum::serve(l, app).await;
                    }));
                }
                if let Some(s3) = s3 {
                    let bucket = Router::new().route(
                        "/{bucket}/{*key}",
                        get(crate::mock_s3::get_object)
                            .head(crate::mock_s3::head_object)
                            .with_state(s3),
                    );
                    let l = tokio::net::TcpListener::from_std(s3_listener).expect("listener");
                    tasks.push(tokio::spawn(async move {
                        let _ = axum::serve(l, bucket).await;
                    }));
                }
                let l = tokio::net::TcpListener::from_std(tls_listener).expect("listener");
                tasks.push(tokio::spawn(serve_tls(l, tls_config, app.clone(), st2)));
                let _ = rx.await;
                for t in tasks {
                    t.abort();
                }
            });
        });
        Mock {
            base: format!("http://127.0.0.1:{}", ports[0]),
            tls_base: format!("https://localhost:{tls_port}"),
            s3_url: format!("http://127.0.0.1:{s3_port}/stpubdata"),
            cert_pem,
            other: format!("http://localhost:{}", ports[1]),
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Adds (or replaces) a product under `uri`; its misbehaviour counters restart.
    pub fn add(&self, uri: &str, p: Product) {
        let mut s = self.state.lock().unwrap();
        s.products.insert(uri.to_string(), p);
        s.hits.remove(uri);
        s.get_hits.remove(uri);
    }

    /// Makes `path_lookup` answer `path` for `uri`.
    pub fn cloud_path(&self, uri: &str, path: Option<&str>) {
        self.state
            .lock()
            .unwrap()
            .cloud_paths
            .insert(uri.to_string(), path.map(str::to_string));
    }

    /// Returns every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Returns the requests for one URI.
    pub fn seen_for(&self, uri: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.uri.as_deref() == Some(uri))
            .collect()
    }

    /// Returns the body bytes sent so far.
    pub fn body_bytes(&self) -> u64 {
        self.state.lock().unwrap().body_bytes
    }

    /// Forgets recorded requests and byte counts (not the misbehaviour counters).
    pub fn reset_log(&self) {
        let mut s = self.state.lock().unwrap();
        s.seen.clear();
        s.body_bytes = 0;
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tls_server_config(
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> Arc<tokio_rustls::rustls::ServerConfig> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Serves `app` over TLS on `listener`.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    app: Router,
    state: Shared,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, app, state) = (acceptor.clone(), app.clone(), state.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let alpn = tls.get_ref().1.alpn_protocol().unwrap_or(b"http/1.1");
            let alpn = String::from_utf8_lossy(alpn).into_owned();
            state.lock().unwrap().tls_connections.push(alpn);
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
        });
    }
}

fn router(state: Shared, invoke: Option<Arc<MockInvoke>>) -> Router {
    let mut r = Router::new();
    if let Some(inv) = invoke {
        r = r.route(
            "/api/v0/invoke",
            post(crate::mock_invoke::invoke).with_state(inv),
        );
    }
    r.route("/api/v0.1/Download/file", get(download))
        .route("/search/{mission}/api/v0.1/retrieve_product", get(download))
        .route("/files", get(download))
        .route("/jwst/api/v0.1/Download/file", get(download))
        .route("/hop/{n}", get(hop))
        .route("/whoami", get(whoami))
        .route("/api/v0.1/path_lookup/", get(path_lookup))
        .with_state(state)
        .merge(crate::mock_index::router())
}

fn record(state: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, product: Option<&str>) {
    let h = |n: header::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    state.lock().unwrap().seen.push(Seen {
        method: method.to_string(),
        host: h(header::HOST).unwrap_or_default(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        uri: product.map(str::to_string),
        authorization: h(header::AUTHORIZATION),
        cookie: h(header::COOKIE),
        range: h(header::RANGE),
        if_range: h(header::IF_RANGE),
    });
}

async fn path_lookup(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, &method, &uri, &headers, None);
    let query = uri.query().unwrap_or("");
    let uris: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "uri")
        .map(|(_, v)| v.into_owned())
        .collect();
    let mut s = state.lock().unwrap();
    s.lookups.push(uris.len());
    let mut out = serde_json::Map::new();
    for u in uris {
        let path = s.cloud_paths.get(&u).cloned().flatten();
        out.insert(u, serde_json::json!({"status_code": if path.is_some() { 200 } else { 404 }, "path": path}));
    }
    axum::Json(serde_json::Value::Object(out)).into_response()
}

async fn whoami(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record(&state, &method, &uri, &headers, None);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth == Some(&format!("token {TOKEN}")) {
        axum::Json(serde_json::json!({"ezid": "alice", "anon": false, "attrib": {"display_name": "A. User"}})).into_response()
    } else {
        axum::Json(serde_json::json!({"ezid": "anonymous", "anon": true})).into_response()
    }
}

async fn hop(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    axum::extract::Path(n): axum::extract::Path<usize>,
) -> Response {
    record(&state, &method, &uri, &headers, None);
    let port = state.lock().unwrap().base_port;
    (
        StatusCode::FOUND,
        [(
            header::LOCATION,
            format!("http://127.0.0.1:{port}/hop/{}", n + 1),
        )],
    )
        .into_response()
}

async fn download(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(product_uri) = q.get("uri").or_else(|| q.get("product_name")).cloned() else {
        record(&state, &method, &uri, &headers, None);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            "dataset parameter is required",
        )
            .into_response();
    };
    record(&state, &method, &uri, &headers, Some(&product_uri));
    let (p, hit, ports) = {
        let mut s = state.lock().unwrap();
        let Some(p) = s.products.get(&product_uri).cloned() else {
            return (StatusCode::NOT_FOUND, "no such product").into_response();
        };
        let hit = {
            let h = s.hits.entry(product_uri.clone()).or_insert(0);
            *h += 1;
            *h
        };
        let get_hit = if method == Method::GET {
            let h = s.get_hits.entry(product_uri.clone()).or_insert(0);
            *h += 1;
            *h
        } else {
            0
        };
        if get_hit > 0 && get_hit <= p.get_fail_first.len() {
            let code = StatusCode::from_u16(p.get_fail_first[get_hit - 1])
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (code, "failing GET").into_response();
        }
        (p, hit, (s.base_port, s.other_port, s.alt_port))
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first_hop = uri.path() != "/files";
    if p.need_token
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(&format!("token {TOKEN}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain")],
            "Unauthorized: a MAST token is required",
        )
            .into_response();
    }
    if first_hop {
        let enc = urlencode(&product_uri);
        match &p.redirect {
            Some(Redirect::Other) => {
                return (
                    StatusCode::FOUND,
                    [(
                        header::LOCATION,
                        format!("http://localhost:{}/files?uri={enc}", ports.1),
                    )],
                )
                    .into_response();
            }
            Some(Redirect::OtherPortSameHost) => {
                return (
                    StatusCode::FOUND,
                    [(
                        header::LOCATION,
                        format!("http://127.0.0.1:{}/files?uri={enc}", ports.2),
                    )],
                )
                    .into_response();
            }
            Some(Redirect::Loop) => {
                return (StatusCode::FOUND, [(header::LOCATION, uri.to_string())]).into_response();
            }
            Some(Redirect::Chain(_)) => {
                return (
                    StatusCode::FOUND,
                    [(
                        header::LOCATION,
                        format!("http://127.0.0.1:{}/hop/1", ports.0),
                    )],
                )
                    .into_response();
            }
            None => {}
        }
    }
    let _ = host;
    if hit <= p.fail_first.len() {
        let code = StatusCode::from_u16(p.fail_first[hit - 1])
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (
            code,
            format!("<html><body><h1>Error {}</h1></body></html>", code.as_u16()),
        )
            .into_response();
        if let Some(ra) = p.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, ra.parse().unwrap());
        }
        return r;
    }
    if let Some(page) = p.error_page {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page,
        )
            .into_response();
    }
    let total = p.body.len() as u64;
    let mut start = 0u64;
    let mut stop = total;
    let mut status = StatusCode::OK;
    if let (Some(r), false) = (
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        p.no_range,
    ) {
        let closed = r
            .strip_prefix("bytes=")
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        if let Some((from, to)) = closed.filter(|(a, b)| a <= b && *a < total) {
            start = from;
            stop = (to + 1).min(total);
            status = StatusCode::PARTIAL_CONTENT;
        } else if let Some(from) = r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<u64>().ok())
        {
            if from >= total {
                let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    format!("bytes */{total}").parse().unwrap(),
                );
                return resp;
            }
            start = from;
            status = StatusCode::PARTIAL_CONTENT;
        }
    }
    let slice = p.body[start as usize..stop as usize].to_vec();
    let len = slice.len();
    let mut builder = Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            p.content_type.unwrap_or("application/octet-stream"),
        )
        .header(header::CONTENT_LENGTH, len.to_string())
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", stop - 1),
        );
    }
    if let Some(e) = &p.etag {
        builder = builder.header(header::ETAG, e.as_str());
    }
    if let Some(lm) = &p.last_modified {
        builder = builder.header(header::LAST_MODIFIED, lm.as_str());
    }
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap();
    }
    let truncate = hit <= p.fail_first.len() + p.truncate_first;
    let stall = !truncate && hit <= p.fail_first.len() + p.truncate_first + p.stall_first;
    let half = len / 2;
    let body = if truncate || stall {
        let first = Bytes::from(slice[..half].to_vec());
        state.lock().unwrap().body_bytes += half as u64;
        let stream = async_stream(first, stall);
        Body::from_stream(stream)
    } else {
        state.lock().unwrap().body_bytes += len as u64;
        Body::from(slice)
    };
    builder.body(body).unwrap()
}

fn async_stream(
    first: Bytes,
    stall: bool,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct S {
        first: Option<Bytes>,
        stall: bool,
        sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }
    // The first half arrives, then (after a pause, as on a real link) the
    // connection is cut or goes silent.
    impl futures_core::Stream for S {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if let Some(b) = self.first.take() {
                return std::task::Poll::Ready(Some(Ok(b)));
            }
            let wait = if self.stall {
                Duration::from_secs(3600)
            } else {
                Duration::from_millis(200)
            };
            let s = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait)));
            if s.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(Some(Err(std::io::Error::other("cut"))))
        }
    }
    use std::future::Future;
    S {
        first: Some(first),
        stall,
        sleep: None,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[allow(dead_code)]
fn _infallible(_: Infallible) {}
