//! The `bifurcation` binary as a researcher runs it: the bistable interval on its b grid against
//! the closed form, CSV headers, determinism across thread counts, every flag checked before
//! any part runs, and a resume with changed flags refused. (The dynamics it computes:
//! `tests/dynamics.rs`.)

const BIN: &str = env!("CARGO_BIN_EXE_bifurcation");

/// The binary: the bistable interval found on its b grid matches the closed form to within one
/// grid step, CSV headers, determinism across thread counts, and bad flags exit 2.
#[test]
fn binary_outputs_and_errors() {
    let base = std::env::temp_dir().join(format!("bptt-bif-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let run = |dir: &str, extra: &[&str]| {
        let mut args = vec![
            "--out".to_string(),
            base.join(dir).to_string_lossy().into_owned(),
            "--quiet".into(),
            "--surface-w".into(),
            "2:8:31".into(),
            "--surface-b=-6:0:31".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        std::process::Command::new(BIN)
            .args(&args)
            .output()
            .unwrap()
    };
    let out = run("t1", &["--threads", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run("t2", &["--threads", "2"]).status.success());
    for f in [
        "diagram_fixed_points.csv",
        "diagram_attractors.csv",
        "surface.csv",
        "trajectories.csv",
    ] {
        let (a, b) = (
            std::fs::read(base.join("t1").join(f)).unwrap(),
            std::fs::read(base.join("t2").join(f)).unwrap(),
        );
        assert_eq!(a, b, "{f} differs between 1 and 2 threads");
    }
    let head = |f: &str| {
        std::fs::read_to_string(base.join("t1").join(f))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        head("diagram_fixed_points.csv"),
        "w,b,x_star,multiplier,stable"
    );
    assert_eq!(head("diagram_attractors.csv"), "w,b,x0,x_inf");
    assert_eq!(head("surface.csv"), "w,b,error,grad_w,grad_b,grad_norm");
    assert_eq!(
        head("trajectories.csv"),
        "run,start_w,start_b,clipping,step,w,b,error,grad_norm,clipped,skipped"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("t1/bifurcation.json")).unwrap())
            .unwrap();
    let r = &meta["results"]["diagram"];
    let spacing = r["grid_spacing"].as_f64().unwrap();
    for i in 0..2 {
        let (analytic, grid) = (
            r["bistable_interval_analytic"][i].as_f64().unwrap(),
            r["bistable_interval_on_grid"][i].as_f64().unwrap(),
        );
        assert!((analytic - grid).abs() <= spacing, "{analytic} vs {grid}");
    }
    for (args, expect) in [
        (vec!["--diagram-b=-1:-4:10"], "START ≤ STOP"),
        (vec!["--starts", "5"], "expected w,b"),
        (vec!["--lr=-1"], "positive"),
        (vec!["--shard", "2/3"], "unexpected argument '--shard'"),
        (vec!["--seed", "3"], "unexpected argument '--seed'"),
        (vec!["--part", "wall"], "wall"),
        (vec!["--w", "nan"], "--w must be a finite number"),
        (vec!["--x0", "inf"], "--x0 must be a finite number"),
        (vec!["--iterations", "0"], "--iterations must be at least 1"),
        (
            vec!["--descent-steps", "0"],
            "--descent-steps must be at least 1",
        ),
        // a flag of a part that does not run is still checked, before any part runs
        (
            vec!["--part", "diagram", "--threshold", "0"],
            "--threshold must be a positive",
        ),
        (
            vec!["--part", "surface", "--diagram-x0", "1:0:3"],
            "START ≤ STOP",
        ),
    ] {
        let out = run("bad", &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expect) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(!base.join("bad").exists(), "{args:?} wrote into --out");
    }
    // a resume with changed flags is refused, and the finished outputs stay
    let before = std::fs::read(base.join("t1/diagram_fixed_points.csv")).unwrap();
    let out = run("t1", &["--resume", "--w", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("different arguments"), "{err}");
    assert_eq!(
        std::fs::read(base.join("t1/diagram_fixed_points.csv")).unwrap(),
        before
    );
}
