//! Issue 23 §2: MAST's change feed (the subscription service's JSON) as
//! input: detected by content, laid out `mission/FILESET/FILENAME`,
//! fetched from `retrieve_product` or the download endpoint, reprocessed
//! rows replaced when they changed, malformed files refused naming the row.

use super::*;

const JW_FILE: &str = "jw01234001001_02101_00001_nrca1_cal.fits";
const HST_PRODUCT: &str = "IB1F01020/ib1f01020_raw.fits";
const HLSP: &str = "mast:HLSP/classy/hlsp_classy_a_b.fits";

fn feed_rows(event: &str) -> String {
    format!(
        r#"[
  {{"mission": "JWST", "fileset": "jw01234001001_02101_00001_nrca1", "filename": "{JW_FILE}", "event": "new"}},
  {{"mission": "hst", "dataset": "IB1F01020", "filename": "ib1f01020_raw.fits", "uri": "{HST_PRODUCT}", "event": "{event}"}},
  {{"mission": "classy", "fileset": "ds1", "filename": "hlsp_classy_a_b.fits", "uri": "{HLSP}", "event": "public"}}
]"#
    )
}

fn versioned(seed: u64, etag: &str) -> Product {
    Product {
        etag: Some(format!("\"{etag}\"")),
        ..Product::new(bytes(seed, 2000))
    }
}

#[test]
fn a_feed_is_laid_out_and_fetched_as_astroquery_does() {
    let m = archive_with(&[
        (JW_FILE, versioned(1, "j1")),
        (HST_PRODUCT, versioned(2, "h1")),
        (HLSP, versioned(3, "c1")),
    ]);
    let e = Env::new();
    // No `.json` suffix: the content decides.
    let feed = e.write("events.txt", &feed_rows("new"));
    let r = e.fetch(&m, &[feed.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let at = |rel: &str| std::fs::read(e.dest().join(rel)).unwrap();
    assert_eq!(
        at(&format!("jwst/jw01234001001_02101_00001_nrca1/{JW_FILE}")),
        bytes(1, 2000)
    );
    assert_eq!(at("hst/IB1F01020/ib1f01020_raw.fits"), bytes(2, 2000));
    assert_eq!(at("classy/ds1/hlsp_classy_a_b.fits"), bytes(3, 2000));
    let paths: Vec<String> = m.seen().into_iter().map(|s| s.path_and_query).collect();
    for want in [
        format!("/search/jwst/api/v0.1/retrieve_product?product_name={JW_FILE}"),
        "/search/hst/api/v0.1/retrieve_product?product_name=IB1F01020%2Fib1f01020_raw.fits"
            .to_string(),
        "/api/v0.1/Download/file?uri=mast:HLSP/classy/hlsp_classy_a_b.fits".to_string(),
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:#?}");
    }
    // `plan` says the same, without a request.
    m.reset_log();
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base]).arg(&feed);
    let p = Run::from(c.output().unwrap());
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert!(
        p.stdout.contains("\thst/IB1F01020/ib1f01020_raw.fits"),
        "{}",
        p.stdout
    );
    assert!(m.seen().is_empty());
}

