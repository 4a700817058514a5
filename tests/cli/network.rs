//! The connection: `--cacert` over TLS, an https → http redirect that drops the token, HTTP/2 connection counts, the proxy variables.

use super::*;

#[test]
fn tls_with_cacert_and_an_https_to_http_redirect_drops_the_token() {
    let m = archive_with(&[
        (
            A,
            Product {
                need_token: true,
                ..Product::new(bytes(1, 1000))
            },
        ),
        (
            B,
            Product {
                redirect: Some(Redirect::Other),
                ..Product::new(bytes(2, 100))
            },
        ),
    ]);
    let e = Env::new();
    let ca = e.write("ca.pem", &m.cert_pem);
    let list = e.write("uris.txt", &format!("{A}\n{B}\n"));
    let run = |extra: &[&str]| {
        let mut c = e.cmd();
        c.args(["fetch", "--base-url", &m.tls_base, "--token", TOKEN, "-d"])
            .arg(e.dest())
            .arg(&list)
            .args(extra);
        Run::from(c.output().unwrap())
    };
    // An unknown CA is fatal: no retries.
    let r = run(&[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(row(&e.manifest(), A)["attempts"], 1, "{}", e.manifest());
    assert!(
        row(&e.manifest(), A)["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{}",
        e.manifest()
    );
    // With --cacert it works; the https -> http hop (same host!) gets no token.
    m.reset_log();
    let r = run(&["--cacert", ca.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        m.seen_for(A)[0].authorization.as_deref(),
        Some(&*format!("token {TOKEN}"))
    );
    let hops = m.seen_for(B);
    assert_eq!(hops.len(), 2, "{hops:?}");
    assert!(hops[0].authorization.is_some());
    assert!(
        hops[1].authorization.is_none(),
        "token sent over plain http: {hops:?}"
    );
    assert!(row(&e.manifest(), B)["message"]
        .as_str()
        .unwrap()
        .contains("withheld"));
    // A file that is not PEM is a usage error.
    let r = run(&["--cacert", list.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn an_http2_archive_gets_two_connections_and_j1_one() {
    // Issue 14: over HTTP/2, requests share connections; mastdl opens a
    // second one (a connection's rate is often capped) and never more.
    let m = Mock::start();
    let mut list = String::new();
    let mut files = Vec::new();
    for i in 0..60u64 {
        let uri = format!("mast:HST/product/h2_{i:03}_raw.fits");
        let body = bytes(100 + i, 2000 + i as usize * 13);
        m.add(&uri, Product::new(body.clone()));
        list.push_str(&uri);
        list.push('\n');
        files.push((uri, body));
    }
    for (jobs, want) in [(None, 2), (Some("1"), 1)] {
        let e = Env::new();
        let ca = e.write("ca.pem", &m.cert_pem);
        let list = e.write("uris.txt", &list);
        m.state.lock().unwrap().tls_connections.clear();
        let mut c = e.cmd();
        c.args(["fetch", "--base-url", &m.tls_base, "--cacert"])
            .arg(&ca)
            .arg("-d")
            .arg(e.dest())
            .arg("--flat")
            .arg(&list);
        if let Some(j) = jobs {
            c.args(["-j", j]);
        }
        let r = Run::from(c.output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
        for (uri, body) in &files {
            let name = uri.rsplit('/').next().unwrap();
            assert_eq!(&std::fs::read(e.dest().join(name)).unwrap(), body, "{uri}");
        }
        let conns = m.state.lock().unwrap().tls_connections.clone();
        assert_eq!(conns, vec!["h2".to_string(); want], "-j {jobs:?}");
    }
}

#[test]
fn https_proxy_variable_is_honoured() {
    // A proxy that is not there: the transfer must fail trying to reach it,
    // proving the variable is read (NO_PROXY empties the default exclusions).
    let e = Case::new(&[(A, Product::new(bytes(1, 10)))]);
    let m = &e.mock;
    let list = &e.list;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut c = e.cmd();
    c.args([
        "fetch",
        "--base-url",
        &m.base.replace("127.0.0.1", "localhost"),
        "--retries",
        "0",
        "-d",
    ])
    .arg(e.dest())
    .arg(list)
    .env("HTTP_PROXY", format!("http://127.0.0.1:{port}"))
    .env("NO_PROXY", "");
    let r = Run::from(c.output().unwrap());
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(m.seen().is_empty(), "the request bypassed the proxy");
}
