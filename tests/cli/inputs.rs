//! Every input shape a MAST user has, through the real binary against the
//! mock archive: Kepler/K2 `wget` scripts (recursive pulls of the mock's
//! Apache index pages), scripts with no download command, detection that
//! does not depend on buffer sizes, skipped-command notes, MastMissions
//! product tables, absolute script paths, HLA `getdata.cgi` layouts, and
//! the caps on line and file sizes.

use std::process::Stdio;

use super::mock::{Mock, Product};
use super::mock_index::{file_bytes, BAD_DIR, BAD_DIR_FILES, BAD_NAMES, KEPLER_DIR, KEPLER_FILES};
use super::{Env, Run};

/// Runs `mastdl plan --base-url BASE ARGS…`.
fn plan(e: &Env, m: &Mock, args: &[&str]) -> Run {
    let mut c = e.cmd();
    c.arg("plan").arg("--base-url").arg(&m.base).args(args);
    Run::from(c.output().unwrap())
}

/// The plan's lines as (URI, URL, PATH).
fn rows(r: &Run) -> Vec<(String, String, String)> {
    r.stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "{l}");
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

const KEPLER_URL: &str = "http://archive.stsci.edu/pub/kepler/lightcurves/0024/002439243/";

fn kepler_script(options: &str) -> String {
    format!(
        "#!/bin/sh\nmkdir -p kepler/0024/002439243\ncd kepler\necho \"002439243\"\n\
         wget -q -nH --cut-dirs=6 -r {options} -c -N -np -erobots=off -R 'index*' -A _llc.fits {KEPLER_URL}\n"
    )
}

// ---- 1: Kepler/K2 wget scripts ----------------------------------------------

