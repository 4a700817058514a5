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
    for mode in ["text", "json", "bars"] {
        let m = Mock::start();
        let e = Env::new();
        let s = script(&e, &m, 40);
        let mut args = vec!["-j", "4", s.to_str().unwrap()];
        match mode {
            "json" => args.extend(["--log-format", "json"]),
            "bars" => args.extend(["--progress", "always"]),
            _ => {}
        }
        let r = fetch_with_stderr_gone(&e, &m, &args);
        // One file is missing from the archive: the run earned exit 1, not
        // a panic's 101 nor a broken pipe's 0.
        assert_eq!(r.code, 1, "mode: {mode}, stdout: {}", r.stdout);
        let man = e.manifest();
        assert_eq!(man["requested"], 40, "mode: {mode}");
        assert_eq!(man["complete"], 39, "mode: {mode}");
        assert_eq!(man["failed"], 1, "mode: {mode}");
        assert!(e.dest().join("MANIFEST.HTML").is_file());
        for i in 0..39 {
            let f = e.dest().join(format!("f{i:03}_raw.fits"));
            assert_eq!(std::fs::read(&f).unwrap(), bytes(i as u64, 1000), "{f:?}");
        }
    }
}

/// Issue 20 §6: under a low open-file limit the run lowers `-j` before the
/// client is built, so the per-host connection cap (which keeps the next
/// file from opening a connection while the last one's is on its way back
/// to the pool) is the lowered one too.
#[test]
fn a_low_open_file_limit_lowers_the_connection_cap_too() {
    use super::mock_latency::{Answer, Slow};
    let delay = std::time::Duration::from_millis(1);
    let s = Slow::start(move |_| (0, Answer::Serve { delay }));
    let e = Env::new();
    let mut list = String::new();
    let mut files = Vec::new();
    for i in 0..2000 {
        let uri = format!("mast:HST/product/lim{i:04}_raw.fits");
        let body = bytes(7000 + i, 500 + (i as usize * 37) % 3000);
        s.put(&uri, body.clone(), Some(&format!("\"l{i}\"")));
        list.push_str(&uri);
        list.push('\n');
        files.push((format!("lim{i:04}_raw.fits"), body));
    }
    let list = e.write("uris.txt", &list);
    // 96 descriptors kept in reserve plus 3 per transfer: room for 16.
    let out = e
        .cmd_of("sh")
        .arg("-c")
        .arg("ulimit -n 144 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mastdl"))
        .args(["fetch", "--base-url", &s.base, "-d"])
        .arg(e.dest())
        .args(["--flat", "-j", "40", list.to_str().unwrap()])
        .output()
        .unwrap();
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("running 16 transfers at once"),
        "{}",
        r.stderr
    );
    for (name, body) in &files {
        assert!(
            std::fs::read(e.dest().join(name)).unwrap() == *body,
            "{name}"
        );
    }
    let (accepted, open) = (s.accepted(), s.peak_open());
    assert!(
        accepted <= 16 && open <= 16,
        "{accepted} connections opened, {open} open at once; the run said 16"
    );
}

/// Issue 20 §6: a product table is filtered by the rules `query` uses:
/// `--product-type` trimmed, `--mrp-only` matching the group whole.
#[test]
fn a_product_table_is_filtered_as_query_filters() {
    let m = Mock::start();
    let e = Env::new();
    let table = e.write(
        "products.csv",
        "dataURI,productFilename,productType,calib_level,productGroupDescription\n\
         mast:JWST/product/jw1_a_cal.fits,jw1_a_cal.fits,SCIENCE,2,Minimum Recommended Products\n\
         mast:JWST/product/jw1_b_cal.fits,jw1_b_cal.fits,SCIENCE,2,Not Minimum Recommended Products\n\
         mast:JWST/product/jw1_c_cal.fits,jw1_c_cal.fits,AUXILIARY,2,Minimum Recommended Products\n\
         mast:JWST/product/jw1_d_i2d.fits,jw1_d_i2d.fits,SCIENCE,3,Minimum Recommended Products\n",
    );
    let out = e
        .cmd()
        .args(["plan", "--base-url", &m.base])
        .args([
            "--product-type",
            " science ",
            "--mrp-only",
            "--extension",
            "_CAL.fits",
        ])
        .arg(&table)
        .output()
        .unwrap();
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let uris: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(uris, ["mast:JWST/product/jw1_a_cal.fits"], "{}", r.stdout);
}

