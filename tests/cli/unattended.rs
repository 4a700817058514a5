//! Issue 23 §4: exits and files a cron job can act on — exit 4 when every
//! failure wants a valid token, manifests created under the umask, and the
//! cron and systemd recipes in `examples/` run against the mock archive.

use super::raw::{Raw, Reply};
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

#[test]
fn a_refusal_from_a_host_the_token_is_never_sent_to_is_a_plain_failure() {
    // One server, two names: `base` (127.0.0.1) and `other` (localhost).
    let other = Arc::new(std::sync::Mutex::new(String::new()));
    let elsewhere = other.clone();
    let raw = Raw::start(move |req| {
        let t = req.target.as_str();
        if t.ends_with("redirected.fits") {
            Reply::redirect(&format!("{}/unauthorized.fits", elsewhere.lock().unwrap()))
        } else if t.ends_with("archive.fits") || t == "/denied.fits" {
            Reply::new(403, b"Forbidden")
        } else if t == "/unauthorized.fits" {
            Reply::new(401, b"Unauthorized")
        } else {
            Reply::new(404, b"{}")
        }
    });
    *other.lock().unwrap() = raw.other.clone();
    let e = Env::new();
    let run = |args: &[&str], token: Option<&str>| {
        let _ = std::fs::remove_dir_all(e.dest());
        let mut c = e.cmd();
        c.arg("fetch").arg("-d").arg(e.dest()).args(args);
        if let Some(t) = token {
            c.env("MAST_API_TOKEN", t);
        }
        let r = Run::from(c.output().unwrap());
        (r, e.manifest())
    };
    let plain_failures = |what: &str, r: &Run, man: &Value| {
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        assert!(
            !r.stderr.contains("every failure wants a valid MAST token"),
            "{what}: {}",
            r.stderr
        );
        for f in man["files"].as_array().unwrap() {
            assert_eq!(f["status"], "FAILED", "{what}: {man}");
            let message = f["message"].as_str().unwrap_or_default();
            assert!(!message.contains("token"), "{what}: {man}");
        }
    };
    // A download script's lines to hosts that are not MAST's (the archive
    // is https://mast.stsci.edu here): a 403 and a 401, no token.
    let script = e.write(
        "get.sh",
        &format!(
            "#!/bin/sh\ncurl -o a.fits {}/denied.fits\ncurl -o b.fits {}/unauthorized.fits\n",
            raw.other, raw.base
        ),
    );
    let (r, man) = run(&[script.to_str().unwrap()], None);
    plain_failures("script", &r, &man);
    assert_eq!(man["files"].as_array().unwrap().len(), 2, "{man}");
    // The archive redirects to an untrusted host, which answers 401: the
    // token was never sent there, with one or without.
    let list = e.write("uris.txt", "mast:HST/product/redirected.fits\n");
    for token in [None, Some(TOKEN)] {
        let (r, man) = run(&["--base-url", &raw.base, list.to_str().unwrap()], token);
        plain_failures(&format!("redirect, token {token:?}"), &r, &man);
        assert_eq!(man["files"][0]["http_status"], 401, "{man}");
    }
    assert!(
        raw.seen()
            .iter()
            .filter(|s| s.port != raw.port)
            .all(|s| s.header("authorization").is_none()),
        "the token never went to the other host"
    );
    // The same refusal from the archive itself still wants a token.
    let list = e.write("uris.txt", "mast:HST/product/archive.fits\n");
    let (r, man) = run(&["--base-url", &raw.base, list.to_str().unwrap()], None);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        man["files"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("needs a MAST token"),
        "{man}"
    );
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

// ---- the cron and systemd recipes (examples/), run as written -------------

/// Returns the text of a recipe file under `examples/`.
fn recipe(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The folder holding the `mastdl` under test, for PATH.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_mastdl"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const FEED_JW: &str = "jw02736007001_03101_00001_nrcb1_cal.fits";
const FEED_HST: &str = "IB1F01020/ib1f01020_flt.fits";

/// Writes `$HOME/mast/events.json`: the change feed the recipes read.
fn write_feed(e: &Env, rows: &[&str]) {
    let dir = e.path().join("mast");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("events.json"), format!("[{}]", rows.join(",\n"))).unwrap();
}

fn jw_row() -> String {
    format!(
        r#"{{"mission": "jwst", "fileset": "jw02736007001_03101_00001_nrcb1", "filename": "{FEED_JW}", "event": "new"}}"#
    )
}

fn hst_row() -> String {
    format!(
        r#"{{"mission": "hst", "dataset": "IB1F01020", "filename": "ib1f01020_flt.fits", "uri": "{FEED_HST}", "event": "public"}}"#
    )
}

/// The crontab's job: its environment lines and the command after the five
/// time fields.
fn crontab_job(text: &str) -> (Vec<(String, String)>, String) {
    let mut env = Vec::new();
    let mut command = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((k, v)) = first.split_once('=').filter(|_| first == line) {
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..];
        }
        assert!(command.is_none(), "one job per recipe: {line}");
        command = Some(rest.trim().to_string());
    }
    (env, command.expect("a job line"))
}