#[test]
fn kepler_wget_script_plans_the_files_wget_keeps_where_wget_puts_them() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write("kepler.sh", &kepler_script("-l0 -P kepler/0024/002439243"));
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let file = |p: &str| format!("http://archive.stsci.edu{KEPLER_DIR}{p}");
    let local = |p: &str| format!("{}{KEPLER_DIR}{p}", m.base);
    let want = [
        (
            "kplr002439243-2009131105131_llc.fits",
            "kepler/0024/002439243/kplr002439243-2009131105131_llc.fits",
        ),
        (
            "kplr002439243-2009166043257_llc.fits",
            "kepler/0024/002439243/kplr002439243-2009166043257_llc.fits",
        ),
        // --cut-dirs=6 drops the six folders above the file, `sub` included.
        (
            "sub/kplr002439243-2010078095331_llc.fits",
            "kepler/0024/002439243/kplr002439243-2010078095331_llc.fits",
        ),
        (
            "sub/deeper/kplr002439243-2011073133259_llc.fits",
            "kepler/0024/002439243/deeper/kplr002439243-2011073133259_llc.fits",
        ),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(p, path)| (file(p), local(p), path.to_string()))
        .collect();
    // Not there: the `_slc` file (-A), the sibling folder's file (-np), the
    // off-site link, the sort and parent links, `index.html` (-R).
    assert_eq!(rows(&r), want);
    assert!(
        r.stderr.contains(
            "kepler.sh: Not run: 3 commands that download nothing (`mkdir`, `cd`, `echo`)"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn wget_level_limits_the_depth() {
    let m = Mock::start();
    let e = Env::new();
    let count = |options: &str| {
        let s = e.write("k.sh", &kepler_script(options));
        let r = plan(&e, &m, &[s.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        rows(&r).len()
    };
    assert_eq!(count("-l1"), 2);
    assert_eq!(count("-l 2"), 3);
    assert_eq!(count("--level=inf"), 4);
    // wget's default depth is 5.
    assert_eq!(count(""), 4);
}

#[test]
fn kepler_fetch_downloads_the_files_and_sends_no_token_to_index_pages() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write("kepler.sh", &kepler_script("-l0"));
    let mut c = e.cmd();
    c.arg("fetch")
        .arg("--base-url")
        .arg(&m.base)
        .arg("-d")
        .arg(e.dest())
        .arg("--token")
        .arg(super::mock::TOKEN)
        .arg(&s);
    let r = Run::from(c.output().unwrap());
    // The mock's index pages answer 401 to a request with credentials.
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (p, size) in KEPLER_FILES
        .iter()
        .filter(|(p, _)| p.ends_with("_llc.fits"))
    {
        let name = p.rsplit('/').next().unwrap();
        let rel = if p.starts_with("sub/deeper/") {
            format!("deeper/{name}")
        } else {
            name.to_string()
        };
        let got = std::fs::read(e.dest().join(&rel)).unwrap_or_else(|err| panic!("{rel}: {err}"));
        assert_eq!(got, file_bytes(&format!("{KEPLER_DIR}{p}"), *size), "{rel}");
    }
    let manifest = e.manifest();
    assert_eq!(manifest["complete"], 4, "{manifest}");
}

#[test]
fn wget_prefix_outside_dest_is_refused_unless_flat() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write("k.sh", &kepler_script("-l0 -P ../kepler/0024/002439243"));
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("k.sh:5: The wget `-P` folder must stay inside DEST"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`--flat`"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let r = plan(&e, &m, &["--flat", s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let paths: Vec<String> = rows(&r).into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(paths.len(), 4);
    assert!(paths.iter().all(|p| !p.contains('/')), "{paths:?}");
}

#[test]
fn a_listing_that_keeps_nothing_says_so() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write(
        "k.sh",
        &format!("wget -r -np -nH -A _xyz.fits {KEPLER_URL}\n"),
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .contains(&format!("k.sh:1: Listed `{KEPLER_URL}` and kept no file")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_directory_the_archive_does_not_have_is_an_input_error_at_its_line() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write(
        "k.sh",
        "wget -r -np http://archive.stsci.edu/pub/kepler/lightcurves/0099/none/\n",
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("k.sh:1: Cannot list"), "{}", r.stderr);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
}

#[test]
fn single_file_wget_lines() {
    let m = Mock::start();
    let e = Env::new();
    let url = format!("http://archive.stsci.edu{KEPLER_DIR}kplr002439243-2009131105131_llc.fits");
    let s = e.write(
        "one.sh",
        &format!("wget -O my_llc.fits {url}\nwget -q {url}x\n"),
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = rows(&r);
    assert_eq!(got[0].0, url);
    assert_eq!(
        got[0].1,
        format!("{}{KEPLER_DIR}kplr002439243-2009131105131_llc.fits", m.base)
    );
    assert_eq!(got[0].2, "my_llc.fits");
    assert_eq!(got[1].2, "kplr002439243-2009131105131_llc.fitsx");
}

// ---- 2: a script with no download command -----------------------------------

#[test]
fn a_script_with_no_download_command_is_exit_2_naming_it() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write("empty.sh", "#!/bin/bash\necho 'nothing here'\nexit 0\n");
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains("empty.sh:1: No `curl` or `wget` download command in this script, only 2 commands that download nothing (`echo`, `exit`)"),
        "{}",
        r.stderr
    );
    let r = e.fetch(&m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!e.dest().join("MANIFEST.json").exists());
}

// ---- 3: detection from content ----------------------------------------------

#[test]
fn a_bundle_without_its_shebang_is_a_script_whatever_its_size() {
    let m = Mock::start();
    let e = Env::new();
    let mut text = String::from("cat >${DOWNLOAD_FOLDER}/MANIFEST.HTML<<EOT\n<html><table>\n");
    let uris: Vec<String> = (0..589)
        .map(|i| format!("mast:HST/product/ib{i:04}020_raw.fits"))
        .collect();
    while text.len() < 240_000 {
        for u in &uris {
            text.push_str(&format!(
                "<tr><td>{u}</td><td>HST/ib/x_raw.fits</td></tr>\n"
            ));
        }
    }
    text.push_str("</table></html>\nEOT\n\n");
    for (i, u) in uris.iter().enumerate() {
        text.push_str(&format!(
            "curl --globoff --location-trusted -f --progress-bar --create-dirs $CONT --output ./${{DOWNLOAD_FOLDER}}'/HST/ib{i:04}020/ib{i:04}020_raw.fits' 'https://mast.stsci.edu/api/v0.1/Download/file?bundle_name=B.sh&uri={u}'\n"
        ));
    }
    let s = e.write("bundle.sh", &text);
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = rows(&r);
    assert_eq!(got.len(), 589);
    assert_eq!(got[588].2, "HST/ib0588020/ib0588020_raw.fits");
    // The same text through standard input.
    let mut c = e.cmd();
    c.arg("plan")
        .arg("--base-url")
        .arg(&m.base)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(rows(&r).len(), 589);
}

// ---- 4: what is not run is said once ----------------------------------------

#[test]
fn skipped_commands_are_named_once_on_stderr() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write(
        "mission.sh",
        "curl -L -X POST 'https://mast.stsci.edu/search/hst/api/v0.1/retrieve_product_zip' -F mission=HST -F manifestonly=true --output manifest.zip\n\
         mkdir -p MAST_x\ncd MAST_x\necho go\n\
         curl -L -X GET 'https://mast.stsci.edu/search/hst/api/v0.1/retrieve_product?product_name=IB1F01020%2Fib1f01020_raw.fits' --output 'MAST_x/HST/IB1F01020/ib1f01020_raw.fits' --fail --create-dirs\n",
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(rows(&r).len(), 1);
    let note = "mission.sh: Not run: 1 request that sends a body or uses another method than GET \
                (POST to `retrieve_product_zip`: a manifest or query request, not a file); \
                3 commands that download nothing (`mkdir`, `cd`, `echo`)";
    assert_eq!(r.stderr.matches(note).count(), 1, "{}", r.stderr);
    // --quiet keeps it to errors.
    let r = plan(&e, &m, &["-q", s.to_str().unwrap()]);
    assert!(!r.stderr.contains("Not run"), "{}", r.stderr);
    // JSON logs get it as an event.
    let r = plan(&e, &m, &["--log-format", "json", s.to_str().unwrap()]);
    let event: serde_json::Value = serde_json::from_str(r.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(event["event"], "message");
    assert!(event["message"].as_str().unwrap().contains("Not run"));
}

// ---- 5: MastMissions product tables -----------------------------------------

#[test]
fn missions_product_table_is_fetched_from_retrieve_product() {
    let table = include_str!("../fixtures/tables/missions_hst_products.csv");
    let m = Mock::start();
    let names = [
        "z14z0104t_shf.fits",
        "z14z0104t_trl.fits",
        "z14z0104x_ocx.fits",
    ];
    let sizes = [31680, 17280, 11520];
    for (n, size) in names.iter().zip(sizes) {
        m.add(
            &format!("Z14Z0104T/{n}"),
            Product::new(super::mock::bytes(size as u64, size)),
        );
    }
    let e = Env::new();
    let t = e.write("products.csv", table);
    let r = plan(&e, &m, &[t.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = rows(&r);
    assert_eq!(
        got[0],
        (
            "https://mast.stsci.edu/search/hst/api/v0.1/retrieve_product?product_name=Z14Z0104T%2Fz14z0104t_shf.fits".to_string(),
            format!("{}/search/hst/api/v0.1/retrieve_product?product_name=Z14Z0104T%2Fz14z0104t_shf.fits", m.base),
            "hst/Z14Z0104T/z14z0104t_shf.fits".to_string(),
        )
    );
    let r = e.fetch(&m, &[t.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (n, size) in names.iter().zip(sizes) {
        let got = std::fs::read(e.dest().join("hst/Z14Z0104T").join(n)).unwrap();
        assert_eq!(got, super::mock::bytes(size as u64, size), "{n}");
    }
}

// ---- 6: absolute --output paths ---------------------------------------------

#[test]
fn absolute_output_paths_say_why_and_what_to_do() {
    let m = Mock::start();
    let e = Env::new();
    let s = e.write(
        "mine.sh",
        "curl -o /Users/me/data/a_flt.fits 'https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a_flt.fits' &\n\
         curl -o /Users/me/data/b_flt.fits 'https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/b_flt.fits' &\nwait\n",
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("mine.sh:1: This output path cannot be used below DEST (absolute path `/Users/me/data/a_flt.fits`): pass `--flat`"), "{}", r.stderr);
    let r = plan(&e, &m, &["--flat", s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let paths: Vec<String> = rows(&r).into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(paths, ["a_flt.fits", "b_flt.fits"]);
}

// ---- 7: URI-list layouts ----------------------------------------------------

#[test]
fn hla_getdata_uris_use_the_observation_the_uri_names() {
    let m = Mock::start();
    let e = Env::new();
    let l = e.write(
        "hla.txt",
        "mast:HLA/url/cgi-bin/getdata.cgi?dataset=hst_10268_05_acs_wfc_f606w_09_drz.fits\n",
    );
    let r = plan(&e, &m, &[l.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        rows(&r)[0].2,
        "HLA/hst_10268_05_acs_wfc_f606w_09/hst_10268_05_acs_wfc_f606w_09_drz.fits"
    );
}

// ---- input caps (issue 12) ----------------------------------------------------

#[test]
fn a_two_mib_line_is_an_input_error_naming_its_line() {
    let m = Mock::start();
    let e = Env::new();
    let mut text = String::from("mast:HST/product/a_flt.fits\n");
    text.push_str(&"a".repeat(2 << 20));
    text.push('\n');
    let l = e.write("big.txt", &text);
    let r = plan(&e, &m, &[l.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("big.txt:2: This line is longer than 1 MiB"),
        "{}",
        r.stderr
    );
    let s = e.write(
        "big.sh",
        &format!("#!/bin/sh\necho {}\n", "a".repeat(2 << 20)),
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("big.sh:2: This line is longer than 1 MiB"),
        "{}",
        r.stderr
    );
}

#[cfg(unix)]
#[test]
fn dev_zero_and_dev_urandom_are_refused() {
    let m = Mock::start();
    let e = Env::new();
    let r = plan(&e, &m, &["/dev/zero"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("/dev/zero:1: Binary data"),
        "{}",
        r.stderr
    );
    let r = plan(&e, &m, &["/dev/urandom"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/dev/urandom:"), "{}", r.stderr);
}

// ---- issue 20 §5: one bad name on an index page, a refused line first -------

#[test]
fn bad_names_on_an_index_page_are_skipped_said_once_and_the_rest_downloaded() {
    let m = Mock::start();
    let e = Env::new();
    let url = format!("http://archive.stsci.edu{BAD_DIR}");
    let s = e.write("k.sh", &format!("#!/bin/sh\nwget -r -nd -np {url}\n"));
    let r = e.fetch(&m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (name, size) in BAD_DIR_FILES {
        let got = std::fs::read(e.dest().join(name)).unwrap();
        assert_eq!(
            got,
            file_bytes(&format!("{BAD_DIR}{name}"), *size),
            "{name}"
        );
    }
    let said: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("Skipped 4 link(s)"))
        .collect();
    assert_eq!(said.len(), 1, "{}", r.stderr);
    assert!(
        said[0].starts_with("warn: ") && said[0].contains("k.sh:2: "),
        "{}",
        said[0]
    );
    for bad in BAD_NAMES {
        assert!(said[0].contains(bad), "{bad}: {}", said[0]);
    }
    let man = e.manifest();
    assert_eq!(man["complete"], 2, "{man}");
    assert_eq!(man["requested"], 2, "{man}");
    let notes = man["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{man}");
    assert!(notes[0].as_str().unwrap().contains("Skipped 4 link(s)"));
    assert!(e.html().contains("Skipped 4 link(s)"));
    assert!(!e.dest().join("MANIFEST.json.part").exists());
    // A run with nothing to say has no `notes` key (the schema as before).
    let list = e.write("u.txt", "mast:HST/product/ib1f01020_raw.fits\n");
    m.add(
        "mast:HST/product/ib1f01020_raw.fits",
        Product::new(vec![1; 10]),
    );
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e.manifest().get("notes").is_none());
}

#[test]
fn a_refused_wget_line_is_refused_before_any_line_of_its_script_lists() {
    let m = Mock::start();
    let e = Env::new();
    // Line 2 would answer 404 if it were listed; line 3 is refused.
    let s = e.write(
        "k.sh",
        &format!(
            "#!/bin/sh\nwget -r -np -nH http://archive.stsci.edu/pub/nothing-here/\n\
             wget -r -np -nH -P ../x {KEPLER_URL}\n"
        ),
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("k.sh:3: The wget `-P` folder must stay inside DEST"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("nothing-here"), "{}", r.stderr);
}

#[test]
fn a_refused_curl_line_is_refused_before_any_wget_line_of_its_script_lists() {
    let m = Mock::start();
    let e = Env::new();
    // Line 2 would answer 404 if it were listed; line 3 is refused by
    // the plan.
    let curl = "curl -o ../evil.fits http://archive.stsci.edu/pub/x/evil.fits\n";
    let s = e.write(
        "k.sh",
        &format!("#!/bin/sh\nwget -r -np -nH http://archive.stsci.edu/pub/nothing-here/\n{curl}"),
    );
    let r = plan(&e, &m, &[s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("k.sh:3: This output path cannot be used below DEST"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("nothing-here"), "{}", r.stderr);
    assert!(m.seen().is_empty(), "requests went out: {:?}", m.seen());
    // With `--flat` the same line is fine: its name only is kept.
    let s = e.write(
        "k2.sh",
        &format!("#!/bin/sh\nwget -r -np -nH {KEPLER_URL}\n{curl}"),
    );
    let r = plan(&e, &m, &[s.to_str().unwrap(), "--flat"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("evil.fits"), "{}", r.stdout);
}

#[test]
fn shards_keep_the_listing_notes_and_report_says_them_once() {
    let m = Mock::start();
    let e = Env::new();
    let url = format!("http://archive.stsci.edu{BAD_DIR}");
    let s = e.write("k.sh", &format!("wget -r -nd -np {url}\n"));
    for k in ["0/2", "1/2"] {
        let r = e.fetch(&m, &["--shard", k, s.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let out = e.cmd().arg("report").arg(e.dest()).output().unwrap();
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(man["complete"], 2, "{man}");
    let notes = man["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{man}");
    assert!(notes[0].as_str().unwrap().contains("Skipped 4 link(s)"));
}

/// A list entry refused ahead of a wget listing in a later input is the
/// run's error: the listing neither starts nor takes it for one of its
/// own links.
#[test]
fn a_refused_list_entry_before_a_listing_ends_the_run_before_any_listing_request() {
    let m = Mock::start();
    let e = Env::new();
    let list = e.write(
        "c1.txt",
        "mast:SCALE/product/o1_a.fits\nmast:SCALE/product/O1_a.fits\n",
    );
    let url = format!("http://archive.stsci.edu{BAD_DIR}");
    let s = e.write("k.sh", &format!("#!/bin/sh\nwget -r -nd -np {url}\n"));
    let r = plan(&e, &m, &[list.to_str().unwrap(), s.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("c1.txt:2: "), "{}", r.stderr);
    assert!(!r.stderr.contains("Skipped"), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(m.seen().is_empty(), "{:?}", m.seen().len());
}
