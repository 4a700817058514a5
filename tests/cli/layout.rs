//! Where files land (COLL/OBS_ID folders or `--flat`) and what the two manifests say about them.

use super::*;

#[test]
fn fetch_lays_out_files_and_writes_both_manifests() {
    let body_a = bytes(1, 300_000);
    let e = Case::listing(
        &[
            (A, Product::new(body_a.clone())),
            (B, Product::new(bytes(2, 10))),
            (IUE, Product::new(bytes(3, 77))),
        ],
        &format!("# my files\n\n  {A}  \n{B}\n{IUE}\n{A}\n"),
    );
    let m = &e.mock;
    let r = e.fetch_ok(&[]);
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
fn flat_puts_files_straight_into_dest() {
    let e = Case::new(&[
        (A, Product::new(bytes(1, 10))),
        (IUE, Product::new(bytes(2, 10))),
    ]);
    assert_eq!(e.fetch(&["--flat"]).code, 0);
    assert!(e
        .dest()
        .join("jw01409-o031_t014_nircam_clear-f212n_i2d.fits")
        .is_file());
    assert!(e.dest().join("lwp13058.mxlo.gz").is_file());
}

#[test]
fn error_page_is_failed_not_saved_and_escaped_in_html() {
    let e = Case::new(&[(
        A,
        Product {
            error_page: Some(
                "<html><body><p>Access Denied <script>alert(1)</script></p></body></html>",
            ),
            ..Product::new(vec![])
        },
    )]);
    let r = e.fetch(&[]);
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
