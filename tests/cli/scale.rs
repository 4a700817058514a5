//! Issue 22: a million files in flat memory. What scale must not change:
//! the JSON manifest of a large (streamed) run says what a small run's
//! says; a run killed while writing its manifests leaves a readable one;
//! every row of a paged `MANIFEST.HTML` is reachable by its links; and a
//! streamed plan still catches duplicates and case/NFC collisions.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::mock::{bytes, Product};
use super::{archive_with, Env, Run};

/// Returns the `href` values of an HTML text.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|h| h.replace("&amp;", "&"))
        .collect()
}

/// Returns `(row number, URI)` of every table row of an HTML page.
fn rows_of(html: &str) -> Vec<(usize, String)> {
    html.split("<tr id=\"r")
        .skip(1)
        .map(|rest| {
            let (n, rest) = rest.split_once('"').unwrap();
            let uri = rest
                .split_once("<td>")
                .and_then(|(_, r)| r.split_once("</td>"))
                .unwrap()
                .0;
            (n.parse().unwrap(), uri.to_string())
        })
        .collect()
}

/// Follows every local `.html` link from `DEST/MANIFEST.HTML`; returns
/// the row number -> URI of every row reached, and the pages read.
fn walk_html(dest: &Path) -> (BTreeMap<usize, String>, usize) {
    let first = dest.join("MANIFEST.HTML");
    let mut todo = vec![first.clone()];
    let mut seen: HashSet<PathBuf> = HashSet::from([first]);
    let mut rows = BTreeMap::new();
    while let Some(page) = todo.pop() {
        let html = std::fs::read_to_string(&page).unwrap();
        for (n, uri) in rows_of(&html) {
            if let Some(old) = rows.insert(n, uri.clone()) {
                assert_eq!(old, uri, "row {n} differs between pages");
            }
        }
        for h in hrefs(&html) {
            assert!(
                !h.contains("://") && !h.starts_with("//") && !h.starts_with('/'),
                "a link leaves the folder: {h}"
            );
            let h = h.split('#').next().unwrap();
            if !h.ends_with(".html") && !h.ends_with(".HTML") {
                continue;
            }
            let next = page.parent().unwrap().join(h);
            let next = next
                .canonicalize()
                .unwrap_or_else(|_| panic!("dead link {h} in {page:?}"));
            assert!(next.starts_with(dest.canonicalize().unwrap()), "{next:?}");
            if seen.insert(next.clone()) {
                todo.push(next);
            }
        }
    }
    (rows, seen.len())
}

/// The facts of a row that do not depend on the run.
fn facts(row: &Value) -> Value {
    let mut r = row.clone();
    r.as_object_mut().unwrap().remove("url");
    r
}

