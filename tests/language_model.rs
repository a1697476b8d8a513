//! Language modelling on a symbol stream (`bptt::experiment::language_model`): the parallel
//! streams of truncated BPTT as defined (contiguous, remainder dropped, targets `ahead` later),
//! and bits per symbol against a hand computation (a readout that outputs known probabilities)
//! and against the trainer's own loss on the same positions — evaluated in chunks with the
//! states carried, over streams longer than a chunk. Then the training runs of Table 1: the
//! paper's hyper-parameters converted to the trainer's mean loss, a run stopped at a checkpoint
//! and continued equal to bits to one never stopped (f32 and f64, every algorithm), sampling;
//! and the `language-model` binary on a tiny export written here (schemas, the paper's numbers
//! beside ours, threads, shards, `kill -9` + `--resume`, bad flags and bad data).

mod cli;

use approx::assert_relative_eq;
use std::path::{Path, PathBuf};

use bptt::experiment::data::{Corpus, sha256_hex};
use bptt::experiment::language_model::{
    self as lm, Algorithm, Checkpointing, EVAL_CHUNK, Hyper, Level, RunSpec, Streams,
    bits_per_symbol,
};
use bptt::nn::arch::SeqLayer;
use bptt::nn::arch::Unidirectional;
use bptt::nn::cells::{AnyCell, CellKind};
use bptt::nn::engine::Inputs;
use bptt::nn::model::NetworkModel;
use bptt::nn::readout::{BIAS, Readout, WEIGHT};
use bptt::rng::stream;
use bptt::train::trainer::{Batch, Config, ReadoutAt, Targets, Trainer};

#[test]
fn streams_are_contiguous_and_targets_are_ahead() {
    let ids: Vec<usize> = (0..23).collect();
    // 3 streams of ⌊23/3⌋ = 7: [0..7), [7..14), [14..21); 21 and 22 dropped
    let s = Streams::new(&ids, 3, 1).unwrap();
    assert_eq!((s.batch(), s.len(), s.positions(1)), (3, 7, 6));
    let (mut x, mut y) = (Vec::new(), Vec::new());
    assert_eq!(s.chunk(0, 4, 1, &mut x, &mut y), 4);
    assert_eq!(x, [0, 7, 14, 1, 8, 15, 2, 9, 16, 3, 10, 17]);
    assert_eq!(y, [1, 8, 15, 2, 9, 16, 3, 10, 17, 4, 11, 18]);
    // the next chunk continues every stream; the last one is short
    assert_eq!(s.chunk(4, 4, 1, &mut x, &mut y), 2);
    assert_eq!(x, [4, 11, 18, 5, 12, 19]);
    assert_eq!(y, [5, 12, 19, 6, 13, 20]);
    assert_eq!(s.chunk(6, 4, 1, &mut x, &mut y), 0);
    assert!(x.is_empty() && y.is_empty());
    // five steps ahead: 2 positions per stream
    assert_eq!(s.chunk(0, 9, 5, &mut x, &mut y), 2);
    assert_eq!(x, [0, 7, 14, 1, 8, 15]);
    assert_eq!(y, [5, 12, 19, 6, 13, 20]);
}

#[test]
fn streams_refuse_what_cannot_be_cut() {
    let ids: Vec<usize> = (0..10).collect();
    for (b, ahead, needle) in [
        (0, 1, "B ≥ 1"),
        (2, 0, "≥ 1 step ahead"),
        (5, 2, "leave 2 per stream: too few"),
        (11, 1, "leave 0 per stream"),
    ] {
        let e = Streams::new(&ids, b, ahead).unwrap_err().to_string();
        assert!(e.contains(needle), "B = {b}, ahead = {ahead}: {e}");
    }
    assert!(Streams::new(&ids, 5, 1).is_ok());
}

type Model = NetworkModel<f64, Unidirectional<AnyCell<f64>>>;

fn model(cell: &str, vocab: usize, hidden: usize, seed: u64) -> Model {
    let kind: CellKind = cell.parse().unwrap();
    let rng = &mut stream(seed, &[]);
    let cell = kind.pytorch_init(vocab, hidden, rng);
    let readout = Readout::uniform(hidden, vocab, 1.0 / (hidden as f64).sqrt(), rng);
    NetworkModel::new(Unidirectional::new(cell), readout).unwrap()
}

fn trainer(m: &Model) -> Trainer<f64, Unidirectional<AnyCell<f64>>> {
    Trainer::new(
        m,
        Config {
            readout_at: ReadoutAt::EveryStep,
            ..Config::default()
        },
    )
    .unwrap()
}

