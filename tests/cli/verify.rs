//! Issue 23 §3: `mastdl verify DEST`, a read-only check of a mirror: every
//! recorded file present, of its size and MD5 (hashed as it streamed in);
//! `--extra`, `--remote`; one line per problem, a summary, the repair
//! command (run here as printed); exit 0 clean, 1 not.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::SystemTime;

use md5::{Digest, Md5};

use super::*;

/// Every path below `root` with its size and modification time, to prove
/// a run wrote nothing.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                todo.push(e.path());
            }
            out.insert(e.path(), (m.len(), m.modified().unwrap()));
        }
    }
    out
}

impl Env {
    /// Runs `mastdl verify DEST ARGS…` with `--base-url BASE`.
    fn verify(&self, m: &Mock, args: &[&str]) -> Run {
        let mut c = self.cmd();
        c.arg("verify")
            .arg(self.dest())
            .args(["--base-url", &m.base])
            .args(args);
        Run::from(c.output().unwrap())
    }
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|b| format!("{b:02x}")).collect()
}

const A_PATH: &str =
    "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits";
const B_PATH: &str = "HST/ib1f01020/ib1f01020_raw.fits";
const IUE_PATH: &str = "IUE/lwp13058/lwp13058.mxlo.gz";

fn three() -> Mock {
    archive_with(&[
        (
            A,
            Product {
                etag: Some("\"a1\"".into()),
                ..Product::new(bytes(1, 300_000))
            },
        ),
        (B, Product::new(bytes(2, 1000))),
        (IUE, Product::new(bytes(3, 77))),
    ])
}

