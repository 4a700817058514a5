//! Transient failures retried (statuses, `Retry-After`, stalls) and redirect loops failed clearly.

use super::*;

#[test]
fn transient_statuses_are_retried_and_counted() {
    let e = Case::new(&[
        (
            A,
            Product {
                fail_first: vec![503, 502, 500],
                ..Product::new(bytes(1, 1000))
            },
        ),
        (
            B,
            Product {
                fail_first: vec![404],
                ..Product::new(bytes(2, 10))
            },
        ),
        (
            IUE,
            Product {
                fail_first: vec![503; 10],
                ..Product::new(bytes(3, 10))
            },
        ),
    ]);
    let r = e.fetch(&["--retries", "4"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let man = e.manifest();
    assert_eq!(row(&man, A)["status"], "COMPLETE");
    assert_eq!(row(&man, A)["attempts"], 4);
    assert_eq!(row(&man, B)["status"], "FAILED", "404 is not retried");
    assert_eq!(row(&man, B)["attempts"], 1);
    assert_eq!(row(&man, B)["http_status"], 404);
    assert_eq!(row(&man, IUE)["attempts"], 5);
    assert!(row(&man, IUE)["message"]
        .as_str()
        .unwrap()
        .contains("after 4 retries"));
    assert!(r.stderr.contains("retry"), "{}", r.stderr);
}

#[test]
fn retry_after_is_honoured_and_429_slows_the_run() {
    let e = Case::new(&[(
        A,
        Product {
            fail_first: vec![429],
            retry_after: Some("1"),
            ..Product::new(bytes(1, 1000))
        },
    )]);
    let t0 = std::time::Instant::now();
    let r = e.fetch_ok(&[]);
    assert!(
        t0.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was not waited for"
    );
    assert!(r.stderr.contains("HTTP 429"), "{}", r.stderr);
    assert!(r.stderr.contains("slow down"), "{}", r.stderr);
    assert_eq!(row(&e.manifest(), A)["attempts"], 2);
}

#[test]
fn a_stalled_transfer_is_aborted_and_retried() {
    let body = bytes(3, 40_000);
    let e = Case::new(&[(
        A,
        Product {
            stall_first: 1,
            ..Product::new(body.clone())
        },
    )]);
    let r = e.fetch_ok(&["--timeout", "1"]);
    assert!(r.stderr.contains("stalled"), "{}", r.stderr);
    assert_eq!(row(&e.manifest(), A)["attempts"], 2);
}

#[test]
fn redirect_loops_and_long_chains_fail_clearly() {
    let e = Case::new(&[
        (
            A,
            Product {
                redirect: Some(Redirect::Loop),
                ..Product::new(bytes(1, 10))
            },
        ),
        (
            B,
            Product {
                redirect: Some(Redirect::Chain(0)),
                ..Product::new(bytes(1, 10))
            },
        ),
    ]);
    let r = e.fetch(&[]);
    assert_eq!(r.code, 1);
    let man = e.manifest();
    assert!(
        row(&man, A)["message"]
            .as_str()
            .unwrap()
            .contains("redirect loop"),
        "{man}"
    );
    assert!(
        row(&man, B)["message"]
            .as_str()
            .unwrap()
            .contains("more than 10 redirects"),
        "{man}"
    );
}
