//! Language modelling on a symbol stream (`bptt::experiment::language_model`): the parallel
//! streams of truncated BPTT as defined (contiguous, remainder dropped, targets `ahead` later),
//! and bits per symbol against a hand computation (a readout that outputs known probabilities)
//! and against the trainer's own loss on the same positions — evaluated in chunks with the
//! states carried, over streams longer than a chunk.

use approx::assert_relative_eq;
use bptt::experiment::language_model::{EVAL_CHUNK, Streams, bits_per_symbol};
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
