//! Nothing downloaded twice: a second run skips complete files, a cut transfer resumes with a range (or restarts without range support), a `.part` from an earlier run is resumed, `--update` replaces only changed files.

use super::*;

#[test]
fn second_run_transfers_no_body_bytes() {
    let e = Case::new(&[
        (A, Product::new(bytes(1, 100_000))),
        (B, Product::new(bytes(2, 5_000))),
    ]);
    let m = &e.mock;
    assert_eq!(e.fetch(&[]).code, 0);
    assert_eq!(m.body_bytes(), 105_000);
    m.reset_log();
    e.fetch_ok(&[]);
    assert_eq!(m.body_bytes(), 0);
    assert!(m.seen().is_empty(), "{:?}", m.seen());
    let man = e.manifest();
    assert_eq!(man["skipped"], 2);
    assert_eq!(man["bytes"], 0);
    assert_eq!(row(&man, A)["bytes"], 100_000);
    // --force fetches again.
    let r = e.fetch(&["--force"]);
    assert_eq!(r.code, 0);
    assert_eq!(e.manifest()["complete"], 2);
}

#[test]
fn truncated_body_resumes_with_range_and_no_byte_is_lost() {
    let body = bytes(9, 200_000);
    let e = Case::new(&[(
        A,
        Product {
            truncate_first: 1,
            etag: Some("\"e9\"".into()),
            ..Product::new(body.clone())
        },
    )]);
    let m = &e.mock;
    e.fetch_ok(&[]);
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
    let e = Case::new(&[(
        A,
        Product {
            truncate_first: 1,
            no_range: true,
            ..Product::new(body.clone())
        },
    )]);
    e.fetch_ok(&[]);
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
fn update_replaces_a_same_size_reprocessed_file_and_keeps_unchanged_ones() {
    let v1 = bytes(1, 2880 * 3);
    let v2 = bytes(2, 2880 * 3);
    let etagged = |body: &Vec<u8>, etag: &str| Product {
        etag: Some(format!("\"{etag}\"")),
        last_modified: Some("Tue, 01 Sep 2026 10:00:00 GMT".into()),
        ..Product::new(body.clone())
    };
    let e = Case::listing(
        &[
            (A, etagged(&v1, "v1")),
            (B, etagged(&bytes(3, 100), "b1")),
            (IUE, Product::new(bytes(4, 10))),
        ],
        &format!("{A}\n{B}\n{IUE}\n"),
    );
    let m = &e.mock;
    assert_eq!(e.fetch(&[]).code, 0);
    let a_path = e.dest().join(
        "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
    );
    assert_eq!(std::fs::read(&a_path).unwrap(), v1);
    // Without --update a re-run asks nothing.
    m.reset_log();
    assert_eq!(e.fetch(&[]).code, 0);
    assert!(m.seen().is_empty());
    // MAST reprocesses A under the same name and size.
    m.add(A, etagged(&v2, "v2"));
    e.fetch_ok(&["--update"]);
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
    let r = e.fetch(&["--update"]);
    assert_eq!(r.code, 1, "{}\n{:?}", r.stderr, m.seen_for(A));
    assert_eq!(std::fs::read(&a_path).unwrap(), v2);
    assert_eq!(row(&e.manifest(), A)["status"], "FAILED");
    // Once it succeeds, the next --update sees nothing new.
    m.add(A, etagged(&v1, "v3"));
    assert_eq!(e.fetch(&["--update"]).code, 0);
    assert_eq!(std::fs::read(&a_path).unwrap(), v1);
    m.reset_log();
    assert_eq!(e.fetch(&["--update"]).code, 0);
    assert_eq!(m.body_bytes(), 0);
    assert_eq!(e.manifest()["skipped"], 3);
}
