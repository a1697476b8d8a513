//! The LSTM-vs-GRU experiment (`bptt::experiment::lstm_vs_gru`) and the `lstm-vs-gru` binary as
//! a researcher uses it: the models are what their names say (forget biases 0 and 1, chrono's
//! spread, the three LSTMs of a seed equal but for those biases, the matched GRU's count), every
//! model of a seed sees the same data, parameter counts follow the cells' shapes; output
//! schemas, the sidecar, determinism across thread counts and shards, resume after `kill -9`,
//! bad flags.

mod cli;

use std::path::Path;

use approx::assert_relative_eq;
use bptt::experiment::agreement;
use bptt::experiment::lstm_vs_gru::{
    ALL_MODELS, ALL_PROBLEMS, ForgetInit, Hyper, Model, OwnedBatch, Problem, RunSpec, build, draw,
    matched_hidden, parameter_count, purpose,
};
use bptt::nn::cell::{BIAS_HH, BIAS_IH, Cell, WEIGHT_HH, WEIGHT_IH};
use bptt::nn::cells::CellKind;
use bptt::nn::cells::lstm::LstmGate;
use cli::read;

const BIN: &str = env!("CARGO_BIN_EXE_lstm-vs-gru");

fn hyper(hidden: usize) -> Hyper {
    Hyper {
        hidden,
        batch: 8,
        updates: 10,
        lr: 0.003,
        clip: 1.0,
        eval_every: 5,
        eval_sequences: 20,
        test_sequences: 20,
        log_every: 5,
        success_error: 0.01,
        agreement_attractors: 4,
        agreement_preamble: 2,
    }
}

fn spec(problem: Problem, length: usize, model: Model) -> RunSpec {
    RunSpec {
        problem,
        length,
        model,
        replicate: 1,
    }
}

#[test]
fn the_forget_gate_starts_where_each_lstm_says() {
    let h = hyper(16);
    for problem in ALL_PROBLEMS {
        let length = 40;
        let cell = |m| build(&spec(problem, length, m), &h, 7).unwrap().net.cell;
        let (b0, b1, chrono) = (
            cell(Model::Lstm(ForgetInit::Zero)),
            cell(Model::Lstm(ForgetInit::One)),
            cell(Model::Lstm(ForgetInit::Chrono)),
        );
        let f = LstmGate::Forget.rows(16);
        let i = LstmGate::Input.rows(16);
        // the effective bias of a gate row: b_ih + b_hh
        let bias = |c: &bptt::nn::cells::AnyCell<f64>, r: usize| {
            c.params()[BIAS_IH][(r, 0)] + c.params()[BIAS_HH][(r, 0)]
        };
        let t_max = problem.chrono_t_max(length);
        let mut spread = Vec::new();
        for r in f.clone() {
            assert_eq!(bias(&b0, r), 0.0, "{problem}: lstm-b0 row {r}");
            assert_eq!(bias(&b1, r), 1.0, "{problem}: lstm-b1 row {r}");
            // chrono: b_f = log u, u ∈ [1, T_max − 1); b_i = −b_f
            let bf = bias(&chrono, r);
            assert!(
                (0.0..(t_max - 1.0).ln()).contains(&bf),
                "{problem}: chrono b_f = {bf}, T_max = {t_max}"
            );
            assert_eq!(bias(&chrono, i.start + r - f.start), -bf);
            spread.push(bf);
        }
        // the forgetting times spread over the range, not one value
        let (lo, hi) = spread
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(hi - lo > 0.5, "{problem}: chrono biases in [{lo}, {hi}]");
        // every weight, and the biases of the cell and output gates, are the same in all three
        for other in [&b1, &chrono] {
            for k in [WEIGHT_IH, WEIGHT_HH] {
                assert_eq!(b0.params()[k], other.params()[k], "{problem}: tensor {k}");
            }
            for r in LstmGate::Cell.rows(16).chain(LstmGate::Output.rows(16)) {
                for k in [BIAS_IH, BIAS_HH] {
                    assert_eq!(b0.params()[k][(r, 0)], other.params()[k][(r, 0)]);
                }
            }
        }
        // and so is the readout
        let ro = |m| {
            build(&spec(problem, length, m), &h, 7)
                .unwrap()
                .readout
                .params()
                .clone()
        };
        assert_eq!(
            ro(Model::Lstm(ForgetInit::Zero)),
            ro(Model::Lstm(ForgetInit::Chrono))
        );
    }
}

