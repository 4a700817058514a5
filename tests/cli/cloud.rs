//! `--cloud` and `--cloud-only`: files from the AWS Open Data bucket, MD5-checked, with the archive as fallback.

use super::*;

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
    let e = Case::on(
        m,
        &files.iter().map(|(u, _)| *u).collect::<Vec<_>>().join("\n"),
    );
    let (m, list) = (&e.mock, &e.list);
    let r = e.fetch(&["--cloud", "--s3-url", &m.s3_url, "--token", TOKEN]);
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
    // The archive got the token, also for the object the bucket did not
    // have (HST_GONE falls back to the archive after the bucket's 404).
    for u in [HST_NULL, HST_GONE] {
        let seen = m.seen_for(u);
        assert!(!seen.is_empty(), "{u}");
        assert!(
            seen.iter()
                .all(|s| s.authorization.as_deref() == Some(&*format!("token {TOKEN}"))),
            "{u}: {seen:?}"
        );
    }
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
    .arg(list);
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
    let e = Case::on(m, &[JW, HST_NULL, HST_GONE, IUE].join("\n"));
    let m = &e.mock;
    let r = e.fetch(&["--cloud-only", "--s3-url", &m.s3_url]);
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
    // Found missing by the plan (no bucket path): the archive's URL, never asked.
    assert_eq!(row(&man, HST_NULL)["source"], "mast");
    assert!(row(&man, HST_NULL)["url"]
        .as_str()
        .unwrap()
        .starts_with(&m.base));
    // Found missing by the bucket itself (a 404 for its path): the object's URL.
    assert_eq!(row(&man, HST_GONE)["source"], "cloud");
    assert!(row(&man, HST_GONE)["url"]
        .as_str()
        .unwrap()
        .starts_with(&m.s3_url));
    assert_eq!(row(&man, HST_GONE)["http_status"], 404);
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
fn a_file_failing_at_the_archive_after_the_bucket_fallback_says_the_archive() {
    let (m, _s3, files) = cloud_archive();
    let mut gone = Product::new(files[2].1.clone());
    gone.fail_first = vec![500; 10];
    m.add(HST_GONE, gone);
    let e = Case::on(m, HST_GONE);
    let m = &e.mock;
    let r = e.fetch(&["--cloud", "--s3-url", &m.s3_url, "--retries", "1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let man = e.manifest();
    let gone = row(&man, HST_GONE);
    assert_eq!(gone["status"], "FAILED", "{man}");
    assert_eq!(gone["source"], "mast", "{man}");
    assert_eq!(gone["http_status"], 500, "{man}");
    assert!(gone["url"].as_str().unwrap().starts_with(&m.base), "{man}");
    // One bucket attempt (404: not retried), then two at the archive.
    assert_eq!(gone["attempts"], 3, "{man}");
}

#[test]
fn a_lasting_md5_mismatch_fails_and_leaves_nothing_at_the_path() {
    let (m, s3, _files) = cloud_archive();
    s3.corrupt_first_for(
        "stpubdata/jwst/product/jw02736-o002_t001_nircam_clear-f090w_cal.fits",
        100,
    );
    let e = Case::on(m, JW_BAD);
    let m = &e.mock;
    let r = e.fetch(&["--cloud", "--s3-url", &m.s3_url, "--retries", "2"]);
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

#[test]
fn plan_cloud_says_what_the_bucket_step_found_and_a_failed_lookup() {
    let (m, _s3, files) = cloud_archive();
    let e = Case::on(
        m,
        &files.iter().map(|(u, _)| *u).collect::<Vec<_>>().join("\n"),
    );
    let (m, list) = (&e.mock, &e.list);
    let plan = |base: &str, extra: &[&str]| {
        let mut c = e.cmd();
        c.args(["plan", "--cloud", "--base-url", base, "--s3-url", &m.s3_url])
            .args(extra)
            .arg(list);
        Run::from(c.output().unwrap())
    };
    // What the bucket has is said on stderr, as `fetch` says it.
    let r = plan(&m.base, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("4 of 6 files are in the bucket"),
        "{}",
        r.stderr
    );
    // A lookup that fails (no `path_lookup` below this base) is a warning,
    // and the plan falls back to the archive's URLs.
    let elsewhere = format!("{}/elsewhere/", m.base);
    let r = plan(&elsewhere, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warn: bucket path lookup failed"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout.lines().count(), files.len(), "{}", r.stdout);
    assert!(
        r.stdout.lines().all(|l| l.contains(&elsewhere)),
        "{}",
        r.stdout
    );
    // In JSON mode it is a JSON log line.
    let r = plan(&elsewhere, &["--log-format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let warned = r.stderr.lines().any(|l| {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        v["event"] == "message"
            && v["level"] == "warn"
            && v["message"]
                .as_str()
                .is_some_and(|t| t.contains("bucket path lookup failed"))
    });
    assert!(warned, "{}", r.stderr);
}
