//! Polyphonic music on the chorales (`bptt::experiment::music`, the `music` binary): the
//! (input, target) pairs, the NLL per time step against hand computations (a bias-only model:
//! the Bernoulli formula; a tanh RNN unrolled by hand), the training runs (reproducible, paired,
//! early stopping), sampling, and the binary's contracts on a tiny export.

#![cfg(feature = "experiments")]

mod cli;

use approx::assert_relative_eq;
use std::path::{Path, PathBuf};

use bptt::experiment::data::{PITCHES, PianoRoll, sha256_hex};
use bptt::experiment::language_model::Algorithm;
use bptt::experiment::music::{self, Hyper, INPUTS, MusicModel, Pairs, RunSpec, START};
use bptt::nn::arch::Unidirectional;
use bptt::nn::cell::{BIAS_HH, BIAS_IH, Cell, WEIGHT_HH, WEIGHT_IH};
use bptt::nn::cells::CellKind;
use bptt::nn::model::NetworkModel;
use bptt::nn::readout::{BIAS, Readout, WEIGHT};
use bptt::rng::stream;
use bptt::train::trainer::Dtype;
use nalgebra::{DMatrix, DVector};
use rand::RngExt;

fn piece(name: &str, steps: &[&[u8]]) -> PianoRoll {
    PianoRoll {
        name: name.into(),
        steps: steps.iter().map(|s| s.to_vec()).collect(),
    }
}

/// `n` pieces of random chords (lengths 3 + i mod 5, 0–4 notes among channels 30–50).
fn pieces(seed: u64, n: usize) -> Vec<PianoRoll> {
    let rng = &mut stream(seed, &[]);
    (0..n)
        .map(|i| {
            let steps = (0..3 + i % 5)
                .map(|_| {
                    let mut f: Vec<u8> =
                        (30u8..50).filter(|_| rng.random::<f64>() < 0.15).collect();
                    f.dedup();
                    f
                })
                .collect();
            PianoRoll {
                name: format!("p{i}"),
                steps,
            }
        })
        .collect()
}

fn model(cell: &str, hidden: usize, seed: u64) -> MusicModel<f64> {
    let kind: CellKind = cell.parse().unwrap();
    let rng = &mut stream(seed, &[]);
    let cell = kind.pytorch_init(INPUTS, hidden, rng);
    let readout = Readout::uniform(hidden, PITCHES, 1.0 / (hidden as f64).sqrt(), rng);
    NetworkModel::new(Unidirectional::new(cell), readout).unwrap()
}

/// `Σ_k softplus(y_k) − v_k·y_k`: the NLL (nats) of frame `v` under logits `y`, by hand.
fn frame_nll(y: &DVector<f64>, v: &[u8]) -> f64 {
    let mut nats = 0.0;
    for (k, &yk) in y.iter().enumerate() {
        let on = v.contains(&(k as u8));
        // −log σ(y) = softplus(−y), −log(1 − σ(y)) = softplus(y)
        let softplus = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
        nats += if on { softplus(-yk) } else { softplus(yk) };
    }
    nats
}

#[test]
fn pairs_start_each_piece_with_the_start_frame_and_shift_by_one() {
    let p = [
        piece("a", &[&[1, 5], &[], &[7]]),
        piece("b", &[&[2], &[3, 4]]),
    ];
    let pairs = Pairs::new(&p).unwrap();
    assert_eq!(pairs.len(), 5);
    let start = [START as u8];
    let want: [(&[u8], &[u8]); 5] = [
        (&start, &[1, 5]),
        (&[1, 5], &[]),
        (&[], &[7]),
        (&start, &[2]),
        (&[2], &[3, 4]),
    ];
    for (i, (x, y)) in want.iter().enumerate() {
        assert_eq!((pairs.input(i), pairs.target(i)), (*x, *y), "pair {i}");
    }
    // columns as 0/1 frames: 89 input channels, 88 target channels
    let (mut x, mut y) = (DMatrix::<f64>::zeros(0, 0), DMatrix::<f64>::zeros(0, 0));
    pairs.write(&[3, 1], &mut x, &mut y);
    assert_eq!((x.shape(), y.shape()), ((INPUTS, 2), (PITCHES, 2)));
    assert_eq!(x.sum(), 3.0);
    assert_eq!((x[(START, 0)], x[(1, 1)], x[(5, 1)]), (1.0, 1.0, 1.0));
    assert_eq!((y.sum(), y[(2, 0)]), (1.0, 1.0));
    // chunks: 2 streams of ⌊5/2⌋ = 2 pairs, column t·B + b is position b·2 + t0 + t
    assert_eq!(pairs.chunk(2, 2, 0), [0, 2, 1, 3]);
    assert_eq!(pairs.chunk(2, 1, 1), [1, 3]);
    assert!(pairs.chunk(2, 2, 1).is_empty());
    // nothing to model
    assert!(Pairs::new(&[]).is_err());
    let e = Pairs::new(&[piece("empty", &[])]).unwrap_err();
    assert!(e.to_string().contains("piece empty has no steps"), "{e}");
    let e = Pairs::new(&[piece("high", &[&[88]])]).unwrap_err();
    assert!(e.to_string().contains("channel 88"), "{e}");
}

