//! A slow archive on loopback for the concurrency tests (issue 14): every
//! answer waits before its head, as over a long link, and the server counts
//! what a client's concurrency looks like from the other end — TCP
//! connections accepted, requests in flight and their peak, overall and per
//! group (a test's script puts each request in a group, e.g. "before the
//! pushback" and "after it"), and body bytes written.
//!
//! HTTP/1.1 with keep-alive, one thread per connection. Files are served by
//! the `uri=` query parameter with `Range: bytes=a-b` / `bytes=a-` and
//! `If-Range` (a validator that is not the file's ETag gets the whole file,
//! 200, as RFC 9110 says). What each request gets is the test's script's
//! choice ([`Answer`]). The server stops when dropped.

// Not every test uses every knob.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many groups a script may put requests in (0..GROUPS).
pub const GROUPS: usize = 4;

/// One request, as the script sees it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The decoded `uri=` parameter.
    pub uri: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
    /// The connection it came on (0-based, in accept order).
    pub conn: usize,
    /// Requests in flight when it arrived, itself included.
    pub in_flight: usize,
}

/// What to answer a request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// The file (Range and If-Range honoured), after `delay`.
    Serve { delay: Duration },
    /// The file, honouring Range but ignoring If-Range: a 206 of whatever
    /// version is there now, with its ETag.
    ServeIgnoringIfRange,
    /// The file's head, then half its body, then the connection is closed.
    CutHalf,
    /// The file, then the connection is closed without a word (no
    /// `Connection: close`), as a server closes an idle connection.
    ServeThenClose,
    /// The file with `Connection: close`, then the connection is closed
    /// (as a server that keeps no connection alive answers).
    ServeSayingClose,
    /// A bare status (with `Retry-After` when given), after `delay`.
    Status {
        code: u16,
        retry_after: Option<&'static str>,
        delay: Duration,
    },
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub req: Request,
    pub group: usize,
    pub status: u16,
    /// Body bytes written.
    pub sent: u64,
    /// Order of events on the server: when the request arrived, when the
    /// writing of its head began.
    pub arrived: u64,
    pub head_sent: u64,
}

/// A file's bytes and ETag.
type Served = (Arc<Vec<u8>>, Option<String>);

type Script = dyn Fn(&Request) -> (usize, Answer) + Send + Sync;

/// The server's counters and files.
#[derive(Default)]
pub struct Stats {
    accepted: AtomicUsize,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    group_in_flight: [AtomicUsize; GROUPS],
    group_peak: [AtomicUsize; GROUPS],
    body_bytes: AtomicU64,
    events: AtomicU64,
    seen: Mutex<Vec<Seen>>,
    files: Mutex<HashMap<String, Served>>,
    conns: Mutex<Vec<TcpStream>>,
}

