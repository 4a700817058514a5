//! `--log-format json`: one parseable object per event, with the documented fields.

use super::*;

#[test]
fn json_log_lines_parse_and_carry_the_documented_fields() {
    let e = Case::new(&[
        (
            A,
            Product {
                fail_first: vec![503],
                ..Product::new(bytes(1, 100))
            },
        ),
        (B, Product::new(bytes(2, 100))),
    ]);
    let m = &e.mock;
    let r = e.fetch_ok(&["--log-format", "json"]);
    let events: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "plan");
    assert_eq!(*kinds.last().unwrap(), "summary");
    assert!(kinds.contains(&"retry") && kinds.contains(&"start"));
    for v in &events {
        assert!(v["ts"].is_string());
        match v["event"].as_str().unwrap() {
            "plan" => assert_eq!(v["files"], 2),
            "retry" => assert!(
                v["reason"].as_str().unwrap().contains("503")
                    && v["attempt"].is_u64()
                    && v["delay_ms"].is_u64()
            ),
            "finish" => {
                for k in [
                    "uri",
                    "path",
                    "status",
                    "bytes",
                    "attempts",
                    "source",
                    "duration_ms",
                ] {
                    assert!(!v[k].is_null(), "{k} in {v}");
                }
            }
            "summary" => {
                assert_eq!(v["complete"], 2);
                assert_eq!(v["bytes"], 200);
            }
            _ => {}
        }
    }
    // Skipped files have no transfer id; a run-ending error is an event too.
    let r = e.fetch(&["--log-format", "json"]);
    let finish: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "finish")
        .collect();
    assert!(
        finish
            .iter()
            .all(|v| v["id"].is_null() && v["status"] == "SKIPPED"),
        "{finish:?}"
    );
    let bad = e.write("bad.txt", "nope\n");
    let r = e
        .env
        .fetch(m, &[bad.to_str().unwrap(), "--log-format", "json"]);
    assert_eq!(r.code, 2);
    let lines: Vec<Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert_eq!(lines[0]["event"], "error");
    assert_eq!(lines[0]["exit"], 2);
    assert!(lines[0]["message"].as_str().unwrap().contains("bad.txt:1"));
}
