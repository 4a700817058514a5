//! Issue 14: `-j`, the connection budget and large files in ranges, seen
//! from the server's side of real sockets. A slow loopback archive
//! ([`Slow`]) counts TCP connections accepted and requests in flight;
//! nothing here asserts on time — the delays only give concurrency a chance
//! to show, and the counts are what the budget allows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::mock::bytes;
use super::mock_latency::{Answer, Slow};
use super::{Env, Run};

/// Where `-j auto` starts (README: "the budget starts at 4").
const AUTO_START: usize = 4;
/// The most connections `-j auto` opens to one host over HTTP/1.1.
const AUTO_CAP: usize = 16;

/// Runs `mastdl fetch --base-url BASE -d out ARGS…`, killing it and failing
/// if it has not ended after `limit` (a hang detector, not a speed check).
fn fetch_from(e: &Env, base: &str, args: &[&str]) -> Run {
    let mut c: Command = e.cmd();
    c.arg("fetch")
        .arg("--base-url")
        .arg(base)
        .arg("-d")
        .arg(e.dest())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(out) => Run::from(out.unwrap()),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("mastdl did not finish within 180 s");
        }
    }
}

/// `n` small products on `s`; returns the URI list's path and each file's
/// name (with `--flat`, its path below DEST) and bytes.
fn small_files(s: &Slow, e: &Env, n: usize, seed: u64) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let mut list = String::new();
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("ib{i:05}_raw.fits");
        let uri = format!("mast:HST/product/{name}");
        let body = bytes(seed * 1_000_003 + i as u64, 500 + (i * 37) % 3000);
        s.put(&uri, body.clone(), Some(&format!("\"e{i}\"")));
        list.push_str(&uri);
        list.push('\n');
        files.push((name, body));
    }
    (e.write("uris.txt", &list), files)
}

/// Checks that every file is at its path with exactly its bytes, and that
/// the manifest says all of them are COMPLETE.
fn all_complete(e: &Env, files: &[(String, Vec<u8>)]) {
    for (name, body) in files {
        let got = std::fs::read(e.dest().join(name)).unwrap_or_default();
        assert!(got == *body, "{name}: {} bytes, not its own", got.len());
    }
    let m = e.manifest();
    assert_eq!(m["complete"], files.len(), "{m}");
    assert_eq!(m["failed"], 0);
}

