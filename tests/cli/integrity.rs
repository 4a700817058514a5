//! Issue 12: never a wrong byte at the final path, never the token where it
//! does not belong — against servers that lie, stall, redirect and echo,
//! and a file system with planted symlinks, a full disk and a read-only
//! mount. Every test here failed before the fix it names.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mock::{bytes, Product, TOKEN};
use super::raw::{Raw, Reply};
use super::{archive_with, row, walk, Env, Run, A, B};

const A_PATH: &str =
    "JWST/jw01409-o031_t014_nircam_clear-f212n/jw01409-o031_t014_nircam_clear-f212n_i2d.fits";

fn part_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(".part");
    PathBuf::from(s)
}

fn meta_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(".part.meta");
    PathBuf::from(s)
}

/// Waits for `child`, killing it and failing after `limit` (a hang
/// detector, not a speed check: every run here ends in seconds when bounded).
fn wait_bounded(mut child: Child, limit: Duration) -> Run {
    let t0 = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return Run::from(child.wait_with_output().unwrap());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let r = Run::from(child.wait_with_output().unwrap());
            panic!("mastdl did not finish within {limit:?}: {}", r.stderr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn everything(e: &Env, r: &Run) -> String {
    let mut all = format!("{}{}", r.stdout, r.stderr);
    for f in walk(&e.dest()) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    all
}

/// Point 1: a `.part` whose length says "complete" but whose sidecar is
/// gone (or says it was filled by ranges) is discarded, never renamed.
#[test]
fn a_full_length_part_without_its_sidecar_is_never_renamed() {
    let body = bytes(21, 300_000);
    let m = archive_with(&[(A, Product::new(body.clone()))]);
    let e = Env::new();
    let fin = e.dest().join(A_PATH);
    std::fs::create_dir_all(fin.parent().unwrap()).unwrap();
    // Pre-sized like a ranged `.part` whose ranges never arrived: zeros.
    std::fs::write(part_of(&fin), vec![0u8; body.len()]).unwrap();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read(&fin).unwrap(),
        body,
        "zeros reached the final path"
    );
    assert!(m.seen_for(A).iter().all(|s| s.range.is_none()));

    // A sidecar that says "ranged" is for the ranged path only.
    std::fs::remove_file(&fin).unwrap();
    std::fs::write(part_of(&fin), vec![0u8; body.len()]).unwrap();
    std::fs::write(
        meta_of(&fin),
        r#"{"validator":null,"total":300000,"ranged":{"chunk":8388608,"done":[0]}}"#,
    )
    .unwrap();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(&fin).unwrap(), body);
    assert!(!part_of(&fin).exists() && !meta_of(&fin).exists());
}