#[test]
fn bits_per_symbol_of_known_probabilities_is_their_mean_surprisal() {
    // a readout with zero weights and bias ln p outputs softmax = p whatever the state
    let p: [f64; 4] = [0.1, 0.2, 0.3, 0.4];
    let mut m = model("rnn-tanh", 4, 5, 1);
    m.readout.params_mut()[WEIGHT].fill(0.0);
    for (k, pk) in p.iter().enumerate() {
        m.readout.params_mut()[BIAS][(k, 0)] = pk.ln();
    }
    // 0 1 2 3 0 1 2 3 …, 42 ids in 2 streams of 21: targets are stream positions 1..=20
    let ids: Vec<usize> = (0..42).map(|i| i % 4).collect();
    let mut tr = trainer(&m);
    let bits = bits_per_symbol(&mut tr, &m, &ids, 4, 2, 1).unwrap();
    // by hand: stream 0 targets ids[1..=20], stream 1 targets ids[22..=41]
    let targets: Vec<usize> = (1..=20).chain(22..=41).map(|i| i % 4).collect();
    let want = targets.iter().map(|&c| -p[c].log2()).sum::<f64>() / 40.0;
    assert_relative_eq!(bits, want, epsilon = 1e-14, max_relative = 1e-14);
    // uniform outputs: exactly log2 4 = 2 bits, for any target `ahead`
    m.readout.params_mut()[BIAS].fill(0.0);
    for ahead in [1, 5] {
        let bits = bits_per_symbol(&mut tr, &m, &ids, 4, 2, ahead).unwrap();
        assert_relative_eq!(bits, 2.0, epsilon = 1e-14, max_relative = 1e-14);
    }
}

#[test]
fn bits_per_symbol_equals_the_trainers_loss_over_streams_longer_than_a_chunk() {
    let vocab = 7;
    // 2 streams of 2.5 chunks: the states must be carried from chunk to chunk
    let len = EVAL_CHUNK * 5 / 2;
    let rng = &mut stream(9, &[]);
    let ids: Vec<usize> = (0..2 * len)
        .map(|_| rand::RngExt::random_range(rng, 0..vocab))
        .collect();
    for cell in ["rnn-tanh", "lstm", "gru"] {
        let m = model(cell, vocab, 6, 3);
        let mut tr = trainer(&m);
        for ahead in [1, 5] {
            let bits = bits_per_symbol(&mut tr, &m, &ids, vocab, 2, ahead).unwrap();
            // the same positions as one batch of 2 whole streams: the trainer's mean
            // cross-entropy (nats) over all of them, from zero states
            let s = Streams::new(&ids, 2, ahead).unwrap();
            let (mut x, mut y) = (Vec::new(), Vec::new());
            s.chunk(0, usize::MAX, ahead, &mut x, &mut y);
            let nats = tr
                .loss(
                    &m,
                    &Batch {
                        inputs: Inputs::Tokens { ids: &x, vocab },
                        batch: 2,
                        targets: Targets::Classes(&y),
                    },
                )
                .unwrap();
            assert_relative_eq!(
                bits,
                nats / std::f64::consts::LN_2,
                epsilon = 1e-12,
                max_relative = 1e-12
            );
            // and a random model is near log2 7 bits, not at it
            assert!((bits - 7f64.log2()).abs() < 0.5, "{cell}: {bits}");
        }
    }
}

