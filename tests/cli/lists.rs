//! Every list users already have: URI lists (a file, `-`, stdin), portal and mission download scripts, product tables (CSV, ECSV); a bad line stops the run before any request.

use super::*;

#[test]
fn stdin_dash_and_no_input_read_standard_input() {
    let m = archive_with(&[(B, Product::new(bytes(2, 1000)))]);
    let e = Env::new();
    for args in [vec!["-"], vec![]] {
        let _ = std::fs::remove_dir_all(e.dest());
        let mut c = e.cmd();
        c.arg("fetch")
            .arg("--base-url")
            .arg(&m.base)
            .arg("-d")
            .arg(e.dest())
            .args(&args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{B}\n").as_bytes())
            .unwrap();
        let r = Run::from(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(e.dest().join("HST/ib1f01020/ib1f01020_raw.fits").is_file());
    }
}

#[test]
fn bad_line_exits_2_naming_file_and_line_before_any_request() {
    let e = Case::listing(
        &[(B, Product::new(bytes(2, 10)))],
        &format!("{B}\n# fine\nhttps://example.org/x.fits\n"),
    );
    let m = &e.mock;
    let r = e.fetch(&["-t", TOKEN]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("uris.txt:3"), "{}", r.stderr);
    assert!(
        m.seen().is_empty(),
        "no request at all, not even /whoami: {:?}",
        m.seen()
    );
    assert!(!e.dest().exists());
    for (text, line) in [
        (format!("{B}\nmast:HST/../../etc/passwd\n"), 2),
        ("mast:/etc/passwd\n".to_string(), 1),
        ("mast:HST//x.fits\n".to_string(), 1),
        ("mast:HST/a\\b.fits\n".to_string(), 1),
        ("mast:HST/a\u{1}b.fits\n".to_string(), 1),
    ] {
        let list = e.write("bad.txt", &text);
        let r = e.env.fetch(m, &[list.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{text:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("bad.txt:{line}")),
            "{text:?}: {}",
            r.stderr
        );
    }
    let list = e.write("coll.txt", "mast:HST/a/x_1.fits\nmast:HST/b/x_1.fits\n");
    let r = e.env.fetch(m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("mast:HST/b/x_1.fits")
            && r.stderr
                .contains("coll.txt:2: `mast:HST/b/x_1.fits` and the entry on line 1"),
        "{}",
        r.stderr
    );
    assert!(m.seen().is_empty());
}

#[test]
fn portal_script_is_read_never_run_and_rerooted_at_the_base_url() {
    let script = fixture("scripts/portal_token_multiline.sh");
    let uris = [
        "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
        "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_cat.ecsv",
        "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_segm.fits",
    ];
    let m = Mock::start();
    for (i, u) in uris.iter().enumerate() {
        m.add(
            u,
            Product {
                need_token: true,
                ..Product::new(bytes(i as u64, 1000 + i))
            },
        );
    }
    let e = Env::new();
    let path = e.write("MAST_2022-04-30T2153.sh", &script);
    let r = e.fetch(&m, &[path.to_str().unwrap(), "--token", TOKEN]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = m.seen_for(uris[0]);
    assert!(
        seen[0]
            .path_and_query
            .starts_with("/jwst/api/v0.1/Download/file?bundle_name="),
        "{seen:?}"
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
    assert!(e.dest().join("JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_cat.ecsv").is_file());
    assert_eq!(e.manifest()["requested"], 3);
    let folders: Vec<String> = std::fs::read_dir(e.path())
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !folders.iter().any(|f| f.starts_with("MAST_")),
        "the script was run: {folders:?}"
    );
}

#[test]
fn hla_cutouts_and_mission_search_scripts_land_where_the_script_says() {
    let m = Mock::start();
    let cut = "mast:HLA/url/cgi-bin/fitscut.cgi?red=hst_10188_10_acs_wfc_f814w&blue=hst_10188_10_acs_wfc_f435w&size=ALL&format=fits";
    m.add(cut, Product::new(bytes(1, 500)));
    m.add(
        "mast:HLA/url/cgi-bin/getdata.cgi?dataset=hst_10268_05_acs_wfc_f606w_09_drz.fits",
        Product::new(bytes(2, 500)),
    );
    m.add(
        "mast:HST/product/j8y805grq_drz.fits",
        Product::new(bytes(3, 500)),
    );
    let e = Env::new();
    let path = e.write("hla.sh", &fixture("scripts/hla_cutout.sh"));
    let r = e.fetch(&m, &[path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e
        .dest()
        .join("HLA/url/cgi-bin/hst_10188_10_acs_wfc_f814w_f435w.fits")
        .is_file());
    assert_eq!(m.seen_for(cut).len(), 1, "the cutout URI arrived whole");

    for name in [
        "N43C05030/n43c05030_asn.fits",
        "N43C05030/n43c05030_mos.fits",
        "N43C05030/i7k16544n_flt.fits",
        "IB1F01020/ib1f01020_raw.fits",
    ] {
        m.add(name, Product::new(bytes(4, 300)));
    }
    let path = e.write(
        "search.sh",
        &fixture("scripts/mission_search_retrieve_product.sh"),
    );
    let r = e.fetch(&m, &[path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e.dest().join("HST/N43C05030/n43c05030_asn.fits").is_file());
    assert!(e.dest().join("HST/IB1F01020/ib1f01020_raw.fits").is_file());
}

const TABLE: &str = "# saved from astroquery\r\n\u{feff}obsID,obs_collection,obs_id,description,dataURI,productType,productGroupDescription,productFilename,size,calib_level\r\n";

#[test]
fn product_tables_csv_and_ecsv_feed_the_same_plan_with_filters() {
    let m = Mock::start();
    m.add(
        "mast:JWST/product/jw1_t1_i2d.fits",
        Product::new(bytes(1, 100)),
    );
    m.add(
        "mast:JWST/product/jw1_t1_cat.ecsv",
        Product {
            content_type: Some("text/plain"),
            ..Product::new(bytes(2, 50))
        },
    );
    m.add(
        "mast:JWST/product/jw1_t1_i2d.jpg",
        Product::new(bytes(3, 70)),
    );
    m.add(
        "mast:JWST/product/jw1_u_cal.fits",
        Product::new(bytes(4, 90)),
    );
    let csv = format!(
        "{}1,JWST,jw1-obs,\"Level 3 image, combined\",mast:JWST/product/jw1_t1_i2d.fits,SCIENCE,Minimum Recommended Products,jw1_t1_i2d.fits,100,3\r\n\
         1,JWST,jw1-obs,catalog,mast:JWST/product/jw1_t1_cat.ecsv,SCIENCE,Minimum Recommended Products,jw1_t1_cat.ecsv,50,3\r\n\
         1,JWST,jw1-obs,preview,mast:JWST/product/jw1_t1_i2d.jpg,PREVIEW,,jw1_t1_i2d.jpg,70,3\r\n\
         2,JWST,jw1-u,cal,mast:JWST/product/jw1_u_cal.fits,SCIENCE,,jw1_u_cal.fits,90,2\r\n",
        TABLE.trim_start_matches("# saved from astroquery\r\n")
    );
    let e = Env::new();
    let t = e.write("products.csv", &csv);
    let r = e.fetch(&m, &[t.to_str().unwrap(), "--extension", "FITS"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        e.dest().join("JWST/jw1-obs/jw1_t1_i2d.fits").is_file(),
        "obs_id column wins"
    );
    assert!(e.dest().join("JWST/jw1-u/jw1_u_cal.fits").is_file());
    assert_eq!(e.manifest()["requested"], 2);
    // Product filters and a size-based skip with no request at all.
    m.reset_log();
    let r = e.fetch(
        &m,
        &[t.to_str().unwrap(), "--mrp-only", "--calib-level", "3"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(man["requested"], 2, "{man}");
    assert_eq!(
        row(&man, "mast:JWST/product/jw1_t1_i2d.fits")["status"],
        "SKIPPED"
    );
    assert_eq!(
        row(&man, "mast:JWST/product/jw1_t1_cat.ecsv")["status"],
        "COMPLETE",
        "a text product may be text/plain"
    );
    assert_eq!(m.seen().len(), 1);
    // The same table as ECSV.
    let ecsv = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: dataURI, datatype: string}\n# - {name: size, datatype: int64}\n# delimiter: ','\ndataURI,size\nmast:JWST/product/jw1_t1_i2d.jpg,70\n";
    let t = e.write("products.ecsv", ecsv);
    let r = e.fetch(&m, &[t.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(e.dest().join("JWST/jw1_t1/jw1_t1_i2d.jpg").is_file());
    // A table size that differs from the server's is FAILED and not saved.
    let t = e.write(
        "wrong.csv",
        "dataURI,size\nmast:JWST/product/jw1_u_cal.fits,91\n",
    );
    let r = e.fetch(&m, &[t.to_str().unwrap(), "--flat"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!e.dest().join("jw1_u_cal.fits").exists());
    // Missing dataURI: exit 2 naming the columns found.
    let t = e.write("obs.csv", "obsid,obs_id,dataURL\n1,x,http://x\n");
    let r = e.fetch(&m, &[t.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("obs.csv:1") && r.stderr.contains("dataURL"),
        "{}",
        r.stderr
    );
}