/// Issue 22: a run of many files writes the same JSON rows, in the same
/// order, with the same counts, as a small run of the same entries; its
/// `MANIFEST.HTML` is paged, lists the failures on the first page, and a
/// walk of its links reaches every row, without a link leaving DEST.
#[test]
fn a_large_runs_manifests_say_what_a_small_runs_say_and_every_row_is_reachable() {
    let uris: Vec<String> = (0..60)
        .map(|i| format!("mast:HST/product/o{:02}_{:02}_raw.fits", i / 4, i))
        .collect();
    let m = archive_with(&[]);
    for (i, u) in uris.iter().enumerate() {
        // Every 9th is missing: FAILED with a 404.
        if i % 9 != 4 {
            m.add(u, Product::new(bytes(i as u64, 100 + i)));
        }
    }
    let small = Env::new();
    let head = format!("{}\n{}\n{}\n", uris[..5].join("\n"), uris[2], uris[5]);
    let list = small.write("uris.txt", &head);
    let r = small.fetch_paged(&m.base, &list, 1000);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let s = small.manifest();
    assert!(
        std::fs::read_dir(small.dest())
            .unwrap()
            .flatten()
            .all(|d| !d.file_name().to_string_lossy().contains(".pages-")),
        "a small run's manifest is one page"
    );
    assert!(small.html().contains("o01_04_raw.fits"));

    let big = Env::new();
    let text = format!("{head}{}\n{}\n", uris[6..].join("\n"), uris[30]);
    let list = big.write("uris.txt", &text);
    let r = big.fetch_paged(&m.base, &list, 7);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let b = big.manifest();
    let (sf, bf) = (
        s["files"].as_array().unwrap(),
        b["files"].as_array().unwrap(),
    );
    assert_eq!(sf.len(), 6);
    assert_eq!(bf.len(), 60, "one row per distinct URI");
    for (x, y) in sf.iter().zip(bf) {
        assert_eq!(x, y, "the first rows are the small run's");
    }
    let order: Vec<&str> = bf.iter().map(|f| f["uri"].as_str().unwrap()).collect();
    assert_eq!(order, uris.iter().map(String::as_str).collect::<Vec<_>>());
    for key in ["complete", "skipped", "failed"] {
        let status = key.to_uppercase();
        let n = bf.iter().filter(|f| f["status"] == status.as_str()).count();
        assert_eq!(b[key], n, "{key}");
    }
    assert_eq!(b["requested"], 60);
    assert_eq!(b["failed"], 7);
    assert_eq!(s["failed"], 1);
    assert_eq!(facts(&sf[4]), facts(&bf[4]));

    let (rows, pages) = walk_html(&big.dest());
    assert_eq!(pages, 1 + 60usize.div_ceil(7));
    assert_eq!(rows.len(), 60, "every row is reachable");
    for (n, uri) in &rows {
        assert_eq!(uri, &uris[n - 1], "row {n}");
    }
    let first = big.html();
    assert!(
        rows_of(&first).is_empty(),
        "the first page holds no table of every row"
    );
    // The pages are written in two halves: the first page counts and
    // lists the failures of both, each linked to its row, in row order.
    let mut at = 0;
    for (i, f) in bf
        .iter()
        .enumerate()
        .filter(|(_, f)| f["status"] == "FAILED")
    {
        let n = i + 1;
        let link = format!(
            "#r{n}\">{n}</a></td><td>{}</td>",
            f["path"].as_str().unwrap()
        );
        let found = first[at..].find(&link).map(|k| at + k);
        assert!(
            found.is_some(),
            "row {n} is not listed after the failure before it"
        );
        at = found.unwrap_or(at);
    }
    assert!(first.contains("By collection"));
    assert!(
        first.contains(
            r#"<tr><td>HST</td><td class="n">53</td><td class="n">0</td><td class="n">7</td>"#
        ),
        "{first}"
    );

    // A re-run (everything SKIPPED now but the missing ones) replaces the
    // pages folder: one stays.
    let r = big.fetch_paged(&m.base, &list, 7);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(big.page_folders(), 1);
    assert_eq!(walk_html(&big.dest()).0.len(), 60);
}