#[test]
fn the_nll_of_a_bias_only_model_is_the_bernoulli_formula() {
    // zero weights: every step's logits are the readout's bias, whatever the input and state
    let mut m = model("rnn-tanh", 6, 1);
    m.readout.params_mut()[WEIGHT].fill(0.0);
    let rng = &mut stream(2, &[]);
    let b = DVector::from_fn(PITCHES, |_, _| 4.0 * rng.random::<f64>() - 3.0);
    m.readout.params_mut()[BIAS].set_column(0, &b);
    let p = pieces(3, 7);
    let steps: usize = p.iter().map(|x| x.steps.len()).sum();
    let want: f64 = p
        .iter()
        .flat_map(|x| x.steps.iter())
        .map(|v| frame_nll(&b, v))
        .sum::<f64>()
        / steps as f64;
    let got = music::nll_per_step(&m, &p).unwrap();
    assert_relative_eq!(got, want, epsilon = 1e-12, max_relative = 1e-13);
    // the memoryless baseline is that model with b = logit of the smoothed training frequency
    let train = pieces(4, 9);
    let n: usize = train.iter().map(|x| x.steps.len()).sum();
    let freq = DVector::from_fn(PITCHES, |k, _| {
        let on = train
            .iter()
            .flat_map(|x| x.steps.iter())
            .filter(|v| v.contains(&(k as u8)))
            .count();
        (on as f64 + 1.0) / (n as f64 + 2.0)
    });
    m.readout.params_mut()[BIAS].set_column(0, &freq.map(|q| (q / (1.0 - q)).ln()));
    assert_relative_eq!(
        music::bernoulli_baseline(&train, &p).unwrap(),
        music::nll_per_step(&m, &p).unwrap(),
        epsilon = 1e-12,
        max_relative = 1e-12
    );
    // a model of the wrong shape is refused
    let lm = bptt::experiment::music::build(
        &RunSpec {
            cell: CellKind::Gru,
            hidden: 3,
            algorithm: Algorithm::MsgdC,
            replicate: 0,
        },
        0,
    )
    .unwrap();
    assert!(music::nll_per_step(&lm, &p).is_ok());
    let wrong = NetworkModel::new(
        Unidirectional::new(CellKind::Gru.zeros::<f64>(PITCHES, 3)),
        Readout::uniform(3, PITCHES, 0.1, &mut stream(0, &[])),
    )
    .unwrap();
    let e = music::nll_per_step(&wrong, &p).unwrap_err();
    assert!(e.to_string().contains("reads 89 channels"), "{e}");
}

#[test]
fn the_nll_equals_a_tanh_rnn_unrolled_by_hand_from_zero_at_each_piece() {
    let m = model("rnn-tanh", 7, 5);
    let p = pieces(6, 5);
    let c = m.net.cell.params();
    let (w_ih, w_hh) = (&c[WEIGHT_IH], &c[WEIGHT_HH]);
    let (b_ih, b_hh) = (c[BIAS_IH].column(0), c[BIAS_HH].column(0));
    let (w_hy, b_y) = (
        &m.readout.params()[WEIGHT],
        m.readout.params()[BIAS].column(0),
    );
    let (mut nats, mut steps) = (0.0, 0);
    for piece in &p {
        let mut h = DVector::<f64>::zeros(7);
        for (t, v) in piece.steps.iter().enumerate() {
            // x_1 is the start frame, x_t the previous frame
            let mut x = DVector::<f64>::zeros(INPUTS);
            if t == 0 {
                x[START] = 1.0;
            } else {
                for &k in &piece.steps[t - 1] {
                    x[usize::from(k)] = 1.0;
                }
            }
            h = (w_ih * &x + b_ih + w_hh * &h + b_hh).map(f64::tanh);
            nats += frame_nll(&(w_hy * &h + b_y), v);
            steps += 1;
        }
    }
    let got = music::nll_per_step(&m, &p).unwrap();
    assert_relative_eq!(
        got,
        nats / steps as f64,
        epsilon = 1e-12,
        max_relative = 1e-12
    );
}

