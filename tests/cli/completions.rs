//! `completions`: shell scripts generated.

use super::*;

#[test]
fn completions_generate() {
    let e = Env::new();
    for sh in ["bash", "zsh", "fish"] {
        let r = Run::from(e.cmd().args(["completions", sh]).output().unwrap());
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("mastdl"), "{sh}");
    }
    let r = Run::from(e.cmd().arg("man").output().unwrap());
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(".TH mastdl"), "{}", r.stdout);
    let r = Run::from(e.cmd().arg("--version").output().unwrap());
    assert!(
        r.stdout
            .starts_with(&format!("mastdl {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        r.stdout
    );
}