/// Runs the crontab's command as cron would: `sh -c`, HOME and the
/// crontab's variables set (the binary under test first on PATH), pointed
/// at the mock archive through the environment.
fn run_cron(e: &Env, m: &Mock) -> Run {
    let (env, command) = crontab_job(&recipe("cron/crontab"));
    let mut c = Command::new("sh");
    c.arg("-c").arg(&command).current_dir(e.path()).env_clear();
    for (k, v) in &env {
        let v = if k == "PATH" {
            format!("{}:{v}", bin_dir().display())
        } else {
            v.clone()
        };
        c.env(k, v);
    }
    c.env("HOME", e.path())
        .env("MASTDL_BASE_URL", &m.base)
        .env("MASTDL_RETRY_BASE_MS", "0")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    Run::from(c.output().unwrap())
}

#[cfg(unix)]
#[test]
fn the_cron_recipe_syncs_verifies_and_alerts_only_on_what_needs_a_person() {
    let m = archive_with(&[
        (FEED_JW, Product::new(bytes(1, 5000))),
        (FEED_HST, Product::new(bytes(2, 3000))),
    ]);
    let e = Env::new();
    // Installed as the crontab says.
    let config = e.path().join(".config/mastdl");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("mastdl-sync.sh"), recipe("cron/mastdl-sync.sh")).unwrap();
    write_feed(&e, &[&jw_row(), &hst_row()]);
    let mirror = e.path().join("mast/mirror");
    let log = e.path().join("mast/mastdl-sync.log");

    // A clean night: files in place, verified, nothing for cron to mail.
    let r = run_cron(&e, &m);
    assert_eq!(
        r.code,
        0,
        "{}\n{}",
        r.stderr,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(r.stderr, "", "a clean night mails nothing");
    assert_eq!(
        std::fs::read(mirror.join(format!("jwst/jw02736007001_03101_00001_nrcb1/{FEED_JW}")))
            .unwrap(),
        bytes(1, 5000)
    );
    assert!(mirror.join("hst/IB1F01020/ib1f01020_flt.fits").is_file());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("2 complete"), "{text}");
    assert!(text.contains("verify: 2 files recorded"), "{text}");

    // A protected product and no token: exit 4, one alert naming the page.
    m.add(
        "IB1F01030/ib1f01030_flt.fits",
        Product {
            need_token: true,
            ..Product::new(bytes(3, 100))
        },
    );
    let protected = r#"{"mission": "hst", "dataset": "IB1F01030", "filename": "ib1f01030_flt.fits", "uri": "IB1F01030/ib1f01030_flt.fits", "event": "new"}"#;
    write_feed(&e, &[&jw_row(), &hst_row(), protected]);
    let r = run_cron(&e, &m);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("https://auth.mast.stsci.edu/token") && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );

    // The token in its file: fetched, and never written anywhere.
    std::fs::write(config.join("token"), TOKEN).unwrap();
    let r = run_cron(&e, &m);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(mirror.join("hst/IB1F01030/ib1f01030_flt.fits").is_file());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(TOKEN) && !r.stderr.contains(TOKEN));

    // Rot in the mirror: verify catches it, exit 1, the log has the repair.
    let f = mirror.join("hst/IB1F01020/ib1f01020_flt.fits");
    let mut body = std::fs::read(&f).unwrap();
    body[10] ^= 1;
    std::fs::write(&f, body).unwrap();
    let r = run_cron(&e, &m);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("verify found problems"), "{}", r.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("CORRUPT") && text.contains("repair: mastdl verify"),
        "{text}"
    );
}