/// A running slow archive; stops when dropped.
pub struct Slow {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

impl Slow {
    /// Starts a server answering each request as `script` says, in the
    /// group it names.
    pub fn start(script: impl Fn(&Request) -> (usize, Answer) + Send + Sync + 'static) -> Slow {
        let script: Arc<Script> = Arc::new(script);
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().unwrap().port();
        let (st, sp) = (stats.clone(), stop.clone());
        std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        let conn = st.accepted.fetch_add(1, Ordering::SeqCst);
                        let open = st.open.fetch_add(1, Ordering::SeqCst) + 1;
                        st.peak_open.fetch_max(open, Ordering::SeqCst);
                        if let Ok(c) = s.try_clone() {
                            st.conns.lock().unwrap().push(c);
                        }
                        let (st, sp, script) = (st.clone(), sp.clone(), script.clone());
                        std::thread::spawn(move || {
                            serve(s, conn, &st, &sp, &*script);
                            st.open.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Slow {
            base: format!("http://127.0.0.1:{port}"),
            stats,
            stop,
        }
    }

    /// Adds (or replaces) the file served for `uri`.
    pub fn put(&self, uri: &str, body: Vec<u8>, etag: Option<&str>) {
        self.stats
            .files
            .lock()
            .unwrap()
            .insert(uri.to_string(), (Arc::new(body), etag.map(str::to_string)));
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// The most connections open at once so far, as the server saw them
    /// (it sees a close when it reads the end of the stream).
    pub fn peak_open(&self) -> usize {
        self.stats.peak_open.load(Ordering::SeqCst)
    }

    /// The most requests in flight at once so far.
    pub fn peak(&self) -> usize {
        self.stats.peak.load(Ordering::SeqCst)
    }

    /// The most requests of `group` in flight at once so far.
    pub fn group_peak(&self, group: usize) -> usize {
        self.stats.group_peak[group].load(Ordering::SeqCst)
    }

    /// Body bytes written so far.
    pub fn body_bytes(&self) -> u64 {
        self.stats.body_bytes.load(Ordering::SeqCst)
    }

    /// Every answered request so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        let mut v = self.stats.seen.lock().unwrap().clone();
        v.sort_by_key(|s| s.arrived);
        v
    }

    /// Forgets the counters and requests (not the files).
    pub fn reset(&self) {
        let s = &self.stats;
        s.accepted.store(0, Ordering::SeqCst);
        s.peak_open
            .store(s.open.load(Ordering::SeqCst), Ordering::SeqCst);
        s.peak
            .store(s.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        for g in 0..GROUPS {
            s.group_peak[g].store(
                s.group_in_flight[g].load(Ordering::SeqCst),
                Ordering::SeqCst,
            );
        }
        s.body_bytes.store(0, Ordering::SeqCst);
        s.seen.lock().unwrap().clear();
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.stats.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Counts a request in flight (overall and in its group) until dropped.
struct Flight<'a> {
    stats: &'a Stats,
    group: Option<usize>,
}

impl Flight<'_> {
    fn join(&mut self, group: usize) {
        let g = group.min(GROUPS - 1);
        let now = self.stats.group_in_flight[g].fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.group_peak[g].fetch_max(now, Ordering::SeqCst);
        self.group = Some(g);
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(g) = self.group {
            self.stats.group_in_flight[g].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads one request head; `None` when the connection ended.
fn read_head(
    reader: &mut BufReader<TcpStream>,
) -> Option<(String, String, HashMap<String, String>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next()?.to_string(), words.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            return Some((method, target, headers));
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
}

/// Returns the inclusive byte span `spec` (`bytes=a-b` or `bytes=a-`)
/// asks for in a file of `total` bytes, `None` when unsatisfiable.
fn span(spec: &str, total: u64) -> Option<(u64, u64)> {
    let (a, b) = spec.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => total.checked_sub(1)?,
        b => b.parse::<u64>().ok()?.min(total.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

fn serve(s: TcpStream, conn: usize, stats: &Stats, stop: &AtomicBool, script: &Script) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(read) = s.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut out = s;
    while let Some((method, target, headers)) = read_head(&mut reader) {
        let arrived = stats.events.fetch_add(1, Ordering::SeqCst);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(now, Ordering::SeqCst);
        let mut flight = Flight { stats, group: None };
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let req = Request {
            method: method.clone(),
            uri: url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "uri")
                .map(|(_, v)| v.into_owned()),
            range: headers.get("range").cloned(),
            if_range: headers.get("if-range").cloned(),
            conn,
            in_flight: now,
        };
        let (group, answer) = script(&req);
        flight.join(group);
        let delay = match &answer {
            Answer::Serve { delay } | Answer::Status { delay, .. } => *delay,
            _ => Duration::ZERO,
        };
        std::thread::sleep(delay);
        let file = req
            .uri
            .as_ref()
            .and_then(|u| stats.files.lock().unwrap().get(u).cloned());
        let mut head = Vec::new();
        let mut keep_alive = true;
        let (status, body, from, to) = match (&answer, file) {
            (
                Answer::Status {
                    code, retry_after, ..
                },
                _,
            ) => {
                let text = format!("HTTP {code}");
                if let Some(ra) = retry_after {
                    head.push(format!("Retry-After: {ra}"));
                }
                head.push("Content-Type: text/plain".into());
                let len = text.len() as u64;
                (*code, Arc::new(text.into_bytes()), 0, len)
            }
            (_, None) => (404, Arc::new(b"no such product".to_vec()), 0, 15),
            (answer, Some((body, etag))) => {
                let total = body.len() as u64;
                let honour = matches!(
                    answer,
                    Answer::Serve { .. }
                        | Answer::CutHalf
                        | Answer::ServeThenClose
                        | Answer::ServeSayingClose
                );
                let current = match (&req.if_range, &etag) {
                    (Some(v), Some(e)) => v == e,
                    (Some(_), None) => false,
                    (None, _) => true,
                };
                let wanted = req.range.as_deref().filter(|_| current || !honour);
                let (status, from, to) = match wanted.map(|r| span(r, total)) {
                    Some(Some((a, b))) => {
                        head.push(format!("Content-Range: bytes {a}-{b}/{total}"));
                        (206, a, b + 1)
                    }
                    Some(None) => {
                        head.push(format!("Content-Range: bytes */{total}"));
                        (416, 0, 0)
                    }
                    None => (200, 0, total),
                };
                head.push("Content-Type: application/octet-stream".into());
                head.push("Accept-Ranges: bytes".into());
                if let Some(e) = &etag {
                    head.push(format!("ETag: {e}"));
                }
                if matches!(answer, Answer::CutHalf | Answer::ServeSayingClose) {
                    keep_alive = false;
                }
                (status, body, from, to)
            }
        };
        let len = to - from;
        let mut text = format!("HTTP/1.1 {status} X\r\nContent-Length: {len}\r\n");
        for h in head {
            text.push_str(&h);
            text.push_str("\r\n");
        }
        if !keep_alive {
            text.push_str("Connection: close\r\n");
        }
        text.push_str("\r\n");
        // Numbered before the write: no client can see the head before
        // then, and a thread put aside between the write and the count
        // must not let a request the head itself set off count as earlier.
        let head_sent = stats.events.fetch_add(1, Ordering::SeqCst);
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
        let stop_at = if matches!(answer, Answer::CutHalf) {
            from + len / 2
        } else {
            to
        };
        let mut sent = 0u64;
        let mut at = from;
        if method != "HEAD" {
            while at < stop_at {
                let end = (at + (256 << 10)).min(stop_at);
                if stop.load(Ordering::SeqCst)
                    || out.write_all(&body[at as usize..end as usize]).is_err()
                {
                    break;
                }
                stats.body_bytes.fetch_add(end - at, Ordering::SeqCst);
                sent += end - at;
                at = end;
            }
        }
        let _ = out.flush();
        let whole = at == to || method == "HEAD";
        stats.seen.lock().unwrap().push(Seen {
            req,
            group,
            status,
            sent,
            arrived,
            head_sent,
        });
        drop(flight);
        if !keep_alive || !whole || matches!(answer, Answer::ServeThenClose) {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}
