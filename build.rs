//! Records the git commit for `--version`, when built from a git checkout.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // Only this crate's own checkout counts: a packaged crate unpacked inside
    // another git work tree (vendoring, a distro's packaging repo) must not
    // report that tree's commit.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from);
    let own_checkout = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        .zip(manifest_dir.and_then(|d| std::fs::canonicalize(d).ok()))
        .is_some_and(|(top, dir)| top == dir);
    let commit = if own_checkout {
        git(&["rev-parse", "--short=9", "HEAD"])
    } else {
        None
    };
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    match commit {
        Some(c) => println!("cargo:rustc-env=MASTDL_VERSION={version} ({c})"),
        None => println!("cargo:rustc-env=MASTDL_VERSION={version}"),
    }
}