/// Point 2: a resume names the validator of the first bytes (If-Range), and
/// a product reprocessed between attempts (same name, same size, new ETag)
/// restarts from zero instead of becoming v1's head plus v2's tail.
#[test]
fn a_product_reprocessed_between_attempts_is_never_a_hybrid() {
    let v1 = bytes(31, 200_000);
    let v2 = bytes(32, 200_000);
    let m = archive_with(&[(
        A,
        Product {
            truncate_first: 1,
            etag: Some("\"v1\"".into()),
            ..Product::new(v1.clone())
        },
    )]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--retries", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let fin = e.dest().join(A_PATH);
    assert!(part_of(&fin).exists() && meta_of(&fin).exists());

    // Same product, same size, reprocessed: the mock ignores If-Range and
    // answers the range from v2, with v2's ETag.
    m.add(
        A,
        Product {
            etag: Some("\"v2\"".into()),
            ..Product::new(v2.clone())
        },
    );
    m.reset_log();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = m.seen_for(A);
    assert!(seen[0].range.is_some(), "the first attempt resumed");
    assert_eq!(seen[0].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(std::fs::read(&fin).unwrap(), v2, "a hybrid file was saved");
    let state = std::fs::read_to_string(e.dest().join(".mastdl/state.jsonl")).unwrap();
    assert!(state.lines().last().unwrap().contains("v2"), "{state}");

    // Unchanged: the resume is accepted and only the tail is sent.
    m.add(
        B,
        Product {
            truncate_first: 1,
            etag: Some("\"b1\"".into()),
            ..Product::new(bytes(33, 100_000))
        },
    );
    let list_b = e.write("b.txt", B);
    let r = e.fetch(&m, &[list_b.to_str().unwrap(), "--retries", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    m.reset_log();
    let r = e.fetch(&m, &[list_b.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(m.body_bytes(), 50_000, "only the missing half was sent");
}

/// Point 3: the token travels in `Authorization` and the `mast_token`
/// cookie only to trusted hosts, on every hop of every request: `/whoami`,
/// `path_lookup` and downloads all redirect to an untrusted host here.
#[test]
fn no_credential_reaches_an_untrusted_host_on_any_request() {
    let body = bytes(41, 5_000);
    let served = body.clone();
    let other_port = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let other = other_port.clone();
    let raw = Raw::start(move |req| {
        let elsewhere = other.lock().unwrap().clone();
        if req.target.starts_with("/whoami") {
            Reply::redirect(&format!("{elsewhere}/steal-whoami"))
        } else if req.target.starts_with("/api/v0.1/path_lookup") {
            Reply::redirect(&format!("{elsewhere}/steal-lookup"))
        } else if req.target.starts_with("/api/v0.1/Download") {
            Reply::redirect(&format!("{elsewhere}/file"))
        } else if req.target.starts_with("/file") {
            Reply::new(200, &served)
        } else {
            Reply::new(404, b"{}")
        }
    });
    *other_port.lock().unwrap() = raw.other.clone();
    let e = Env::new();
    let list = e.write("uris.txt", "mast:HST/product/ib1f01020_raw.fits\n");
    let mut c = e.cmd();
    c.args(["fetch", "--cloud", "--base-url", &raw.base, "-d"])
        .arg(e.dest())
        .arg(&list)
        .env("MAST_API_TOKEN", TOKEN);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = raw.seen();
    let to_other: Vec<_> = seen.iter().filter(|s| s.port != raw.port).collect();
    assert!(
        to_other.len() >= 3,
        "whoami, lookup and download all went there: {seen:?}"
    );
    for s in &to_other {
        assert!(s.header("authorization").is_none(), "{s:?}");
        assert!(s.header("cookie").is_none(), "{s:?}");
    }
    let trusted: Vec<_> = seen.iter().filter(|s| s.port == raw.port).collect();
    assert!(trusted
        .iter()
        .all(|s| s.header("authorization") == Some(&*format!("token {TOKEN}"))));
    assert!(!everything(&e, &r).contains(TOKEN));
}

/// Point 4: a `/whoami` that stalls mid-body, or never ends, costs a
/// warning, not the run (and not the memory).
#[test]
fn a_stalled_or_endless_whoami_costs_only_a_warning() {
    let body = bytes(51, 1_000);
    for endless in [false, true] {
        let served = body.clone();
        let raw = Raw::start(move |req| {
            if req.target.starts_with("/whoami") {
                let mut r =
                    Reply::new(200, b"{\"ezid\": \"alice\"").header("Content-Length", "9999");
                r.headers.remove(0);
                if endless {
                    r = r.no_length();
                    r.endless = Some((Duration::from_millis(1), vec![b' '; 64 << 10]));
                } else {
                    r.endless = None;
                    r.parts.push((Duration::from_secs(3600), vec![]));
                }
                r
            } else {
                Reply::new(200, &served)
            }
        });
        let e = Env::new();
        let list = e.write("uris.txt", A);
        let mut c = e.cmd();
        c.args(["fetch", "--timeout", "2", "--base-url", &raw.base, "-d"])
            .arg(e.dest())
            .arg(&list)
            .env("MAST_API_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let r = wait_bounded(c.spawn().unwrap(), Duration::from_secs(60));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stderr.contains("whoami"), "{}", r.stderr);
        assert_eq!(std::fs::read(e.dest().join(A_PATH)).unwrap(), body);
    }
}

/// Points 6 and 7: a server that echoes the token into error bodies and
/// pages never gets it printed or stored; an error body that drips is cut
/// off by time, not waited for.
#[test]
fn an_echoed_token_is_scrubbed_and_a_dripping_error_body_is_cut() {
    let echo = format!("<html><h1>bad token {TOKEN} for you</h1></html>");
    let raw = Raw::start(move |req| {
        let uri = req.target.clone();
        if uri.contains("whoami") {
            Reply::new(404, b"")
        } else if uri.contains("product%2Fa_") || uri.contains("product/a_") {
            Reply::new(401, echo.as_bytes()).header("Content-Type", "text/html")
        } else if uri.contains("product%2Fb_") || uri.contains("product/b_") {
            Reply::new(200, echo.as_bytes()).header("Content-Type", "text/html")
        } else if uri.contains("product%2Fc_") || uri.contains("product/c_") {
            Reply::new(500, format!("{{\"error\": \"{TOKEN}\"}}").as_bytes())
        } else {
            // 404 whose body arrives one byte per second, forever.
            let mut r = Reply::new(404, b"n").no_length();
            r.endless = Some((Duration::from_secs(1), b"o".to_vec()));
            r
        }
    });
    let e = Env::new();
    let list = e.write(
        "uris.txt",
        "mast:HST/product/a_raw.fits\nmast:HST/product/b_raw.fits\nmast:HST/product/c_raw.fits\nmast:HST/product/d_raw.fits\n",
    );
    for format in ["text", "json"] {
        let mut c = e.cmd();
        c.args([
            "fetch",
            "--retries",
            "1",
            "--timeout",
            "2",
            "--log-format",
            format,
        ])
        .args(["--base-url", &raw.base, "-d"])
        .arg(e.dest())
        .arg(&list)
        .env("MAST_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let r = wait_bounded(c.spawn().unwrap(), Duration::from_secs(60));
        assert_eq!(r.code, 1, "{}", r.stderr);
        let all = everything(&e, &r);
        assert!(!all.contains(TOKEN), "the echoed token leaked ({format})");
        assert!(all.contains("(redacted)"), "{}", r.stderr);
        let m = e.manifest();
        assert_eq!(row(&m, "mast:HST/product/d_raw.fits")["http_status"], 404);
    }
}

/// Point 8: a 206 nobody asked for is not the whole file.
#[test]
fn an_unasked_partial_answer_is_never_saved_as_the_file() {
    let body = bytes(61, 1_000);
    let served = body.clone();
    let raw = Raw::start(move |req| {
        if req.target.contains("whole") {
            Reply::new(206, &served).header("Content-Range", "bytes 0-999/1000")
        } else {
            Reply::new(206, &served[500..]).header("Content-Range", "bytes 500-999/1000")
        }
    });
    let e = Env::new();
    let list = e.write(
        "uris.txt",
        "mast:HST/product/half_raw.fits\nmast:HST/product/whole_raw.fits\n",
    );
    let mut c = e.cmd();
    c.args(["fetch", "--retries", "1", "--base-url", &raw.base, "-d"])
        .arg(e.dest())
        .arg(&list);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    let m = e.manifest();
    let half = row(&m, "mast:HST/product/half_raw.fits");
    assert_eq!(half["status"], "FAILED");
    assert!(half["message"].as_str().unwrap().contains("Content-Range"));
    assert!(!e.dest().join("HST/half/half_raw.fits").exists());
    assert_eq!(
        std::fs::read(e.dest().join("HST/whole/whole_raw.fits")).unwrap(),
        body
    );
    // The next run does not skip it: nothing was recorded.
    let r = Run::from(
        e.cmd()
            .args(["fetch", "--retries", "0", "--base-url", &raw.base, "-d"])
            .arg(e.dest())
            .arg(&list)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        row(&e.manifest(), "mast:HST/product/half_raw.fits")["status"],
        "FAILED"
    );
}

/// Point 5: planted symlinks — at the `.part`, at the final path — are
/// never written through, and never left in place of the file.
#[cfg(unix)]
#[test]
fn planted_symlinks_are_never_followed_nor_renamed_into_place() {
    let body = bytes(71, 40_000);
    let m = archive_with(&[(A, Product::new(body.clone()))]);
    let e = Env::new();
    let outside = e.path().join("outside.txt");
    std::fs::write(&outside, b"precious").unwrap();
    let fin = e.dest().join(A_PATH);
    std::fs::create_dir_all(fin.parent().unwrap()).unwrap();
    let list = e.write("uris.txt", A);
    for force in [false, true] {
        let _ = std::fs::remove_file(&fin);
        std::os::unix::fs::symlink(&outside, part_of(&fin)).unwrap();
        std::os::unix::fs::symlink(&outside, meta_of(&fin)).unwrap();
        let mut args = vec![list.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let r = e.fetch(&m, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        let meta = std::fs::symlink_metadata(&fin).unwrap();
        assert!(
            meta.file_type().is_file(),
            "a symlink was renamed into place"
        );
        assert_eq!(std::fs::read(&fin).unwrap(), body);
    }
    // A symlink at the final path (even of the right size) is not "complete".
    std::fs::remove_file(&fin).unwrap();
    std::fs::write(&outside, vec![1u8; body.len()]).unwrap();
    std::os::unix::fs::symlink(&outside, &fin).unwrap();
    let r = e.fetch(&m, &[list.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&fin)
        .unwrap()
        .file_type()
        .is_file());
    assert_eq!(std::fs::read(&fin).unwrap(), body);
    assert_eq!(std::fs::read(&outside).unwrap(), vec![1u8; body.len()]);
    // The manifests are not written through symlinks.
    std::fs::remove_file(e.dest().join("MANIFEST.json")).unwrap();
    std::os::unix::fs::symlink(&outside, e.dest().join("MANIFEST.json")).unwrap();
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--force"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    assert_eq!(std::fs::read(&outside).unwrap(), vec![1u8; body.len()]);
    assert!(std::fs::symlink_metadata(e.dest().join("MANIFEST.json"))
        .unwrap()
        .file_type()
        .is_file());
    // Nor the state record: a symlink there is refused (issue 20 §3).
    let state = e.dest().join(".mastdl/state.jsonl");
    std::fs::remove_file(&state).unwrap();
    std::os::unix::fs::symlink(&outside, &state).unwrap();
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--force"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(std::fs::read(&outside).unwrap(), vec![1u8; body.len()]);
}

/// A tmpfs mounted for one test (root only; the test is skipped, saying
/// so, where mounting is not allowed).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        }
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Point 9: a full disk fails the file that hit it (its `.part` removed so
/// the rest of the run and the manifest fit), and leaves no manifest
/// temporaries behind; a read-only DEST is a usage error (exit 2).
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_and_a_read_only_dest() {
    let m = archive_with(&[
        (A, Product::new(bytes(1, 600_000))),
        (B, Product::new(bytes(2, 1000))),
    ]);
    let e = Env::new();
    let Some(_fs) = Tmpfs::mount(&e.dest(), "size=512k") else {
        return;
    };
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap(), "-j", "1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let man = e.manifest();
    let msg = row(&man, A)["message"].as_str().unwrap();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert_eq!(row(&man, A)["attempts"], 1, "a full disk is not retried");
    assert_eq!(row(&man, B)["status"], "COMPLETE");
    assert!(!e.dest().join(A_PATH).exists());
    // Fill it up: the manifest cannot be written, and no temporary stays.
    std::fs::write(e.dest().join("filler"), vec![7u8; 500_000]).ok();
    let _ = e.fetch(&m, &[list.to_str().unwrap(), "-j", "1", "--force"]);
    let leftovers: Vec<_> = std::fs::read_dir(e.dest())
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let ro = Env::new();
    let Some(_ro) = Tmpfs::mount(&ro.path().join("ro"), "ro,size=64k") else {
        return;
    };
    let mut c = ro.cmd();
    c.args(["fetch", "--base-url", &m.base, "-d"])
        .arg(ro.path().join("ro/out"))
        .arg(ro.write("uris.txt", A));
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("writable"), "{}", r.stderr);
}

/// Point 9: names mastdl needs for itself, names too long for a `.part`
/// suffix, and paths that collide on case-insensitive file systems.
#[test]
fn reserved_long_and_case_colliding_names() {
    let m = archive_with(&[]);
    let e = Env::new();
    for (list, why) in [
        ("mast:JWST/product/MANIFEST.json\n", "--flat"),
        ("mast:.mastdl/product/state.jsonl\n", ""),
        (
            "mast:HST/product/abc_raw.fits\nmast:HST/product/ABC_raw.fits\n",
            "case",
        ),
        ("mast:HST/product/x~0123456789abcdef\n", "hashed .part name"),
        (
            "mast:HST/product/caf\u{e9}_x.fits\nmast:HST/product/cafe\u{301}_x.fits\n",
            "normalisation",
        ),
    ] {
        let f = e.write("bad.txt", list);
        let mut args = vec![f.to_str().unwrap()];
        if why == "--flat" {
            args.push("--flat");
        }
        let r = e.fetch(&m, &args);
        assert_eq!(r.code, 2, "{list}: {}", r.stderr);
        assert!(r.stderr.contains("bad.txt:"), "{}", r.stderr);
        assert!(m.seen().is_empty(), "a request was made for bad input");
    }
    // A 253-byte name still downloads (its `.part` name is shortened).
    let name = format!("{}_raw.fits", "x".repeat(244));
    assert_eq!(name.len(), 253);
    let uri = format!("mast:HST/product/{name}");
    m.add(&uri, Product::new(bytes(5, 3000)));
    let f = e.write("long.txt", &uri);
    let r = e.fetch(&m, &[f.to_str().unwrap(), "--flat"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(e.dest().join(&name)).unwrap(), bytes(5, 3000));
}

/// Point 9: a token no header can carry is refused at start; a password in
/// `--base-url` never reaches the manifest; `-j` beyond the open-file
/// limit is clamped and said, not two thirds of the files failed; a stray
/// shard manifest of an absurd count does not make `report` allocate.
#[cfg(unix)]
#[test]
fn bad_tokens_url_passwords_open_file_limits_and_stray_shards() {
    let m = archive_with(&[(A, Product::new(bytes(3, 100)))]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--token", "abc\u{7}def"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`--token`"), "{}", r.stderr);

    let with_password = m.base.replace("http://", "http://user:pa55w0rd-X@");
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &with_password, "-d"])
        .arg(e.dest())
        .arg(&list);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!everything(&e, &r).contains("pa55w0rd-X"));

    let many: String = (0..120)
        .map(|i| format!("mast:HST/product/f{i}_raw.fits\n"))
        .collect();
    for i in 0..120 {
        m.add(
            &format!("mast:HST/product/f{i}_raw.fits"),
            Product::new(bytes(i, 500)),
        );
    }
    let f = e.write("many.txt", &many);
    let script = format!(
        "ulimit -n 64 && exec {} fetch -j 200 --base-url {} -d {} {}",
        env!("CARGO_BIN_EXE_mastdl"),
        m.base,
        e.path().join("many").display(),
        f.display()
    );
    let mut c = e.cmd();
    let r = Run::from(
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .env_remove("MAST_API_TOKEN")
            .current_dir(e.path())
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    let _ = &mut c;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ulimit -n"), "{}", r.stderr);

    let shards = e.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    std::fs::write(shards.join("MANIFEST.0-of-4294967295.json"), "{}").unwrap();
    let r = Run::from(e.cmd().arg("report").arg(&shards).output().unwrap());
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// Issue 14 (part): `--limit-rate` takes curl's syntax, refuses nonsense
/// with exit 2, and a capped run still delivers every byte.
#[test]
fn limit_rate_parses_curl_syntax_and_delivers_every_byte() {
    let body = bytes(81, 300_000);
    let m = archive_with(&[(A, Product::new(body.clone()))]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    for bad in ["0", "abc", "-5k", "99999999999G"] {
        let r = e.fetch(&m, &[list.to_str().unwrap(), "--limit-rate", bad]);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
    }
    assert!(m.seen().is_empty());
    let r = e.fetch(&m, &[list.to_str().unwrap(), "--limit-rate", "2M"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(e.dest().join(A_PATH)).unwrap(), body);
}

/// A re-run of a complete pull asks the archive nothing, `/whoami`
/// included, also with a token.
#[test]
fn a_complete_rerun_with_a_token_makes_no_request() {
    let m = archive_with(&[(A, Product::new(bytes(91, 2_000)))]);
    let e = Env::new();
    let list = e.write("uris.txt", A);
    for run in 0..2 {
        m.reset_log();
        let mut c = e.cmd();
        c.args(["fetch", "--base-url", &m.base, "-d"])
            .arg(e.dest())
            .arg(&list)
            .env("MAST_API_TOKEN", TOKEN);
        let r = Run::from(c.output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        let asked = m.seen().len();
        if run == 0 {
            assert_eq!(asked, 2, "whoami and the file: {:?}", m.seen());
        } else {
            assert_eq!(asked, 0, "{:?}", m.seen());
        }
    }
}

/// Review findings: a `.part` whose first bytes came without a strong
/// validator and that is shorter than the overlap a resume compares
/// (64 KiB) is never joined to later bytes (it would be a hybrid if the
/// file changed); a body with no length that ends with the connection is
/// not saved; a folder below DEST that is a symlink is not written through.
#[test]
fn no_validator_no_resume_no_length_no_save_and_no_symlinked_folders() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n = calls.clone();
    let raw = Raw::start(move |req| {
        if req.target.contains("nolen") {
            let mut r = Reply::new(200, &[b'N'; 40_000]).no_length();
            r.close = true;
            return r;
        }
        match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            // v1, cut half-way, no ETag, no Last-Modified.
            0 => {
                let mut r = Reply::new(200, &[b'A'; 50_000]).header("Content-Length", "100000");
                r.headers.remove(0);
                r.close = true;
                r
            }
            // v2, same size; a Range would be answered from v2.
            _ => match req.header("range").and_then(|r| r.strip_prefix("bytes=")) {
                Some(from) => {
                    let from: usize = from.trim_end_matches('-').parse().unwrap();
                    Reply::new(206, &vec![b'B'; 100_000 - from])
                        .header("Content-Range", &format!("bytes {from}-99999/100000"))
                }
                None => Reply::new(200, &[b'B'; 100_000]),
            },
        }
    });
    let e = Env::new();
    let list = e.write("uris.txt", "mast:HST/product/v_raw.fits\n");
    let fetch = |extra: &[&str]| {
        let mut c = e.cmd();
        c.args(["fetch", "--timeout", "5", "--base-url", &raw.base, "-d"])
            .arg(e.dest())
            .args(extra)
            .arg(&list);
        Run::from(c.output().unwrap())
    };
    assert_eq!(fetch(&["--retries", "0"]).code, 1);
    let r = fetch(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = std::fs::read(e.dest().join("HST/v/v_raw.fits")).unwrap();
    assert!(
        got.iter().all(|b| *b == b'B'),
        "a hybrid of v1 and v2 was saved"
    );
    assert!(raw
        .seen()
        .iter()
        .skip(1)
        .all(|s| s.header("range").is_none()));

    let nolen = e.write("nolen.txt", "mast:HST/product/nolen_raw.fits\n");
    let mut c = e.cmd();
    c.args(["fetch", "--retries", "0", "--base-url", &raw.base, "-d"])
        .arg(e.dest())
        .arg(&nolen);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!e.dest().join("HST/nolen/nolen_raw.fits").exists());
    assert!(
        row(&e.manifest(), "mast:HST/product/nolen_raw.fits")["message"]
            .as_str()
            .unwrap()
            .contains("no length")
    );

    #[cfg(unix)]
    {
        let outside = e.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(e.dest().join("HST")).unwrap();
        std::os::unix::fs::symlink(&outside, e.dest().join("HST/w")).unwrap();
        let w = e.write("w.txt", "mast:HST/product/w_raw.fits\n");
        let mut c = e.cmd();
        c.args(["fetch", "--retries", "0", "--base-url", &raw.base, "-d"])
            .arg(e.dest())
            .arg(&w);
        let r = Run::from(c.output().unwrap());
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "wrote outside DEST"
        );
    }
}

/// Issue 14: a large archive file whose answer shows `Accept-Ranges: bytes`
/// comes as parallel ranges, every byte exact; a server that ignores
/// `Range` still gets it whole, in one stream.
#[test]
fn large_archive_files_come_in_parallel_ranges_or_whole() {
    let big = bytes(101, 40 << 20);
    let m = archive_with(&[
        (
            A,
            Product {
                etag: Some("\"big1\"".into()),
                ..Product::new(big.clone())
            },
        ),
        (
            B,
            Product {
                etag: Some("\"big2\"".into()),
                no_range: true,
                ..Product::new(big.clone())
            },
        ),
    ]);
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap(), "-j", "8"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read(e.dest().join(A_PATH)).unwrap() == big,
        "ranged bytes differ"
    );
    let b_path = e.dest().join("HST/ib1f01020/ib1f01020_raw.fits");
    assert!(
        std::fs::read(&b_path).unwrap() == big,
        "whole-file bytes differ"
    );
    let ranged: Vec<_> = m.seen_for(A).into_iter().filter_map(|s| s.range).collect();
    assert!(ranged.len() >= 5, "{ranged:?}");
    assert!(ranged.iter().all(|r| !r.ends_with('-')), "{ranged:?}");
    assert!(m
        .seen_for(A)
        .iter()
        .skip(1)
        .all(|s| s.if_range.as_deref() == Some("\"big1\"")));
    assert_eq!(row(&e.manifest(), B)["status"], "COMPLETE");
    // Each had a sidecar while it came (ranges; a large whole file from its
    // first bytes): none is left beside the final files.
    for p in [e.dest().join(A_PATH), b_path] {
        assert!(!part_of(&p).exists() && !meta_of(&p).exists(), "{p:?}");
    }
}

/// Answers `req` from `body` as a server without validators does: `Range:
/// bytes=A-` or `bytes=A-B` honoured (206 with `Content-Range`), else the
/// whole file (200); `Accept-Ranges: bytes`; no ETag, no Last-Modified.
fn no_validator_reply(req: &super::raw::Req, body: &[u8]) -> Reply {
    let total = body.len();
    let span = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let a: usize = a.parse().ok()?;
            let b: usize = match b {
                "" => total - 1,
                b => b.parse::<usize>().ok()?.min(total - 1),
            };
            (a <= b).then_some((a, b))
        });
    match span {
        Some((a, b)) => Reply::new(206, &body[a..=b])
            .header("Content-Range", &format!("bytes {a}-{b}/{total}"))
            .header("Accept-Ranges", "bytes"),
        None => Reply::new(200, body).header("Accept-Ranges", "bytes"),
    }
}

/// Issue 20 §1: against a server that sends no ETag and no Last-Modified,
/// a file cut part-way is resumed: the re-run asks for the bytes from 64
/// KiB before the end of the `.part` (no `If-Range`: there is nothing to
/// put in it), compares them with the `.part`'s, and appends the rest —
/// exact bytes, the manifest saying which check passed. When the product
/// changed between the attempts inside that overlap, or its length changed
/// (the total is not the one recorded when the `.part` was started), the
/// file comes again whole and exact.
#[test]
fn without_validators_a_cut_file_resumes_with_its_overlap_checked() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const SIZE: usize = 1 << 20;
    const CUT: usize = 600_000;
    const URI: &str = "mast:HST/product/nv_raw.fits";
    let v1 = bytes(201, SIZE);
    let mut v2 = v1.clone();
    v2[CUT - 1000] ^= 0xff;
    let mut longer = v1.clone();
    longer.extend_from_slice(&bytes(204, 5000));
    for (changed, later) in [(false, v1.clone()), (true, v2.clone()), (true, longer)] {
        let first = v1.clone();
        let want = later.clone();
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let n = calls.clone();
        let raw = Raw::start(move |req| {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                // Cut: the whole length announced, part of the body sent.
                let mut r = Reply::new(200, &first[..CUT])
                    .header("Content-Length", &SIZE.to_string())
                    .header("Accept-Ranges", "bytes");
                r.headers.remove(0);
                r.close = true;
                return r;
            }
            no_validator_reply(req, &later)
        });
        let e = Env::new();
        let list = e.write("uris.txt", &format!("{URI}\n"));
        let fetch = |extra: &[&str]| {
            let mut c = e.cmd();
            c.args(["fetch", "--timeout", "10", "--base-url", &raw.base, "-d"])
                .arg(e.dest())
                .args(extra)
                .arg(&list);
            Run::from(c.output().unwrap())
        };
        let path = e.dest().join("HST/nv/nv_raw.fits");
        assert_eq!(fetch(&["--retries", "0"]).code, 1);
        assert!(!path.exists(), "a partial file at the final path");
        let have = std::fs::metadata(part_of(&path)).unwrap().len() as usize;
        assert_eq!(have, CUT, "the cut attempt's bytes are kept");
        let r = fetch(&[]);
        assert_eq!(r.code, 0, "changed: {changed}: {}", r.stderr);
        let got = std::fs::read(&path).unwrap();
        assert!(
            got == want,
            "changed: {changed}: the bytes are not the file's ({})",
            if got == v1 || got == v2 {
                "another version"
            } else {
                "a hybrid"
            }
        );
        assert!(!part_of(&path).exists() && !meta_of(&path).exists());
        let seen = raw.seen();
        let resume = &seen[1];
        assert_eq!(
            resume.header("range"),
            Some(format!("bytes={}-", CUT - 65536).as_str()),
            "changed: {changed}: {seen:?}"
        );
        assert_eq!(resume.header("if-range"), None);
        let message = row(&e.manifest(), URI)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if changed {
            let whole = &seen[2..];
            assert!(
                whole.len() == 1 && whole[0].header("range").is_none(),
                "after the overlap differed, the file came whole: {seen:?}"
            );
            assert!(!message.contains("resumed"), "{message}");
        } else {
            assert_eq!(seen.len(), 2, "one request resumed it: {seen:?}");
            assert!(
                message.contains("resumed at") && message.contains("no validator, overlap checked"),
                "{message}"
            );
        }
    }
}

/// The size of the large files of the ranged tests: three 8 MiB ranges.
const RANGED_SIZE: usize = 20 << 20;
/// Where the ranges of a file of [`RANGED_SIZE`] without validators
/// start: every one after the first 4 KiB before its boundary.
const OVERLAPPING: [&str; 3] = [
    "bytes=0-8388607",
    "bytes=8384512-16777215",
    "bytes=16773120-20971519",
];

/// Issue 20 §1: a large file from a server without validators comes in
/// parallel ranges, each after the first overlapping the one before by
/// 4 KiB, no `If-Range` (there is nothing to put in it), every byte exact,
/// the manifest saying which check passed.
#[test]
fn without_validators_a_large_file_comes_in_overlapping_ranges() {
    const URI: &str = "mast:HST/product/nvbig_raw.fits";
    let body = bytes(202, RANGED_SIZE);
    let served = body.clone();
    let raw = Raw::start(move |req| no_validator_reply(req, &served));
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{URI}\n"));
    let mut c = e.cmd();
    c.args(["fetch", "-j", "4", "--base-url", &raw.base, "-d"])
        .arg(e.dest())
        .arg(&list);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let path = e.dest().join("HST/nvbig/nvbig_raw.fits");
    assert!(std::fs::read(&path).unwrap() == body, "bytes differ");
    let seen = raw.seen();
    let mut ranges: Vec<&str> = seen.iter().filter_map(|s| s.header("range")).collect();
    ranges.sort_by_key(|r| r.len());
    ranges.sort();
    let mut want = OVERLAPPING.to_vec();
    want.sort();
    assert_eq!(ranges, want, "{seen:?}");
    assert!(seen.iter().all(|s| s.header("if-range").is_none()));
    let message = row(&e.manifest(), URI)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("in parallel ranges; no validator, overlap checked"),
        "{message}"
    );
}

/// Issue 20 §1: a file without validators that changes between two of its
/// ranges, inside their overlap (or in length: the later answers name
/// another total), is never saved as a hybrid: the overlap or the total
/// differs, and the file comes again whole, in one stream, exact.
#[test]
fn without_validators_a_file_changed_between_ranges_comes_again_whole() {
    let v1 = bytes(203, RANGED_SIZE);
    let mut v2 = v1.clone();
    // Inside the second range's overlap with the first.
    v2[(8 << 20) - 100] ^= 0xff;
    // Or longer: its answers name another total.
    let mut longer = v1.clone();
    longer.extend_from_slice(&bytes(205, 5000));
    for new in [v2.clone(), longer] {
        changed_between_ranges(&v1, &v2, new);
    }
}

/// Serves `old` to the first answer and the first range, `new` to every
/// later range; checks that the file comes again whole as `old`.
fn changed_between_ranges(v1: &[u8], v2: &[u8], new: Vec<u8>) {
    const URI: &str = "mast:HST/product/nvchg_raw.fits";
    let old = v1.to_vec();
    let raw = Raw::start(move |req| match req.header("range") {
        None | Some("bytes=0-8388607") => no_validator_reply(req, &old),
        Some(_) => no_validator_reply(req, &new),
    });
    let e = Env::new();
    let list = e.write("uris.txt", &format!("{URI}\n"));
    let mut c = e.cmd();
    c.args(["fetch", "-j", "4", "--base-url", &raw.base, "-d"])
        .arg(e.dest())
        .arg(&list);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let path = e.dest().join("HST/nvchg/nvchg_raw.fits");
    let got = std::fs::read(&path).unwrap();
    assert!(
        got == v1,
        "not the file whole ({})",
        if got == v2 {
            "the new version"
        } else {
            "a hybrid"
        }
    );
    let seen = raw.seen();
    let ranged = seen.iter().filter(|s| s.header("range").is_some()).count();
    assert!(ranged >= 2, "it was tried in ranges first: {seen:?}");
    let last = seen.last().unwrap();
    assert!(
        last.header("range").is_none(),
        "then it came whole, in one stream: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| s.header("range").is_none()).count(),
        2
    );
    assert!(!part_of(&path).exists() && !meta_of(&path).exists());
    let message = row(&e.manifest(), URI)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!message.contains("ranges"), "{message}");
}

// ---- issue 20 §3: nothing under `.mastdl` is followed, blocks or grows ----

/// Runs `fetch` of `list` into `e`'s DEST with a hang detector; returns the run.
fn fetch_bounded(e: &Env, m: &super::mock::Mock, list: &Path) -> Run {
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "-d"])
        .arg(e.dest())
        .arg(list)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_bounded(c.spawn().unwrap(), Duration::from_secs(30))
}

