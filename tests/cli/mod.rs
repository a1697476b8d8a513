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

/// The determinism contract of every experiment binary: `small(dir, extra)` (a run of the
/// binary into `dir` with `extra` flags) gives byte-identical `tables` with 1 and 2 threads, and
/// the shards 1/2 and 2/2 concatenated (the second's header dropped) are the full run. Returns
/// the four output directories (1 thread, 2 threads, shard 1/2, shard 2/2) for further checks.
pub fn assert_thread_and_shard_invariant<R>(
    prefix: &str,
    tables: &[&str],
    small: impl Fn(&Path, &[&str]) -> R,
) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = (0..4)
        .map(|i| temp_dir(prefix, &format!("det{i}")))
        .collect();
    small(&dirs[0], &["--threads", "1"]);
    small(&dirs[1], &["--threads", "2"]);
    small(&dirs[2], &["--shard", "1/2", "--threads", "2"]);
    small(&dirs[3], &["--shard", "2/2", "--threads", "1"]);
    for name in tables {
        let full = read(&dirs[0], name);
        assert_eq!(full, read(&dirs[1], name), "{name}: 1 vs 2 threads");
        let second = read(&dirs[3], name);
        let joined = read(&dirs[2], name) + second.split_once('\n').unwrap().1;
        assert_eq!(joined, full, "{name}: shards concatenated");
    }
    dirs
}

/// The resume contract: a run of `bin` with `args(dir)` killed with `kill -9` once `min_done`
/// chunks are stored (see [`kill_after_chunks`]; `final_output` must not exist yet), then
/// continued with `--resume`, writes the same `tables` as an uninterrupted run. Returns the
/// (killed-and-resumed, clean) output directories and the resume's stderr.
pub fn assert_resumes_after_kill(
    bin: &str,
    prefix: &str,
    args: impl Fn(&Path) -> Vec<String>,
    (min_done, timeout_s, final_output): (usize, u64, &str),
    tables: &[&str],
) -> (PathBuf, PathBuf, String) {
    let (killed, clean) = (temp_dir(prefix, "killed"), temp_dir(prefix, "clean"));
    kill_after_chunks(
        bin,
        &args(&killed),
        &killed,
        min_done,
        timeout_s,
        final_output,
    );
    let mut resume = args(&killed);
    resume.push("--resume".into());
    let out = Command::new(bin)
        .args(&resume)
        .output()
        .expect("binary runs");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the resume failed:\n{log}");
    let out = Command::new(bin)
        .args(args(&clean))
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "the clean run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in tables {
        assert_eq!(read(&killed, name), read(&clean, name), "{name}");
    }
    (killed, clean, log)
}

/// The bad-input contract: for each `(flags, needle)`, `bin` run with `--out <fresh dir>`,
/// `base` and `flags` exits 2 with `needle` in its message and no panic, and leaves no `--out`.
pub fn assert_bad_flags_exit_2(
    bin: &str,
    prefix: &str,
    base: &[&str],
    cases: &[(Vec<&str>, &str)],
) {
    for (flags, needle) in cases {
        let dir = temp_dir(prefix, "bad");
        let mut a = vec!["--out", dir.to_str().unwrap()];
        a.extend_from_slice(base);
        a.extend_from_slice(flags);
        let out = run(bin, &a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(
            err.contains(needle),
            "{flags:?}: expected '{needle}' in: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{flags:?}: {err}"
        );
        assert!(!dir.exists(), "{flags:?} wrote {}", dir.display());
    }
}

/// Write `files` (paths relative to `dir`, and their text) and their `manifest.json` — the
/// layout `scripts/fetch-data.sh` exports and `bptt::experiment::data::Manifest` checks.
#[cfg(feature = "experiments")]
pub fn write_export(dir: &Path, files: &[(&str, &str)]) {
    let mut entries = serde_json::Map::new();
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        entries.insert(
            rel.to_string(),
            serde_json::json!({
                "sha256": bptt::experiment::data::sha256_hex(text.as_bytes()),
                "bytes": text.len()
            }),
        );
    }
    let manifest = serde_json::json!({"packages": {}, "files": entries});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

/// `--data <data> --quiet` and the flags of `defaults`, each replaced by its value in `set`
/// (and `set`'s other flags added): the arguments of a small run on a tiny export.
pub fn data_args(data: &Path, defaults: &[(&str, &str)], set: &[(&str, &str)]) -> Vec<String> {
    let mut flags: Vec<(&str, &str)> = defaults.to_vec();
    for &(k, v) in set {
        match flags.iter_mut().find(|(f, _)| *f == k) {
            Some(slot) => slot.1 = v,
            None => flags.push((k, v)),
        }
    }
    let mut a = vec![
        "--data".to_string(),
        data.to_str().unwrap().into(),
        "--quiet".into(),
    ];
    for (k, v) in flags {
        a.extend([k.to_string(), v.to_string()]);
    }
    a
}
