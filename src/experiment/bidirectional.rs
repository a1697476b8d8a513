//! The lecture's bidirectional claim, measured: in "the movie was terribly exciting!",
//! *terribly* is positive only because of the word after it, so a left-to-right RNN cannot tag
//! it, and a bidirectional one can. A tagging task where some tokens' labels depend on a token
//! `d` steps **later** (right-dependent) and, as a control, others on a token `d` steps
//! **earlier** (left-dependent); uni- and bidirectional networks of every cell are trained on
//! it and scored per dependency and distance, beside the computed chance level.
//!
//! **The task** (vocabulary of [`VOCAB`] tokens, labels [`NEUTRAL`], [`POSITIVE`],
//! [`NEGATIVE`]). A sequence of `T` tokens is filler words (label neutral) with two patterns
//! at non-overlapping positions, each with its own distance `d ∈ 1..=max_distance` and its own
//! polarity (fair coins, independent of everything else):
//!
//! - *right-dependent*: an intensifier at `p` and an adjective at `p + d` — "terribly … exciting";
//!   the intensifier's label is the adjective's polarity;
//! - *left-dependent* (the control): an adjective at `q` and an anaphor at `q + d` — "exciting …
//!   it"; the anaphor's label is the adjective's polarity.
//!
//! Adjectives are labelled with their own polarity, fillers neutral. The loss is the softmax
//! cross-entropy over the three labels at every step. A causal (left-to-right) network sees
//! nothing at `p` that carries the right-dependent polarity — every other token is independent
//! of it — so its best accuracy on intensifiers is the majority rate of their labels in the
//! test set ([`chance_accuracy`], ½ up to sampling), while a bidirectional network's reverse
//! direction has read the adjective `d` steps before it reaches `p`.
//!
//! Randomness: `stream(seed, [replicate, purpose])` for the training batches (purpose
//! [`STREAM_TRAIN`]: shared by every cell and direction of a replicate — common random
//! numbers) and `stream(seed, [cell, direction, replicate, STREAM_INIT])` for the weights; one
//! test set for every model, `stream(seed, [STREAM_TEST])`.

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::arch::{Bidirectional, SeqLayer, Unidirectional};
use crate::nn::cells::{AnyCell, CellKind};
use crate::nn::engine::Inputs;
use crate::nn::model::NetworkModel;
use crate::nn::readout::Readout;
use crate::rng::{Rng, stream};
use crate::train::optim::Optimizer;
use crate::train::trainer::{Batch, Config, Dtype, ReadoutAt, Targets, Trainer};
use rand::RngExt;

/// Filler words (neutral): ids `0..FILLERS`.
pub const FILLERS: usize = 20;
/// Adjectives of each polarity: positive ids `FILLERS..FILLERS+ADJECTIVES`, negative the next.
pub const ADJECTIVES: usize = 5;
/// Intensifiers ("terribly", "really", …), the right-dependent tokens.
pub const INTENSIFIERS: usize = 3;
/// Anaphors ("it", "that"), the left-dependent tokens.
pub const ANAPHORS: usize = 2;
/// Vocabulary size.
pub const VOCAB: usize = FILLERS + 2 * ADJECTIVES + INTENSIFIERS + ANAPHORS;
/// First id of each word class.
pub const FIRST_POSITIVE: usize = FILLERS;
pub const FIRST_NEGATIVE: usize = FILLERS + ADJECTIVES;
pub const FIRST_INTENSIFIER: usize = FILLERS + 2 * ADJECTIVES;
pub const FIRST_ANAPHOR: usize = FIRST_INTENSIFIER + INTENSIFIERS;

/// The labels.
pub const NEUTRAL: usize = 0;
pub const POSITIVE: usize = 1;
pub const NEGATIVE: usize = 2;
pub const LABELS: usize = 3;

/// Stream purposes.
pub const STREAM_INIT: u64 = 0;
pub const STREAM_TRAIN: u64 = 1;
pub const STREAM_TEST: u64 = 2;

