//! The experiment driver (`bptt::experiment::driver`) as a user meets it through the binaries:
//! one sidecar with the same keys everywhere, the default `--out`, the lock on `--out`, a fresh
//! run replacing a finished one, parallel chunks handed out in plan order, `--resume` of a
//! finished run as a no-op, `--merge` accepting only a complete, ordered set of shards of one
//! plan, and exit status 1 for I/O failures.

mod cli;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli::read;

const SWEEP: &str = env!("CARGO_BIN_EXE_spectral-sweep");
const BIFURCATION: &str = env!("CARGO_BIN_EXE_bifurcation");
const PATHOLOGICAL: &str = env!("CARGO_BIN_EXE_pathological");

/// A sweep that takes milliseconds: 2 cells × 3 radii = 6 chunks.
const TINY: &[&str] = &[
    "--cells",
    "rnn-tanh,gru",
    "--hidden",
    "5",
    "--input",
    "2",
    "--steps",
    "4",
    "--batch",
    "2",
    "--matrices",
    "2",
    "--rho",
    "0.8,1.0,1.2",
    "--quiet",
];

fn sweep(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["--out", dir.to_str().unwrap()];
    a.extend(TINY);
    a.extend(extra);
    cli::run(SWEEP, &a)
}

fn sidecar(dir: &Path, file: &str) -> serde_json::Value {
    serde_json::from_str(&read(dir, file)).unwrap()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn every_binary_writes_the_same_sidecar_keys_with_build_provenance() {
    let base = cli::temp_dir("driver", "keys");
    let (s, b, p) = (base.join("s"), base.join("b"), base.join("p"));
    assert!(sweep(&s, &[]).status.success());
    cli::run_ok(
        BIFURCATION,
        &[
            "--out",
            b.to_str().unwrap(),
            "--quiet",
            "--part",
            "trajectories",
        ],
    );
    cli::run_ok(
        PATHOLOGICAL,
        &[
            "--out",
            p.to_str().unwrap(),
            "--quiet",
            "--inits",
            "smart-tanh",
            "--algorithms",
            "sgd",
            "--lengths",
            "10",
            "--seeds",
            "1",
            "--updates",
            "10",
            "--hidden",
            "4",
            "--eval-every",
            "10",
            "--eval-sequences",
            "10",
        ],
    );
    let (ms, mb, mp) = (
        sidecar(&s, "spectral_sweep.json"),
        sidecar(&b, "bifurcation.json"),
        sidecar(&p, "pathological.json"),
    );
    assert_eq!(keys(&ms), keys(&mb));
    assert_eq!(keys(&ms), keys(&mp));
    for key in [
        "experiment",
        "crate_version",
        "git_commit",
        "git_dirty",
        "arguments",
        "plan",
        "threads",
        "host",
        "start_time",
        "end_time",
        "wall_seconds",
        "invocations",
        "results",
    ] {
        assert!(ms.get(key).is_some(), "sidecar lacks {key}");
    }
    assert_eq!(ms["crate_version"], env!("CARGO_PKG_VERSION"));
    // the commit the binary was built from (this test runs in the checkout it was built in)
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(head) = head {
        assert_eq!(ms["git_commit"], head.as_str());
        assert!(ms["git_dirty"].is_boolean());
    }
    assert!(ms["host"]["cpus"].as_u64().unwrap() >= 1);
    assert_eq!(mp["invocations"][0]["chunks_computed"], 1);
}

#[test]
fn the_default_out_is_runs_experiment_in_the_working_directory() {
    let cwd = cli::temp_dir("driver", "cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = Command::new(BIFURCATION)
        .current_dir(&cwd)
        .args(["--quiet", "--part", "trajectories"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cwd.join("runs/bifurcation/trajectories.csv").exists());
    assert!(cwd.join("runs/bifurcation/bifurcation.json").exists());
}

#[test]
fn resume_of_a_finished_run_is_a_no_op_that_says_so() {
    let dir = cli::temp_dir("driver", "noop");
    assert!(sweep(&dir, &[]).status.success());
    let csv = read(&dir, "spectral_sweep.csv");
    let out = sweep(&dir, &["--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("nothing to do"), "{err}");
    assert_eq!(read(&dir, "spectral_sweep.csv"), csv);
    let meta = sidecar(&dir, "spectral_sweep.json");
    let inv = meta["invocations"].as_array().unwrap();
    assert_eq!(inv.len(), 2, "the sidecar records every invocation");
    assert_eq!(inv[0]["chunks_computed"], 6);
    assert_eq!(inv[1]["chunks_computed"], 0);
    // a resume with other arguments is refused, and the finished run stays
    let out = sweep(&dir, &["--resume", "--seed", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different arguments"));
    assert_eq!(read(&dir, "spectral_sweep.csv"), csv);
}

#[test]
fn a_fresh_run_replaces_a_finished_one_even_when_killed() {
    let dir = cli::temp_dir("driver", "replace");
    assert!(sweep(&dir, &[]).status.success());
    // a much longer run into the same --out, killed after a few chunks
    let args: Vec<String> = [
        "--out",
        dir.to_str().unwrap(),
        "--cells",
        "rnn-tanh,lstm",
        "--hidden",
        "48",
        "--steps",
        "60",
        "--matrices",
        "40",
        "--rho",
        "0.5:1.5:0.05",
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    cli::kill_after_chunks(SWEEP, &args, &dir, 2, 60, "spectral_sweep.json");
    // no old table beside the new chunks: a reader cannot mistake it for this run's
    for f in ["spectral_sweep.csv", "summary.csv", "spectral_sweep.json"] {
        assert!(
            !dir.join(f).exists(),
            "{f} of the replaced run is still there"
        );
    }
    assert!(dir.join("chunks/manifest.json").exists());
}

#[test]
fn parallel_chunks_are_handed_out_in_plan_order() {
    // 400 short runs on 2 threads, killed after a few: workers take the next chunk of the plan
    // as they come free, so the finished chunks are a prefix of the plan except for the one
    // other worker's chunk in flight (splitting the plan into halves would have the second
    // worker start at chunk 200)
    let dir = cli::temp_dir("driver", "order");
    let args: Vec<String> = [
        "--out",
        dir.to_str().unwrap(),
        "--lengths",
        "20",
        "--seeds",
        "400",
        "--inits",
        "smart-tanh",
        "--algorithms",
        "sgd",
        "--updates",
        "300",
        "--eval-every",
        "100",
        "--eval-sequences",
        "20",
        "--hidden",
        "12",
        "--threads",
        "2",
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    cli::kill_after_chunks(PATHOLOGICAL, &args, &dir, 6, 60, "pathological.json");
    let done: Vec<usize> = std::fs::read_dir(dir.join("chunks"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".done").map(|i| i.parse().unwrap())
        })
        .collect();
    let last = *done.iter().max().unwrap();
    assert!(
        done.len() >= 6 && last <= done.len(),
        "finished chunks {done:?} are not a prefix of the plan (up to one in flight)"
    );
}

#[test]
fn a_second_run_into_a_locked_out_fails_with_exit_1() {
    let dir = cli::temp_dir("driver", "lock");
    std::fs::create_dir_all(&dir).unwrap();
    // hold the lock as a running binary would
    let lock = std::fs::File::create(dir.join(".bptt.lock")).unwrap();
    lock.lock().unwrap();
    let out = sweep(&dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another run is writing into"), "{err}");
    assert!(!dir.join("chunks").exists());
    drop(lock);
    // released (as the OS does when the holder dies): the run goes ahead
    assert!(sweep(&dir, &[]).status.success());
}

#[test]
fn io_failures_exit_1() {
    let base = cli::temp_dir("driver", "io");
    std::fs::create_dir_all(&base).unwrap();
    // --out below a regular file cannot be created
    std::fs::write(base.join("file"), b"").unwrap();
    let out = sweep(&base.join("file/out"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("file/out"), "{err}");
    // the chunk store cannot be opened: `chunks` is a file
    let dir = base.join("blocked");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chunks"), b"").unwrap();
    let out = sweep(&dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("chunks"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn merge_accepts_only_the_complete_ordered_shards_of_one_plan() {
    let base = cli::temp_dir("driver", "merge");
    let d = |n: &str| -> PathBuf { base.join(n) };
    assert!(sweep(&d("full"), &[]).status.success());
    assert!(sweep(&d("full2"), &[]).status.success());
    for k in 1..=3 {
        let s = format!("{k}/3");
        assert!(
            sweep(&d(&format!("s{k}")), &["--shard", &s])
                .status
                .success()
        );
    }
    assert!(
        sweep(&d("seed1-s2"), &["--shard", "2/3", "--seed", "1"])
            .status
            .success()
    );
    std::fs::create_dir_all(d("empty")).unwrap();
    let merge = |out: &str, dirs: &[&str]| {
        let mut a = vec!["--out".to_string(), d(out).to_string_lossy().into_owned()];
        a.push("--merge".into());
        a.extend(dirs.iter().map(|x| d(x).to_string_lossy().into_owned()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        cli::run(SWEEP, &a)
    };
    for (dirs, expect) in [
        (vec!["s1", "s1", "s3"], "position 2 needs shard 2/3"),
        (vec!["s2", "s1", "s3"], "position 1 needs shard 1/3"),
        (vec!["s1", "s2"], "the merge needs all 3 shards"),
        (vec!["s1", "seed1-s2", "s3"], "different plan"),
        (vec!["full", "full2"], "holds a full run"),
        (
            vec!["s1", "empty", "s3"],
            "holds no finished spectral-sweep output",
        ),
    ] {
        let out = merge("bad", &dirs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{dirs:?}: {err}");
        assert!(err.contains(expect), "{dirs:?}: {err}");
        assert!(!d("bad").join("spectral_sweep.csv").exists(), "{dirs:?}");
    }
    let out = merge("s1", &["s1", "s2", "s3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is one of the shards"));
    // the valid merge is the full run, and its sidecar says where it came from
    let out = merge("merged", &["s1", "s2", "s3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["spectral_sweep.csv", "summary.csv"] {
        assert_eq!(read(&d("merged"), f), read(&d("full"), f), "{f}");
    }
    let (merged, full) = (
        sidecar(&d("merged"), "spectral_sweep.json"),
        sidecar(&d("full"), "spectral_sweep.json"),
    );
    assert_eq!(merged["plan"], full["plan"]);
    assert_eq!(merged["results"], full["results"]);
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), 3);
    // three shard runs and the merge
    assert_eq!(merged["invocations"].as_array().unwrap().len(), 4);
}
