//! Robustness of the run itself: a stderr whose reader went away.

use std::process::Stdio;

use super::mock::{bytes, Mock, Product};
use super::{Env, Run};

/// A curl script of `n` archive files (the last one missing from the
/// archive) and a line mastdl does not run, so a "Not run" notice is the
/// first thing the run writes to stderr.
fn script(e: &Env, m: &Mock, n: usize) -> std::path::PathBuf {
    let mut text = String::from("#!/bin/sh\necho start\n");
    for i in 0..n {
        let uri = format!("mast:HST/product/f{i:03}_raw.fits");
        if i + 1 < n {
            m.add(&uri, Product::new(bytes(i as u64, 1000)));
        }
        text.push_str(&format!(
            "curl -f -o f{i:03}_raw.fits 'https://mast.stsci.edu/api/v0.1/Download/file?uri={uri}'\n"
        ));
    }
    e.write("get.sh", &text)
}

/// Runs `mastdl fetch` with stderr a pipe whose read end is already closed.
fn fetch_with_stderr_gone(e: &Env, m: &Mock, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = e
        .cmd()
        .arg("fetch")
        .arg("--base-url")
        .arg(&m.base)
        .arg("-d")
        .arg(e.dest())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(writer)
        .output()
        .unwrap();
    Run::from(out)
}

#[test]
fn a_closed_stderr_changes_neither_the_run_nor_its_exit_code() {
    for json in [false, true] {
        let m = Mock::start();
        let e = Env::new();
        let s = script(&e, &m, 40);
        let mut args = vec!["-j", "4", s.to_str().unwrap()];
        if json {
            args.extend(["--log-format", "json"]);
        }
        let r = fetch_with_stderr_gone(&e, &m, &args);
        // One file is missing from the archive: the run earned exit 1, not
        // a panic's 101 nor a broken pipe's 0.
        assert_eq!(r.code, 1, "json: {json}, stdout: {}", r.stdout);
        let man = e.manifest();
        assert_eq!(man["requested"], 40, "json: {json}");
        assert_eq!(man["complete"], 39, "json: {json}");
        assert_eq!(man["failed"], 1, "json: {json}");
        assert!(e.dest().join("MANIFEST.HTML").is_file());
        for i in 0..39 {
            let f = e.dest().join(format!("f{i:03}_raw.fits"));
            assert_eq!(std::fs::read(&f).unwrap(), bytes(i as u64, 1000), "{f:?}");
        }
    }
}