/// Which way a scored token's label depends on its partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    /// The partner comes `d` steps later (intensifier → adjective).
    Right,
    /// The partner came `d` steps earlier (adjective → anaphor).
    Left,
}

impl Dependency {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Right => "right",
            Dependency::Left => "left",
        }
    }
}

/// A network's reading direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Uni,
    Bi,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Uni, Direction::Bi];
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Direction::Uni => "uni",
            Direction::Bi => "bi",
        }
    }
    /// The id that keys the weights' stream.
    #[must_use]
    pub fn id(self) -> u64 {
        match self {
            Direction::Uni => 0,
            Direction::Bi => 1,
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uni" => Ok(Direction::Uni),
            "bi" => Ok(Direction::Bi),
            _ => Err(format!("unknown direction '{s}' (expected uni or bi)")),
        }
    }
}

/// One scored token of a sequence: where it is, which way it depends, how far its partner is,
/// and its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Sequence index b within the batch.
    pub sequence: usize,
    /// Step t of the dependent token (intensifier or anaphor).
    pub step: usize,
    pub dependency: Dependency,
    pub distance: usize,
    pub label: usize,
}

/// `B` tagged sequences of `T` steps: token ids and labels in column order `t·B + b` (the
/// trainer's), and the two probes of every sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Tagged {
    pub tokens: Vec<usize>,
    pub labels: Vec<usize>,
    pub probes: Vec<Probe>,
    pub steps: usize,
    pub batch: usize,
}

/// The shortest sequence that holds both patterns at distance `max_distance`.
#[must_use]
pub fn min_length(max_distance: usize) -> usize {
    2 * (max_distance + 1)
}

/// Draw `batch` sequences of `steps` tokens, each pattern's distance uniform in
/// `1..=max_distance`.
pub fn generate(
    rng: &mut Rng,
    batch: usize,
    steps: usize,
    max_distance: usize,
) -> Result<Tagged, BpttError> {
    if max_distance == 0 || steps < min_length(max_distance) || batch == 0 {
        return Err(BpttError::Invalid(format!(
            "tagging sequences need B ≥ 1, a maximal distance ≥ 1 and T ≥ 2·(d_max + 1) = {} \
             (got B = {batch}, T = {steps}, d_max = {max_distance})",
            min_length(max_distance)
        )));
    }
    let mut tokens = vec![0; steps * batch];
    let mut labels = vec![NEUTRAL; steps * batch];
    let mut probes = Vec::with_capacity(2 * batch);
    let col = |t: usize, b: usize| t * batch + b;
    for b in 0..batch {
        for t in 0..steps {
            tokens[col(t, b)] = rng.random_range(0..FILLERS);
        }
        // the two patterns' positions, redrawn until their four tokens are distinct
        let (p, dr, q, dl) = loop {
            let dr = rng.random_range(1..=max_distance);
            let dl = rng.random_range(1..=max_distance);
            let p = rng.random_range(0..steps - dr);
            let q = rng.random_range(0..steps - dl);
            let (a, c) = ([p, p + dr], [q, q + dl]);
            if a.iter().all(|x| !c.contains(x)) {
                break (p, dr, q, dl);
            }
        };
        let adjective = |rng: &mut Rng| -> (usize, usize) {
            let positive = rng.random_bool(0.5);
            let first = if positive {
                FIRST_POSITIVE
            } else {
                FIRST_NEGATIVE
            };
            let label = if positive { POSITIVE } else { NEGATIVE };
            (first + rng.random_range(0..ADJECTIVES), label)
        };
        // right-dependent: intensifier at p, adjective at p + d
        let (adj, polarity) = adjective(rng);
        tokens[col(p + dr, b)] = adj;
        labels[col(p + dr, b)] = polarity;
        tokens[col(p, b)] = FIRST_INTENSIFIER + rng.random_range(0..INTENSIFIERS);
        labels[col(p, b)] = polarity;
        probes.push(Probe {
            sequence: b,
            step: p,
            dependency: Dependency::Right,
            distance: dr,
            label: polarity,
        });
        // left-dependent: adjective at q, anaphor at q + d
        let (adj, polarity) = adjective(rng);
        tokens[col(q, b)] = adj;
        labels[col(q, b)] = polarity;
        tokens[col(q + dl, b)] = FIRST_ANAPHOR + rng.random_range(0..ANAPHORS);
        labels[col(q + dl, b)] = polarity;
        probes.push(Probe {
            sequence: b,
            step: q + dl,
            dependency: Dependency::Left,
            distance: dl,
            label: polarity,
        });
    }
    Ok(Tagged {
        tokens,
        labels,
        probes,
        steps,
        batch,
    })
}

