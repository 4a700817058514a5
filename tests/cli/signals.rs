//! SIGINT and SIGTERM: the `.part` kept, the manifest written, exit 130 / 143, a rerun resumes.

use super::*;

#[cfg(unix)]
#[test]
fn sigint_keeps_the_part_writes_the_manifest_exits_130_and_a_rerun_resumes() {
    let body = bytes(3, 400_000);
    let e = Case::new(&[
        (
            A,
            Product {
                stall_first: 1,
                etag: Some("\"a1\"".into()),
                ..Product::new(body.clone())
            },
        ),
        (
            B,
            Product {
                stall_first: 1,
                etag: Some("\"b1\"".into()),
                ..Product::new(bytes(1, 10))
            },
        ),
    ]);
    let m = &e.mock;
    let list = &e.list;
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--timeout", "30", "-d"])
        .arg(e.dest())
        .arg(list)
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let final_path = e.dest().join(
        "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
    );
    let mut part = final_path.clone().into_os_string();
    part.push(".part");
    // The signal goes out once the mock has sent both first halves (and
    // the client had a moment to read them), not after a guessed sleep.
    wait_for(|| m.body_bytes() >= 200_000 + 5);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(
        std::fs::metadata(&part).unwrap().len() > 0,
        ".part kept with the bytes received"
    );
    assert!(!final_path.exists());
    let man = e.manifest();
    assert_eq!(row(&man, A)["status"], "INTERRUPTED");
    assert_eq!(man["failed"], 0);
    assert_eq!(man["interrupted"], 2);
    assert!(r.stderr.contains("INTERRUPTED "), "{}", r.stderr);
    let msg = row(&man, A)["message"].as_str().unwrap();
    assert!(
        msg.contains("interrupted") && msg.contains(".part"),
        "{msg}"
    );
    assert!(
        r.stderr.contains("0 failed") && r.stderr.contains("2 cut short"),
        "interrupted transfers are not counted as failures: {}",
        r.stderr
    );
    m.reset_log();
    e.fetch_ok(&[]);
    assert!(
        m.seen_for(A)[0].range.is_some(),
        "re-run resumed with Range"
    );
    assert_eq!(std::fs::read(&final_path).unwrap(), body);
}

#[cfg(unix)]
#[test]
fn sigterm_exits_143_with_the_manifest_written() {
    let e = Case::new(&[(
        A,
        Product {
            stall_first: 1,
            ..Product::new(bytes(3, 100_000))
        },
    )]);
    let m = &e.mock;
    let list = &e.list;
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--timeout", "30", "-d"])
        .arg(e.dest())
        .arg(list)
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // The signal goes out once the mock has sent the first bytes.
    wait_for(|| m.body_bytes() > 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 143, "{}", r.stderr);
    assert!(row(&e.manifest(), A)["message"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert!(
        r.stderr.contains("(interrupted: 1 cut short"),
        "{}",
        r.stderr
    );
}

#[cfg(unix)]
#[test]
fn the_json_summary_counts_interrupted_files_beside_failed() {
    let e = Case::new(&[
        (
            A,
            Product {
                stall_first: 1,
                ..Product::new(bytes(3, 100_000))
            },
        ),
        (B, Product::new(bytes(1, 10))),
    ]);
    let m = &e.mock;
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "--timeout", "30", "-j", "1"])
        .args(["--log-format", "json", "-d"])
        .arg(e.dest())
        .arg(&e.list)
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    wait_for(|| m.body_bytes() > 0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let r = Run::from(child.wait_with_output().unwrap());
    assert_eq!(r.code, 143, "{}", r.stderr);
    let summary: Value = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary event: {}", r.stderr));
    let man = e.manifest();
    assert!(summary["interrupted"].is_u64(), "{summary}");
    assert_eq!(summary["interrupted"], man["interrupted"], "{summary}");
    assert_eq!(summary["interrupted"], 2, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["stopped"], true, "{summary}");
}
