//! The `spectral-sweep` binary as a researcher uses it: output schema, determinism across
//! thread counts and shards, resume after `kill -9`, bad flags, overflow as data, and one
//! statistical check of the physics.

mod cli;

use approx::assert_relative_eq;
use cli::read;
use std::path::{Path, PathBuf};

const BIN: &str = env!("CARGO_BIN_EXE_spectral-sweep");

const SMALL: &[&str] = &[
    "--hidden",
    "6",
    "--input",
    "3",
    "--steps",
    "7",
    "--batch",
    "2",
    "--matrices",
    "3",
    "--rho",
    "0.6,1.0,1.4",
    "--quiet",
];

/// A CSV table's header and its records, asserting the header is `columns`.
fn table(text: &str, columns: &[&str]) -> Vec<csv::StringRecord> {
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<&str> = rows.headers().unwrap().iter().collect();
    assert_eq!(header, columns);
    rows.records().map(Result::unwrap).collect()
}

#[test]
fn csv_schema_and_sidecar() {
    let dir = cli::temp_dir("sweep", "schema");
    let mut args = vec![
        "--out",
        dir.to_str().unwrap(),
        "--ensemble",
        "gaussian,orthogonal,sparse3",
    ];
    args.extend(SMALL);
    cli::run_ok(BIN, &args);
    let records = table(
        &read(&dir, "spectral_sweep.csv"),
        &[
            "cell",
            "ensemble",
            "rho",
            "matrix",
            "k",
            "grad_norm",
            "log10_grad_norm",
            "spectral_radius",
            "sigma_max",
            "pascanu_bound",
            "decay_rate",
            "nonfinite",
        ],
    );
    // every registered cell × 3 ensembles × 3 radii × 3 matrices × (T + 1) steps
    let cells = bptt::nn::cells::CellKind::ALL.len();
    assert_eq!(records.len(), cells * 3 * 3 * 3 * 8);
    for r in &records {
        let f = |i: usize| r[i].parse::<f64>().unwrap();
        let (rho, radius, sigma) = (f(2), f(7), f(8));
        // every recurrent matrix is rescaled to the exact target radius, and ρ ≤ σ_max
        approx::assert_relative_eq!(radius, rho, epsilon = 1e-14, max_relative = 1e-12);
        assert!(
            sigma >= radius * (1.0 - 1e-12),
            "σ_max {sigma} < ρ {radius}"
        );
        // Pascanu: ‖∂L/∂h_k‖ ≤ (γ σ_max)^{T−k} ‖v‖ for the vanilla cells (NaN for gated)
        let (norm, bound) = (f(5), f(9));
        if r[0].starts_with("rnn-") {
            assert!(norm <= bound * (1.0 + 1e-9), "{r:?}");
        } else {
            assert!(bound.is_nan());
        }
        // a matrix is flagged when some norm is NaN/∞ or exactly 0 (log −∞): at these sizes only
        // a ReLU network can die (all pre-activations ≤ 0 gives a zero gradient)
        assert!(&r[11] == "0" || r[0] == *"rnn-relu", "{r:?}");
    }
    let summary = read(&dir, "summary.csv");
    assert_eq!(summary.lines().count(), 1 + cells * 3 * 3);
    assert!(summary.starts_with("cell,ensemble,rho,ln_rho,matrices,nonfinite,redraws,decay_mean,"));
    check_theory_tables(&dir, cells * 3 * 3 * 3, 6);
    let meta: serde_json::Value = serde_json::from_str(&read(&dir, "spectral_sweep.json")).unwrap();
    assert_eq!(meta["experiment"], "spectral-sweep");
    assert_eq!(meta["shard"], "1/1");
    assert_eq!(
        meta["outputs"],
        serde_json::json!([
            "spectral_sweep.csv",
            "matrices.csv",
            "lyapunov.csv",
            "summary.csv"
        ])
    );
    assert_eq!(meta["plan"]["lyapunov"], "all");
    assert_eq!(meta["invocations"].as_array().unwrap().len(), 1);
    assert_eq!(meta["results"]["matrices"], cells * 3 * 3 * 3);
    assert!(
        !dir.join("chunks").exists(),
        "chunks are removed after a complete run"
    );
}