/// The accuracy of the best predictor that does not see a probe's partner: the majority rate
/// of the probes' labels (each probe's polarity is independent of every other token).
#[must_use]
pub fn chance_accuracy(probes: &[Probe]) -> f64 {
    if probes.is_empty() {
        return f64::NAN;
    }
    let positive = probes.iter().filter(|p| p.label == POSITIVE).count();
    positive.max(probes.len() - positive) as f64 / probes.len() as f64
}

/// The training set-up of one run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Hyper {
    pub hidden: usize,
    pub steps: usize,
    pub max_distance: usize,
    pub batch: usize,
    pub updates: u64,
    pub lr: f64,
    pub clip: f64,
    pub log_every: u64,
    pub test_sequences: usize,
    pub dtype: Dtype,
}

/// One logged update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    pub update: u64,
    pub loss: f64,
    pub grad_norm: f64,
}

/// A probe's outcome on the test set: was its label the argmax of the readout?
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub probe: Probe,
    pub correct: bool,
}

/// What one run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub curve: Vec<CurvePoint>,
    pub scored: Vec<Scored>,
    /// Accuracy on every other token (fillers and adjectives, labelled by what they are).
    pub local_accuracy: f64,
    pub parameters: usize,
}

/// The test set every model is scored on.
pub fn test_set(seed: u64, h: &Hyper) -> Result<Tagged, BpttError> {
    generate(
        &mut stream(seed, &[STREAM_TEST]),
        h.test_sequences,
        h.steps,
        h.max_distance,
    )
}

/// Train `cell` in `direction` (replicate `replicate`) and score it on `test`.
pub fn run(
    cell: CellKind,
    direction: Direction,
    replicate: u64,
    seed: u64,
    h: &Hyper,
    test: &Tagged,
) -> Result<Outcome, BpttError> {
    match h.dtype {
        Dtype::F64 => run_in::<f64>(cell, direction, replicate, seed, h, test),
        Dtype::F32 => run_in::<f32>(cell, direction, replicate, seed, h, test),
    }
}

fn run_in<T: RealField + Copy>(
    cell: CellKind,
    direction: Direction,
    replicate: u64,
    seed: u64,
    h: &Hyper,
    test: &Tagged,
) -> Result<Outcome, BpttError> {
    let mut init = stream(
        seed,
        &[cell.seed_id(), direction.id(), replicate, STREAM_INIT],
    );
    let make = |rng: &mut Rng| -> AnyCell<T> { cell.pytorch_init(VOCAB, h.hidden, rng) };
    match direction {
        Direction::Uni => {
            let net = Unidirectional::new(make(&mut init));
            train_and_score(net, &mut init, replicate, seed, h, test)
        }
        Direction::Bi => {
            let (forward, reverse) = (make(&mut init), make(&mut init));
            let net = Bidirectional::new(forward, reverse);
            train_and_score(net, &mut init, replicate, seed, h, test)
        }
    }
}

