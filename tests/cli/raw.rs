//! A raw HTTP/1.1 server on loopback that says exactly what a test tells
//! it to: lying headers, dripping or endless bodies, echoed secrets.
//!
//! Each connection is served by a thread; each request is parsed (request
//! line and headers only) and recorded, then answered by the test's
//! handler with a [`Reply`]: a head, then body parts, each after a pause.
//! The server stops when dropped (the listener thread checks a flag).

// Not every test uses every knob.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub target: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    /// The port the request arrived on.
    pub port: u16,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What to answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body parts, each written after its pause.
    pub parts: Vec<(Duration, Vec<u8>)>,
    /// After the parts: an endless body of `chunk` every `pause`, until the
    /// client goes away.
    pub endless: Option<(Duration, Vec<u8>)>,
    /// Close the connection after the parts, whatever the headers say.
    pub close: bool,
}

impl Reply {
    /// A complete answer with `Content-Length`.
    pub fn new(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Length".into(), body.len().to_string())],
            parts: vec![(Duration::ZERO, body.to_vec())],
            endless: None,
            close: false,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(location: &str) -> Reply {
        Reply::new(302, b"").header("Location", location)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body with parts written one by one after `pause`,
    /// keeping the announced `Content-Length` header if any.
    pub fn drip(mut self, pause: Duration, parts: Vec<Vec<u8>>) -> Reply {
        self.parts = parts.into_iter().map(|p| (pause, p)).collect();
        self
    }

    /// Removes the `Content-Length` header (the body ends with the connection).
    pub fn no_length(mut self) -> Reply {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
        self
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

/// A running raw server; stops when dropped.
pub struct Raw {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub port: u16,
    /// A second port on the same server: `http://localhost:PORT2` (another
    /// host name, so another origin).
    pub other: String,
    pub seen: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl Raw {
    /// Starts a server answering every request with `handler`.
    pub fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Raw {
        let handler: Arc<Handler> = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut ports = Vec::new();
        for _ in 0..2 {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            let port = l.local_addr().unwrap().port();
            ports.push(port);
            let (handler, seen, stop) = (handler.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((s, _)) => {
                            let (handler, seen, stop) =
                                (handler.clone(), seen.clone(), stop.clone());
                            std::thread::spawn(move || serve(s, port, &*handler, &seen, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Raw {
            base: format!("http://127.0.0.1:{}", ports[0]),
            port: ports[0],
            other: format!("http://localhost:{}", ports[1]),
            seen,
            stop,
        }
    }

    /// Returns every request seen so far.
    pub fn seen(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(s: TcpStream, port: u16, handler: &Handler, seen: &Mutex<Vec<Req>>, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read) = s.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut out = s;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            return;
        };
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        if let Some(n) = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            let mut body = vec![0u8; n];
            if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                return;
            }
        }
        let req = Req {
            method: method.to_string(),
            target: target.to_string(),
            headers,
            port,
        };
        seen.lock().unwrap().push(req.clone());
        let reply = handler(&req);
        let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
        for (n, v) in &reply.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        let keep_alive = reply
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            && reply.endless.is_none()
            && !reply.close;
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method == "HEAD" {
            if keep_alive {
                continue;
            }
            return;
        }
        for (pause, part) in &reply.parts {
            std::thread::sleep(*pause);
            if stop.load(Ordering::SeqCst) || out.write_all(part).is_err() {
                return;
            }
            let _ = out.flush();
        }
        if let Some((pause, chunk)) = &reply.endless {
            loop {
                std::thread::sleep(*pause);
                if stop.load(Ordering::SeqCst) || out.write_all(chunk).is_err() {
                    return;
                }
            }
        }
        if !keep_alive {
            return;
        }
    }
}