/// A slow archive (every answer after `delay_ms`) with `n` small files,
/// fetched into a new DEST with `--flat` and `args`; the files must all be
/// COMPLETE with exactly their bytes. Returns the archive, to count on.
fn slow_run(n: usize, delay_ms: u64, args: &[&str]) -> Slow {
    let delay = Duration::from_millis(delay_ms);
    let s = Slow::start(move |_| (0, Answer::Serve { delay }));
    let e = Env::new();
    let (list, files) = small_files(&s, &e, n, delay_ms);
    let mut all = vec![list.to_str().unwrap(), "--flat"];
    all.extend_from_slice(args);
    let r = fetch_from(&e, &s.base, &all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    all_complete(&e, &files);
    assert_eq!(s.seen().len(), n, "one request per file");
    s
}

/// Point 1: over a link with latency, `-j auto` grows past where it
/// starts and never past 16 requests in flight over HTTP/1.1; its first
/// request goes alone.
#[test]
fn auto_grows_under_latency_up_to_16_requests() {
    let s = slow_run(300, 80, &[]);
    let peak = s.peak();
    assert!(
        peak > AUTO_START,
        "-j auto never had more than {peak} requests in flight: it did not grow"
    );
    assert!(peak <= AUTO_CAP, "{peak} requests in flight at once");
    assert!(s.accepted() >= peak, "HTTP/1.1: a connection per request");
    let seen = s.seen();
    assert!(
        seen[0].head_sent < seen[1].arrived,
        "the second request arrived before the first was answered"
    );
}

/// Point 1, connections: `-j auto` never has more than 16 connections to
/// the archive over HTTP/1.1 (open at once, idle ones included), so no
/// more than 16 are ever accepted here (the archive closes none).
#[test]
fn auto_opens_at_most_16_connections() {
    let s = slow_run(300, 80, &[]);
    let (accepted, open) = (s.accepted(), s.peak_open());
    assert!(
        accepted <= AUTO_CAP && open <= AUTO_CAP,
        "{accepted} connections opened, {open} open at once (cap {AUTO_CAP} over HTTP/1.1)"
    );
}

/// Point 2: `-j N` means at most N requests at once, and it does use N.
#[test]
fn fixed_jobs_mean_at_most_that_many_requests() {
    let s = slow_run(150, 50, &["-j", "3"]);
    assert_eq!(s.peak(), 3, "requests in flight at once with -j 3");
    assert!(s.accepted() >= 3);
}

/// Point 2, connections: `-j N` means at most N connections open to the
/// archive at once, idle pooled ones included (the archive closes none).
#[test]
fn fixed_jobs_open_at_most_that_many_connections() {
    let s = slow_run(150, 50, &["-j", "3"]);
    let (accepted, open) = (s.accepted(), s.peak_open());
    assert!(
        accepted <= 3 && open <= 3,
        "-j 3: {accepted} connections opened, {open} open at once"
    );
}

/// Point 2, connections the archive closes without a word: the count of
/// open connections is corrected (a connect refused at the cap with none
/// coming back), so every file still comes, one connection each, never
/// more than N at once.
#[test]
fn connections_closed_unseen_are_replaced_within_the_cap() {
    let s = Slow::start(|_| (0, Answer::ServeThenClose));
    let e = Env::new();
    let (list, files) = small_files(&s, &e, 12, 7);
    let r = fetch_from(&e, &s.base, &[list.to_str().unwrap(), "--flat", "-j", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    all_complete(&e, &files);
    assert_eq!(s.seen().len(), 12, "one request per file: {:?}", s.seen());
    assert_eq!(s.accepted(), 12, "a new connection for each file");
    assert!(
        s.peak_open() <= 2,
        "{} open at once with -j 2",
        s.peak_open()
    );
}

/// Issue 20 §2: an archive that answers every request with `Connection:
/// close` (and closes): every file comes, one connection each, never more
/// than N open at once as the server counts them. (That such a close costs
/// no wait is `fetch::http`'s unit test: the count drops as the answer
/// ends.)
#[test]
fn connection_close_on_every_answer_stays_within_the_cap() {
    let s = Slow::start(|_| (0, Answer::ServeSayingClose));
    let e = Env::new();
    let (list, files) = small_files(&s, &e, 200, 20);
    let r = fetch_from(&e, &s.base, &[list.to_str().unwrap(), "--flat", "-j", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    all_complete(&e, &files);
    assert_eq!(s.seen().len(), 200, "one request per file");
    assert_eq!(s.accepted(), 200, "a new connection for each file");
    assert!(
        s.peak_open() <= 4,
        "{} open at once with -j 4",
        s.peak_open()
    );
}

/// What the pushback script saw.
#[derive(Default, Debug)]
struct Phases {
    /// 0: growing, 1: pushing back, 2: after.
    phase: u8,
    /// Requests in flight when the pushback began.
    before: usize,
    pushed: usize,
    after: usize,
}

/// Point 3: with `-j auto`, once `threshold` requests are in flight the
/// archive answers the next `burst` requests with `code` (Retry-After: 0),
/// then serves normally. The requests of the `window` after the burst
/// (group 2) must never have been as many at once as before it; the
/// requests before it are group 0, the burst group 1, the rest group 3.
fn pushback_lowers_concurrency(code: u16, burst: usize) {
    const THRESHOLD: usize = 8;
    const WINDOW: usize = 12;
    let state = Arc::new(Mutex::new(Phases::default()));
    let delay = Duration::from_millis(60);
    let st = state.clone();
    let s = Slow::start(move |r| {
        let mut p = st.lock().unwrap();
        if p.phase == 0 && r.in_flight >= THRESHOLD {
            p.phase = 1;
            p.before = r.in_flight;
        }
        match p.phase {
            0 => (0, Answer::Serve { delay }),
            1 => {
                p.pushed += 1;
                if p.pushed == burst {
                    p.phase = 2;
                }
                let answer = Answer::Status {
                    code,
                    retry_after: Some("0"),
                    delay: Duration::ZERO,
                };
                (1, answer)
            }
            _ => {
                p.after += 1;
                (
                    if p.after <= WINDOW { 2 } else { 3 },
                    Answer::Serve { delay },
                )
            }
        }
    });
    let e = Env::new();
    let (list, files) = small_files(&s, &e, 400, 3);
    let r = fetch_from(&e, &s.base, &[list.to_str().unwrap(), "--flat"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    all_complete(&e, &files);
    let p = state.lock().unwrap();
    assert_eq!(
        p.phase,
        2,
        "-j auto never had {THRESHOLD} requests in flight (peak {}): {p:?}",
        s.peak()
    );
    assert!(
        p.after >= WINDOW,
        "too few requests after the pushback: {p:?}"
    );
    let after = s.group_peak(2);
    assert!(
        after < p.before,
        "HTTP {code} x{burst}: {} in flight before, still {after} after",
        p.before
    );
    let m = e.manifest();
    let retried = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["attempts"].as_u64() > Some(1))
        .count();
    assert!(retried >= 1, "the {code} answers were retried: {m}");
}

#[test]
fn auto_halves_on_429() {
    pushback_lowers_concurrency(429, 2);
}

#[test]
fn auto_takes_a_quarter_off_on_503() {
    pushback_lowers_concurrency(503, 4);
}

const BIG: &str = "mast:JWST/product/jw02738-o001_t001_nircam_clear-f444w_i2d.fits";
const BIG_NAME: &str = "jw02738-o001_t001_nircam_clear-f444w_i2d.fits";
const BIG_SIZE: usize = 40 << 20;

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Returns the start of a `Range: bytes=a-b` value.
fn range_start(r: &str) -> u64 {
    r.trim_start_matches("bytes=")
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A slow archive serving the big product (ETag `"v1"`) whose fifth range
/// request is cut half-way while `cut` is set; the fifth arrives only after
/// a range finished (`-j 4`: the job's slot and three extra ones), so a
/// run with `--retries 0` fails leaving a `.part` with some ranges listed.
/// `ignore_if_range` makes the server answer every range with whatever
/// version it has.
fn cut_archive(
    body: &[u8],
    cut: Arc<std::sync::atomic::AtomicBool>,
    ignore_if_range: Arc<std::sync::atomic::AtomicBool>,
) -> Slow {
    let ranges = AtomicUsize::new(0);
    let s = Slow::start(move |r| {
        if r.range.is_some() && cut.load(Ordering::SeqCst) {
            let n = ranges.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 5 {
                return (0, Answer::CutHalf);
            }
        }
        if ignore_if_range.load(Ordering::SeqCst) {
            return (0, Answer::ServeIgnoringIfRange);
        }
        (
            0,
            Answer::Serve {
                delay: Duration::ZERO,
            },
        )
    });
    s.put(BIG, body.to_vec(), Some("\"v1\""));
    s
}

/// Runs the first, failing run against a `cut_archive`; returns the list
/// and the ranges its sidecar says are done (chunk size, indices).
fn first_run_is_cut(e: &Env, s: &Slow) -> (PathBuf, u64, BTreeSet<u64>) {
    let list = e.write("uris.txt", &format!("{BIG}\n"));
    let r = fetch_from(
        e,
        &s.base,
        &[
            list.to_str().unwrap(),
            "--flat",
            "-j",
            "4",
            "--retries",
            "0",
        ],
    );
    assert_eq!(r.code, 1, "the cut range fails the run: {}", r.stderr);
    let path = e.dest().join(BIG_NAME);
    assert!(!path.exists(), "no partial file at the final path");
    let part = with_suffix(&path, ".part");
    assert!(part.is_file(), ".part kept");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(with_suffix(&path, ".part.meta")).unwrap()).unwrap();
    let chunk = meta["ranged"]["chunk"].as_u64().unwrap();
    let done: BTreeSet<u64> = meta["ranged"]["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert!(!done.is_empty(), "a range finished before the cut: {meta}");
    let chunks = (BIG_SIZE as u64).div_ceil(chunk);
    assert!(
        (done.len() as u64) < chunks,
        "the cut range is not listed: {meta}"
    );
    let ranged: Vec<_> = s
        .seen()
        .into_iter()
        .filter(|x| x.req.range.is_some())
        .collect();
    assert!(ranged.len() >= 5, "{ranged:?}");
    (list, chunk, done)
}

/// Point 4: a ranged download cut part-way keeps its `.part` and sidecar;
/// the next run asks only for the ranges the sidecar does not list (each
/// with If-Range), receives fewer bytes than the file, and ends with the
/// exact bytes.
#[test]
fn a_cut_ranged_download_resumes_only_its_missing_ranges() {
    let body = bytes(140, BIG_SIZE);
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let ignore = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = cut_archive(&body, cut.clone(), ignore);
    let e = Env::new();
    let (list, chunk, done) = first_run_is_cut(&e, &s);
    cut.store(false, Ordering::SeqCst);
    s.reset();
    let r = fetch_from(&e, &s.base, &[list.to_str().unwrap(), "--flat", "-j", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let path = e.dest().join(BIG_NAME);
    assert!(std::fs::read(&path).unwrap() == body, "bytes differ");
    assert!(!with_suffix(&path, ".part").exists());
    assert!(!with_suffix(&path, ".part.meta").exists());
    let chunks = (BIG_SIZE as u64).div_ceil(chunk);
    let missing: BTreeSet<u64> = (0..chunks).filter(|i| !done.contains(i)).collect();
    let seen = s.seen();
    assert!(
        seen.iter().all(|x| x.req.range.is_some()),
        "every request of the resume is a range: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|x| x.req.if_range.as_deref() == Some("\"v1\"")),
        "every range carries If-Range: {seen:?}"
    );
    let asked: BTreeSet<u64> = seen
        .iter()
        .map(|x| range_start(x.req.range.as_deref().unwrap()) / chunk)
        .collect();
    assert_eq!(asked, missing, "ranges asked for vs not listed as done");
    assert_eq!(seen.len(), missing.len(), "each missing range once");
    let want: u64 = missing
        .iter()
        .map(|i| chunk.min(BIG_SIZE as u64 - i * chunk))
        .sum();
    assert_eq!(s.body_bytes(), want, "body bytes of the resume");
    assert!(s.body_bytes() < BIG_SIZE as u64);
    assert_eq!(e.manifest()["complete"], 1);
}

/// Point 4, continued: the product changed between the runs (new ETag,
/// same size). Whether the archive honours If-Range (a 200 with the new
/// file) or ignores it (a 206 of the new version, with its ETag), the old
/// ranges are never joined to new ones: the result is the new file whole.
#[test]
fn a_product_changed_between_runs_comes_whole_never_a_hybrid() {
    for ignore_if_range in [false, true] {
        let v1 = bytes(141, BIG_SIZE);
        let mut v2 = v1.clone();
        // Reprocessed: same size, different bytes in every range.
        for i in (0..BIG_SIZE).step_by(1 << 20) {
            v2[i] ^= 0x5a;
        }
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let ignore = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = cut_archive(&v1, cut.clone(), ignore.clone());
        let e = Env::new();
        let (list, _, _) = first_run_is_cut(&e, &s);
        cut.store(false, Ordering::SeqCst);
        ignore.store(ignore_if_range, Ordering::SeqCst);
        s.put(BIG, v2.clone(), Some("\"v2\""));
        s.reset();
        let r = fetch_from(&e, &s.base, &[list.to_str().unwrap(), "--flat", "-j", "4"]);
        assert_eq!(
            r.code, 0,
            "ignore If-Range: {ignore_if_range}: {}",
            r.stderr
        );
        let path = e.dest().join(BIG_NAME);
        let got = std::fs::read(&path).unwrap();
        assert!(
            got == v2,
            "ignore If-Range: {ignore_if_range}: the result is not the new file ({})",
            if got == v1 { "the old one" } else { "a hybrid" }
        );
        assert!(!with_suffix(&path, ".part").exists());
        assert!(!with_suffix(&path, ".part.meta").exists());
        let seen = s.seen();
        let first = &seen[0];
        assert_eq!(
            first.req.if_range.as_deref(),
            Some("\"v1\""),
            "the resume named the old version: {seen:?}"
        );
        let expected = if ignore_if_range { 206 } else { 200 };
        assert_eq!(first.status, expected, "{seen:?}");
        if ignore_if_range {
            // Issue 20 §7: a range refused for its validator says so.
            assert!(
                r.stderr
                    .contains("the validator changed (ETag \"v1\" -> \"v2\")"),
                "{}",
                r.stderr
            );
        }
        assert!(
            seen.iter()
                .any(|x| x.req.range.is_none() && x.status == 200 && x.sent == BIG_SIZE as u64),
            "the new version came whole: {seen:?}"
        );
        let m = e.manifest();
        assert_eq!(m["complete"], 1, "{m}");
    }
}