fn train_and_score<T: RealField + Copy, N: SeqLayer<T>>(
    net: N,
    init: &mut Rng,
    replicate: u64,
    seed: u64,
    h: &Hyper,
    test: &Tagged,
) -> Result<Outcome, BpttError> {
    let width = net.output_size();
    // PyTorch's nn.Linear default: U(−1/√fan_in, 1/√fan_in)
    let readout = Readout::uniform(width, LABELS, 1.0 / (width as f64).sqrt(), init);
    let mut model = NetworkModel::new(net, readout)?;
    let parameters = model
        .net_params()
        .iter()
        .map(|(_, m)| m.len())
        .sum::<usize>()
        + model
            .readout
            .params()
            .iter()
            .map(|(_, m)| m.len())
            .sum::<usize>();
    let config = Config {
        readout_at: ReadoutAt::EveryStep,
        optimizer: Optimizer::adam(h.lr),
        clip: Some(h.clip),
        ..Config::default()
    };
    let mut trainer = Trainer::new(&model, config)?;
    let mut data = stream(seed, &[replicate, STREAM_TRAIN]);
    let mut curve = Vec::new();
    for n in 1..=h.updates {
        let batch = generate(&mut data, h.batch, h.steps, h.max_distance)?;
        let rec = trainer.update(
            &mut model,
            &Batch {
                inputs: Inputs::Tokens {
                    ids: &batch.tokens,
                    vocab: VOCAB,
                },
                batch: h.batch,
                targets: Targets::Classes(&batch.labels),
            },
        )?;
        if n % h.log_every == 0 || n == h.updates {
            curve.push(CurvePoint {
                update: n,
                loss: rec.loss,
                grad_norm: rec.grad_norm,
            });
        }
    }
    let (scored, local_accuracy) = score(&mut trainer, &model, test)?;
    Ok(Outcome {
        curve,
        scored,
        local_accuracy,
        parameters,
    })
}

/// The first index of the largest entry (a NaN never wins).
fn argmax<T: RealField + Copy>(col: nalgebra::DVectorView<'_, T>) -> usize {
    let mut best = 0;
    for i in 1..col.len() {
        if col[i] > col[best] {
            best = i;
        }
    }
    best
}

/// Sequences scored per forward pass.
const SCORE_BATCH: usize = 500;

/// Score `model` on `test`: every probe, and the accuracy on the other tokens.
fn score<T: RealField + Copy, N: SeqLayer<T>>(
    trainer: &mut Trainer<T, N>,
    model: &NetworkModel<T, N>,
    test: &Tagged,
) -> Result<(Vec<Scored>, f64), BpttError> {
    let (steps, total) = (test.steps, test.batch);
    // the predicted label of every (step, sequence), in the test set's column order
    let mut predicted = vec![usize::MAX; steps * total];
    let mut b0 = 0;
    while b0 < total {
        let nb = SCORE_BATCH.min(total - b0);
        let ids: Vec<usize> = (0..steps)
            .flat_map(|t| (b0..b0 + nb).map(move |b| (t, b)))
            .map(|(t, b)| test.tokens[t * total + b])
            .collect();
        trainer.predict(
            model,
            Inputs::Tokens {
                ids: &ids,
                vocab: VOCAB,
            },
            nb,
            steps,
            &mut |t, y: &DMatrix<T>| {
                for j in 0..nb {
                    predicted[t * total + b0 + j] = argmax(y.column(j));
                }
            },
        )?;
        b0 += nb;
    }
    let scored = test
        .probes
        .iter()
        .map(|&probe| Scored {
            probe,
            correct: predicted[probe.step * total + probe.sequence] == probe.label,
        })
        .collect();
    let mut is_probe = vec![false; steps * total];
    for p in &test.probes {
        is_probe[p.step * total + p.sequence] = true;
    }
    let (mut right, mut n) = (0usize, 0usize);
    for (j, &label) in test.labels.iter().enumerate() {
        if !is_probe[j] {
            n += 1;
            right += (predicted[j] == label) as usize;
        }
    }
    Ok((scored, right as f64 / n as f64))
}
