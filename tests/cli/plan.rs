//! `plan` and `fetch --dry-run`: the TAB-separated plan, nothing written.

use super::*;

#[test]
fn plan_and_dry_run_print_tab_lines_and_touch_nothing() {
    let m = archive_with(&[]);
    let e = Env::new();
    let hla = "mast:HLA/url/cgi-bin/fitscut.cgi?red=hst_1&blue=hst_2";
    let list = e.write("uris.txt", &format!("{A}\n{hla}\n"));
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base]).arg(&list);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        format!("{A}\t{}/api/v0.1/Download/file?uri={A}\tJWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits", m.base)
    );
    assert!(
        lines[1].contains("uri=mast:HLA/url/cgi-bin/fitscut.cgi%3Fred%3Dhst_1%26blue%3Dhst_2\t"),
        "{}",
        lines[1]
    );
    let dry = e.fetch(&m, &[list.to_str().unwrap(), "--dry-run"]);
    assert_eq!(dry.stdout, r.stdout);
    assert!(m.seen().is_empty());
    assert!(!e.dest().exists());
}

/// A list long enough to be checked on a second thread a batch ahead:
/// the plan is the input's order without duplicates, and a refused line
/// stops it where it stands, its error winning over a later bad line.
#[test]
fn a_long_list_plans_in_order_and_its_first_refusal_wins() {
    let m = archive_with(&[]);
    let e = Env::new();
    let uri = |i: usize| format!("mast:SCALE/product/o{:05}_{i:07}.fits", i / 100);
    let mut lines: Vec<String> = (0..5000).map(uri).collect();
    for i in (1..lines.len()).step_by(700) {
        lines[i] = uri(i - 1);
    }
    let good = e.write("uris.txt", &(lines.join("\n") + "\n"));
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base]).arg(&good);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut want: Vec<String> = lines.clone();
    want.dedup();
    let got: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(got, want);

    // Line 3001 collides with line 12 (case); line 3051, in the batch
    // still being read when the collision is found, is no URI at all.
    lines[3000] = uri(11).replace("o00000", "O00000");
    lines[3050] = "http://example.org/x.fits".into();
    let bad = e.write("bad.txt", &(lines.join("\n") + "\n"));
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base]).arg(&bad);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad.txt:3001: "), "{}", r.stderr);
    assert!(r.stderr.contains("the entry on line 12"), "{}", r.stderr);
    assert!(!r.stderr.contains(":3051"), "{}", r.stderr);
    let before = want.iter().take_while(|u| **u != uri(3000)).count();
    assert_eq!(r.stdout.lines().count(), before);
    assert!(m.seen().is_empty());
}
