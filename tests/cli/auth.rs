//! The token: from `--token` or `MAST_API_TOKEN`, sent only to trusted hosts, never shown, and a missing or rejected token said with what to do.

use super::*;

#[test]
fn token_survives_trusted_cross_origin_redirects_and_is_withheld_from_strangers() {
    let body = bytes(5, 5000);
    let e = Case::new(&[
        (
            A,
            Product {
                need_token: true,
                redirect: Some(Redirect::OtherPortSameHost),
                ..Product::new(body.clone())
            },
        ),
        (
            B,
            Product {
                redirect: Some(Redirect::Other),
                ..Product::new(bytes(6, 100))
            },
        ),
    ]);
    let m = &e.mock;
    let list = &e.list;
    e.fetch_ok(&["--token", TOKEN]);
    let hops: Vec<_> = m.seen_for(A);
    assert_eq!(hops.len(), 2, "{hops:?}");
    assert!(hops[1].path_and_query.starts_with("/files"), "{hops:?}");
    assert!(
        hops.iter()
            .all(|h| h.authorization.as_deref() == Some(&*format!("token {TOKEN}"))),
        "{hops:?}"
    );
    let stranger: Vec<_> = m
        .seen_for(B)
        .into_iter()
        .filter(|s| s.host.starts_with("localhost"))
        .collect();
    assert_eq!(stranger.len(), 1);
    assert!(
        stranger[0].authorization.is_none(),
        "token leaked to another host"
    );
    let man = e.manifest();
    assert!(
        row(&man, B)["message"]
            .as_str()
            .unwrap()
            .contains("withheld"),
        "{man}"
    );
    // --trusted-host extends the rule.
    std::fs::remove_dir_all(e.dest()).unwrap();
    m.reset_log();
    let r = e.env.fetch(
        m,
        &[
            list.to_str().unwrap(),
            "--token",
            TOKEN,
            "--trusted-host",
            "localhost",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stranger: Vec<_> = m
        .seen_for(B)
        .into_iter()
        .filter(|s| s.host.starts_with("localhost"))
        .collect();
    assert_eq!(
        stranger[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
}

#[test]
fn token_from_env_reaches_whoami_and_never_shows() {
    let e = Case::new(&[
        (
            A,
            Product {
                need_token: true,
                ..Product::new(bytes(7, 64))
            },
        ),
        (
            B,
            Product {
                error_page: Some("<h1>oops</h1>"),
                ..Product::new(vec![])
            },
        ),
    ]);
    let m = &e.mock;
    let list = &e.list;
    let mut c = e.cmd();
    c.args(["fetch", "--base-url", &m.base, "-d"])
        .arg(e.dest())
        .arg(list)
        .env("MAST_API_TOKEN", TOKEN);
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    let who: Vec<_> = m
        .seen()
        .into_iter()
        .filter(|s| s.path_and_query == "/whoami")
        .collect();
    assert_eq!(who.len(), 1);
    assert_eq!(
        who[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
    assert_eq!(
        who[0].cookie.as_deref(),
        Some(&*format!("mast_token={TOKEN}"))
    );
    assert!(e.html().contains("alice"));
    let mut everything = format!(
        "{}{}{}{}",
        r.stdout,
        r.stderr,
        e.html(),
        serde_json::to_string(&e.manifest()).unwrap()
    );
    for f in walk(&e.dest()) {
        everything.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    assert!(!everything.contains(TOKEN), "the token leaked");
}

#[test]
fn no_token_without_a_terminal_fails_with_a_hint() {
    let e = Case::new(&[
        (
            A,
            Product {
                need_token: true,
                ..Product::new(bytes(7, 64))
            },
        ),
        (B, Product::new(bytes(8, 64))),
    ]);
    let r = e.fetch(&[]);
    // The only failure wants a token: exit 4 (issue 23).
    assert_eq!(r.code, 4, "{}", r.stderr);
    let man = e.manifest();
    let ra = row(&man, A);
    assert_eq!(ra["status"], "FAILED");
    assert_eq!(ra["http_status"], 401);
    let msg = ra["message"].as_str().unwrap();
    assert!(
        msg.contains("MAST_API_TOKEN") && msg.contains("--token"),
        "{msg}"
    );
    assert_eq!(row(&man, B)["status"], "COMPLETE");
    assert!(r.stderr.contains("FAILED"));
    assert!(e.html().contains("anonymous"));
}

#[test]
fn rejected_token_says_so_and_how_to_get_a_new_one() {
    let e = Case::new(&[(
        A,
        Product {
            need_token: true,
            ..Product::new(bytes(7, 64))
        },
    )]);
    let r = e.fetch(&["--token", "expired-token"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("did not accept the token"),
        "{}",
        r.stderr
    );
    let msg = row(&e.manifest(), A)["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("rejected") && msg.contains("auth.mast.stsci.edu"),
        "{msg}"
    );
    assert!(!r.stderr.contains("expired-token"));
}