#[test]
fn verify_finds_a_corrupted_and_a_missing_file_and_the_printed_command_repairs_them() {
    let m = three();
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n{IUE}\n"));
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap()]).code, 0);
    let r = e.verify(&m, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("verify: 3 files recorded"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("3 ok"), "{}", r.stderr);
    assert!(!r.stderr.contains("repair:"), "{}", r.stderr);
    // Rot: one byte flipped (same size), one file gone.
    let a = e.dest().join(A_PATH);
    let mut body = std::fs::read(&a).unwrap();
    body[150_000] ^= 0xff;
    std::fs::write(&a, &body).unwrap();
    std::fs::remove_file(e.dest().join(B_PATH)).unwrap();
    let before = snapshot(&e.dest());
    m.reset_log();
    let r = e.verify(&m, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = |word: &str, path: &str| {
        r.stderr
            .lines()
            .any(|l| l.starts_with(word) && l.contains(path))
    };
    assert!(line("CORRUPT", A_PATH), "{}", r.stderr);
    assert!(line("MISSING", B_PATH), "{}", r.stderr);
    assert!(!r.stderr.contains(IUE_PATH), "{}", r.stderr);
    assert!(
        r.stderr.contains("1 ok, 1 missing, 1 corrupt"),
        "{}",
        r.stderr
    );
    assert!(m.seen().is_empty(), "no request without --remote");
    assert_eq!(snapshot(&e.dest()), before, "verify writes nothing in DEST");
    // The repair command, run as printed (mastdl on PATH).
    let cmd = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("repair: "))
        .unwrap_or_else(|| panic!("no repair command: {}", r.stderr))
        .to_string();
    assert!(cmd.contains("| mastdl fetch --force --dest="), "{cmd}");
    let bin = Path::new(env!("CARGO_BIN_EXE_mastdl")).parent().unwrap();
    let mut sh = Command::new("sh");
    sh.args(["-c", &cmd])
        .current_dir(e.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env_remove("MAST_API_TOKEN")
        .env_remove("MASTDL_BASE_URL")
        .env("MASTDL_RETRY_BASE_MS", "0")
        .stdin(Stdio::null());
    let fixed = Run::from(sh.output().unwrap());
    assert_eq!(fixed.code, 0, "{cmd}\n{}", fixed.stderr);
    assert_eq!(m.seen_for(A).len(), 1, "{:?}", m.seen());
    assert_eq!(m.seen_for(B).len(), 1);
    assert!(
        m.seen_for(IUE).is_empty(),
        "only the broken files are fetched"
    );
    let r = e.verify(&m, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn parallel_ranges_are_hashed_at_commit_and_checked() {
    let body = bytes(9, 17 << 20);
    let m = archive_with(&[(
        A,
        Product {
            etag: Some("\"big\"".into()),
            ..Product::new(body.clone())
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap(), "-j", "4"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        m.seen_for(A).iter().any(|s| s.range.is_some()),
        "fetched as ranges"
    );
    let state = std::fs::read_to_string(e.dest().join(".mastdl/state.jsonl")).unwrap();
    assert!(state.contains(&md5_hex(&body)), "{state}");
    assert_eq!(e.verify(&m, &[]).code, 0);
    let a = e.dest().join(A_PATH);
    let mut changed = body;
    changed[9 << 20] ^= 1;
    std::fs::write(&a, &changed).unwrap();
    let r = e.verify(&m, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("CORRUPT"), "{}", r.stderr);
}

#[test]
fn extra_files_and_json_events() {
    let m = three();
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n{IUE}\n"));
    // One row a page: MANIFEST.HTML's pages are in a folder beside it,
    // mastdl's own, never extra.
    assert_eq!(e.fetch_paged(&m.base, &list, 1).code, 0);
    assert_eq!(e.page_folders(), 1, "a pages folder");
    std::fs::write(e.dest().join("HST/ib1f01020/stray.fits"), b"x").unwrap();
    std::fs::write(e.dest().join("HST/ib1f01020/left.fits.part"), b"x").unwrap();
    assert_eq!(e.verify(&m, &[]).code, 0, "extra files only with --extra");
    let r = e.verify(&m, &["--extra"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("EXTRA") && l.contains("HST/ib1f01020/stray.fits")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("left.fits.part"), "{}", r.stderr);
    assert!(!r.stderr.contains("MANIFEST"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("repair:"),
        "an extra file is not fetched back"
    );
    std::fs::remove_file(e.dest().join(IUE_PATH)).unwrap();
    let r = e.verify(&m, &["--extra", "--log-format", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let events: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let problems: Vec<(&str, &str)> = events
        .iter()
        .filter(|v| v["event"] == "problem")
        .map(|v| (v["problem"].as_str().unwrap(), v["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        problems,
        [("extra", "HST/ib1f01020/stray.fits"), ("missing", IUE_PATH)]
    );
    let summary = events.iter().find(|v| v["event"] == "summary").unwrap();
    assert_eq!(summary["clean"], false);
    assert_eq!(summary["missing"], 1);
    assert_eq!(summary["extra"], 1);
    assert_eq!(summary["ok"], 2);
    assert!(summary["repair"]
        .as_str()
        .unwrap()
        .contains("mastdl fetch --force"));
}

#[test]
fn remote_reports_a_reprocessed_source_with_heads_only() {
    let m = three();
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n{IUE}\n"));
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap()]).code, 0);
    m.reset_log();
    assert_eq!(e.verify(&m, &["--remote"]).code, 0);
    assert_eq!(m.seen().len(), 3);
    // Reprocessed under the same name and size.
    m.add(
        A,
        Product {
            etag: Some("\"a2\"".into()),
            ..Product::new(bytes(11, 300_000))
        },
    );
    m.reset_log();
    let r = e.verify(&m, &["--remote", "-j", "2"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("CHANGED") && l.contains(A_PATH) && l.contains("\"a2\"")),
        "{}",
        r.stderr
    );
    assert!(
        m.seen().iter().all(|s| s.method == "HEAD"),
        "{:?}",
        m.seen()
    );
    assert_eq!(m.body_bytes(), 0);
    assert!(
        r.stderr.contains("--remote"),
        "the repair re-checks remotely"
    );
}

#[test]
fn a_folder_without_records_is_a_usage_error() {
    let m = three();
    let e = Env::new();
    std::fs::create_dir_all(e.dest()).unwrap();
    let r = e.verify(&m, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to verify"), "{}", r.stderr);
    assert!(!e.dest().join(".mastdl").exists(), "nothing created");
}

impl Env {
    /// Adds a record to DEST's state, made from the first one with `path`,
    /// `uri` and `size` changed (a hostile or damaged record).
    fn add_record(&self, path: &str, uri: &str, size: u64) {
        let state = self.dest().join(".mastdl/state.jsonl");
        let text = std::fs::read_to_string(&state).unwrap();
        let mut v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        v["path"] = path.into();
        v["uri"] = uri.into();
        v["size"] = size.into();
        v.as_object_mut().unwrap().remove("md5");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&state)
            .unwrap();
        writeln!(f, "{v}").unwrap();
    }

    /// Runs `mastdl verify DEST --print-repair ARGS…`, then `mastdl fetch
    /// --force --dest=DEST -` on what it printed: the repair pipeline.
    fn repair_pipeline(&self, m: &Mock, args: &[&str]) -> (Run, Output) {
        let mut c = self.cmd();
        c.arg("verify")
            .args(["--base-url", &m.base, "--print-repair"])
            .args(args)
            .arg("--")
            .arg(self.dest());
        let out = c.output().unwrap();
        let script = out.stdout.clone();
        let verify = Run::from(out);
        let mut f = self.cmd();
        f.arg("fetch")
            .args(["--base-url", &m.base, "--force"])
            .arg(format!("--dest={}", self.dest().display()))
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = f.spawn().unwrap();
        child.stdin.take().unwrap().write_all(&script).unwrap();
        (verify, child.wait_with_output().unwrap())
    }
}

fn fetched_three() -> (Mock, Env) {
    let m = three();
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n{IUE}\n"));
    assert_eq!(e.fetch(&m, &[list.to_str().unwrap()]).code, 0);
    (m, e)
}

#[test]
fn a_closed_stdout_still_reports_the_problems_and_exits_1() {
    let (m, e) = fetched_three();
    std::fs::remove_file(e.dest().join(B_PATH)).unwrap();
    let mut c = e.cmd();
    c.arg("verify")
        .arg(e.dest())
        .args(["--base-url", &m.base, "--print-repair"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // The reader is gone before anything is written (`| head -c 0`).
    drop(child.stdout.take());
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("MISSING") && l.contains(B_PATH)),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("1 missing"), "{}", r.stderr);
    // The same in JSON: every stderr line an event, the summary there.
    let mut c = e.cmd();
    c.arg("verify")
        .arg(e.dest())
        .args([
            "--base-url",
            &m.base,
            "--print-repair",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take());
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    let events: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|v| v["event"] == "summary" && v["missing"] == 1),
        "{}",
        r.stderr
    );
}

#[test]
fn unusable_record_paths_are_reported_and_left_out_of_the_repair_script() {
    let (m, e) = fetched_three();
    std::fs::remove_file(e.dest().join(B_PATH)).unwrap();
    e.add_record("../evil.fits", "mast:HST/product/evil.fits", 5);
    e.add_record(
        "HST/x/\u{1b}[31mred\u{7}\nbell.fits",
        "mast:HST/product/red.fits",
        5,
    );
    m.reset_log();
    let (v, fetch) = e.repair_pipeline(&m, &[]);
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(
        !v.stderr.contains('\u{1b}') && !v.stderr.contains('\u{7}'),
        "{:?}",
        v.stderr
    );
    let unusable = v
        .stderr
        .lines()
        .filter(|l| l.starts_with("UNREADABLE") && l.contains("unusable"))
        .count();
    assert_eq!(unusable, 2, "{}", v.stderr);
    assert!(
        v.stdout.contains(B_PATH) && !v.stdout.contains("evil") && !v.stdout.contains("red"),
        "{}",
        v.stdout
    );
    assert!(
        !v.stdout.bytes().any(|b| b.is_ascii_control() && b != b'\n'),
        "{:?}",
        v.stdout
    );
    let fetch = Run::from(fetch);
    assert_eq!(fetch.code, 0, "{}", fetch.stderr);
    assert_eq!(m.seen_for(B).len(), 1, "{:?}", m.seen());
    assert!(e.dest().join(B_PATH).is_file());
}

#[test]
fn the_repair_pipeline_on_a_clean_mirror_has_nothing_to_do() {
    let (m, e) = fetched_three();
    m.reset_log();
    let (v, fetch) = e.repair_pipeline(&m, &[]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let fetch = Run::from(fetch);
    assert_eq!(fetch.code, 0, "{}\n{}", v.stdout, fetch.stderr);
    assert!(m.seen().is_empty(), "{:?}", m.seen());
    // Only problems no fetch repairs: the same.
    std::fs::write(e.dest().join("HST/ib1f01020/stray.fits"), b"x").unwrap();
    let (v, fetch) = e.repair_pipeline(&m, &["--extra"]);
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(!v.stderr.contains("repair:"), "{}", v.stderr);
    let fetch = Run::from(fetch);
    assert_eq!(fetch.code, 0, "{}\n{}", v.stdout, fetch.stderr);
    assert!(m.seen().is_empty(), "{:?}", m.seen());
}

#[test]
fn a_symlinked_product_folder_is_never_followed() {
    let (m, e) = fetched_three();
    let outside = e.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::rename(e.dest().join("HST"), outside.join("HST")).unwrap();
    std::os::unix::fs::symlink(outside.join("HST"), e.dest().join("HST")).unwrap();
    let r = e.verify(&m, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("UNREADABLE") && l.contains(B_PATH) && l.contains("`HST`")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("2 ok"), "{}", r.stderr);
    assert!(!r.stderr.contains("repair:"), "fetch refuses it too");
}

#[test]
fn a_dest_starting_with_a_dash_gets_a_repair_command_that_works() {
    let m = three();
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--dest=-data"])
        .arg(&list);
    assert_eq!(Run::from(c.output().unwrap()).code, 0);
    std::fs::remove_file(e.path().join("-data").join(B_PATH)).unwrap();
    let mut c = e.cmd();
    c.args(["verify", "--base-url", &m.base, "--", "-data"]);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    let cmd = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("repair: "))
        .unwrap_or_else(|| panic!("no repair command: {}", r.stderr))
        .to_string();
    let bin = Path::new(env!("CARGO_BIN_EXE_mastdl")).parent().unwrap();
    let mut sh = e.cmd_of("sh");
    sh.args(["-c", &cmd])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()));
    let fixed = Run::from(sh.output().unwrap());
    assert_eq!(fixed.code, 0, "{cmd}\n{}", fixed.stderr);
    assert!(e.path().join("-data").join(B_PATH).is_file(), "{cmd}");
}

#[test]
fn hostile_record_sizes_do_not_overflow() {
    let (m, e) = fetched_three();
    e.add_record("HST/x/huge1.fits", "mast:HST/product/huge1.fits", u64::MAX);
    e.add_record("HST/x/huge2.fits", "mast:HST/product/huge2.fits", u64::MAX);
    let r = e.verify(&m, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("2 missing"), "{}", r.stderr);
}
