//! Issue 23 §4: exits and files a cron job can act on — exit 4 when every
//! failure wants a valid token, manifests created under the umask, and the
//! cron and systemd recipes in `examples/` run against the mock archive.

use super::*;

fn needs_token(seed: u64) -> Product {
    Product {
        need_token: true,
        ..Product::new(bytes(seed, 64))
    }
}

#[test]
fn exit_4_when_every_failure_wants_a_token_and_the_summary_says_so_once() {
    let m = archive_with(&[
        (A, needs_token(1)),
        (B, needs_token(2)),
        (IUE, Product::new(bytes(3, 10))),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n{IUE}\n"));
    // No token at all.
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let summary = r.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.contains("2 failed")
            && summary.contains("every failure wants a valid MAST token")
            && summary.contains("https://auth.mast.stsci.edu/token"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr
            .matches("every failure wants a valid MAST token")
            .count(),
        1,
        "said once: {}",
        r.stderr
    );
    assert_eq!(row(&e.manifest(), IUE)["status"], "COMPLETE");
    // A token MAST does not accept (expired): still exit 4, JSON says why.
    std::fs::remove_dir_all(e.dest()).unwrap();
    let r = e.fetch(
        &m,
        &[
            list.to_str().unwrap(),
            "--token",
            "expired-0123",
            "--log-format",
            "json",
        ],
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(!r.stderr.contains("expired-0123"));
    let summary: Value = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary event: {}", r.stderr));
    assert_eq!(summary["wants_token"], true, "{summary}");
    assert_eq!(summary["new_token"], "https://auth.mast.stsci.edu/token");
    assert_eq!(summary["failed"], 2);
}

#[test]
fn exit_1_when_any_failure_is_not_about_the_token() {
    let m = archive_with(&[
        (A, needs_token(1)),
        (
            B,
            Product {
                fail_first: vec![404],
                ..Product::new(bytes(2, 10))
            },
        ),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        !r.stderr.contains("every failure wants a valid MAST token"),
        "{}",
        r.stderr
    );
    // With the right token the protected file is no failure at all.
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--token", TOKEN]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Runs `cmd` under `umask`.
#[cfg(unix)]
fn with_umask(cmd: &mut Command, umask: u32) -> Run {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: umask(2) is async-signal-safe; nothing else runs in the child
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
    }
    Run::from(cmd.output().unwrap())
}

#[cfg(unix)]
#[test]
fn manifests_are_created_as_every_other_file_is_under_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let m = archive_with(&[(B, Product::new(bytes(2, 10)))]);
    let e = Env::new();
    let list = e.write("uris.txt", B);
    for (umask, want) in [(0o022, 0o644), (0o027, 0o640)] {
        let _ = std::fs::remove_dir_all(e.dest());
        let mut c = e.cmd();
        c.args(["fetch", "--base-url", &m.base, "-d"])
            .arg(e.dest())
            .arg(&list);
        let r = with_umask(&mut c, umask);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for name in ["MANIFEST.json", "MANIFEST.HTML"] {
            assert_eq!(mode(e.dest().join(name)), want, "{name} under {umask:o}");
        }
        assert_eq!(
            mode(e.dest().join("HST/ib1f01020/ib1f01020_raw.fits")),
            want,
            "the payload too"
        );
    }
}
