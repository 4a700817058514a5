//! `query` and `fetch --query`: a MAST search as URIs, a product table, or downloads.

use super::*;

fn search_archive() -> (Mock, Arc<mock_invoke::MockInvoke>) {
    use serde_json::json;
    let obs: Vec<Value> = (0..7)
        .map(|i| json!({"obsid": format!("{}", 1000 + i), "obs_collection": "JWST", "proposal_id": "1073", "instrument_name": "NIRCAM/IMAGE", "obs_id": format!("jw01073-o{i:03}")}))
        .collect();
    let products: Vec<(String, Vec<Value>)> = (0..7)
        .map(|i| {
            let o = format!("jw01073-o{i:03}");
            (
                format!("{}", 1000 + i),
                vec![
                    json!({"obsID": format!("{}", 1000 + i), "obs_collection": "JWST", "obs_id": o, "dataURI": format!("mast:JWST/product/{o}_i2d.fits"), "productFilename": format!("{o}_i2d.fits"), "size": 64, "productType": "SCIENCE", "calib_level": 3, "productGroupDescription": "Minimum Recommended Products"}),
                    json!({"obsID": format!("{}", 1000 + i), "obs_collection": "JWST", "obs_id": o, "dataURI": format!("mast:JWST/product/{o}_i2d.jpg"), "productFilename": format!("{o}_i2d.jpg"), "size": 32, "productType": "PREVIEW", "calib_level": 3}),
                    // Shared by every observation: listed once.
                    json!({"obsID": format!("{}", 1000 + i), "obs_collection": "JWST", "obs_id": "jw01073-shared", "dataURI": "mast:JWST/product/jw01073-shared_asn.json", "productFilename": "jw01073-shared_asn.json", "size": 16, "productType": "AUXILIARY", "calib_level": 3}),
                ],
            )
        })
        .collect();
    let inv = Arc::new(
        mock_invoke::MockInvoke::new(obs, products)
            .page_size(3)
            .executing(1)
            .fail_products(1),
    );
    let m = Mock::start_with(Some(inv.clone()));
    for i in 0..7 {
        let o = format!("jw01073-o{i:03}");
        m.add(
            &format!("mast:JWST/product/{o}_i2d.fits"),
            Product::new(bytes(i, 64)),
        );
        m.add(
            &format!("mast:JWST/product/{o}_i2d.jpg"),
            Product::new(bytes(i, 32)),
        );
    }
    m.add(
        "mast:JWST/product/jw01073-shared_asn.json",
        Product {
            content_type: Some("text/plain"),
            ..Product::new(bytes(9, 16))
        },
    );
    (m, inv)
}

#[test]
fn query_prints_uris_writes_tables_and_fetch_query_downloads() {
    let (m, _inv) = search_archive();
    let e = Env::new();
    let mut c = e.cmd();
    c.args([
        "query",
        "--base-url",
        &m.base,
        "--collection",
        "JWST",
        "--proposal",
        "1073",
        "--extension",
        "fits",
    ]);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let uris: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(uris.len(), 7, "{}", r.stdout);
    assert!(uris.iter().all(|u| u.ends_with("_i2d.fits")));
    let mut c = e.cmd();
    c.args([
        "query",
        "--base-url",
        &m.base,
        "--collection",
        "JWST",
        "--table",
        "t.csv",
    ]);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let table = std::fs::read_to_string(e.path().join("t.csv")).unwrap();
    assert_eq!(
        table.lines().count(),
        1 + 7 * 2 + 1,
        "deduplicated by productFilename: {table}"
    );
    // The table feeds fetch; fetch --query does it in one go, with the same result.
    let r = e.fetch(&m, &["t.csv", "--mrp-only"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let from_table = e.manifest();
    std::fs::remove_dir_all(e.dest()).unwrap();
    let r = e.fetch(
        &m,
        &[
            "--query",
            "--collection",
            "JWST",
            "--proposal",
            "1073",
            "--mrp-only",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let from_query = e.manifest();
    assert_eq!(from_query["complete"], 7);
    let paths = |v: &Value| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(paths(&from_table), paths(&from_query));
    assert!(e
        .dest()
        .join("JWST/jw01073-o003/jw01073-o003_i2d.fits")
        .is_file());
    // Criteria without --query, or --query without criteria, are usage errors.
    assert_eq!(e.fetch(&m, &["--collection", "JWST"]).code, 2);
    assert_eq!(e.fetch(&m, &["--query"]).code, 2);
}