#[test]
fn reprocessed_rows_are_replaced_when_changed_without_update() {
    let m = archive_with(&[
        (JW_FILE, versioned(1, "j1")),
        (HST_PRODUCT, versioned(2, "h1")),
        (HLSP, versioned(3, "c1")),
    ]);
    let e = Env::new();
    let feed = e.write("events.json", &feed_rows("new"));
    assert_eq!(e.fetch(&m, &[feed.to_str().unwrap()]).code, 0);
    // MAST reprocesses two products under the same names and sizes.
    m.add(JW_FILE, versioned(11, "j2"));
    m.add(HST_PRODUCT, versioned(12, "h2"));
    m.reset_log();
    let reprocessed = e.write("reprocessed.json", &feed_rows("REPROCESSED"));
    let r = e.fetch(&m, &[reprocessed.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    let hst = &man["files"][1];
    assert_eq!(hst["status"], "COMPLETE", "{man}");
    assert!(
        hst["message"].as_str().unwrap_or("").contains("updated"),
        "{man}"
    );
    assert_eq!(
        std::fs::read(e.dest().join("hst/IB1F01020/ib1f01020_raw.fits")).unwrap(),
        bytes(12, 2000)
    );
    // A row that does not say "reprocessed" is left as it is, unasked.
    assert_eq!(man["files"][0]["status"], "SKIPPED");
    assert_eq!(
        std::fs::read(
            e.dest()
                .join(format!("jwst/jw01234001001_02101_00001_nrca1/{JW_FILE}"))
        )
        .unwrap(),
        bytes(1, 2000)
    );
    assert!(m.seen_for(JW_FILE).is_empty());
    // Reprocessed again, but unchanged: one HEAD, no body.
    m.reset_log();
    let r = e.fetch(&m, &[reprocessed.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(e.manifest()["files"][1]["status"], "SKIPPED");
    let seen = m.seen_for(HST_PRODUCT);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "HEAD");
    assert_eq!(m.body_bytes(), 0);
}

#[test]
fn malformed_feeds_exit_2_naming_the_file_and_row() {
    let m = archive_with(&[(JW_FILE, versioned(1, "j1"))]);
    let e = Env::new();
    let ok = format!(
        r#"{{"mission": "jwst", "fileset": "jw01234001001_02101_00001_nrca1", "filename": "{JW_FILE}"}}"#
    );
    for (name, text, want) in [
        (
            "object.json",
            r#"{"mission": "jwst"}"#.to_string(),
            "object.json:1: Expected a JSON array",
        ),
        (
            "nofile.json",
            format!(r#"[{ok}, {{"mission": "jwst", "fileset": "x"}}]"#),
            "nofile.json:2: Row 2: no `filename`",
        ),
        (
            "nofileset.json",
            format!(r#"[{ok}, {ok}, {{"mission": "jwst", "filename": "b.fits"}}]"#),
            "nofileset.json:3: This row has no `fileset` or `dataset`",
        ),
        (
            "dots.json",
            r#"[{"mission": "jwst", "fileset": "a", "filename": "../../x.fits"}]"#.to_string(),
            "dots.json:1: Row 1: `filename` holds `..`",
        ),
    ] {
        let f = e.write(name, &text);
        let r = e.fetch(&m, &[f.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{name}: {}", r.stderr);
        assert!(m.seen().is_empty(), "{name}: nothing requested");
        assert!(!e.dest().join("MANIFEST.json").exists());
    }
    // Without a fileset, `--flat` is fine.
    let f = e.write(
        "flat.json",
        &format!(r#"[{{"mission": "jwst", "filename": "{JW_FILE}"}}]"#),
    );
    let r = e.fetch(&m, &[f.to_str().unwrap(), "--flat"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e.dest().join(JW_FILE).is_file());
}

#[test]
fn a_product_listed_new_then_reprocessed_is_checked_and_replaced() {
    let m = archive_with(&[(HST_PRODUCT, versioned(2, "h1"))]);
    let e = Env::new();
    let hst = |event: &str| {
        format!(
            r#"{{"mission": "hst", "dataset": "IB1F01020", "filename": "ib1f01020_raw.fits", "uri": "{HST_PRODUCT}", "event": "{event}"}}"#
        )
    };
    let first = e.write("first.json", &format!("[{}]", hst("new")));
    assert_eq!(e.fetch(&m, &[first.to_str().unwrap()]).code, 0);
    // Reprocessed under the same name and size; the next feed lists the
    // product twice, the reprocessed row last.
    m.add(HST_PRODUCT, versioned(12, "h2"));
    m.reset_log();
    let twice = e.write(
        "twice.json",
        &format!("[{}, {}]", hst("new"), hst("reprocessed")),
    );
    let r = e.fetch(&m, &[twice.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(man["files"].as_array().unwrap().len(), 1, "{man}");
    assert_eq!(man["files"][0]["status"], "COMPLETE", "{man}");
    assert_eq!(
        std::fs::read(e.dest().join("hst/IB1F01020/ib1f01020_raw.fits")).unwrap(),
        bytes(12, 2000)
    );
    assert!(
        m.seen_for(HST_PRODUCT).iter().any(|s| s.method == "HEAD"),
        "asked the source"
    );
}

#[test]
fn without_validators_a_reprocessed_row_comes_again_and_update_says_it_cannot_tell() {
    // The source sends no ETag and no Last-Modified; reprocessing keeps
    // the size (FITS pads to 2880-byte blocks).
    let m = archive_with(&[(HST_PRODUCT, Product::new(bytes(2, 2000)))]);
    let e = Env::new();
    let path = e.dest().join("hst/IB1F01020/ib1f01020_raw.fits");
    let hst = |event: &str| {
        format!(
            r#"[{{"mission": "hst", "dataset": "IB1F01020", "filename": "ib1f01020_raw.fits", "uri": "{HST_PRODUCT}", "event": "{event}"}}]"#
        )
    };
    let new = e.write("new.json", &hst("new"));
    let reprocessed = e.write("reprocessed.json", &hst("reprocessed"));
    assert_eq!(e.fetch(&m, &[new.to_str().unwrap()]).code, 0);
    // A reprocessed row: nothing tells the versions apart, so it comes again.
    m.add(HST_PRODUCT, Product::new(bytes(12, 2000)));
    m.reset_log();
    let r = e.fetch(&m, &[reprocessed.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = &e.manifest()["files"][0];
    assert_eq!(f["status"], "COMPLETE", "{f}");
    assert!(
        f["message"].as_str().unwrap_or("").contains("no validator"),
        "{f}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes(12, 2000));
    // A replacement that fails leaves the old file as it was (through `.part`).
    m.add(
        HST_PRODUCT,
        Product {
            get_fail_first: vec![500],
            ..Product::new(bytes(13, 2000))
        },
    );
    let r = e.fetch(&m, &[reprocessed.to_str().unwrap(), "--retries", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(e.manifest()["files"][0]["status"], "FAILED");
    assert_eq!(std::fs::read(&path).unwrap(), bytes(12, 2000));
    // Plain `--update` keeps the file, and the row says it cannot tell.
    m.add(HST_PRODUCT, Product::new(bytes(14, 2000)));
    m.reset_log();
    let r = e.fetch(&m, &[new.to_str().unwrap(), "--update"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = &e.manifest()["files"][0];
    assert_eq!(f["status"], "SKIPPED", "{f}");
    assert_eq!(
        f["message"], "no validator: cannot tell whether it changed; `--force` fetches it again",
        "{f}"
    );
    assert!(r.stderr.contains("no validator"), "{}", r.stderr);
    assert_eq!(std::fs::read(&path).unwrap(), bytes(12, 2000));
    assert_eq!(m.body_bytes(), 0);
    let seen = m.seen_for(HST_PRODUCT);
    assert!(seen.iter().all(|s| s.method == "HEAD"), "{seen:?}");
}
