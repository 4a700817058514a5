//! Binary-level tests: the real `mastdl` executable against the mock MAST
//! archive on loopback. One test binary (see `Cargo.toml`, `autotests = false`).

mod concurrency;
mod inputs;
mod integrity;
mod mock;
mod mock_index;
mod mock_invoke;
mod mock_latency;
mod mock_s3;
mod raw;
mod scale;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use mock::{bytes, Mock, Product, Redirect, TOKEN};
use serde_json::Value;

/// The result of one run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A scratch folder with the command builder pointed at it.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn dest(&self) -> PathBuf {
        self.path().join("out")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `mastdl` with a scrubbed environment: no token, no base URL, no retry sleeps.
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mastdl"));
        c.current_dir(self.path())
            .env_remove("MAST_API_TOKEN")
            .env_remove("MASTDL_BASE_URL")
            .env_remove("MASTDL_CLOUD")
            .env_remove("MASTDL_S3_URL")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("SLURM_ARRAY_TASK_COUNT")
            .env_remove("SLURM_ARRAY_TASK_MIN")
            .env_remove("SLURM_ARRAY_TASK_STEP")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("MASTDL_SHARD_COUNT")
            .env_remove("MASTDL_RETRY_BASE_MS")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("all_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env("HOME", self.path())
            .env("NO_COLOR", "1")
            .env("MASTDL_RETRY_BASE_MS", "0")
            .stdin(Stdio::null());
        c
    }

    /// Runs `mastdl fetch --base-url BASE -d out ARGS…`.
    fn fetch(&self, m: &Mock, args: &[&str]) -> Run {
        let mut c = self.cmd();
        c.arg("fetch")
            .arg("--base-url")
            .arg(&m.base)
            .arg("-d")
            .arg(self.dest())
            .args(args);
        Run::from(c.output().unwrap())
    }

    fn manifest(&self) -> Value {
        let text = std::fs::read_to_string(self.dest().join("MANIFEST.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn html(&self) -> String {
        std::fs::read_to_string(self.dest().join("MANIFEST.HTML")).unwrap()
    }
}

fn row<'a>(m: &'a Value, uri: &str) -> &'a Value {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["uri"] == uri)
        .unwrap_or_else(|| panic!("no row for {uri}: {m}"))
}

const A: &str = "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_i2d.fits";
const B: &str = "mast:HST/product/ib1f01020_raw.fits";
const IUE: &str = "mast:IUE/url/pub/iue/data/lwp/13000/lwp13058.mxlo.gz";

fn archive_with(products: &[(&str, Product)]) -> Mock {
    let m = Mock::start();
    for (u, p) in products {
        m.add(u, p.clone());
    }
    m
}

// ---- issue 2: the core pipeline --------------------------------------------

#[test]
fn fetch_lays_out_files_and_writes_both_manifests() {
    let body_a = bytes(1, 300_000);
    let m = archive_with(&[
        (A, Product::new(body_a.clone())),
        (B, Product::new(bytes(2, 10))),
        (IUE, Product::new(bytes(3, 77))),
    ]);
    let e = Env::new();
    let list = e.write(
        "uris.txt",
        &format!("# my files\n\n  {A}  \n{B}\n{IUE}\n{A}\n"),
    );
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = e.dest().join(
        "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
    );
    assert_eq!(std::fs::read(&a).unwrap(), body_a);
    assert!(e.dest().join("HST/ib1f01020/ib1f01020_raw.fits").is_file());
    assert!(e.dest().join("IUE/lwp13058/lwp13058.mxlo.gz").is_file());
    let man = e.manifest();
    assert_eq!(man["tool"], "mastdl");
    assert_eq!(man["requested"], 3, "duplicates are listed once");
    assert_eq!(man["complete"], 3);
    assert_eq!(man["skipped"], 0);
    assert_eq!(man["failed"], 0);
    assert_eq!(man["bytes"], 300_000 + 10 + 77);
    for key in ["started", "finished", "version"] {
        assert!(man[key].is_string(), "{key}");
    }
    let ra = row(&man, A);
    assert_eq!(ra["status"], "COMPLETE");
    assert_eq!(ra["bytes"], 300_000);
    assert_eq!(ra["http_status"], 200);
    assert_eq!(ra["attempts"], 1);
    assert_eq!(ra["source"], "mast");
    assert!(ra["message"].is_null());
    assert_eq!(
        ra["path"],
        "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits"
    );
    assert_eq!(
        ra["url"],
        format!("{}/api/v0.1/Download/file?uri={A}", m.base)
    );
    assert_eq!(m.seen_for(A).len(), 1, "a duplicate URI is fetched once");
    let html = e.html();
    assert!(html.contains("Total Files: 3"));
    for col in ["URI", "File", "Access", "Status", "Logged In User"] {
        assert!(html.contains(&format!("<th>{col}</th>")), "{col}");
    }
    assert!(!html.contains("<script"), "self-contained, no scripts");
    assert!(!e.dest().read_dir().unwrap().any(|f| f
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".part")));
    // Not a terminal: no escape codes, one line per file, then the summary.
    assert!(!r.stderr.contains('\u{1b}'), "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("3 complete, 0 skipped, 0 failed"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.starts_with("COMPLETE"))
            .count(),
        3
    );
}