/// Issue 20 §3: a FIFO or a symlink to `/dev/zero` at a state record, a
/// symlinked `.mastdl` and a symlinked lock each end the run at once with
/// exit 2 and a message naming the file; nothing is requested and nothing
/// outside DEST is written.
#[cfg(unix)]
#[test]
fn planted_fifos_and_symlinks_in_dot_mastdl_are_refused_with_exit_2() {
    let m = archive_with(&[(B, Product::new(bytes(4, 1000)))]);
    for case in ["fifo", "dev-zero", "symlinked-dir", "symlinked-lock"] {
        let e = Env::new();
        let list = e.write("uris.txt", B);
        let meta = e.dest().join(".mastdl");
        let outside = e.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        match case {
            "fifo" => {
                std::fs::create_dir_all(&meta).unwrap();
                let ok = Command::new("mkfifo")
                    .arg(meta.join("state.1-of-2.jsonl"))
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
            "dev-zero" => {
                std::fs::create_dir_all(&meta).unwrap();
                std::os::unix::fs::symlink("/dev/zero", meta.join("state.jsonl")).unwrap();
            }
            "symlinked-dir" => {
                std::fs::create_dir_all(e.dest()).unwrap();
                std::os::unix::fs::symlink(&outside, &meta).unwrap();
            }
            _ => {
                std::fs::create_dir_all(&meta).unwrap();
                std::os::unix::fs::symlink(outside.join("lock"), meta.join("lock")).unwrap();
            }
        }
        let r = fetch_bounded(&e, &m, &list);
        assert_eq!(r.code, 2, "{case}: {}", r.stderr);
        let named = match case {
            "fifo" => "state.1-of-2.jsonl",
            "dev-zero" => "state.jsonl",
            "symlinked-dir" => ".mastdl",
            _ => "lock",
        };
        assert!(r.stderr.contains(named), "{case}: {}", r.stderr);
        assert!(m.seen().is_empty(), "{case}: a request was made");
        let written: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
        assert!(
            written.is_empty(),
            "{case}: wrote outside DEST: {written:?}"
        );
        assert!(!e.dest().join("MANIFEST.json").exists(), "{case}");
    }
}

/// Issue 20 §4: a disk filled by completed files. Every complete file is
/// in the state record, the summary says which manifest could not be
/// written, what fits is written, and after space is freed a re-run asks
/// for none of the complete files.
#[cfg(target_os = "linux")]
#[test]
fn a_disk_filled_by_complete_files_loses_no_record() {
    let names: Vec<String> = (0..1500)
        .map(|i| format!("mast:HST/product/f{i:04}_raw.fits"))
        .collect();
    let m = archive_with(&[]);
    for (i, u) in names.iter().enumerate() {
        m.add(u, Product::new(bytes(i as u64, 1000)));
    }
    let e = Env::new();
    let Some(_fs) = Tmpfs::mount(&e.dest(), "size=1m") else {
        return;
    };
    let list = e.write("uris.txt", &names.join("\n"));
    let r = e.fetch(&m, &[list.to_str().unwrap(), "-j", "2"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let complete: Vec<&String> = names
        .iter()
        .filter(|u| {
            let name = u.rsplit('/').next().unwrap();
            let obs = name.rsplit_once('_').unwrap().0;
            e.dest().join("HST").join(obs).join(name).is_file()
        })
        .collect();
    assert!(complete.len() > 100, "{} complete", complete.len());
    assert!(complete.len() < names.len(), "the disk never filled");
    let state = std::fs::read_to_string(e.dest().join(".mastdl/state.jsonl")).unwrap();
    let recorded: std::collections::HashSet<String> = state
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["uri"].as_str().unwrap().to_string())
        .collect();
    for u in &complete {
        assert!(recorded.contains(*u), "{u} is complete but not recorded");
    }
    let json = e.dest().join("MANIFEST.json");
    if json.exists() {
        let man = e.manifest();
        assert_eq!(man["requested"], 1500);
    }
    if !json.exists() || !e.dest().join("MANIFEST.HTML").exists() {
        assert!(r.stderr.contains("Cannot write `"), "{}", r.stderr);
    }
    let leftovers: Vec<_> = walk(&e.dest())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Free space: the next run fetches only what is missing.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=8m"])
        .arg(e.dest())
        .status()
        .unwrap();
    assert!(grown.success());
    m.reset_log();
    let r = e.fetch(&m, &[list.to_str().unwrap(), "-j", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for u in &complete {
        assert!(
            m.seen_for(u).is_empty(),
            "{u} was complete but requested again"
        );
    }
    let man = e.manifest();
    assert_eq!(man["skipped"], complete.len());
    assert_eq!(man["complete"], 1500 - complete.len());
}