/// `matrices.csv` and `lyapunov.csv`: one row per matrix and per exponent, the mean-field columns
/// for exactly the vanilla cells, and identities that hold whatever the matrix: the linear
/// cell's predicted rate is ln g (χ = g² for every q), ReLU's is ln g − ½ ln 2 (χ = g²/2), a
/// linear cell with a scaled orthogonal W_hh has every Lyapunov exponent ln ρ, and the counts
/// and maxima agree with the exponents listed.
fn check_theory_tables(dir: &Path, matrices: usize, hidden: usize) {
    let records = table(
        &read(dir, "matrices.csv"),
        &[
            "cell",
            "ensemble",
            "rho",
            "matrix",
            "spectral_radius",
            "sigma_max",
            "weight_scale",
            "input_var",
            "decay_rate",
            "pascanu_slope",
            "mean_field_slope",
            "mean_field_asymptotic",
            "mean_field_q",
            "lyapunov_exponents",
            "lyapunov_top",
            "lyapunov_above",
            "nonfinite",
        ],
    );
    assert_eq!(records.len(), matrices);
    let exponents = read(dir, "lyapunov.csv");
    let mut by_matrix: std::collections::HashMap<String, Vec<f64>> = Default::default();
    for line in exponents.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        by_matrix
            .entry(f[..4].join(","))
            .or_default()
            .push(f[5].parse().unwrap());
    }
    for r in &records {
        let f = |i: usize| r[i].parse::<f64>().unwrap();
        let (cell, ensemble) = (&r[0], &r[1]);
        let (rho, g, mf, count) = (f(2), f(6), f(10), f(13) as usize);
        let state = if cell == "lstm" { 2 * hidden } else { hidden };
        assert_eq!(count, state, "{r:?}");
        let l = &by_matrix[&r.iter().take(4).collect::<Vec<_>>().join(",")];
        assert_eq!(l.len(), count);
        assert!(l.windows(2).all(|w| w[0] >= w[1] || w[1].is_nan()), "{l:?}");
        assert_eq!(f(14).to_bits(), l[0].to_bits());
        let threshold = -0.1;
        assert_eq!(
            f(15) as usize,
            l.iter().filter(|&&x| x >= threshold).count()
        );
        if cell.starts_with("rnn-") {
            assert!(mf.is_finite() && f(11).is_finite(), "{r:?}");
            assert!(f(9).is_finite(), "{r:?}");
        } else {
            assert!(mf.is_nan() && f(11).is_nan() && f(12).is_nan() && f(9).is_nan());
        }
        match cell {
            "rnn-linear" => {
                assert_relative_eq!(mf, g.ln(), epsilon = 1e-12, max_relative = 1e-12);
                if ensemble == "orthogonal" {
                    // W_hh = ρ Q: ‖W‖_F/√n = ρ, and every exponent is ln ρ
                    assert_relative_eq!(g, rho, epsilon = 1e-14, max_relative = 1e-13);
                    for x in l {
                        assert_relative_eq!(*x, rho.ln(), epsilon = 1e-12, max_relative = 1e-12);
                    }
                }
            }
            "rnn-relu" => assert_relative_eq!(
                mf,
                g.ln() - 0.5 * 2f64.ln(),
                epsilon = 1e-12,
                max_relative = 1e-12
            ),
            _ => {}
        }
    }
}

