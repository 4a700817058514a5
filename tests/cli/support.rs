//! What every binary-level test shares (ripgrep's `tests/util.rs`, uv's
//! `TestContext`): [`Env`], a scratch folder with the scrubbed command
//! builder; [`Run`], one run's exit code and output; [`Case`], the common
//! run (a mock archive, DEST, a URI list, `fetch`); and the URIs and
//! helpers the tests name. `main.rs` re-exports all of it, so a test file
//! reads it with `use super::*;` (or names it: `use super::{Env, Run};`).

pub use std::io::Write;
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Stdio};
pub use std::sync::Arc;

pub use serde_json::Value;

pub use crate::mock::{bytes, Mock, Product, Redirect, TOKEN};
use std::process::Output;

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A scratch folder with the command builder pointed at it.
pub struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn dest(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `mastdl` with a scrubbed environment: no token, no base URL, no retry sleeps.
    pub fn cmd(&self) -> Command {
        self.cmd_of(env!("CARGO_BIN_EXE_mastdl"))
    }

    /// `program` with the scrubbed environment of [`Env::cmd`] (a shell
    /// that sets a limit, then runs `mastdl`).
    pub fn cmd_of(&self, program: &str) -> Command {
        let mut c = Command::new(program);
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
    pub fn fetch(&self, m: &Mock, args: &[&str]) -> Run {
        let mut c = self.cmd();
        c.arg("fetch")
            .arg("--base-url")
            .arg(&m.base)
            .arg("-d")
            .arg(self.dest())
            .args(args);
        Run::from(c.output().unwrap())
    }

    pub fn manifest(&self) -> Value {
        let text = std::fs::read_to_string(self.dest().join("MANIFEST.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn html(&self) -> String {
        std::fs::read_to_string(self.dest().join("MANIFEST.HTML")).unwrap()
    }

    /// Runs `fetch LIST` into DEST with `rows` rows per HTML page.
    pub fn fetch_paged(&self, base: &str, list: &Path, rows: usize) -> Run {
        let mut c = self.cmd();
        c.args(["fetch", "--base-url", base, "-d"])
            .arg(self.dest())
            .arg(list)
            .env("MASTDL_HTML_PAGE_ROWS", rows.to_string());
        Run::from(c.output().unwrap())
    }

    /// Returns the number of pages folders (`MANIFEST.pages-*`) in DEST.
    pub fn page_folders(&self) -> usize {
        std::fs::read_dir(self.dest())
            .unwrap()
            .flatten()
            .filter(|d| {
                d.file_name()
                    .to_string_lossy()
                    .starts_with("MANIFEST.pages-")
            })
            .count()
    }
}

impl Default for Env {
    fn default() -> Env {
        Env::new()
    }
}

/// The common run (uv's `TestContext`): a mock archive holding some
/// products, a scratch folder with DEST `out`, and `uris.txt` listing
/// URIs. Derefs to its [`Env`] (`c.dest()`, `c.manifest()`, `c.cmd()`).
pub struct Case {
    pub env: Env,
    pub mock: Mock,
    /// `uris.txt`.
    pub list: PathBuf,
}

impl Case {
    /// Starts the archive with `products`; `uris.txt` lists their URIs,
    /// one a line, in order.
    pub fn new(products: &[(&str, Product)]) -> Case {
        let text: String = products.iter().map(|(u, _)| format!("{u}\n")).collect();
        Case::listing(products, &text)
    }

    /// Like [`Case::new`], with `uris.txt` holding `text`.
    pub fn listing(products: &[(&str, Product)], text: &str) -> Case {
        Case::on(archive_with(products), text)
    }

    /// A case against an archive already started (a bucket behind it, a
    /// search endpoint…), with `uris.txt` holding `text`.
    pub fn on(mock: Mock, text: &str) -> Case {
        let env = Env::new();
        let list = env.write("uris.txt", text);
        Case { env, mock, list }
    }

    /// Runs `mastdl fetch --base-url BASE -d out uris.txt ARGS…` with the
    /// scrubbed environment.
    pub fn fetch(&self, args: &[&str]) -> Run {
        let mut all = vec![self.list.to_str().unwrap()];
        all.extend_from_slice(args);
        self.env.fetch(&self.mock, &all)
    }

    /// [`Case::fetch`], which must exit 0 (the manifest is then at
    /// [`Env::manifest`]).
    pub fn fetch_ok(&self, args: &[&str]) -> Run {
        let r = self.fetch(args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r
    }
}

impl std::ops::Deref for Case {
    type Target = Env;

    fn deref(&self) -> &Env {
        &self.env
    }
}

pub fn row<'a>(m: &'a Value, uri: &str) -> &'a Value {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["uri"] == uri)
        .unwrap_or_else(|| panic!("no row for {uri}: {m}"))
}

pub const A: &str = "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_i2d.fits";
pub const B: &str = "mast:HST/product/ib1f01020_raw.fits";
pub const IUE: &str = "mast:IUE/url/pub/iue/data/lwp/13000/lwp13058.mxlo.gz";

pub fn archive_with(products: &[(&str, Product)]) -> Mock {
    let m = Mock::start();
    for (u, p) in products {
        m.add(u, p.clone());
    }
    m
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
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

pub fn wait_for(cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "timed out waiting"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}
