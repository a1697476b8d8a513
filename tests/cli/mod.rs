//! Helpers for the tests that run an experiment binary as a user does: fresh output
//! directories, running with arguments, reading outputs. (Each test file uses a subset.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh (removed if present) directory under the system temp dir, unique per process and
/// call: `bptt-<prefix>-<pid>-<tag>-<n>`.
pub fn temp_dir(prefix: &str, tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "bptt-{prefix}-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Run `bin` with `args`, capturing its output.
pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("binary runs")
}

/// As [`run`], and fail the test (showing stderr) unless it exits 0.
pub fn run_ok(bin: &str, args: &[&str]) -> Output {
    let out = run(bin, args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The text of `dir/name`, or a failure naming the file.
pub fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// Start `bin` with `args` (writing into `out`), wait until `min_done` chunks of its resumable
/// store (`out/chunks/*.done`) are complete (or `timeout_s` passed), then `kill -9` it and check
/// that it had not finished (`out/final_output` absent): an interrupted run, ready to resume.
pub fn kill_after_chunks(
    bin: &str,
    args: &[String],
    out: &Path,
    min_done: usize,
    timeout_s: u64,
    final_output: &str,
) {
    let mut child = Command::new(bin).args(args).spawn().expect("binary starts");
    let chunks = out.join("chunks");
    let start = std::time::Instant::now();
    loop {
        let done = std::fs::read_dir(&chunks)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "done"))
                })
                .count()
            })
            .unwrap_or(0);
        if done >= min_done || start.elapsed().as_secs() > timeout_s {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert!(
        !out.join(final_output).exists(),
        "the run finished before it could be killed"
    );
}
