//! The `pathological` binary as a researcher uses it: output schemas, saved models that load
//! back, determinism across thread counts and shards, resume after `kill -9`, the
//! generalisation mode, bad flags.

mod cli;

use cli::read;
use std::path::Path;
use std::process::Output;

use bptt::nn::activation::Activation;
use bptt::nn::cell::CellFamily;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::import::StateDict;

const BIN: &str = env!("CARGO_BIN_EXE_pathological");

/// 2 inits × 3 algorithms × 2 lengths × 2 seeds = 24 short runs (with `--updates 40
/// --lengths 10,14`).
const SMALL: &[&str] = &[
    "--inits",
    "smart-tanh,sigmoid",
    "--seeds",
    "2",
    "--eval-every",
    "20",
    "--log-every",
    "5",
    "--eval-sequences",
    "50",
    "--hidden",
    "8",
    "--quiet",
];

fn small(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--out", dir.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(&["--updates", "40", "--lengths", "10,14"]);
    args.extend_from_slice(extra);
    cli::run_ok(BIN, &args)
}

#[test]
fn csv_schemas_sidecar_and_models() {
    let dir = cli::temp_dir("path", "schema");
    small(&dir, &[]);
    let fin = read(&dir, "final.csv");
    let mut lines = fin.lines();
    assert_eq!(
        lines.next().unwrap(),
        "task,init,algorithm,length,seed,updates,test_error,success,diverged,clipped_updates,safety_updates"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 24);
    assert!(
        rows[0].starts_with("temporal-order,smart-tanh,sgd,10,0,"),
        "{}",
        rows[0]
    );
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f.len(), 11);
        let err: f64 = f[6].parse().unwrap();
        assert!((0.0..=1.0).contains(&err));
        // plain SGD never clips
        if f[2] == "sgd" {
            assert_eq!(&f[9..], ["0", "0"]);
        }
    }
    let curves = read(&dir, "curves.csv");
    let header = curves.lines().next().unwrap();
    assert_eq!(
        header,
        "task,init,algorithm,length,seed,update,loss,grad_norm,max_grad_norm,clipped,safety,omega,valid_error"
    );
    // 40 updates logged every 5: 8 rows per run, validation at 20 and 40
    assert_eq!(curves.lines().count(), 1 + 24 * 8);
    let first: Vec<&str> = curves.lines().nth(4).unwrap().split(',').collect();
    assert_eq!(first[5], "20");
    assert!(!first[12].is_empty());
    assert!(
        curves.lines().nth(1).unwrap().ends_with(','),
        "no validation at update 5"
    );
    // Ω is measured only where it is used
    for l in curves.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let omega: f64 = f[11].parse().unwrap();
        assert_eq!(omega == 0.0, f[2] != "sgd-cr", "{l}");
    }
    let side: serde_json::Value = serde_json::from_str(&read(&dir, "pathological.json")).unwrap();
    assert_eq!(side["results"]["runs"], 24);
    assert_eq!(side["plan"]["hyper"]["alpha"], 2.0);
    assert!(side["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(
        !dir.join("chunks").exists(),
        "chunks are removed after assembly"
    );
    // every run's model loads back as a PyTorch-named state_dict
    let sd = StateDict::load(dir.join("models/temporal-order_sigmoid_sgd-c_T14_s1.safetensors"))
        .unwrap();
    let cell = VanillaRnn::<f64>::from_state_dict(&sd, 0, false, Activation::Sigmoid).unwrap();
    assert_eq!((cell.weight_hh().nrows(), cell.weight_ih().ncols()), (8, 6));
    let w = sd.matrix::<f64>("readout.weight", 4, 8).unwrap();
    assert!(w.iter().all(|v| v.is_finite()));
    assert_eq!(sd.metadata()["activation"], "sigmoid");
}

#[test]
fn output_is_byte_identical_for_any_thread_count_and_shard_split() {
    let dirs = cli::assert_thread_and_shard_invariant("path", &["final.csv", "curves.csv"], small);
    let model = "models/temporal-order_smart-tanh_sgd-cr_T14_s0.safetensors";
    assert_eq!(
        std::fs::read(dirs[0].join(model)).unwrap(),
        std::fs::read(dirs[1].join(model)).unwrap()
    );
}

#[test]
fn a_killed_run_resumes_to_identical_bytes() {
    let args = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = ["--out", dir.to_str().unwrap(), "--threads", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(SMALL.iter().map(|s| s.to_string()));
        v.extend(["--updates", "400", "--lengths", "30,40,50"].map(String::from));
        v
    };
    cli::assert_resumes_after_kill(
        BIN,
        "path",
        args,
        (3, 120, "final.csv"),
        &["final.csv", "curves.csv"],
    );
}

#[test]
fn generalization_mode_trains_on_a_length_range_and_tests_long_sequences() {
    let dir = cli::temp_dir("path", "gen");
    cli::run_ok(
        BIN,
        &[
            "--out",
            dir.to_str().unwrap(),
            "--generalize",
            "--train-lengths",
            "10:20",
            "--eval-lengths",
            "10,100,500",
            "--inits",
            "smart-tanh",
            "--algorithms",
            "sgd-c",
            "--seeds",
            "2",
            "--updates",
            "30",
            "--eval-every",
            "10",
            "--eval-sequences",
            "40",
            "--hidden",
            "6",
            "--quiet",
        ],
    );
    let g = read(&dir, "generalization.csv");
    let mut lines = g.lines();
    assert_eq!(
        lines.next().unwrap(),
        "task,init,algorithm,train_lengths,seed,length,sequences,errors,error_rate"
    );
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 2 * 3);
    assert_eq!(rows[2][3..6], ["10:20", "0", "500"]);
    for r in &rows {
        let (n, e, rate): (f64, f64, f64) = (
            r[6].parse().unwrap(),
            r[7].parse().unwrap(),
            r[8].parse().unwrap(),
        );
        assert_eq!(n, 40.0);
        assert_eq!(rate, e / n);
    }
    assert!(read(&dir, "final.csv").contains("temporal-order,smart-tanh,sgd-c,10:20,1,30,"));
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    cli::assert_bad_flags_exit_2(
        BIN,
        "path",
        &["--quiet"],
        &[
            (vec!["--tasks", "adding"], "unknown task 'adding'"),
            (vec!["--inits", "xavier"], "unknown init 'xavier'"),
            (
                vec!["--algorithms", "rmsprop"],
                "unknown algorithm 'rmsprop'",
            ),
            (vec!["--lengths", "5"], "length 5 is below the minimum 10"),
            (vec!["--seeds", "0"], "--seeds must be at least 1"),
            (vec!["--lr=-1"], "the learning rate = -1 is out of range"),
            (vec!["--clip", "0"], "--clip must be a positive number"),
            (
                vec!["--generalize", "--train-lengths", "200:50"],
                "MIN 200 is above MAX 50",
            ),
            (
                vec!["--generalize", "--train-lengths", "fifty"],
                "expected MIN:MAX",
            ),
            (vec!["--shard", "3/2"], "shard"),
            (vec!["--threads", "0"], "--threads must be at least 1"),
            (
                vec!["--dtype", "f16"],
                "unknown dtype 'f16' (expected f32 or f64)",
            ),
            // refused before anything is allocated or written
            (
                vec!["--lengths", "20", "--seeds", "100000000000000"],
                "this plan needs about",
            ),
            (
                vec!["--lengths", "20", "--seeds", "18446744073709551615"],
                "this plan needs about",
            ),
        ],
    );
}
