//! The `gradcheck` binary as a researcher runs it: every registered cell and architecture
//! checked, the table as CSV, exit 1 when a check fails (with the outputs written), exit 2 on
//! bad flags.

mod cli;

use bptt::nn::cells::CellKind;

const BIN: &str = env!("CARGO_BIN_EXE_gradcheck");

#[derive(serde::Deserialize)]
struct Row {
    network: String,
    verdict: String,
    fd_error: f64,
}

fn rows(dir: &std::path::Path) -> Vec<Row> {
    csv::Reader::from_path(dir.join("gradcheck.csv"))
        .unwrap()
        .deserialize()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn every_registered_cell_and_architecture_passes_and_a_failure_exits_1() {
    let dir = cli::temp_dir("gradcheck", "pass");
    let out = cli::run_ok(BIN, &["--out", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("all problems PASS"), "{stdout}");
    let table = rows(&dir);
    // each cell: 3 sizes × 2 loss placements; each of 3 architectures over each cell: 2
    let cells = CellKind::ALL.len();
    assert_eq!(table.len(), cells * 6 + 3 * cells * 2);
    for kind in CellKind::ALL {
        assert!(
            table.iter().any(|r| r.network == kind.name()),
            "{} not checked",
            kind.name()
        );
    }
    assert!(
        table
            .iter()
            .all(|r| r.verdict == "PASS" && r.fd_error <= 1e-6)
    );

    // no finite difference meets a tolerance of 1e-300: every problem fails, exit 1, and the
    // table is still written for the record
    let dir = cli::temp_dir("gradcheck", "fail");
    let out = cli::run(
        BIN,
        &[
            "--out",
            dir.to_str().unwrap(),
            "--quiet",
            "--tolerance",
            "1e-300",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("problem(s) FAILED"), "{err}");
    assert!(rows(&dir).iter().all(|r| r.verdict == "FAIL"));
}

#[test]
fn bad_flags_exit_2() {
    let dir = cli::temp_dir("gradcheck", "bad");
    for (args, expect) in [
        (
            vec!["--tolerance", "0"],
            "--tolerance must be a positive number",
        ),
        (
            vec!["--tolerance", "nan"],
            "--tolerance must be a positive number",
        ),
        (vec!["--threads", "0"], "--threads must be at least 1"),
    ] {
        let mut a = vec!["--out", dir.to_str().unwrap()];
        a.extend(args.iter().copied());
        let out = cli::run(BIN, &a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!dir.exists(), "{args:?} wrote into --out");
    }
}