/// Issue 22: SIGKILL while the manifests are being written (caught by
/// their temporary files appearing) leaves the previous manifests whole;
/// the next run clears what the killed one left.
#[cfg(unix)]
#[test]
fn a_run_killed_while_writing_manifests_leaves_a_readable_one() {
    let m = archive_with(&[]);
    let e = Env::new();
    let n = 20_000;
    let mut text = String::new();
    for i in 0..n {
        let name = format!("o{:04}_{i:05}.fits", i / 50);
        text.push_str(&format!("mast:HST/product/{name}\n"));
        let dir = e.dest().join("HST").join(format!("o{:04}", i / 50));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    let list = e.write("uris.txt", &text);
    let r = e.fetch_paged(&m.base, &list, 50);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(e.manifest()["skipped"], n);
    let mut killed = 0;
    for when in [".MANIFEST.json.", ".MANIFEST.HTML.", "MANIFEST.pages-"] {
        for _ in 0..5 {
            let before: HashSet<String> = names(&e.dest());
            let mut c = e.cmd();
            c.args(["fetch", "--base-url", &m.base, "-d"])
                .arg(e.dest())
                .arg(&list)
                .env("MASTDL_HTML_PAGE_ROWS", "50")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = c.spawn().unwrap();
            let t0 = Instant::now();
            let caught = loop {
                if names(&e.dest())
                    .iter()
                    .any(|n| n.starts_with(when) && !before.contains(n))
                {
                    child.kill().unwrap();
                    break true;
                }
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                assert!(t0.elapsed() < Duration::from_secs(60), "hung");
            };
            let _ = child.wait();
            killed += usize::from(caught);
            let man = e.manifest();
            assert_eq!(man["files"].as_array().unwrap().len(), n, "{when}");
            let (rows, _) = walk_html(&e.dest());
            assert_eq!(rows.len(), n, "{when}");
            if caught {
                break;
            }
        }
    }
    assert!(killed > 0, "never caught a run writing its manifests");
    let r = e.fetch_paged(&m.base, &list, 50);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left: Vec<String> = names(&e.dest())
        .into_iter()
        .filter(|n| n.ends_with(".tmp") || n.starts_with("MANIFEST.pages-"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(m.seen().is_empty(), "complete files were requested");
}

fn names(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Issue 22: the plan, streamed, still drops a duplicate URI however far
/// apart, and refuses paths that differ only in case or in Unicode
/// normalisation, naming the line, before any request.
#[test]
fn a_streamed_plan_still_catches_duplicates_and_case_and_nfc_collisions() {
    let m = archive_with(&[]);
    let e = Env::new();
    let mut lines: Vec<String> = (0..30_000)
        .map(|i| format!("mast:HST/product/o{:04}_{i:05}_raw.fits", i / 50))
        .collect();
    lines.insert(7, "mast:HST/product/caf\u{e9}_x.fits".into());
    lines.push(lines[10].clone());
    let ok = e.write("ok.txt", &lines.join("\n"));
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base]).arg(&ok);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().count(),
        30_001,
        "the duplicate is planned once"
    );
    for (extra, line) in [
        ("mast:HST/product/O0005_00250_RAW.fits", 30_003),
        ("mast:HST/product/CAFE\u{301}_x.fits", 30_003),
    ] {
        let mut all = lines.clone();
        all.push(extra.to_string());
        let bad = e.write("bad.txt", &all.join("\n"));
        for cmd in ["plan", "fetch"] {
            let mut c = e.cmd();
            c.args([cmd, "--base-url", &m.base, "-d"])
                .arg(e.dest())
                .arg(&bad);
            let r = Run::from(c.output().unwrap());
            assert_eq!(r.code, 2, "{extra}: {}", r.stderr);
            assert!(
                r.stderr.contains(&format!("bad.txt:{line}")),
                "{extra}: {}",
                r.stderr
            );
        }
    }
    assert!(m.seen().is_empty());
    assert!(!e.dest().exists(), "nothing is created for bad input");
}

/// A quiet re-run decides every file from what was kept while planning
/// (the plan is not read back): complete files SKIPPED without a request,
/// a file of another size than recorded and a missing one fetched again,
/// with the rows in input order.
#[test]
fn a_quiet_rerun_skips_what_is_complete_and_fetches_the_rest() {
    let uris: Vec<String> = (0..40)
        .map(|i| format!("mast:HST/product/o{:02}_{i:02}_raw.fits", i / 8))
        .collect();
    let m = archive_with(&[]);
    for (i, u) in uris.iter().enumerate() {
        m.add(u, Product::new(bytes(i as u64, 200 + i)));
    }
    let e = Env::new();
    let list = e.write("uris.txt", &uris.join("\n"));
    let quiet = |e: &Env| {
        let mut c = e.cmd();
        c.args([
            "fetch",
            "-q",
            "--progress",
            "never",
            "--base-url",
            &m.base,
            "-d",
        ])
        .arg(e.dest())
        .arg(&list);
        Run::from(c.output().unwrap())
    };
    let r = quiet(&e);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = m.seen().len();
    assert_eq!(first, 40);
    let path = |i: usize| {
        e.dest().join(format!(
            "HST/o{:02}_{i:02}/o{:02}_{i:02}_raw.fits",
            i / 8,
            i / 8
        ))
    };
    // One file grows by a byte (not the size recorded), one is removed.
    let mut grown = std::fs::read(path(13)).unwrap();
    grown.push(b'!');
    std::fs::write(path(13), &grown).unwrap();
    std::fs::remove_file(path(30)).unwrap();
    let r = quiet(&e);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let again: Vec<String> = m.seen()[first..]
        .iter()
        .filter_map(|s| s.uri.clone())
        .collect();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(
        again.contains(&uris[13]) && again.contains(&uris[30]),
        "{again:?}"
    );
    let b = e.manifest();
    let files = b["files"].as_array().unwrap();
    let order: Vec<&str> = files.iter().map(|f| f["uri"].as_str().unwrap()).collect();
    assert_eq!(order, uris.iter().map(String::as_str).collect::<Vec<_>>());
    for (i, f) in files.iter().enumerate() {
        let want = if i == 13 || i == 30 {
            "COMPLETE"
        } else {
            "SKIPPED"
        };
        assert_eq!(f["status"], want, "{i}");
        assert_eq!(f["bytes"], 200 + i as u64, "{i}");
    }
    assert_eq!(
        (b["skipped"].as_u64(), b["complete"].as_u64()),
        (Some(38), Some(2))
    );
    assert_eq!(std::fs::read(path(13)).unwrap(), bytes(13, 213));
}
