//! Runs sharing one DEST: shards that `report` merges, and the lock a second run meets.

use super::*;

#[test]
fn a_second_run_on_a_locked_dest_exits_3() {
    let e = Case::new(&[(
        A,
        Product {
            stall_first: 1,
            ..Product::new(bytes(3, 40_000))
        },
    )]);
    let m = &e.mock;
    let list = &e.list;
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--timeout", "30", "-d"])
        .arg(e.dest())
        .arg(list)
        .stderr(Stdio::null());
    let mut first = c.spawn().unwrap();
    wait_for(|| !m.seen_for(A).is_empty());
    let r = e.fetch(&[]);
    first.kill().unwrap();
    let _ = first.wait();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(&e.dest().display().to_string()),
        "{}",
        r.stderr
    );
    // kill -9 left nothing stale: the lock died with the process.
    m.reset_log();
    e.fetch_ok(&[]);
}

#[test]
fn three_shards_share_one_dest_and_report_merges_them() {
    let m = Mock::start();
    let uris: Vec<String> = (0..30)
        .map(|i| format!("mast:HST/product/o{i:03}_x{i}_raw.fits"))
        .collect();
    for (i, u) in uris.iter().enumerate() {
        m.add(u, Product::new(bytes(i as u64, 100 + i)));
    }
    let e = Env::new();
    let list = e.write("uris.txt", &uris.join("\n"));
    let children: Vec<_> = (0..3)
        .map(|k| {
            let mut c = e.cmd();
            c.args([
                "fetch",
                "--base-url",
                &m.base,
                "--shard",
                &format!("{k}/3"),
                "-d",
            ])
            .arg(e.dest())
            .arg(&list)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let r = Run::from(c.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let mut all = Vec::new();
    for k in 0..3 {
        let text =
            std::fs::read_to_string(e.dest().join(format!("MANIFEST.{k}-of-3.json"))).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        for f in v["files"].as_array().unwrap() {
            all.push(f["uri"].as_str().unwrap().to_string());
        }
    }
    all.sort();
    let mut want = uris.clone();
    want.sort();
    assert_eq!(all, want, "shards are disjoint and cover the input");
    assert_eq!(
        m.body_bytes(),
        (0..30).map(|i| 100 + i as u64).sum::<u64>(),
        "no file fetched twice"
    );
    let r = Run::from(e.cmd().arg("report").arg(e.dest()).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(man["requested"], 30);
    assert_eq!(man["complete"], 30);
    assert!(e.html().contains("<svg"), "timeline");
    // A shard still running makes report fail, naming it.
    let slow = Mock::start();
    slow.add(
        &uris[0],
        Product {
            stall_first: 1,
            ..Product::new(bytes(0, 100))
        },
    );
    let k = (0..3)
        .find(|k| {
            let mut c = e.cmd();
            c.args(["plan", "--base-url", &m.base, "--shard", &format!("{k}/3")])
                .arg(&list);
            Run::from(c.output().unwrap()).stdout.contains(&uris[0])
        })
        .unwrap();
    let mut c = e.cmd();
    c.args([
        "fetch",
        "--base-url",
        &slow.base,
        "--force",
        "--timeout",
        "30",
        "--shard",
        &format!("{k}/3"),
        "-d",
    ])
    .arg(e.dest())
    .arg(&list)
    .stderr(Stdio::null());
    let mut running = c.spawn().unwrap();
    wait_for(|| !slow.seen_for(&uris[0]).is_empty());
    let r = Run::from(e.cmd().arg("report").arg(e.dest()).output().unwrap());
    running.kill().unwrap();
    let _ = running.wait();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "still running (their manifests are not final): {k}/3"
        )),
        "{}",
        r.stderr
    );
    // A missing shard makes report fail, naming it.
    std::fs::remove_file(e.dest().join("MANIFEST.1-of-3.json")).unwrap();
    let r = Run::from(e.cmd().arg("report").arg(e.dest()).output().unwrap());
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("1/3"), "{}", r.stderr);
    // --shard auto from a Slurm array's environment.
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base, "--shard", "auto"])
        .arg(&list)
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3");
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut c = e.cmd();
    c.args(["plan", "--base-url", &m.base, "--shard", "1/3"])
        .arg(&list);
    assert_eq!(Run::from(c.output().unwrap()).stdout, r.stdout);
}