#[test]
fn output_is_byte_identical_for_any_thread_count_and_shard_split() {
    let base = cli::temp_dir("sweep", "det");
    let dirs: Vec<PathBuf> = ["t1", "t2", "s1", "s2", "s3", "merged"]
        .iter()
        .map(|t| base.join(t))
        .collect();
    let with = |dir: &Path, extra: &[&str]| {
        let mut a = vec!["--out", dir.to_str().unwrap()];
        a.extend(SMALL);
        a.extend(extra);
        cli::run_ok(BIN, &a);
    };
    with(&dirs[0], &["--threads", "1"]);
    with(&dirs[1], &["--threads", "2"]);
    let full = read(&dirs[0], "spectral_sweep.csv");
    assert_eq!(full, read(&dirs[1], "spectral_sweep.csv"));
    for table in ["matrices.csv", "lyapunov.csv", "summary.csv"] {
        assert_eq!(read(&dirs[0], table), read(&dirs[1], table), "{table}");
    }
    for (k, dir) in dirs[2..5].iter().enumerate() {
        with(dir, &["--shard", &format!("{}/3", k + 1), "--threads", "2"]);
    }
    // shards concatenated in order (headers dropped) are the full run
    let mut concatenated = String::new();
    for (k, dir) in dirs[2..5].iter().enumerate() {
        let text = read(dir, "spectral_sweep.csv");
        concatenated += if k == 0 {
            &text
        } else {
            text.split_once('\n').unwrap().1
        };
    }
    assert_eq!(concatenated, full);
    // and so is the merge step
    let merged = dirs[5].to_str().unwrap();
    cli::run_ok(
        BIN,
        &[
            "--out",
            merged,
            "--merge",
            dirs[2].to_str().unwrap(),
            dirs[3].to_str().unwrap(),
            dirs[4].to_str().unwrap(),
        ],
    );
    assert_eq!(read(&dirs[5], "spectral_sweep.csv"), full);
    for table in ["matrices.csv", "lyapunov.csv", "summary.csv"] {
        assert_eq!(read(&dirs[5], table), read(&dirs[0], table), "{table}");
    }
}

