//! Captures the git commit of the source tree and whether it had uncommitted changes, at build
//! time, for the experiment sidecars (`bptt::experiment::driver::Build`). Outside a git
//! checkout (or without git) both are empty and the sidecar says `null`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    // no optional index refresh: the build must not change what it watches
    let out = Command::new("git")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).map(|s| s.trim().to_string());
    // untracked files count: a new source file changes the build as much as an edit
    let dirty = commit
        .as_ref()
        .and_then(|_| git(&["status", "--porcelain"]))
        .map(|s| !s.trim().is_empty());
    println!(
        "cargo:rustc-env=BPTT_GIT_COMMIT={}",
        commit.unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=BPTT_GIT_DIRTY={}",
        dirty.map_or(String::new(), |d| d.to_string())
    );
    // rerun when a commit or checkout moves HEAD …
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for f in ["HEAD", "refs", "packed-refs"] {
            let path = std::path::Path::new(dir.trim()).join(f);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    // … and when the code that is built changes (what makes a build dirty; tests, notebooks
    // and results do not change the binaries)
    for f in ["src", "experiments", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