#[test]
fn bad_evaluations_are_errors() {
    let m = model("gru", 4, 3, 0);
    let mut tr = trainer(&m);
    let e = bits_per_symbol(&mut tr, &m, &[0, 1, 4, 2], 4, 1, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("symbol id 4 outside the vocabulary of 4"), "{e}");
    let e = bits_per_symbol(&mut tr, &m, &[0, 1, 2, 3], 5, 1, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the readout has 4 outputs for a vocabulary of 5"),
        "{e}"
    );
    let e = bits_per_symbol(&mut tr, &m, &[0, 1], 4, 2, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("too few"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Training runs
// ---------------------------------------------------------------------------------------------

/// A corpus with structure to learn: words of a tiny grammar over 5 symbols (`_` space, `a`,
/// `b`, `c`, line end 4), drawn from a ChaCha stream.
fn corpus(seed: u64, n: usize) -> Corpus {
    use rand::RngExt;
    let rng = &mut stream(seed, &[]);
    let split = |rng: &mut bptt::rng::Rng, n: usize| {
        let mut ids = Vec::with_capacity(n + 8);
        while ids.len() < n {
            let word: &[usize] = match rng.random_range(0..3) {
                0 => &[1, 2],
                1 => &[2, 1, 3],
                _ => &[3, 3, 1],
            };
            ids.extend_from_slice(word);
            ids.push(if rng.random_range(0..6) == 0 { 4 } else { 0 });
        }
        ids.truncate(n);
        ids
    };
    Corpus {
        symbols: ["_", "a", "b", "c", "<eol>"].map(String::from).to_vec(),
        train: split(rng, n),
        valid: split(rng, n / 4),
        test: split(rng, n / 4),
    }
}

fn small_hyper() -> Hyper {
    Hyper {
        batch: 4,
        steps: 10,
        updates: 40,
        eval_every: 20,
        log_every: 5,
        checkpoint_every: 10,
        eval_streams: 4,
        train_eval_symbols: 0,
        sample_symbols: 30,
        ..Hyper::default()
    }
}

fn run_spec(cell: &str, hidden: usize, algorithm: Algorithm, ahead: usize) -> RunSpec {
    RunSpec {
        level: Level::Chars,
        cell: cell.parse().unwrap(),
        hidden,
        algorithm,
        ahead,
        replicate: 0,
    }
}

#[test]
fn the_papers_hyper_parameters_become_the_same_updates_on_the_mean_loss() {
    // the paper's cost is summed over a chunk's T steps, the trainer's is the mean over T·B:
    // lr·T, clip/T, α/T
    let h = Hyper {
        steps: 200,
        ..Hyper::default()
    };
    let c = Algorithm::Msgd.config(&h, 10.0);
    assert_eq!(
        (c.optimizer.lr(), c.clip, c.omega),
        (0.001 * 200.0, None, None)
    );
    assert!(c.carry_state && !c.safety_net);
    let c = Algorithm::MsgdC.config(&h, 10.0);
    assert_eq!(
        (c.optimizer.lr(), c.clip),
        (0.01 * 200.0, Some(45.0 / 200.0))
    );
    assert!(c.safety_net && c.omega.is_none());
    let c = Algorithm::MsgdCR.config(&h, 10.0);
    assert_eq!(
        (c.optimizer.lr(), c.clip),
        (0.05 * 200.0, Some(45.0 / 200.0))
    );
    let omega = c.omega.unwrap();
    assert_eq!((omega.alpha, omega.decay), (2.0 / 200.0, Some(10.0)));
    // Table 1 (ICML version): train / test bits per character
    assert_eq!(Algorithm::MsgdC.paper_bits(1), Some((1.34, 1.42)));
    assert_eq!(Algorithm::MsgdCR.paper_bits(5), Some((3.70, 3.74)));
    assert_eq!(Algorithm::Msgd.paper_bits(5), None);
    // Ω applies to vanilla cells only
    assert!(lm::check_applicable("rnn-sigmoid".parse().unwrap(), Algorithm::MsgdCR).is_ok());
    let e = lm::check_applicable("lstm".parse().unwrap(), Algorithm::MsgdCR).unwrap_err();
    assert!(e.to_string().contains("single vanilla RNN layer"), "{e}");
}

#[test]
fn vanilla_cells_keep_their_width_and_gated_cells_match_its_parameters() {
    use bptt::nn::cells::CellKind;
    let (c, r) = lm::parameter_count(CellKind::RnnSigmoid, 50, 500);
    assert_eq!(c + r, 301_050);
    for &kind in CellKind::ALL.iter() {
        let h = lm::run_hidden(kind, 50, 500);
        if kind.name().starts_with("rnn-") {
            assert_eq!(h, 500, "{kind}");
        } else {
            // the closest count: no neighbouring size is nearer
            let total = |h: usize| {
                let (c, r) = lm::parameter_count(kind, 50, h);
                (c + r).abs_diff(301_050)
            };
            assert!(
                total(h) <= total(h - 1) && total(h) <= total(h + 1),
                "{kind}: {h}"
            );
        }
    }
    assert_eq!(lm::run_hidden("lstm".parse().unwrap(), 50, 500), 244);
    assert_eq!(lm::run_hidden("gru".parse().unwrap(), 50, 500), 284);
}

#[test]
fn epochs_are_the_full_chunks_of_each_stream() {
    let h = small_hyper();
    // 4 streams of ⌊1003/4⌋ = 250; 249 positions with a target 1 ahead → 24 chunks of 10
    assert_eq!(h.chunks_per_epoch(1003, 1).unwrap(), 24);
    assert_eq!(h.chunks_per_epoch(1003, 5).unwrap(), 24);
    assert_eq!(h.chunks_per_epoch(1003, 10).unwrap(), 24);
    assert_eq!(h.chunks_per_epoch(1003, 11).unwrap(), 23);
    assert!(h.chunks_per_epoch(40, 1).is_err());
}

/// A run trained straight through, and stopped at `stop` then continued from its checkpoint.
fn straight_and_resumed(spec: &RunSpec, h: &Hyper, data: &Corpus, stop: u64, tag: &str) {
    let dir = cli::temp_dir("lm-ckpt", tag);
    std::fs::create_dir_all(&dir).unwrap();
    let straight = lm::train(spec, h, data, 3, Checkpointing::default())
        .unwrap()
        .unwrap();
    let stopped = lm::train(
        spec,
        h,
        data,
        3,
        Checkpointing {
            dir: Some(&dir),
            stop_after: Some(stop),
        },
    )
    .unwrap();
    assert!(stopped.is_none(), "{tag}: stopped early");
    let ckpt = dir.join(format!("{}.safetensors", spec.id()));
    assert!(ckpt.exists(), "{tag}: checkpoint written");
    let resumed = lm::train(
        spec,
        h,
        data,
        3,
        Checkpointing {
            dir: Some(&dir),
            stop_after: None,
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(resumed.resumed_from, stop, "{tag}");
    assert_eq!(straight.curve, resumed.curve, "{tag}: curves");
    assert_eq!(
        straight.model.net.params().to_params(),
        resumed.model.net.params().to_params(),
        "{tag}: parameters"
    );
    assert_eq!(
        straight.model.readout.params(),
        resumed.model.readout.params()
    );
    assert_eq!(
        (straight.valid_bits, straight.test_bits, straight.train_bits),
        (resumed.valid_bits, resumed.test_bits, resumed.train_bits),
        "{tag}"
    );
    assert_eq!(straight.sample, resumed.sample, "{tag}: samples");
    // the run learned something: below the uniform 5-symbol code
    assert!(
        straight.valid_bits < 5f64.log2(),
        "{tag}: {}",
        straight.valid_bits
    );
}

#[test]
fn a_run_continued_from_its_checkpoint_equals_one_never_stopped() {
    // the stop falls inside an epoch (24 chunks), so the carried states matter; Ω's decaying
    // weight needs the update count; f32 checkpoints through f64 exactly
    let data = corpus(50, 1003);
    let mut h = small_hyper();
    for (cell, hidden, alg, dtype, stop) in [
        ("rnn-sigmoid", 8, Algorithm::MsgdCR, "f32", 10),
        ("rnn-tanh", 8, Algorithm::Msgd, "f64", 30),
        ("lstm", 5, Algorithm::MsgdC, "f32", 20),
        ("gru", 6, Algorithm::MsgdC, "f64", 10),
    ] {
        h.dtype = dtype.parse().unwrap();
        let spec = run_spec(cell, hidden, alg, 1);
        straight_and_resumed(&spec, &h, &data, stop, &format!("{cell}-{alg}-{dtype}"));
    }
    // and a target five steps ahead
    h.dtype = "f32".parse().unwrap();
    let spec = run_spec("rnn-sigmoid", 8, Algorithm::MsgdC, 5);
    straight_and_resumed(&spec, &h, &data, 20, "ahead5");
}

#[test]
fn a_checkpoint_of_another_run_is_refused() {
    let data = corpus(51, 1003);
    let h = small_hyper();
    let dir = cli::temp_dir("lm-ckpt", "other");
    std::fs::create_dir_all(&dir).unwrap();
    let a = run_spec("rnn-sigmoid", 8, Algorithm::MsgdC, 1);
    let ckpt = Checkpointing {
        dir: Some(&dir),
        stop_after: Some(10),
    };
    lm::train(&a, &h, &data, 3, ckpt).unwrap();
    // the file of run a under run b's name: refused, not silently continued
    let b = run_spec("rnn-sigmoid", 8, Algorithm::Msgd, 1);
    std::fs::rename(
        dir.join(format!("{}.safetensors", a.id())),
        dir.join(format!("{}.safetensors", b.id())),
    )
    .unwrap();
    let e = lm::train(&b, &h, &data, 3, ckpt).unwrap_err().to_string();
    assert!(e.contains("a checkpoint of run"), "{e}");
    // and an f32 checkpoint is not read into an f64 run
    let f64_run = Hyper {
        dtype: "f64".parse().unwrap(),
        ..h
    };
    std::fs::rename(
        dir.join(format!("{}.safetensors", b.id())),
        dir.join(format!("{}.safetensors", a.id())),
    )
    .unwrap();
    let e = lm::train(&a, &f64_run, &data, 3, ckpt)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the run trains in f64"), "{e}");
}

#[test]
fn samples_follow_the_models_probabilities() {
    // a readout certain of symbol 2 samples only 2; a uniform one samples every symbol
    let mut m = model("gru", 5, 4, 52);
    let (k, hid) = (5, 4);
    m.readout.params_mut()[WEIGHT] = nalgebra::DMatrix::zeros(k, hid);
    let mut b = nalgebra::DMatrix::from_element(k, 1, -50.0);
    b[(2, 0)] = 50.0;
    m.readout.params_mut()[BIAS] = b;
    let s = lm::sample(&m, &[0, 1], 40, &mut stream(53, &[])).unwrap();
    assert_eq!(s, vec![2; 40]);
    m.readout.params_mut()[BIAS] = nalgebra::DMatrix::zeros(k, 1);
    let s = lm::sample(&m, &[0], 400, &mut stream(54, &[])).unwrap();
    for sym in 0..k {
        let n = s.iter().filter(|&&x| x == sym).count();
        // 80 expected, σ ≈ 8: a generous band
        assert!((40..=120).contains(&n), "symbol {sym}: {n} of 400");
    }
    assert!(lm::sample(&m, &[], 5, &mut stream(55, &[])).is_err());
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_language-model");

/// A tiny PTB export (`scripts/fetch-data.sh`'s layout and manifest) of [`corpus`]'s text.
fn export(tag: &str) -> PathBuf {
    let c = corpus(60, 4000);
    let text = |ids: &[usize]| -> String {
        ids.iter()
            .map(|&i| match i {
                0 => " ",
                4 => "\n",
                i => ["", "a", "b", "c"][i],
            })
            .collect::<String>()
            + "\n"
    };
    let files = [
        ("ptb/train.txt", text(&c.train)),
        ("ptb/valid.txt", text(&c.valid)),
        ("ptb/test.txt", text(&c.test)),
        ("ptb/chars.txt", "_\na\nb\nc\n<eol>\n".to_string()),
        ("ptb/words.txt", "ab\nbac\ncca\n<eos>\n".to_string()),
    ];
    let dir = cli::temp_dir("lm-data", tag);
    let files: Vec<(&str, &str)> = files.iter().map(|(r, t)| (*r, t.as_str())).collect();
    cli::write_export(&dir, &files);
    dir
}

/// The flags of a small run on `data`, with `set`'s values replacing the defaults (or added).
fn small_args(data: &Path, set: &[(&str, &str)]) -> Vec<String> {
    let defaults = [
        ("--hidden", "8"),
        ("--batch", "4"),
        ("--steps", "10"),
        ("--updates", "20"),
        ("--eval-every", "10"),
        ("--log-every", "5"),
        ("--checkpoint-every", "10"),
        ("--eval-streams", "4"),
        ("--sample", "20"),
        ("--train-eval-symbols", "0"),
    ];
    cli::data_args(data, &defaults, set)
}

const TABLES: [&str; 3] = ["curves.csv", "runs.csv", "samples.csv"];

#[test]
fn the_binary_writes_table_1_with_the_papers_numbers_for_any_threads_and_shards() {
    let data = export("det");
    let dirs = cli::assert_thread_and_shard_invariant("lm", &TABLES, |dir, extra| {
        let mut a = vec!["--out".to_string(), dir.to_str().unwrap().into()];
        a.extend(small_args(
            &data,
            &[
                ("--runs", "rnn-sigmoid:msgd-cr,gru:msgd-c"),
                ("--ahead", "1,5"),
            ],
        ));
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        cli::run_ok(BIN, &a)
    });
    let runs = cli::read(&dirs[0], "runs.csv");
    let mut lines = runs.lines();
    assert_eq!(
        lines.next().unwrap(),
        "level,cell,hidden,parameters,algorithm,ahead,seed,updates,epochs,diverged,train_bits,\
         valid_bits,test_bits,valid_perplexity,test_perplexity,paper_train_bits,paper_test_bits"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "2 runs × 2 distances");
    // the GRU sized to the RNN's parameter count: (8·(5+8+2) + 5·9 = 165) → GRU H = 4: 3·4·(5+4+2) + 5·5 = 157
    assert_eq!(&rows[1][1..4], ["gru", "4", "157"]);
    assert_eq!(&rows[0][1..4], ["rnn-sigmoid", "8", "165"]);
    // the paper's numbers only for its own model (500 sigmoid units): none here
    assert!(rows.iter().all(|r| r[15].is_empty() && r[16].is_empty()));
    // samples from next-symbol runs only, in the data's alphabet
    let samples = cli::read(&dirs[0], "samples.csv");
    assert_eq!(samples.matches("\nchars,").count(), 2, "{samples}");
    // checkpoints hold the trained models
    for r in &rows {
        let f = dirs[0].join("checkpoints").join(format!(
            "chars_{}{}_{}_ahead{}_s0.safetensors",
            r[1], r[2], r[4], r[5]
        ));
        let sd = bptt::nn::import::StateDict::load(&f).unwrap();
        assert_eq!(sd.metadata()["updates"], "20");
    }
    let curves = cli::read(&dirs[0], "curves.csv");
    assert!(curves.starts_with(
        "level,cell,hidden,algorithm,ahead,seed,update,epoch,train_bits,grad_norm,\
         max_grad_norm,clip,paper_grad_norm,clipped,omega,omega_weight,valid_bits\n"
    ));
    // 20 updates logged every 5: 4 rows per run
    assert_eq!(curves.lines().count(), 1 + 4 * 4);
}

#[test]
fn the_binary_resumes_after_kill_9_to_the_same_bytes() {
    let data = export("resume");
    let args = |dir: &Path| -> Vec<String> {
        let mut a: Vec<String> = vec!["--out".into(), dir.to_str().unwrap().into()];
        a.extend(small_args(
            &data,
            &[
                ("--updates", "200"),
                ("--checkpoint-every", "5"),
                ("--runs", "rnn-sigmoid:msgd-c,lstm:msgd-c,rnn-tanh:msgd"),
                ("--ahead", "1"),
                ("--threads", "1"),
            ],
        ));
        a
    };
    let (killed, ..) =
        cli::assert_resumes_after_kill(BIN, "lm", args, (1, 60, "runs.csv"), &TABLES);
    assert!(killed.join("checkpoints").is_dir());
}

#[test]
fn bad_flags_and_bad_data_exit_2_with_a_clear_message() {
    let data = export("bad");
    let d = data.to_str().unwrap();
    cli::assert_bad_flags_exit_2(
        BIN,
        "lm",
        &["--quick"],
        &[
            (
                vec!["--data", d, "--runs", "lstm:msgd-cr"],
                "single vanilla RNN layer",
            ),
            (vec!["--data", d, "--runs", "lstm"], "is not cell:algorithm"),
            (
                vec!["--data", d, "--runs", "rnn-cubic:msgd"],
                "unknown cell",
            ),
            (
                vec!["--data", d, "--runs", "lstm:adam"],
                "unknown algorithm",
            ),
            (
                vec!["--data", d, "--runs", "lstm:msgd,lstm:msgd"],
                "listed twice",
            ),
            (vec!["--data", d, "--ahead", "0"], "at least 1 step ahead"),
            (vec!["--data", d, "--ahead", "1,1"], "listed twice"),
            (vec!["--data", d, "--level", "bytes"], "unknown level"),
            (vec!["--data", d, "--seeds", "0"], "--seeds"),
            (vec!["--data", d, "--clip", "0"], "--clip must be positive"),
            (
                vec!["--data", "/nonexistent/bptt"],
                "run scripts/fetch-data.sh",
            ),
        ],
    );
    // a changed file and an unknown symbol, with the export's manifest unchanged
    let changed = export("changed");
    std::fs::write(changed.join("ptb/valid.txt"), "a b\n").unwrap();
    let unknown = export("unknown");
    let text = "ab ba\nab x\n";
    std::fs::write(unknown.join("ptb/test.txt"), text).unwrap();
    let manifest = std::fs::read_to_string(unknown.join("manifest.json")).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    m["files"]["ptb/test.txt"] =
        serde_json::json!({"sha256": sha256_hex(text.as_bytes()), "bytes": text.len()});
    std::fs::write(unknown.join("manifest.json"), m.to_string()).unwrap();
    for (dir, needle) in [(&changed, "ptb/valid.txt"), (&unknown, "ptb/test.txt:2:4")] {
        cli::assert_bad_flags_exit_2(
            BIN,
            "lm",
            &["--quick", "--data", dir.to_str().unwrap()],
            &[(vec![], needle)],
        );
    }
}