/// The splits of a tiny data set.
fn splits(seed: u64) -> bptt::experiment::data::Chorales {
    bptt::experiment::data::Chorales {
        train: pieces(seed, 24),
        valid: pieces(seed + 1, 6),
        test: pieces(seed + 2, 6),
    }
}

fn small_hyper() -> Hyper {
    Hyper {
        batch: 3,
        steps: 6,
        updates: 40,
        eval_every: 10,
        log_every: 5,
        sample_steps: 8,
        lr_msgd: 0.3,
        lr_c: 0.3,
        lr_cr: 0.3,
        lr_gated: 0.3,
        ..Hyper::default()
    }
}

fn spec(cell: CellKind, hidden: usize, algorithm: Algorithm) -> RunSpec {
    RunSpec {
        cell,
        hidden,
        algorithm,
        replicate: 0,
    }
}

#[test]
fn runs_are_reproducible_paired_and_report_their_best_validation() {
    let data = splits(10);
    let h = small_hyper();
    for (cell, alg) in [
        (CellKind::RnnTanh, Algorithm::MsgdCR),
        (CellKind::Lstm, Algorithm::MsgdC),
    ] {
        let s = spec(cell, 5, alg);
        let a = music::train(&s, &h, &data, 7).unwrap();
        let b = music::train(&s, &h, &data, 7).unwrap();
        assert_eq!(a.curve, b.curve);
        assert_eq!(a.model, b.model);
        assert_eq!(a.sample, b.sample);
        assert_eq!((a.updates, a.curve.len()), (40, 8));
        // 24 pieces of 3–7 steps: 118 pairs, 3 streams of 39, 6 chunks of 6 per epoch
        assert_eq!(a.chunks_per_epoch, 6);
        // the reported model is the best validation's, and its numbers are its own
        let valids: Vec<(u64, f64)> = a
            .curve
            .iter()
            .filter_map(|p| p.valid_nll.map(|v| (p.update, v)))
            .collect();
        assert_eq!(valids.len(), 4);
        let best = valids
            .iter()
            .copied()
            .fold((0, f64::INFINITY), |m, p| if p.1 < m.1 { p } else { m });
        assert_eq!((a.best_update, a.valid_nll), best);
        assert_eq!(a.final_valid_nll, valids[3].1);
        assert_eq!(
            a.test_nll,
            music::nll_per_step(&a.model, &data.test).unwrap()
        );
        assert_eq!(
            a.train_nll,
            music::nll_per_step(&a.model, &data.train).unwrap()
        );
        // it learned: below the initial model
        let init = music::build(&s, 7).unwrap();
        assert!(a.valid_nll < music::nll_per_step(&init, &data.valid).unwrap());
        assert_eq!(a.sample.len(), 8);
        if alg == Algorithm::MsgdCR {
            assert!(
                a.curve
                    .iter()
                    .all(|p| p.omega > 0.0 && p.omega_weight > 0.0)
            );
        }
    }
    // the algorithms of one cell start from the same weights
    let w = |alg| music::build(&spec(CellKind::RnnTanh, 5, alg), 7).unwrap();
    assert_eq!(w(Algorithm::Msgd), w(Algorithm::MsgdCR));
    // f32 updates follow the f64 run (the same batches and weights, rounded)
    let s = spec(CellKind::Gru, 4, Algorithm::MsgdC);
    let h32 = Hyper {
        dtype: Dtype::F32,
        ..h
    };
    let (a, b) = (
        music::train(&s, &h, &data, 8).unwrap(),
        music::train(&s, &h32, &data, 8).unwrap(),
    );
    for (p, q) in a.curve.iter().zip(&b.curve) {
        assert_relative_eq!(
            p.train_nll,
            q.train_nll,
            epsilon = 1e-5,
            max_relative = 1e-4
        );
    }
}

