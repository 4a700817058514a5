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