#[test]
fn parameter_counts_follow_the_cells_shapes() {
    for problem in ALL_PROBLEMS {
        let (d, o) = (problem.input_size(), problem.output_size());
        for hid in [1, 7, 32] {
            // LSTM: W_ih 4H×D, W_hh 4H×H, two 4H biases; GRU: the same with 3H; readout O×H + O
            assert_eq!(
                parameter_count(CellKind::Lstm, problem, hid),
                (4 * hid * (d + hid) + 8 * hid, (hid + 1) * o)
            );
            assert_eq!(
                parameter_count(CellKind::Gru, problem, hid),
                (3 * hid * (d + hid) + 6 * hid, (hid + 1) * o)
            );
        }
        // the matched GRU: no other size comes closer to the LSTM's total
        let (c, r) = parameter_count(CellKind::Lstm, problem, 32);
        let target = c + r;
        let m = matched_hidden(CellKind::Gru, problem, target);
        let gap = |h: usize| {
            let (c, r) = parameter_count(CellKind::Gru, problem, h);
            (c + r).abs_diff(target)
        };
        for h in 1..200 {
            assert!(gap(m) <= gap(h), "{problem}: H = {m} vs {h}");
        }
        assert!(
            m > 32,
            "{problem}: the GRU needs more units for the LSTM's count"
        );
        assert_eq!(Model::GruMatched.hidden(problem, 32), m);
        // the built model has the counted parameters
        let built = build(&spec(problem, 20, Model::GruMatched), &hyper(32), 0).unwrap();
        assert_eq!(built.net.cell.hidden_size(), m);
        let (c, r) = parameter_count(CellKind::Gru, problem, m);
        assert_eq!(built.net.cell.parameter_count(), c);
        assert_eq!(built.readout.params().scalar_count(), r);
    }
}

#[test]
fn every_model_of_a_seed_sees_the_same_batches() {
    let h = hyper(8);
    for problem in ALL_PROBLEMS {
        let batches = |s: RunSpec| {
            let mut rng = s.stream(3, purpose::TRAIN, &[]);
            (0..3)
                .map(|_| batch_text(&draw(problem, 30, &h, &mut rng, 5).unwrap()))
                .collect::<Vec<_>>()
        };
        let first = batches(spec(problem, 30, ALL_MODELS[0]));
        for m in &ALL_MODELS[1..] {
            assert_eq!(batches(spec(problem, 30, *m)), first, "{problem} {m}");
        }
        // another replicate sees other data
        let mut other = spec(problem, 30, ALL_MODELS[0]);
        other.replicate = 2;
        assert_ne!(batches(other)[0], first[0], "{problem}");
    }
}

/// The batch's tokens or inputs and targets as text.
fn batch_text(b: &OwnedBatch) -> String {
    match b {
        OwnedBatch::Task(t) => format!("{:?} {:?}", t.inputs, t.target),
        OwnedBatch::Tokens { ids, targets, .. } => format!("{ids:?} {targets:?}"),
    }
}

#[test]
fn agreement_batches_are_number_prediction_on_the_preamble_grammar() {
    let h = hyper(8);
    let mut rng = bptt::rng::stream(11, &[]);
    let mut distances = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let OwnedBatch::Tokens {
            ids,
            targets,
            sentences,
            steps,
            batch,
        } = draw(Problem::Agreement, 9, &h, &mut rng, 6).unwrap()
        else {
            panic!("agreement draws token batches")
        };
        assert_eq!((batch, ids.len()), (6, steps * 6));
        for (j, s) in sentences.iter().enumerate() {
            // the input is the prefix up to the verb; the target is the subject's number
            assert_eq!(s.prefix().len(), steps);
            for (t, &tok) in s.prefix().iter().enumerate() {
                assert_eq!(ids[t * batch + j], tok);
            }
            assert_eq!(targets[j], s.number.class());
            assert!(s.distance <= 9);
            assert!(s.preamble <= h.agreement_preamble);
            assert_eq!(
                agreement::main_verb(s.tokens[s.verb]).map(|v| v.1),
                Some(s.number)
            );
            distances.insert(s.distance);
        }
    }
    // every distance 0..=9 occurs
    assert_eq!(distances.len(), 10, "{distances:?}");
}

#[test]
fn a_run_trains_its_whole_budget_and_logs_steps() {
    let h = hyper(6);
    for problem in ALL_PROBLEMS {
        let o =
            bptt::experiment::lstm_vs_gru::train(&spec(problem, 12, Model::Gru), &h, 5).unwrap();
        assert_eq!(o.updates, 10);
        assert!(!o.diverged);
        let updates: Vec<u64> = o.curve.iter().map(|p| p.update).collect();
        assert_eq!(updates, [5, 10]);
        // validated at 5 and 10; the error rates are fractions of 20 sequences
        for p in &o.curve {
            let e = p.valid_error.expect("a validation point");
            assert_relative_eq!(
                (e * 20.0).round(),
                e * 20.0,
                epsilon = 1e-12,
                max_relative = 1e-12
            );
        }
        // steps: Σ of the batches' T — fixed for temporal order, at least the nominal length
        // for addition
        let s = o.curve[1].steps;
        match problem {
            Problem::TemporalOrder => assert_eq!(s, 10 * 12),
            Problem::Addition => assert!((120..=130).contains(&s), "{s}"),
            Problem::Agreement => assert!(s > 10 * 2, "{s}"),
        }
        assert!(o.curve[0].steps < s);
        assert!((0.0..=1.0).contains(&o.test_error));
    }
}