#[test]
fn hyper_parameters_out_of_range_are_errors() {
    let data = splits(20);
    let s = spec(CellKind::RnnTanh, 4, Algorithm::Msgd);
    for (h, needle) in [
        (
            Hyper {
                lr_msgd: 0.0,
                ..small_hyper()
            },
            "--lr-msgd must be positive",
        ),
        (
            Hyper {
                alpha: -1.0,
                ..small_hyper()
            },
            "--alpha",
        ),
        (
            Hyper {
                eval_every: 7,
                ..small_hyper()
            },
            "multiple of --log-every",
        ),
        (
            Hyper {
                steps: 100,
                ..small_hyper()
            },
            "less than one chunk",
        ),
    ] {
        let e = music::train(&s, &h, &data, 0).unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}

#[test]
fn vanilla_cells_keep_their_width_and_gated_cells_match_its_parameters() {
    let total = |c: CellKind, h: usize| {
        let (a, b) = music::parameter_count(c, h);
        a + b
    };
    // tanh RNN of 100 units: 100·(89 + 100 + 2) + 101·88 = 27,988
    assert_eq!(total(CellKind::RnnTanh, 100), 27_988);
    for c in CellKind::ALL {
        let h = music::run_hidden(*c, 100);
        if c.name().starts_with("rnn-") {
            assert_eq!(h, 100, "{}", c.name());
        } else {
            // the closest size: one unit more or less is further from 27,988
            let d = |h: usize| total(*c, h).abs_diff(27_988);
            assert!(d(h) <= d(h - 1) && d(h) <= d(h + 1), "{}: {h}", c.name());
        }
    }
    assert_eq!(music::run_hidden(CellKind::Gru, 100), 53);
}

#[test]
fn samples_follow_the_models_probabilities() {
    // logits +30 for channel 40 (MIDI 61) and −30 elsewhere: the sample is that note throughout
    let mut m = model("gru", 4, 30);
    m.readout.params_mut()[WEIGHT].fill(0.0);
    m.readout.params_mut()[BIAS].fill(-30.0);
    m.readout.params_mut()[BIAS][(40, 0)] = 30.0;
    let s = music::sample(&m, 12, &mut stream(31, &[])).unwrap();
    assert_eq!(s, vec![vec![40u8]; 12]);
    // logits 0: each pitch on with probability ½ — about 44 of 88 per frame
    m.readout.params_mut()[BIAS].fill(0.0);
    let s = music::sample(&m, 50, &mut stream(32, &[])).unwrap();
    let mean = s.iter().map(Vec::len).sum::<usize>() as f64 / 50.0;
    assert!((mean - 44.0).abs() < 3.0, "{mean}");
    assert_eq!(s, music::sample(&m, 50, &mut stream(32, &[])).unwrap());
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_music");

/// The piano-roll format of `scripts/export_data.py`.
fn roll_text(p: &[PianoRoll]) -> String {
    let mut s = String::new();
    for x in p {
        s += &format!("# {} {}\n", x.name, x.steps.len());
        for f in &x.steps {
            let line: Vec<String> = f.iter().map(|&c| (c + 21).to_string()).collect();
            s += &line.join(" ");
            s += "\n";
        }
        s += ".\n";
    }
    s
}

/// A tiny chorale export (`scripts/fetch-data.sh`'s layout and manifest).
fn export(tag: &str) -> PathBuf {
    let d = splits(40);
    let files = [
        ("chorales/train.txt", roll_text(&d.train)),
        ("chorales/valid.txt", roll_text(&d.valid)),
        ("chorales/test.txt", roll_text(&d.test)),
    ];
    let dir = cli::temp_dir("music-data", tag);
    let files: Vec<(&str, &str)> = files.iter().map(|(r, t)| (*r, t.as_str())).collect();
    cli::write_export(&dir, &files);
    dir
}

fn small_args(data: &Path, set: &[(&str, &str)]) -> Vec<String> {
    let defaults = [
        ("--hidden", "6"),
        ("--batch", "3"),
        ("--steps", "6"),
        ("--updates", "30"),
        ("--eval-every", "10"),
        ("--log-every", "5"),
        ("--sample", "6"),
        ("--seeds", "2"),
    ];
    cli::data_args(data, &defaults, set)
}

const TABLES: [&str; 3] = ["curves.csv", "runs.csv", "samples.csv"];

#[test]
fn the_binary_writes_its_tables_for_any_threads_and_shards() {
    let data = export("det");
    let dirs = cli::assert_thread_and_shard_invariant("music", &TABLES, |dir, extra| {
        let mut a = vec!["--out".to_string(), dir.to_str().unwrap().into()];
        a.extend(small_args(
            &data,
            &[("--runs", "rnn-tanh:msgd-cr,lstm:msgd-c")],
        ));
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        cli::run_ok(BIN, &a)
    });
    let runs = cli::read(&dirs[0], "runs.csv");
    let mut lines = runs.lines();
    assert_eq!(
        lines.next().unwrap(),
        "cell,hidden,parameters,algorithm,lr,seed,updates,epochs,diverged,best_update,\
         train_nll,valid_nll,test_nll,final_valid_nll,clipped_fraction"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "2 runs × 2 seeds");
    // 6·(89 + 6 + 2) + 7·88 = 1198; the LSTM closest to it: 2 units, 4·2·(89+2+2) + 3·88 = 1008
    assert_eq!(&rows[0][..3], ["rnn-tanh", "6", "1198"]);
    assert_eq!(&rows[2][..3], ["lstm", "2", "1008"]);
    let samples = cli::read(&dirs[0], "samples.csv");
    assert!(samples.starts_with("cell,hidden,algorithm,seed,step,pitches\n"));
    assert_eq!(samples.lines().count(), 1 + 4 * 6);
    let sidecar = cli::read(&dirs[0], "music.json");
    let v: serde_json::Value = serde_json::from_str(&sidecar).unwrap();
    assert_eq!(v["plan"]["data"]["pieces"], serde_json::json!([24, 6, 6]));
    assert!(v["plan"]["data"]["bernoulli_nll"][2].as_f64().unwrap() > 0.0);
}

#[test]
fn the_binary_resumes_after_kill_9_to_the_same_bytes() {
    let data = export("resume");
    let args = |dir: &Path| -> Vec<String> {
        let mut a: Vec<String> = vec!["--out".into(), dir.to_str().unwrap().into()];
        a.extend(small_args(
            &data,
            &[
                ("--updates", "3000"),
                ("--eval-every", "500"),
                ("--log-every", "100"),
                ("--runs", "rnn-tanh:msgd-c,gru:msgd-c"),
                ("--threads", "1"),
            ],
        ));
        a
    };
    cli::assert_resumes_after_kill(BIN, "music", args, (1, 60, "runs.csv"), &TABLES);
}

#[test]
fn bad_flags_and_bad_data_exit_2_with_a_clear_message() {
    let data = export("bad");
    let d = data.to_str().unwrap();
    cli::assert_bad_flags_exit_2(
        BIN,
        "music",
        &["--quick"],
        &[
            (
                vec!["--data", d, "--runs", "gru:msgd-cr"],
                "single vanilla RNN layer",
            ),
            (vec!["--data", d, "--runs", "gru"], "is not cell:algorithm"),
            (
                vec!["--data", d, "--runs", "lstm:adam"],
                "unknown algorithm",
            ),
            (vec!["--data", d, "--seeds", "0"], "--seeds"),
            (vec!["--data", d, "--clip", "0"], "--clip must be positive"),
            (
                vec!["--data", "/nonexistent/bptt"],
                "run scripts/fetch-data.sh",
            ),
        ],
    );
    // flags --quick would replace; the default chunks are longer than the tiny export's streams
    cli::assert_bad_flags_exit_2(
        BIN,
        "music",
        &["--data", d],
        &[
            (vec!["--log-every", "3"], "multiple of --log-every"),
            (vec![], "less than one chunk"),
        ],
    );
    // a changed file, and a malformed roll under a matching manifest
    let changed = export("changed");
    std::fs::write(changed.join("chorales/valid.txt"), "# x 1\n60\n.\n").unwrap();
    let malformed = export("malformed");
    let text = "# x 2\n60 64\n64 60\n.\n";
    std::fs::write(malformed.join("chorales/test.txt"), text).unwrap();
    let manifest = std::fs::read_to_string(malformed.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    m["files"]["chorales/test.txt"] =
        serde_json::json!({"sha256": sha256_hex(text.as_bytes()), "bytes": text.len()});
    std::fs::write(malformed.join("manifest.json"), m.to_string()).unwrap();
    for (dir, needle) in [
        (&changed, "chorales/valid.txt"),
        (&malformed, "pitches must ascend"),
    ] {
        cli::assert_bad_flags_exit_2(
            BIN,
            "music",
            &["--quick", "--data", dir.to_str().unwrap()],
            &[(vec![], needle)],
        );
    }
}