/// A unit file's `Key=value` settings, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Expands a unit's command line as systemd would for these recipes: `%h`,
/// `${VAR}` from its `Environment=` lines, split on whitespace (the recipe
/// quotes nothing); the installed binary becomes the one under test.
fn unit_command(line: &str, home: &Path, env: &[(String, String)]) -> Vec<String> {
    line.split_whitespace()
        .map(|w| {
            let mut w = w.replace("%h", &home.display().to_string());
            for (k, v) in env {
                w = w.replace(&format!("${{{k}}}"), v);
            }
            if w == "/usr/local/bin/mastdl" {
                env!("CARGO_BIN_EXE_mastdl").to_string()
            } else {
                w
            }
        })
        .collect()
}

#[cfg(unix)]
#[test]
fn the_systemd_recipe_runs_its_command_lines_against_the_archive() {
    let m = archive_with(&[
        (FEED_JW, Product::new(bytes(1, 5000))),
        (FEED_HST, Product::new(bytes(2, 3000))),
    ]);
    let e = Env::new();
    write_feed(&e, &[&jw_row(), &hst_row()]);
    let service = unit_settings(&recipe("systemd/mastdl-sync.service"));
    let timer = unit_settings(&recipe("systemd/mastdl-sync.timer"));
    let get = |s: &[(String, String)], k: &str| -> Vec<String> {
        s.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(get(&timer, "Unit"), ["mastdl-sync.service"]);
    assert_eq!(get(&timer, "Persistent"), ["true"]);
    assert_eq!(get(&timer, "OnCalendar").len(), 1);
    assert_eq!(get(&service, "Type"), ["oneshot"]);
    let ok_codes: Vec<i32> = get(&service, "SuccessExitStatus")
        .iter()
        .flat_map(|v| {
            v.split_whitespace()
                .map(|c| c.parse::<i32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ok_codes, [3], "a run that found DEST locked is no failure");
    let home = e.path();
    let env: Vec<(String, String)> = get(&service, "Environment")
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.replace("%h", &home.display().to_string()))
        })
        .collect();
    // The EnvironmentFile= carries the token: `-` makes it optional.
    assert_eq!(get(&service, "EnvironmentFile"), ["-%h/.config/mastdl/env"]);
    let run = |key: &str| -> Run {
        let lines = get(&service, key);
        assert_eq!(lines.len(), 1, "{key}");
        let words = unit_command(&lines[0], home, &env);
        let mut c = Command::new(&words[0]);
        c.args(&words[1..])
            .current_dir(home)
            .env_clear()
            .env("HOME", home)
            .env("MASTDL_BASE_URL", &m.base)
            .env("MASTDL_RETRY_BASE_MS", "0")
            .stdin(Stdio::null());
        Run::from(c.output().unwrap())
    };
    let r = run("ExecStart");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mirror = home.join("mast/mirror");
    assert!(mirror.join("hst/IB1F01020/ib1f01020_flt.fits").is_file());
    let r = run("ExecStartPost");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("verify: 2 files recorded"),
        "{}",
        r.stderr
    );
    // A second night transfers nothing and verifies again.
    m.reset_log();
    assert_eq!(run("ExecStart").code, 0);
    assert_eq!(m.body_bytes(), 0);
    std::fs::remove_file(mirror.join("hst/IB1F01020/ib1f01020_flt.fits")).unwrap();
    let r = run("ExecStartPost");
    assert_eq!(
        r.code, 1,
        "the unit fails on a damaged mirror: {}",
        r.stderr
    );
}