#[test]
fn stdin_dash_and_no_input_read_standard_input() {
    let m = archive_with(&[(B, Product::new(bytes(2, 1000)))]);
    let e = Env::new();
    for args in [vec!["-"], vec![]] {
        let _ = std::fs::remove_dir_all(e.dest());
        let mut c = e.cmd();
        c.arg("fetch")
            .arg("--base-url")
            .arg(&m.base)
            .arg("-d")
            .arg(e.dest())
            .args(&args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{B}\n").as_bytes())
            .unwrap();
        let r = Run::from(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(e.dest().join("HST/ib1f01020/ib1f01020_raw.fits").is_file());
    }
}

#[test]
fn bad_line_exits_2_naming_file_and_line_before_any_request() {
    let m = archive_with(&[(B, Product::new(bytes(2, 10)))]);
    let e = Env::new();
    let list = e.write(
        "uris.txt",
        &format!("{B}\n# fine\nhttps://example.org/x.fits\n"),
    );
    let r = e.fetch(&m, &[list.to_str().unwrap(), "-t", TOKEN]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("uris.txt:3"), "{}", r.stderr);
    assert!(
        m.seen().is_empty(),
        "no request at all, not even /whoami: {:?}",
        m.seen()
    );
    assert!(!e.dest().exists());
    for (text, line) in [
        (format!("{B}\nmast:HST/../../etc/passwd\n"), 2),
        ("mast:/etc/passwd\n".to_string(), 1),
        ("mast:HST//x.fits\n".to_string(), 1),
        ("mast:HST/a\\b.fits\n".to_string(), 1),
        ("mast:HST/a\u{1}b.fits\n".to_string(), 1),
    ] {
        let list = e.write("bad.txt", &text);
        let r = e.fetch(&m, &[list.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{text:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("bad.txt:{line}")),
            "{text:?}: {}",
            r.stderr
        );
    }
    let list = e.write("coll.txt", "mast:HST/a/x_1.fits\nmast:HST/b/x_1.fits\n");
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("mast:HST/b/x_1.fits")
            && r.stderr
                .contains("coll.txt:2: `mast:HST/b/x_1.fits` and the entry on line 1"),
        "{}",
        r.stderr
    );
    assert!(m.seen().is_empty());
}

#[test]
fn token_survives_trusted_cross_origin_redirects_and_is_withheld_from_strangers() {
    let body = bytes(5, 5000);
    let m = archive_with(&[
        (
            A,
            Product {
                need_token: true,
                redirect: Some(Redirect::OtherPortSameHost),
                ..Product::new(body.clone())
            },
        ),
        (
            B,
            Product {
                redirect: Some(Redirect::Other),
                ..Product::new(bytes(6, 100))
            },
        ),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--token", TOKEN]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hops: Vec<_> = m.seen_for(A);
    assert_eq!(hops.len(), 2, "{hops:?}");
    assert!(hops[1].path_and_query.starts_with("/files"), "{hops:?}");
    assert!(
        hops.iter()
            .all(|h| h.authorization.as_deref() == Some(&*format!("token {TOKEN}"))),
        "{hops:?}"
    );
    let stranger: Vec<_> = m
        .seen_for(B)
        .into_iter()
        .filter(|s| s.host.starts_with("localhost"))
        .collect();
    assert_eq!(stranger.len(), 1);
    assert!(
        stranger[0].authorization.is_none(),
        "token leaked to another host"
    );
    let man = e.manifest();
    assert!(
        row(&man, B)["message"]
            .as_str()
            .unwrap()
            .contains("withheld"),
        "{man}"
    );
    // --trusted-host extends the rule.
    std::fs::remove_dir_all(e.dest()).unwrap();
    m.reset_log();
    let r = e.fetch(
        &m,
        &[
            list.to_str().unwrap(),
            "--token",
            TOKEN,
            "--trusted-host",
            "localhost",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stranger: Vec<_> = m
        .seen_for(B)
        .into_iter()
        .filter(|s| s.host.starts_with("localhost"))
        .collect();
    assert_eq!(
        stranger[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
}

#[test]
fn token_from_env_reaches_whoami_and_never_shows() {
    let m = archive_with(&[
        (
            A,
            Product {
                need_token: true,
                ..Product::new(bytes(7, 64))
            },
        ),
        (
            B,
            Product {
                error_page: Some("<h1>oops</h1>"),
                ..Product::new(vec![])
            },
        ),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "-d"])
        .arg(e.dest())
        .arg(&list)
        .env("MAST_API_TOKEN", TOKEN);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    let who: Vec<_> = m
        .seen()
        .into_iter()
        .filter(|s| s.path_and_query == "/whoami")
        .collect();
    assert_eq!(who.len(), 1);
    assert_eq!(
        who[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
    assert_eq!(
        who[0].cookie.as_deref(),
        Some(&*format!("mast_token={TOKEN}"))
    );
    assert!(e.html().contains("alice"));
    let mut everything = format!(
        "{}{}{}{}",
        r.stdout,
        r.stderr,
        e.html(),
        serde_json::to_string(&e.manifest()).unwrap()
    );
    for f in walk(&e.dest()) {
        everything.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    assert!(!everything.contains(TOKEN), "the token leaked");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn no_token_without_a_terminal_fails_with_a_hint() {
    let m = archive_with(&[
        (
            A,
            Product {
                need_token: true,
                ..Product::new(bytes(7, 64))
            },
        ),
        (B, Product::new(bytes(8, 64))),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let man = e.manifest();
    let ra = row(&man, A);
    assert_eq!(ra["status"], "FAILED");
    assert_eq!(ra["http_status"], 401);
    let msg = ra["message"].as_str().unwrap();
    assert!(
        msg.contains("MAST_API_TOKEN") && msg.contains("--token"),
        "{msg}"
    );
    assert_eq!(row(&man, B)["status"], "COMPLETE");
    assert!(r.stderr.contains("FAILED"));
    assert!(e.html().contains("anonymous"));
}

#[test]
fn rejected_token_says_so_and_how_to_get_a_new_one() {
    let m = archive_with(&[(
        A,
        Product {
            need_token: true,
            ..Product::new(bytes(7, 64))
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--token", "expired-token"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("did not accept the token"),
        "{}",
        r.stderr
    );
    let msg = row(&e.manifest(), A)["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("rejected") && msg.contains("auth.mast.stsci.edu"),
        "{msg}"
    );
    assert!(!r.stderr.contains("expired-token"));
}

#[test]
fn second_run_transfers_no_body_bytes() {
    let m = archive_with(&[
        (A, Product::new(bytes(1, 100_000))),
        (B, Product::new(bytes(2, 5_000))),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap()]).code, 0);
    assert_eq!(m.body_bytes(), 105_000);
    m.reset_log();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(m.body_bytes(), 0);
    assert!(m.seen().is_empty(), "{:?}", m.seen());
    let man = e.manifest();
    assert_eq!(man["skipped"], 2);
    assert_eq!(man["bytes"], 0);
    assert_eq!(row(&man, A)["bytes"], 100_000);
    // --force fetches again.
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--force"]);
    assert_eq!(r.code, 0);
    assert_eq!(e.manifest()["complete"], 2);
}

#[test]
fn plan_and_dry_run_print_tab_lines_and_touch_nothing() {
    let m = archive_with(&[]);
    let e = Env::new();
    let hla = "mast:HLA/url/cgi-bin/fitscut.cgi?red=hst_1&blue=hst_2";
    let list = e.write("uris.txt", &format!("{A}\n{hla}\n"));
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base]).arg(&list);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        format!("{A}\t{}/api/v0.1/Download/file?uri={A}\tJWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits", m.base)
    );
    assert!(
        lines[1].contains("uri=mast:HLA/url/cgi-bin/fitscut.cgi%3Fred%3Dhst_1%26blue%3Dhst_2\t"),
        "{}",
        lines[1]
    );
    let dry = e.fetch(&m, &[list.to_str().unwrap(), "--dry-run"]);
    assert_eq!(dry.stdout, r.stdout);
    assert!(m.seen().is_empty());
    assert!(!e.dest().exists());
}

#[test]
fn flat_puts_files_straight_into_dest() {
    let m = archive_with(&[
        (A, Product::new(bytes(1, 10))),
        (IUE, Product::new(bytes(2, 10))),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{IUE}\n"));
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap(), "--flat"]).code, 0);
    assert!(e
        .dest()
        .join("jw01409-o031_t014_nircam_clear-f212n_i2d.fits")
        .is_file());
    assert!(e.dest().join("lwp13058.mxlo.gz").is_file());
}

#[test]
fn error_page_is_failed_not_saved_and_escaped_in_html() {
    let m = archive_with(&[(
        A,
        Product {
            error_page: Some(
                "<html><body><p>Access Denied <script>alert(1)</script></p></body></html>",
            ),
            ..Product::new(vec![])
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let man = e.manifest();
    let ra = row(&man, A);
    assert_eq!(ra["status"], "FAILED");
    assert!(
        ra["message"].as_str().unwrap().contains("Access Denied"),
        "{ra}"
    );
    assert!(
        walk(&e.dest())
            .iter()
            .all(|p| !p.to_string_lossy().contains("i2d.fits")),
        "nothing saved"
    );
    assert!(!e.html().contains("<script>"));
}

#[test]
fn completions_generate() {
    let e = Env::new();
    for sh in ["bash", "zsh", "fish"] {
        let r = Run::from(e.cmd().args(["completions", sh]).output().unwrap());
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("mastdl"), "{sh}");
    }
    let r = Run::from(e.cmd().arg("man").output().unwrap());
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(".TH mastdl"), "{}", r.stdout);
    let r = Run::from(e.cmd().arg("--version").output().unwrap());
    assert!(
        r.stdout
            .starts_with(&format!("mastdl {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        r.stdout
    );
}

// ---- issue 3: unbreakable transfers -----------------------------------------

#[test]
fn transient_statuses_are_retried_and_counted() {
    let m = archive_with(&[
        (
            A,
            Product {
                fail_first: vec![503, 502, 500],
                ..Product::new(bytes(1, 1000))
            },
        ),
        (
            B,
            Product {
                fail_first: vec![404],
                ..Product::new(bytes(2, 10))
            },
        ),
        (
            IUE,
            Product {
                fail_first: vec![503; 10],
                ..Product::new(bytes(3, 10))
            },
        ),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n{IUE}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--retries", "4"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(row(&man, A)["status"], "COMPLETE");
    assert_eq!(row(&man, A)["attempts"], 4);
    assert_eq!(row(&man, B)["status"], "FAILED", "404 is not retried");
    assert_eq!(row(&man, B)["attempts"], 1);
    assert_eq!(row(&man, B)["http_status"], 404);
    assert_eq!(row(&man, IUE)["attempts"], 5);
    assert!(row(&man, IUE)["message"]
        .as_str()
        .unwrap()
        .contains("after 4 retries"));
    assert!(r.stderr.contains("retry"), "{}", r.stderr);
}

#[test]
fn retry_after_is_honoured_and_429_slows_the_run() {
    let m = archive_with(&[(
        A,
        Product {
            fail_first: vec![429],
            retry_after: Some("1"),
            ..Product::new(bytes(1, 1000))
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let t0 = std::time::Instant::now();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        t0.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was not waited for"
    );
    assert!(r.stderr.contains("HTTP 429"), "{}", r.stderr);
    assert!(r.stderr.contains("slow down"), "{}", r.stderr);
    assert_eq!(row(&e.manifest(), A)["attempts"], 2);
}

#[test]
fn truncated_body_resumes_with_range_and_no_byte_is_lost() {
    let body = bytes(9, 200_000);
    let m = archive_with(&[(
        A,
        Product {
            truncate_first: 1,
            etag: Some("\"e9\"".into()),
            ..Product::new(body.clone())
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = m.seen_for(A);
    assert_eq!(seen.len(), 2);
    assert!(seen[0].range.is_none());
    let range = seen[1].range.clone().expect("resumed with Range");
    let from: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from < body.len(), "{range}");
    let got = std::fs::read(
        walk(&e.dest())
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with("i2d.fits"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(got, body);
    assert_eq!(row(&e.manifest(), A)["attempts"], 2);
}

#[test]
fn server_without_range_support_restarts_from_zero() {
    let body = bytes(9, 100_000);
    let m = archive_with(&[(
        A,
        Product {
            truncate_first: 1,
            no_range: true,
            ..Product::new(body.clone())
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = std::fs::read(
        walk(&e.dest())
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with("i2d.fits"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(got, body);
}

#[test]
fn a_part_left_by_an_earlier_run_is_resumed() {
    let body = bytes(4, 50_000);
    let m = archive_with(&[(
        A,
        Product {
            truncate_first: 1,
            last_modified: Some("Tue, 01 Sep 2026 10:00:00 GMT".into()),
            ..Product::new(body.clone())
        },
    )]);
    let e = Env::new();
    let final_path = e.dest().join(
        "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
    );
    let mut part = final_path.clone().into_os_string();
    part.push(".part");
    let list = e.write("uris.txt", A);
    // An earlier run cut off half-way leaves the .part and what it came from.
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--retries", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let have = std::fs::metadata(&part).unwrap().len();
    assert_eq!(have, 25_000);
    m.reset_log();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = m.seen_for(A);
    assert_eq!(seen[0].range.as_deref(), Some("bytes=25000-"));
    assert_eq!(
        seen[0].if_range.as_deref(),
        Some("Tue, 01 Sep 2026 10:00:00 GMT")
    );
    assert_eq!(m.body_bytes(), 50_000 - 25_000);
    assert_eq!(std::fs::read(&final_path).unwrap(), body);
    assert!(!Path::new(&part).exists());
    // A .part with no record of what it came from is never trusted: it is
    // discarded and the file fetched whole.
    std::fs::remove_file(&final_path).unwrap();
    std::fs::write(&part, &body[..12_345]).unwrap();
    m.reset_log();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(m.seen_for(A)[0].range.is_none());
    assert_eq!(std::fs::read(&final_path).unwrap(), body);
}

#[test]
fn a_stalled_transfer_is_aborted_and_retried() {
    let body = bytes(3, 40_000);
    let m = archive_with(&[(
        A,
        Product {
            stall_first: 1,
            ..Product::new(body.clone())
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--timeout", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("stalled"), "{}", r.stderr);
    assert_eq!(row(&e.manifest(), A)["attempts"], 2);
}

#[test]
fn redirect_loops_and_long_chains_fail_clearly() {
    let m = archive_with(&[
        (
            A,
            Product {
                redirect: Some(Redirect::Loop),
                ..Product::new(bytes(1, 10))
            },
        ),
        (
            B,
            Product {
                redirect: Some(Redirect::Chain(0)),
                ..Product::new(bytes(1, 10))
            },
        ),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let man = e.manifest();
    assert!(
        row(&man, A)["message"]
            .as_str()
            .unwrap()
            .contains("redirect loop"),
        "{man}"
    );
    assert!(
        row(&man, B)["message"]
            .as_str()
            .unwrap()
            .contains("more than 10 redirects"),
        "{man}"
    );
}

#[test]
fn a_second_run_on_a_locked_dest_exits_3() {
    let m = archive_with(&[(
        A,
        Product {
            stall_first: 1,
            ..Product::new(bytes(3, 40_000))
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--timeout", "30", "-d"])
        .arg(e.dest())
        .arg(&list)
        .stderr(Stdio::null());
    let mut first = c.spawn().unwrap();
    wait_for(|| !m.seen_for(A).is_empty());
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    first.kill().unwrap();
    let _ = first.wait();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(&e.dest().display().to_string()),
        "{}",
        r.stderr
    );
    // kill -9 left nothing stale: the lock died with the process.
    m.reset_log();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn wait_for(cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "timed out waiting"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn sigint_keeps_the_part_writes_the_manifest_exits_130_and_a_rerun_resumes() {
    let body = bytes(3, 400_000);
    let m = archive_with(&[
        (
            A,
            Product {
                stall_first: 1,
                etag: Some("\"a1\"".into()),
                ..Product::new(body.clone())
            },
        ),
        (
            B,
            Product {
                stall_first: 1,
                etag: Some("\"b1\"".into()),
                ..Product::new(bytes(1, 10))
            },
        ),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--timeout", "30", "-d"])
        .arg(e.dest())
        .arg(&list)
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let final_path = e.dest().join(
        "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
    );
    let mut part = final_path.clone().into_os_string();
    part.push(".part");
    // The signal goes out once the mock has sent both first halves (and
    // the client had a moment to read them), not after a guessed sleep.
    wait_for(|| m.body_bytes() >= 200_000 + 5);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(
        std::fs::metadata(&part).unwrap().len() > 0,
        ".part kept with the bytes received"
    );
    assert!(!final_path.exists());
    let man = e.manifest();
    assert_eq!(row(&man, A)["status"], "FAILED");
    let msg = row(&man, A)["message"].as_str().unwrap();
    assert!(
        msg.contains("interrupted") && msg.contains(".part"),
        "{msg}"
    );
    assert!(
        r.stderr.contains("0 failed") && r.stderr.contains("2 cut short"),
        "interrupted transfers are not counted as failures: {}",
        r.stderr
    );
    m.reset_log();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        m.seen_for(A)[0].range.is_some(),
        "re-run resumed with Range"
    );
    assert_eq!(std::fs::read(&final_path).unwrap(), body);
}

// ---- issue 4: every list users already have ---------------------------------

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

#[test]
fn portal_script_is_read_never_run_and_rerooted_at_the_base_url() {
    let script = fixture("scripts/portal_token_multiline.sh");
    let uris = [
        "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
        "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_cat.ecsv",
        "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_segm.fits",
    ];
    let m = Mock::start();
    for (i, u) in uris.iter().enumerate() {
        m.add(
            u,
            Product {
                need_token: true,
                ..Product::new(bytes(i as u64, 1000 + i))
            },
        );
    }
    let e = Env::new();
    let path = e.write("MAST_2022-04-30T2153.sh", &script);
    let r = e.fetch(&m, &[path.to_str().unwrap(), "--token", TOKEN]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = m.seen_for(uris[0]);
    assert!(
        seen[0]
            .path_and_query
            .starts_with("/jwst/api/v0.1/Download/file?bundle_name="),
        "{seen:?}"
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
    assert!(e.dest().join("JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_cat.ecsv").is_file());
    assert_eq!(e.manifest()["requested"], 3);
    let folders: Vec<String> = std::fs::read_dir(e.path())
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !folders.iter().any(|f| f.starts_with("MAST_")),
        "the script was run: {folders:?}"
    );
}

#[test]
fn hla_cutouts_and_mission_search_scripts_land_where_the_script_says() {
    let m = Mock::start();
    let cut = "mast:HLA/url/cgi-bin/fitscut.cgi?red=hst_10188_10_acs_wfc_f814w&blue=hst_10188_10_acs_wfc_f435w&size=ALL&format=fits";
    m.add(cut, Product::new(bytes(1, 500)));
    m.add(
        "mast:HLA/url/cgi-bin/getdata.cgi?dataset=hst_10268_05_acs_wfc_f606w_09_drz.fits",
        Product::new(bytes(2, 500)),
    );
    m.add(
        "mast:HST/product/j8y805grq_drz.fits",
        Product::new(bytes(3, 500)),
    );
    let e = Env::new();
    let path = e.write("hla.sh", &fixture("scripts/hla_cutout.sh"));
    let r = e.fetch(&m, &[path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e
        .dest()
        .join("HLA/url/cgi-bin/hst_10188_10_acs_wfc_f814w_f435w.fits")
        .is_file());
    assert_eq!(m.seen_for(cut).len(), 1, "the cutout URI arrived whole");

    for name in [
        "N43C05030/n43c05030_asn.fits",
        "N43C05030/n43c05030_mos.fits",
        "N43C05030/i7k16544n_flt.fits",
        "IB1F01020/ib1f01020_raw.fits",
    ] {
        m.add(name, Product::new(bytes(4, 300)));
    }
    let path = e.write(
        "search.sh",
        &fixture("scripts/mission_search_retrieve_product.sh"),
    );
    let r = e.fetch(&m, &[path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e.dest().join("HST/N43C05030/n43c05030_asn.fits").is_file());
    assert!(e.dest().join("HST/IB1F01020/ib1f01020_raw.fits").is_file());
}

const TABLE: &str = "# saved from astroquery\r\n\u{feff}obsID,obs_collection,obs_id,description,dataURI,productType,productGroupDescription,productFilename,size,calib_level\r\n";

#[test]
fn product_tables_csv_and_ecsv_feed_the_same_plan_with_filters() {
    let m = Mock::start();
    m.add(
        "mast:JWST/product/jw1_t1_i2d.fits",
        Product::new(bytes(1, 100)),
    );
    m.add(
        "mast:JWST/product/jw1_t1_cat.ecsv",
        Product {
            content_type: Some("text/plain"),
            ..Product::new(bytes(2, 50))
        },
    );
    m.add(
        "mast:JWST/product/jw1_t1_i2d.jpg",
        Product::new(bytes(3, 70)),
    );
    m.add(
        "mast:JWST/product/jw1_u_cal.fits",
        Product::new(bytes(4, 90)),
    );
    let csv = format!(
        "{}1,JWST,jw1-obs,\"Level 3 image, combined\",mast:JWST/product/jw1_t1_i2d.fits,SCIENCE,Minimum Recommended Products,jw1_t1_i2d.fits,100,3\r\n\
         1,JWST,jw1-obs,catalog,mast:JWST/product/jw1_t1_cat.ecsv,SCIENCE,Minimum Recommended Products,jw1_t1_cat.ecsv,50,3\r\n\
         1,JWST,jw1-obs,preview,mast:JWST/product/jw1_t1_i2d.jpg,PREVIEW,,jw1_t1_i2d.jpg,70,3\r\n\
         2,JWST,jw1-u,cal,mast:JWST/product/jw1_u_cal.fits,SCIENCE,,jw1_u_cal.fits,90,2\r\n",
        TABLE.trim_start_matches("# saved from astroquery\r\n")
    );
    let e = Env::new();
    let t = e.write("products.csv", &csv);
    let r = e.fetch(&m, &[t.to_str().unwrap(), "--extension", "FITS"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        e.dest().join("JWST/jw1-obs/jw1_t1_i2d.fits").is_file(),
        "obs_id column wins"
    );
    assert!(e.dest().join("JWST/jw1-u/jw1_u_cal.fits").is_file());
    assert_eq!(e.manifest()["requested"], 2);
    // Product filters and a size-based skip with no request at all.
    m.reset_log();
    let r = e.fetch(
        &m,
        &[t.to_str().unwrap(), "--mrp-only", "--calib-level", "3"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(man["requested"], 2, "{man}");
    assert_eq!(
        row(&man, "mast:JWST/product/jw1_t1_i2d.fits")["status"],
        "SKIPPED"
    );
    assert_eq!(
        row(&man, "mast:JWST/product/jw1_t1_cat.ecsv")["status"],
        "COMPLETE",
        "a text product may be text/plain"
    );
    assert_eq!(m.seen().len(), 1);
    // The same table as ECSV.
    let ecsv = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: dataURI, datatype: string}\n# - {name: size, datatype: int64}\n# delimiter: ','\ndataURI,size\nmast:JWST/product/jw1_t1_i2d.jpg,70\n";
    let t = e.write("products.ecsv", ecsv);
    let r = e.fetch(&m, &[t.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e.dest().join("JWST/jw1_t1/jw1_t1_i2d.jpg").is_file());
    // A table size that differs from the server's is FAILED and not saved.
    let t = e.write(
        "wrong.csv",
        "dataURI,size\nmast:JWST/product/jw1_u_cal.fits,91\n",
    );
    let r = e.fetch(&m, &[t.to_str().unwrap(), "--flat"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!e.dest().join("jw1_u_cal.fits").exists());
    // Missing dataURI: exit 2 naming the columns found.
    let t = e.write("obs.csv", "obsid,obs_id,dataURL\n1,x,http://x\n");
    let r = e.fetch(&m, &[t.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("obs.csv:1") && r.stderr.contains("dataURL"),
        "{}",
        r.stderr
    );
}

fn search_archive() -> (Mock, Arc<mock_invoke::MockInvoke>) {
    use serde_json::json;
    let obs: Vec<Value> = (0..7)
        .map(|i| json!({"obsid": format!("{}", 1000 + i), "obs_collection": "JWST", "proposal_id": "1073", "instrument_name": "NIRCAM/IMAGE", "obs_id": format!("jw01073-o{i:03}")}))
        .collect();
    let products: Vec<(String, Vec<Value>)> = (0..7)
        .map(|i| {
            let o = format!("jw01073-o{i:03}");
            (
                format!("{}", 1000 + i),
                vec![
                    json!({"obsID": format!("{}", 1000 + i), "obs_collection": "JWST", "obs_id": o, "dataURI": format!("mast:JWST/product/{o}_i2d.fits"), "productFilename": format!("{o}_i2d.fits"), "size": 64, "productType": "SCIENCE", "calib_level": 3, "productGroupDescription": "Minimum Recommended Products"}),
                    json!({"obsID": format!("{}", 1000 + i), "obs_collection": "JWST", "obs_id": o, "dataURI": format!("mast:JWST/product/{o}_i2d.jpg"), "productFilename": format!("{o}_i2d.jpg"), "size": 32, "productType": "PREVIEW", "calib_level": 3}),
                    // Shared by every observation: listed once.
                    json!({"obsID": format!("{}", 1000 + i), "obs_collection": "JWST", "obs_id": "jw01073-shared", "dataURI": "mast:JWST/product/jw01073-shared_asn.json", "productFilename": "jw01073-shared_asn.json", "size": 16, "productType": "AUXILIARY", "calib_level": 3}),
                ],
            )
        })
        .collect();
    let inv = Arc::new(
        mock_invoke::MockInvoke::new(obs, products)
            .page_size(3)
            .executing(1)
            .fail_products(1),
    );
    let m = Mock::start_with(Some(inv.clone()));
    for i in 0..7 {
        let o = format!("jw01073-o{i:03}");
        m.add(
            &format!("mast:JWST/product/{o}_i2d.fits"),
            Product::new(bytes(i, 64)),
        );
        m.add(
            &format!("mast:JWST/product/{o}_i2d.jpg"),
            Product::new(bytes(i, 32)),
        );
    }
    m.add(
        "mast:JWST/product/jw01073-shared_asn.json",
        Product {
            content_type: Some("text/plain"),
            ..Product::new(bytes(9, 16))
        },
    );
    (m, inv)
}

#[test]
fn query_prints_uris_writes_tables_and_fetch_query_downloads() {
    let (m, _inv) = search_archive();
    let e = Env::new();
    let mut c = e.cmd();
    c.args([
        "query",
        "--base-url",
        &m.base,
        "--collection",
        "JWST",
        "--proposal",
        "1073",
        "--extension",
        "fits",
    ]);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let uris: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(uris.len(), 7, "{}", r.stdout);
    assert!(uris.iter().all(|u| u.ends_with("_i2d.fits")));
    let mut c = e.cmd();
    c.args([
        "query",
        "--base-url",
        &m.base,
        "--collection",
        "JWST",
        "--table",
        "t.csv",
    ]);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let table = std::fs::read_to_string(e.path().join("t.csv")).unwrap();
    assert_eq!(
        table.lines().count(),
        1 + 7 * 2 + 1,
        "deduplicated by productFilename: {table}"
    );
    // The table feeds fetch; fetch --query does it in one go, with the same result.
    let r = e.fetch(&m, &["t.csv", "--mrp-only"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let from_table = e.manifest();
    std::fs::remove_dir_all(e.dest()).unwrap();
    let r = e.fetch(
        &m,
        &[
            "--query",
            "--collection",
            "JWST",
            "--proposal",
            "1073",
            "--mrp-only",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let from_query = e.manifest();
    assert_eq!(from_query["complete"], 7);
    let paths = |v: &Value| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&from_table), paths(&from_query));
    assert!(e
        .dest()
        .join("JWST/jw01073-o003/jw01073-o003_i2d.fits")
        .is_file());
    // Criteria without --query, or --query without criteria, are usage errors.
    assert_eq!(e.fetch(&m, &["--collection", "JWST"]).code, 2);
    assert_eq!(e.fetch(&m, &["--query"]).code, 2);
}

// ---- issue 6: shards, merged reports, machine-readable logs ------------------

#[test]
fn three_shards_share_one_dest_and_report_merges_them() {
    let m = Mock::start();
    let uris: Vec<String> = (0..30)
        .map(|i| format!("mast:HST/product/o{i:03}_x{i}_raw.fits"))
        .collect();
    for (i, u) in uris.iter().enumerate() {
        m.add(u, Product::new(bytes(i as u64, 100 + i)));
    }
    let e = Env::new();
    let list = e.write("uris.txt", &uris.join("\n"));
    let children: Vec<_> = (0..3)
        .map(|k| {
            let mut c = e.cmd();
            c.args([
                "fetch",
                "--base-url",
                &m.base,
                "--shard",
                &format!("{k}/3"),
                "-d",
            ])
            .arg(e.dest())
            .arg(&list)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let r = Run::from(c.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let mut all = Vec::new();
    for k in 0..3 {
        let text =
            std::fs::read_to_string(e.dest().join(format!("MANIFEST.{k}-of-3.json"))).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        for f in v["files"].as_array().unwrap() {
            all.push(f["uri"].as_str().unwrap().to_string());
        }
    }
    all.sort();
    let mut want = uris.clone();
    want.sort();
    assert_eq!(all, want, "shards are disjoint and cover the input");
    assert_eq!(
        m.body_bytes(),
        (0..30).map(|i| 100 + i as u64).sum::<u64>(),
        "no file fetched twice"
    );
    let r = Run::from(e.cmd().arg("report").arg(e.dest()).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(man["requested"], 30);
    assert_eq!(man["complete"], 30);
    assert!(e.html().contains("<svg"), "timeline");
    // A shard still running makes report fail, naming it.
    let slow = Mock::start();
    slow.add(
        &uris[0],
        Product {
            stall_first: 1,
            ..Product::new(bytes(0, 100))
        },
    );
    let k = (0..3)
        .find(|k| {
            let mut c = e.cmd();
            c.args(["plan", "--base-url", &m.base, "--shard", &format!("{k}/3")])
                .arg(&list);
            Run::from(c.output().unwrap()).stdout.contains(&uris[0])
        })
        .unwrap();
    let mut c = e.cmd();
    c.args([
        "fetch",
        "--base-url",
        &slow.base,
        "--force",
        "--timeout",
        "30",
        "--shard",
        &format!("{k}/3"),
        "-d",
    ])
    .arg(e.dest())
    .arg(&list)
    .stderr(Stdio::null());
    let mut running = c.spawn().unwrap();
    wait_for(|| !slow.seen_for(&uris[0]).is_empty());
    let r = Run::from(e.cmd().arg("report").arg(e.dest()).output().unwrap());
    running.kill().unwrap();
    let _ = running.wait();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "still running (their manifests are not final): {k}/3"
        )),
        "{}",
        r.stderr
    );
    // A missing shard makes report fail, naming it.
    std::fs::remove_file(e.dest().join("MANIFEST.1-of-3.json")).unwrap();
    let r = Run::from(e.cmd().arg("report").arg(e.dest()).output().unwrap());
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("1/3"), "{}", r.stderr);
    // --shard auto from a Slurm array's environment.
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base, "--shard", "auto"])
        .arg(&list)
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3");
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base, "--shard", "1/3"])
        .arg(&list);
    assert_eq!(Run::from(c.output().unwrap()).stdout, r.stdout);
}

#[test]
fn json_log_lines_parse_and_carry_the_documented_fields() {
    let m = archive_with(&[
        (
            A,
            Product {
                fail_first: vec![503],
                ..Product::new(bytes(1, 100))
            },
        ),
        (B, Product::new(bytes(2, 100))),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--log-format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let events: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "plan");
    assert_eq!(*kinds.last().unwrap(), "summary");
    assert!(kinds.contains(&"retry") && kinds.contains(&"start"));
    for v in &events {
        assert!(v["ts"].is_string());
        match v["event"].as_str().unwrap() {
            "plan" => assert_eq!(v["files"], 2),
            "retry" => assert!(
                v["reason"].as_str().unwrap().contains("503")
                    && v["attempt"].is_u64()
                    && v["delay_ms"].is_u64()
            ),
            "finish" => {
                for k in [
                    "uri",
                    "path",
                    "status",
                    "bytes",
                    "attempts",
                    "source",
                    "duration_ms",
                ] {
                    assert!(!v[k].is_null(), "{k} in {v}");
                }
            }
            "summary" => {
                assert_eq!(v["complete"], 2);
                assert_eq!(v["bytes"], 200);
            }
            _ => {}
        }
    }
    // Skipped files have no transfer id; a run-ending error is an event too.
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--log-format", "json"]);
    let finish: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "finish")
        .collect();
    assert!(
        finish
            .iter()
            .all(|v| v["id"].is_null() && v["status"] == "SKIPPED"),
        "{finish:?}"
    );
    let bad = e.write("bad.txt", "nope\n");
    let r = e.fetch(&m, &[bad.to_str().unwrap(), "--log-format", "json"]);
    assert_eq!(r.code, 2);
    let lines: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert_eq!(lines[0]["event"], "error");
    assert_eq!(lines[0]["exit"], 2);
    assert!(lines[0]["message"].as_str().unwrap().contains("bad.txt:1"));
}

// ---- issue 8: --update ---------------------------------------------------------

#[test]
fn update_replaces_a_same_size_reprocessed_file_and_keeps_unchanged_ones() {
    let v1 = bytes(1, 2880 * 3);
    let v2 = bytes(2, 2880 * 3);
    let etagged = |body: &Vec<u8>, etag: &str| Product {
        etag: Some(format!("\"{etag}\"")),
        last_modified: Some("Tue, 01 Sep 2026 10:00:00 GMT".into()),
        ..Product::new(body.clone())
    };
    let m = archive_with(&[
        (A, etagged(&v1, "v1")),
        (B, etagged(&bytes(3, 100), "b1")),
        (IUE, Product::new(bytes(4, 10))),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n{IUE}\n"));
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap()]).code, 0);
    let a_path = e.dest().join(
        "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
    );
    assert_eq!(std::fs::read(&a_path).unwrap(), v1);
    // Without --update a re-run asks nothing.
    m.reset_log();
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap()]).code, 0);
    assert!(m.seen().is_empty());
    // MAST reprocesses A under the same name and size.
    m.add(A, etagged(&v2, "v2"));
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--update"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(&a_path).unwrap(), v2);
    let man = e.manifest();
    assert_eq!(row(&man, A)["status"], "COMPLETE");
    assert!(
        row(&man, A)["message"]
            .as_str()
            .unwrap()
            .contains("updated"),
        "{man}"
    );
    assert_eq!(row(&man, B)["status"], "SKIPPED");
    assert_eq!(row(&man, IUE)["status"], "SKIPPED");
    assert_eq!(
        m.body_bytes(),
        v2.len() as u64,
        "only the changed file's body was sent"
    );
    assert!(m.seen_for(B).iter().all(|s| s.method == "HEAD"));
    // A replacement that fails leaves the old file byte for byte.
    m.add(
        A,
        Product {
            get_fail_first: vec![404],
            ..etagged(&v1, "v3")
        },
    );
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--update"]);
    assert_eq!(r.code, 1, "{}\n{:?}", r.stderr, m.seen_for(A));
    assert_eq!(std::fs::read(&a_path).unwrap(), v2);
    assert_eq!(row(&e.manifest(), A)["status"], "FAILED");
    // Once it succeeds, the next --update sees nothing new.
    m.add(A, etagged(&v1, "v3"));
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap(), "--update"]).code, 0);
    assert_eq!(std::fs::read(&a_path).unwrap(), v1);
    m.reset_log();
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap(), "--update"]).code, 0);
    assert_eq!(m.body_bytes(), 0);
    assert_eq!(e.manifest()["skipped"], 3);
}

#[test]
fn tls_with_cacert_and_an_https_to_http_redirect_drops_the_token() {
    let m = archive_with(&[
        (
            A,
            Product {
                need_token: true,
                ..Product::new(bytes(1, 1000))
            },
        ),
        (
            B,
            Product {
                redirect: Some(Redirect::Other),
                ..Product::new(bytes(2, 100))
            },
        ),
    ]);
    let e = Env::new();
    let ca = e.write("ca.pem", &m.cert_pem);
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let run = |extra: &[&str]| {
        let mut c = e.cmd();
        c.args(["fetch", "--base-url", &m.tls_base, "--token", TOKEN, "-d"])
            .arg(e.dest())
            .arg(&list)
            .args(extra);
        Run::from(c.output().unwrap())
    };
    // An unknown CA is fatal: no retries.
    let r = run(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(row(&e.manifest(), A)["attempts"], 1, "{}", e.manifest());
    assert!(
        row(&e.manifest(), A)["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{}",
        e.manifest()
    );
    // With --cacert it works; the https -> http hop (same host!) gets no token.
    m.reset_log();
    let r = run(&["--cacert", ca.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        m.seen_for(A)[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
    let hops = m.seen_for(B);
    assert_eq!(hops.len(), 2, "{hops:?}");
    assert!(hops[0].authorization.is_some());
    assert!(
        hops[1].authorization.is_none(),
        "token sent over plain http: {hops:?}"
    );
    assert!(row(&e.manifest(), B)["message"]
        .as_str()
        .unwrap()
        .contains("withheld"));
    // A file that is not PEM is a usage error.
    let r = run(&["--cacert", list.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn an_http2_archive_gets_two_connections_and_j1_one() {
    // Issue 14: over HTTP/2, requests share connections; mastdl opens a
    // second one (a connection's rate is often capped) and never more.
    let m = Mock::start();
    let mut list = String::new();
    let mut files = Vec::new();
    for i in 0..60u64 {
        let uri = format!("mast:HST/product/h2_{i:03}_raw.fits");
        let body = bytes(100 + i, 2000 + i as usize * 13);
        m.add(&uri, Product::new(body.clone()));
        list.push_str(&uri);
        list.push('\n');
        files.push((uri, body));
    }
    for (jobs, want) in [(None, 2), (Some("1"), 1)] {
        let e = Env::new();
        let ca = e.write("ca.pem", &m.cert_pem);
        let list = e.write("uris.txt", &list);
        m.state.lock().unwrap().tls_connections.clear();
        let mut c = e.cmd();
        c.args(["fetch", "--base-url", &m.tls_base, "--cacert"])
            .arg(&ca)
            .arg("-d")
            .arg(e.dest())
            .arg("--flat")
            .arg(&list);
        if let Some(j) = jobs {
            c.args(["-j", j]);
        }
        let r = Run::from(c.output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        for (uri, body) in &files {
            let name = uri.rsplit('/').next().unwrap();
            assert_eq!(&std::fs::read(e.dest().join(name)).unwrap(), body, "{uri}");
        }
        let conns = m.state.lock().unwrap().tls_connections.clone();
        assert_eq!(conns, vec!["h2".to_string(); want], "-j {jobs:?}");
    }
}

#[test]
fn https_proxy_variable_is_honoured() {
    // A proxy that is not there: the transfer must fail trying to reach it,
    // proving the variable is read (NO_PROXY empties the default exclusions).
    let m = archive_with(&[(A, Product::new(bytes(1, 10)))]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut c = e.cmd();
    c.args([
        "fetch",
        "--base-url",
        &m.base.replace("127.0.0.1", "localhost"),
        "--retries",
        "0",
        "-d",
    ])
    .arg(e.dest())
    .arg(&list)
    .env("HTTP_PROXY", format!("http://127.0.0.1:{port}"))
    .env("NO_PROXY", "");
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(m.seen().is_empty(), "the request bypassed the proxy");
}

// ---- issue 8: the AWS Open Data bucket ---------------------------------------

const JW: &str = "mast:JWST/product/jw02736-o001_t001_nircam_clear-f090w_i2d.fits";
const HST_NULL: &str = "mast:HST/product/ib1f01020_raw.fits";
const HST_GONE: &str = "mast:HST/product/ib1f01030_flt.fits";
const TESS_BIG: &str = "mast:TESS/product/tess2019_s0001-0000000001-s_lc.fits";
const JW_BAD: &str = "mast:JWST/product/jw02736-o002_t001_nircam_clear-f090w_cal.fits";

/// URIs and the bytes of their products.
type Files = Vec<(&'static str, Vec<u8>)>;

/// A bucket with some of the products, and an archive with all of them.
fn cloud_archive() -> (Mock, Arc<mock_s3::MockS3>, Files) {
    let s3 = Arc::new(mock_s3::MockS3::new());
    let big = (16 << 20) + 3 * (1 << 20) + 7;
    let files: Files = vec![
        (JW, bytes(11, 70_000)),
        (HST_NULL, bytes(12, 5_000)),
        (HST_GONE, bytes(13, 6_000)),
        (IUE, bytes(14, 700)),
        (TESS_BIG, bytes(15, big)),
        (JW_BAD, bytes(16, 30_000)),
    ];
    let m = Mock::start_full(None, Some(s3.clone()));
    for (u, b) in &files {
        m.add(u, Product::new(b.clone()));
    }
    let key = |u: &str| format!("stpubdata/{}", u.trim_start_matches("mast:").to_lowercase());
    s3.add(&key(JW), files[0].1.clone());
    s3.add(&key(TESS_BIG), files[4].1.clone());
    s3.add(&key(JW_BAD), files[5].1.clone());
    s3.corrupt_first_for(&key(JW_BAD), 1);
    s3.slow_down_first_for(&key(JW), 1);
    for u in [JW, TESS_BIG, JW_BAD, HST_GONE] {
        m.cloud_path(
            u,
            Some(&format!(
                "/{}",
                u.trim_start_matches("mast:").to_lowercase()
            )),
        );
    }
    m.cloud_path(HST_NULL, None);
    (m, s3, files)
}

fn file_of(e: &Env, m: &Value, uri: &str) -> Vec<u8> {
    std::fs::read(e.dest().join(row(m, uri)["path"].as_str().unwrap())).unwrap()
}

#[test]
fn cloud_fetches_from_the_bucket_verifies_md5_and_falls_back_to_the_archive() {
    let (m, s3, files) = cloud_archive();
    let e = Env::new();
    let list = e.write(
        "uris.txt",
        &files.iter().map(|(u, _)| *u).collect::<Vec<_>>().join("\n"),
    );
    let r = e.fetch(
        &m,
        &[
            list.to_str().unwrap(),
            "--cloud",
            "--s3-url",
            &m.s3_url,
            "--token",
            TOKEN,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    for (u, b) in &files {
        assert_eq!(&file_of(&e, &man, u), b, "{u}");
    }
    for u in [JW, TESS_BIG, JW_BAD] {
        assert_eq!(row(&man, u)["source"], "cloud", "{u}");
        assert!(
            row(&man, u)["url"].as_str().unwrap().starts_with(&m.s3_url),
            "{u}"
        );
    }
    for u in [HST_NULL, HST_GONE, IUE] {
        assert_eq!(row(&man, u)["source"], "mast", "{u}");
        assert!(
            row(&man, u)["url"].as_str().unwrap().starts_with(&m.base),
            "{u}"
        );
    }
    // The flipped byte was caught and the object fetched again; the 503 SlowDown was retried.
    assert_eq!(row(&man, JW_BAD)["attempts"], 2, "{man}");
    assert!(r.stderr.contains("MD5 mismatch"), "{}", r.stderr);
    assert_eq!(row(&man, JW)["attempts"], 2);
    // The big object arrived in several ranges, within the connection bound.
    let ranged: Vec<_> = s3
        .requests_for("stpubdata/tess/product/tess2019_s0001-0000000001-s_lc.fits")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(
        ranged.len() >= 3 && ranged.iter().all(|r| r.range.is_some()),
        "{ranged:?}"
    );
    assert!(s3.max_in_flight() <= 16);
    // Nothing that looks like a credential reached the bucket; the archive got the token.
    assert!(
        s3.credentials_seen().is_empty(),
        "{:?}",
        s3.credentials_seen()
    );
    assert!(m
        .seen_for(HST_NULL)
        .iter()
        .all(|s| s.authorization.as_deref() == Some(&*format!("token {TOKEN}"))));
    assert!(m.state.lock().unwrap().lookups.iter().all(|n| *n <= 50));
    // plan --cloud shows the bucket URL for what the bucket has.
    let mut c = e.cmd();
    c.args([
        "plan",
        "--cloud",
        "--base-url",
        &m.base,
        "--s3-url",
        &m.s3_url,
    ])
    .arg(&list);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let jw = r.stdout.lines().find(|l| l.starts_with(JW)).unwrap();
    assert!(
        jw.contains(&format!("\t{}/jwst/product/", m.s3_url)),
        "{jw}"
    );
}

#[test]
fn cloud_only_never_touches_the_archive_download_endpoint() {
    let (m, s3, _files) = cloud_archive();
    let e = Env::new();
    let list = e.write("uris.txt", &[JW, HST_NULL, HST_GONE, IUE].join("\n"));
    let r = e.fetch(
        &m,
        &[
            list.to_str().unwrap(),
            "--cloud-only",
            "--s3-url",
            &m.s3_url,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(row(&man, JW)["status"], "COMPLETE");
    for u in [HST_NULL, HST_GONE, IUE] {
        assert_eq!(row(&man, u)["status"], "SKIPPED", "{u}");
        assert!(
            row(&man, u)["message"]
                .as_str()
                .unwrap()
                .contains("not in cloud"),
            "{u}"
        );
    }
    assert!(
        m.seen()
            .iter()
            .all(|s| !s.path_and_query.contains("Download/file")),
        "{:?}",
        m.seen()
    );
    assert!(s3.credentials_seen().is_empty());
}

#[test]
fn a_lasting_md5_mismatch_fails_and_leaves_nothing_at_the_path() {
    let (m, s3, _files) = cloud_archive();
    s3.corrupt_first_for(
        "stpubdata/jwst/product/jw02736-o002_t001_nircam_clear-f090w_cal.fits",
        100,
    );
    let e = Env::new();
    let list = e.write("uris.txt", JW_BAD);
    let r = e.fetch(
        &m,
        &[
            list.to_str().unwrap(),
            "--cloud",
            "--s3-url",
            &m.s3_url,
            "--retries",
            "2",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let man = e.manifest();
    let msg = row(&man, JW_BAD)["message"].as_str().unwrap();
    assert!(
        msg.contains("MD5 mismatch") && msg.contains("ETag"),
        "{msg}"
    );
    assert!(walk(&e.dest())
        .iter()
        .all(|p| !p.to_string_lossy().ends_with("_cal.fits")));
}

#[cfg(unix)]
#[test]
fn sigterm_exits_143_with_the_manifest_written() {
    let m = archive_with(&[(
        A,
        Product {
            stall_first: 1,
            ..Product::new(bytes(3, 100_000))
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--timeout", "30", "-d"])
        .arg(e.dest())
        .arg(&list)
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // The signal goes out once the mock has sent the first bytes.
    wait_for(|| m.body_bytes() > 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 143, "{}", r.stderr);
    assert!(row(&e.manifest(), A)["message"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert!(
        r.stderr.contains("(interrupted: 1 cut short"),
        "{}",
        r.stderr
    );
}