/// 2 tasks × 2 models × 2 seeds = 8 runs of a fraction of a second.
fn small(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "--out",
        dir.to_str().unwrap(),
        "--tasks",
        "temporal-order,agreement",
        "--order-lengths",
        "12",
        "--agreement-distances",
        "4",
        "--models",
        "lstm-chrono,gru-matched",
        "--seeds",
        "2",
        "--updates",
        "20",
        "--log-every",
        "10",
        "--eval-every",
        "10",
        "--eval-sequences",
        "30",
        "--test-sequences",
        "40",
        "--hidden",
        "6",
        "--batch",
        "8",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    cli::run_ok(BIN, &args);
}

#[test]
fn csv_schemas_and_sidecar() {
    let dir = cli::temp_dir("lvg", "schema");
    small(&dir, &[]);
    let runs = read(&dir, "runs.csv");
    assert_eq!(
        runs.lines().next().unwrap(),
        "task,length,model,seed,cell,hidden,parameters,updates,solved_at,diverged,test_error,chance_error"
    );
    let rows: Vec<Vec<&str>> = runs
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 8);
    // plan order: task, model, seed
    assert_eq!(
        rows[0][..5],
        ["temporal-order", "12", "lstm-chrono", "0", "lstm"]
    );
    assert_eq!(
        rows[3][..5],
        ["temporal-order", "12", "gru-matched", "1", "gru"]
    );
    assert_eq!(rows[4][..5], ["agreement", "4", "lstm-chrono", "0", "lstm"]);
    // an LSTM with H = 6 on temporal order: 4·6·(6 + 6) + 8·6 cell, 4·6 + 4 readout
    assert_eq!(rows[0][5..7], ["6", &(4 * 6 * 12 + 48 + 28).to_string()]);
    for r in &rows {
        assert_eq!(r[7], "20");
        assert_eq!(r[9], "false");
        let e: f64 = r[10].parse().unwrap();
        assert!((0.0..=1.0).contains(&e));
    }
    assert_eq!(rows[0][11], "0.75");
    assert_eq!(rows[4][11], "0.5");
    let curves = read(&dir, "curves.csv");
    assert_eq!(
        curves.lines().next().unwrap(),
        "task,length,model,seed,update,steps,loss,grad_norm,valid_error"
    );
    assert_eq!(curves.lines().count(), 1 + 8 * 2);
    let side: serde_json::Value = serde_json::from_str(&read(&dir, "lstm_vs_gru.json")).unwrap();
    assert_eq!(side["experiment"], "lstm-vs-gru");
    assert_eq!(side["results"]["runs"], 8);
    assert_eq!(side["plan"]["hyper"]["hidden"], 6);
    assert_eq!(side["results"]["models"].as_array().unwrap().len(), 4);
    assert!(!dir.join("chunks").exists());
}

#[test]
fn output_is_byte_identical_for_any_thread_count_and_shard_split() {
    cli::assert_thread_and_shard_invariant("lvg", &["runs.csv", "curves.csv"], small);
}

#[test]
fn a_killed_run_resumes_to_identical_bytes() {
    let args = |dir: &Path| -> Vec<String> {
        [
            "--out",
            dir.to_str().unwrap(),
            "--threads",
            "2",
            "--tasks",
            "addition",
            "--addition-lengths",
            "15",
            "--seeds",
            "6",
            "--updates",
            "150",
            "--hidden",
            "8",
            "--eval-sequences",
            "50",
            "--test-sequences",
            "50",
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    cli::assert_resumes_after_kill(
        BIN,
        "lvg",
        args,
        (3, 120, "runs.csv"),
        &["runs.csv", "curves.csv"],
    );
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    cli::assert_bad_flags_exit_2(
        BIN,
        "lvg",
        &["--quiet"],
        &[
            (vec!["--models", "lstm-b2"], "unknown model 'lstm-b2'"),
            (vec!["--models", "gru,gru"], "'gru' is listed twice"),
            (vec!["--tasks", "copy"], "unknown task 'copy'"),
            (vec!["--seeds", "0"], "--seeds must be at least 1"),
            (vec!["--updates", "0"], "--updates must be at least 1"),
            (
                vec!["--order-lengths", "5"],
                "--order-lengths: 5 is below the smallest 10",
            ),
            (
                vec!["--addition-lengths", "50,50"],
                "--addition-lengths: 50 is listed twice",
            ),
            (
                vec!["--agreement-distances", "1"],
                "--agreement-distances: 1 is below the smallest 2",
            ),
            (vec!["--lr", "0"], "--lr must be a positive number"),
            (vec!["--clip=-1"], "--clip must be a positive number"),
            (
                vec!["--success-error", "2"],
                "--success-error must be in (0, 1]",
            ),
            (vec!["--shard", "0/2"], "shard"),
            (
                vec!["--order-lengths", "18446744073709551615"],
                "this plan needs about",
            ),
        ],
    );
}