/// Issue 20 §6: a byte-order mark and a `MAST:` prefix in any case are read
/// the same by every input kind (one place each now).
#[test]
fn every_input_kind_takes_a_bom_and_any_case_of_mast() {
    let m = Mock::start();
    let e = Env::new();
    let uri = "MAST:HST/product/ib1f01020_raw.fits";
    let inputs = [
        ("list.txt", format!("\u{feff}{uri}\n")),
        ("t.csv", format!("\u{feff}obs_id,dataURI\nib1f01020,{uri}\n")),
        (
            "t.ecsv",
            format!(
                "\u{feff}# %ECSV 1.0\n# ---\n# datatype:\n# - {{name: dataURI, datatype: string}}\ndataURI\n{uri}\n"
            ),
        ),
        (
            "get.sh",
            format!(
                "\u{feff}#!/bin/sh\ncurl -o ib1f01020_raw.fits 'https://mast.stsci.edu/api/v0.1/Download/file?uri={uri}'\n"
            ),
        ),
    ];
    for (name, text) in inputs {
        let p = e.write(name, &text);
        let out = e
            .cmd()
            .args(["plan", "--base-url", &m.base])
            .arg(&p)
            .output()
            .unwrap();
        let r = Run::from(out);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert_eq!(r.stdout.lines().count(), 1, "{name}: {}", r.stdout);
        assert!(r.stdout.starts_with(uri), "{name}: {}", r.stdout);
    }
}

/// Issue 20 §6: a table row whose product facts are all blank lacks what
/// the product filters need, and fails them (a URI list's entries, which
/// state no facts, pass them).
#[test]
fn a_table_row_with_blank_product_facts_fails_the_product_filters() {
    let m = Mock::start();
    let e = Env::new();
    let table = e.write(
        "t.csv",
        "dataURI,productType,calib_level,productGroupDescription\n\
         mast:JWST/product/jw1_a_i2d.fits,SCIENCE,3,Minimum Recommended Products\n\
         mast:JWST/product/jw1_blank_i2d.fits,,,\n",
    );
    let list = e.write("l.txt", "mast:JWST/product/jw1_blank_i2d.fits\n");
    for filter in [
        &["--product-type", "science"][..],
        &["--mrp-only"],
        &["--calib-level", "3"],
    ] {
        let plan = |input: &std::path::Path| {
            let r = Run::from(
                e.cmd()
                    .args(["plan", "--base-url", &m.base])
                    .args(filter)
                    .arg(input)
                    .output()
                    .unwrap(),
            );
            assert_eq!(r.code, 0, "{filter:?}: {}", r.stderr);
            r.stdout
                .lines()
                .map(|l| l.split('\t').next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            plan(&table),
            ["mast:JWST/product/jw1_a_i2d.fits"],
            "{filter:?}"
        );
        assert_eq!(
            plan(&list),
            ["mast:JWST/product/jw1_blank_i2d.fits"],
            "{filter:?}: a URI list states no facts"
        );
    }
}

/// An empty file at a final path that no record and no input size
/// expects (what a power loss leaves of a file not yet written back, its
/// record lost with it) is fetched again; an empty product recorded as
/// empty is complete.
#[test]
fn an_empty_file_nothing_expects_is_fetched_again_a_recorded_empty_one_is_not() {
    const EMPTY: &str = "mast:HST/product/ib1f04020_raw.fits";
    let body = bytes(7, 5000);
    let m = super::archive_with(&[
        (super::B, Product::new(body.clone())),
        (EMPTY, Product::new(Vec::new())),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{}\n{EMPTY}\n", super::B));
    let b_path = e.dest().join("HST/ib1f01020/ib1f01020_raw.fits");
    std::fs::create_dir_all(b_path.parent().unwrap()).unwrap();
    std::fs::write(&b_path, b"").unwrap();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read(&b_path).unwrap() == body,
        "the empty file stayed"
    );
    assert_eq!(m.seen_for(super::B).len(), 1);
    let empty = e.dest().join("HST/ib1f04020/ib1f04020_raw.fits");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    // Recorded as empty: complete, no request.
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        m.seen_for(EMPTY).len(),
        1,
        "a recorded empty file is complete"
    );
    assert_eq!(m.seen_for(super::B).len(), 1);
}