#[test]
fn a_killed_run_resumes_to_identical_bytes() {
    let args = |dir: &Path| -> Vec<String> {
        [
            "--out",
            dir.to_str().unwrap(),
            "--cells",
            "rnn-tanh,lstm",
            "--hidden",
            "48",
            "--steps",
            "60",
            "--batch",
            "4",
            "--matrices",
            "40",
            "--rho",
            "0.5:1.5:0.05",
            "--quiet",
            "--threads",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (killed, _, _) = cli::assert_resumes_after_kill(
        BIN,
        "sweep",
        args,
        (5, 60, "spectral_sweep.csv"),
        &[
            "spectral_sweep.csv",
            "matrices.csv",
            "lyapunov.csv",
            "summary.csv",
        ],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&read(&killed, "spectral_sweep.json")).unwrap();
    // both invocations are on record: the killed one without an end, the resume computing
    // only what was left
    let inv = meta["invocations"].as_array().unwrap();
    assert_eq!(inv.len(), 2, "{inv:?}");
    assert!(inv[0]["end_time"].is_null() && inv[1]["end_time"].is_string());
    let left = inv[1]["chunks_computed"].as_u64().unwrap();
    assert!(
        left > 0 && left < meta["chunks"].as_u64().unwrap(),
        "{left}"
    );
}

#[test]
fn resume_refuses_different_arguments() {
    let dir = cli::temp_dir("sweep", "mismatch");
    let d = dir.to_str().unwrap();
    // leave a manifest behind as an interrupted run would
    std::fs::create_dir_all(dir.join("chunks")).unwrap();
    std::fs::write(dir.join("chunks/manifest.json"), r#"{"other":"run"}"#).unwrap();
    let mut a = vec!["--out", d, "--resume"];
    a.extend(SMALL);
    let out = cli::run(BIN, &a);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different arguments"));
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    cli::assert_bad_flags_exit_2(
        BIN,
        "sweep",
        &[],
        &[
            (vec!["--rho", "2:1:0.1"], "STOP must not be below START"),
            (vec!["--rho", "0.5:1.5:0"], "STEP must be positive"),
            (vec!["--rho", "-1,1"], "positive"),
            (vec!["--rho", "0.5,x"], "comma-separated list of numbers"),
            (vec!["--shard", "3/2"], "invalid shard '3/2'"),
            (
                vec!["--cells", "rnn-softplus"],
                "unknown cell 'rnn-softplus'",
            ),
            (vec!["--ensemble", "wishart"], "unknown ensemble 'wishart'"),
            (vec!["--hidden", "0"], "--hidden must be at least 1"),
            (
                vec!["--ensemble", "sparse200", "--hidden", "16"],
                "more than --hidden 16",
            ),
            (
                vec!["--ensemble", "sparse", "--hidden", "8"],
                "more than --hidden 8",
            ),
            (vec!["--threads", "0"], "--threads must be at least 1"),
            (vec!["--preset", "huge"], "huge"),
            (vec!["--lyapunov", "some"], "expected 'all' or a number"),
            (vec!["--qr-every", "0"], "--qr-every must be at least 1"),
            (
                vec!["--lyapunov-threshold", "nan"],
                "--lyapunov-threshold must be",
            ),
            // refused before anything is allocated or written
            (vec!["--hidden", "1000000"], "this plan needs about"),
            (
                vec!["--matrices", "18446744073709551615"],
                "this plan needs about",
            ),
            (
                vec!["--steps", "18446744073709551615"],
                "this plan needs about",
            ),
        ],
    );
}

#[test]
fn overflow_is_recorded_as_data_and_the_run_goes_on() {
    // a linear cell at ρ = 1.5 over 2000 steps: 1.5^2000 overflows f64
    let dir = cli::temp_dir("sweep", "overflow");
    cli::run_ok(
        BIN,
        &[
            "--out",
            dir.to_str().unwrap(),
            "--cells",
            "rnn-linear,rnn-tanh",
            "--rho",
            "1.5",
            "--steps",
            "2000",
            "--hidden",
            "4",
            "--batch",
            "1",
            "--matrices",
            "2",
            "--quiet",
        ],
    );
    let long = read(&dir, "spectral_sweep.csv");
    let linear: Vec<&str> = long
        .lines()
        .filter(|l| l.starts_with("rnn-linear"))
        .collect();
    assert!(
        linear.iter().any(|l| l.contains(",inf,")),
        "no inf recorded"
    );
    assert!(
        linear.iter().all(|l| l.ends_with(",1")),
        "overflowing matrices are flagged"
    );
    // the tanh rows are there too: the run went on past the overflow
    assert_eq!(
        long.lines().filter(|l| l.starts_with("rnn-tanh")).count(),
        2 * 2001
    );
    let summary = read(&dir, "summary.csv");
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("rnn-linear,gaussian,1.5,") && l.split(',').nth(5) == Some("2"))
    );
}

/// Physics: for the linear cell ∂L/∂h_k = (W_hhᵀ)^{T−k} v, so ln‖∂L/∂h_k‖ grows like (T−k) ln ρ
/// (Gelfand: ‖W^j‖^{1/j} → ρ). With a small n, the dominant eigenvalue takes over within a few
/// steps, and the fitted rate over T = 400 steps equals ln ρ up to an O(1/T) transient; we
/// require agreement within 4 standard errors of the mean plus 2/T.
#[test]
fn linear_cell_decays_at_ln_rho() {
    let dir = cli::temp_dir("sweep", "physics");
    let steps = 400;
    cli::run_ok(
        BIN,
        &[
            "--out",
            dir.to_str().unwrap(),
            "--cells",
            "rnn-linear",
            "--rho",
            "0.7,1.0,1.3",
            "--hidden",
            "4",
            "--steps",
            &steps.to_string(),
            "--batch",
            "1",
            "--matrices",
            "200",
            "--quiet",
        ],
    );
    let summary = read(&dir, "summary.csv");
    let mut rows = csv::Reader::from_reader(summary.as_bytes());
    let mut seen = 0;
    for r in rows.records().map(Result::unwrap) {
        let (ln_rho, mean, sem): (f64, f64, f64) = (
            r[3].parse().unwrap(),
            r[7].parse().unwrap(),
            r[8].parse().unwrap(),
        );
        let tolerance = 4.0 * sem + 2.0 / steps as f64;
        assert!(
            (mean - ln_rho).abs() <= tolerance,
            "ρ = {}: mean decay {mean} vs ln ρ {ln_rho} (± {tolerance})",
            &r[2]
        );
        seen += 1;
    }
    assert_eq!(seen, 3);
}
