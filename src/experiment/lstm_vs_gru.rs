//! LSTM vs GRU, the lecture's rule of thumb measured: both gated cells keep information over
//! long spans; the GRU has fewer parameters and is quicker; "start with an LSTM, switch to a GRU
//! for efficiency". And the LSTM's forget-gate initialisation, which decides how long its memory
//! is at the start of training: bias 0, bias 1 (Gers et al. 2000; Jozefowicz, Zaremba &
//! Sutskever 2015) or chrono (Tallec & Ollivier 2018).
//!
//! **Models** ([`Model`]), all from PyTorch's initialisation U(−1/√H, 1/√H) with `H` hidden units
//! and a linear readout from U(−1/√H, 1/√H):
//!
//! - `lstm-b0`, `lstm-b1`: the forget gate's effective bias `b_ih[f] + b_hh[f]` set to 0 or 1
//!   ([`Lstm::with_forget_bias`]);
//! - `lstm-chrono`: `b_f ~ log U[1, T_max − 1]`, `b_i = −b_f` ([`Lstm::with_chrono_init`]), with
//!   `T_max` the run's dependency span ([`Problem::chrono_t_max`]);
//! - `gru`: the GRU at the same `H`;
//! - `gru-matched`: the GRU whose parameter count (cell + readout) is closest to the LSTM's at
//!   `H` ([`matched_hidden`]).
//!
//! The three LSTMs of a replicate share every weight but the biases the rule sets (one weight
//! stream per cell and size), so their differences are the initialisation's.
//!
//! **Problems** ([`Problem`]), each at one or more lengths ([`RunSpec::length`]): temporal order
//! and addition of Pascanu et al. §4.1 ([`tasks::Task`]) at sequence length `T`, and number
//! agreement on the preamble grammar of [`agreement`] (the number task: the prefix up to the
//! verb, singular/plural at the last step) with subject–verb distances up to the length.
//! Every run trains its whole budget (no early stop, so the learning curves are complete) with
//! Adam and global-norm clipping on fresh batches, validates every `eval_every` updates on
//! fresh sequences, and records the first validation below `success_error` (`solved_at`); the
//! final test error is measured on `test_sequences` sequences after the last update.
//!
//! **Time.** The curves record updates and the sequence steps processed (`steps`: Σ over the
//! updates of the batch's length), not seconds: outputs are byte-identical for any thread
//! count. The seconds axis is the benchmark's: `benches/lstm_vs_gru.rs` times one update of
//! every (problem, model) at its default shape, and `scripts/bench-lstm-vs-gru.sh` writes the
//! medians to `results/lstm-vs-gru/ms_per_update.csv`, which the notebook multiplies in.
//!
//! Randomness: `stream(seed, [LSTM_VS_GRU, problem, length, replicate, purpose, …])` — the training,
//! validation and test data ([`purpose::TRAIN`], [`purpose::VALID`], [`purpose::TEST`]) are the
//! same for every model of a replicate (common random numbers); the weights
//! ([`purpose::WEIGHTS`]) are keyed by cell and hidden size, the chrono biases by
//! [`purpose::CHRONO`].

use std::fmt;
use std::str::FromStr;

use rand::RngExt;

use crate::error::BpttError;
use crate::experiment::agreement::{self, Grammar, Sentence};
use crate::experiment::depth;
use crate::experiment::tasks::{self, Task};
use crate::nn::arch::Unidirectional;
use crate::nn::cell::Cell;
use crate::nn::cells::{AnyCell, CellKind};
use crate::nn::engine::Inputs;
use crate::nn::model::NetworkModel;
use crate::nn::readout::Readout;
use crate::rng::{Rng, stream};
use crate::train::optim::Optimizer;
use crate::train::trainer::{self, Loss, ReadoutAt, Schedule, Targets, Trainer};

#[cfg(doc)]
use crate::nn::cells::lstm::Lstm;

/// The first component of every stream path of this experiment.
pub const LSTM_VS_GRU: u64 = 0x157C;

/// Stream purposes (the fourth component of the path).
pub mod purpose {
    /// Cell and readout weights: `[…, WEIGHTS, cell seed id, hidden]`.
    pub const WEIGHTS: u64 = 0;
    /// The chrono initialisation's forget biases.
    pub const CHRONO: u64 = 1;
    /// The training batches.
    pub const TRAIN: u64 = 2;
    /// The validation sequences (fresh at every evaluation, the same for every model).
    pub const VALID: u64 = 3;
    /// The final test.
    pub const TEST: u64 = 4;
}

/// How an LSTM's forget gate starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgetInit {
    /// Effective forget bias 0: `f = σ(·) ≈ ½` at the start, memory halves every step.
    Zero,
    /// Effective forget bias 1: `f ≈ 0.73`.
    One,
    /// Chrono: forgetting times spread over `[1, T_max]`.
    Chrono,
}

/// One of the compared models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Model {
    /// An LSTM with `H` units and the given forget-gate initialisation.
    Lstm(ForgetInit),
    /// A GRU with `H` units.
    Gru,
    /// A GRU with the LSTM's parameter count at `H`.
    GruMatched,
}

/// Every model, in plan order.
pub const ALL_MODELS: [Model; 5] = [
    Model::Lstm(ForgetInit::Zero),
    Model::Lstm(ForgetInit::One),
    Model::Lstm(ForgetInit::Chrono),
    Model::Gru,
    Model::GruMatched,
];

impl Model {
    /// `lstm-b0`, `lstm-b1`, `lstm-chrono`, `gru`, `gru-matched`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Model::Lstm(ForgetInit::Zero) => "lstm-b0",
            Model::Lstm(ForgetInit::One) => "lstm-b1",
            Model::Lstm(ForgetInit::Chrono) => "lstm-chrono",
            Model::Gru => "gru",
            Model::GruMatched => "gru-matched",
        }
    }
    /// The registered cell.
    #[must_use]
    pub fn cell(self) -> CellKind {
        match self {
            Model::Lstm(_) => CellKind::Lstm,
            Model::Gru | Model::GruMatched => CellKind::Gru,
        }
    }
    /// The model's hidden size on `problem` when the LSTM has `hidden` units.
    #[must_use]
    pub fn hidden(self, problem: Problem, hidden: usize) -> usize {
        match self {
            Model::GruMatched => {
                let (c, r) = parameter_count(CellKind::Lstm, problem, hidden);
                matched_hidden(CellKind::Gru, problem, c + r)
            }
            _ => hidden,
        }
    }
}

impl FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_MODELS
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown model '{s}' (expected one of {})",
                    ALL_MODELS.map(Model::name).join(", ")
                )
            })
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One of the training problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// Pascanu et al.'s temporal order of length T.
    TemporalOrder,
    /// Pascanu et al.'s addition of nominal length T (each batch adds up to a tenth).
    Addition,
    /// Number agreement (the number task) on the preamble grammar, subject–verb distance
    /// uniform in `0..=length`.
    Agreement,
}

/// Every problem, in plan order.
pub const ALL_PROBLEMS: [Problem; 3] = [
    Problem::TemporalOrder,
    Problem::Addition,
    Problem::Agreement,
];

impl Problem {
    /// `temporal-order`, `addition`, `agreement`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Problem::TemporalOrder => "temporal-order",
            Problem::Addition => "addition",
            Problem::Agreement => "agreement",
        }
    }
    /// The stream id.
    #[must_use]
    pub fn id(self) -> u64 {
        self as u64
    }
    /// D: the task's input size, or the agreement vocabulary (token inputs).
    #[must_use]
    pub fn input_size(self) -> usize {
        match self {
            Problem::TemporalOrder => Task::TemporalOrder.input_size(),
            Problem::Addition => Task::Addition.input_size(),
            Problem::Agreement => agreement::VOCAB,
        }
    }
    /// O: the readout's outputs.
    #[must_use]
    pub fn output_size(self) -> usize {
        match self {
            Problem::TemporalOrder => Task::TemporalOrder.output_size(),
            Problem::Addition => Task::Addition.output_size(),
            Problem::Agreement => agreement::Task::Number.outputs(),
        }
    }
    /// Where the loss reads the network, and which loss: every problem reads the last step;
    /// addition is a regression (squared error), the others softmax cross-entropy.
    #[must_use]
    pub fn readout(self) -> (ReadoutAt, Loss) {
        match self {
            Problem::TemporalOrder => Task::TemporalOrder.readout(),
            Problem::Addition => Task::Addition.readout(),
            Problem::Agreement => (ReadoutAt::Last, Loss::SoftmaxCrossEntropy),
        }
    }
    /// The span the chrono initialisation's `T_max` covers at `length`: the sequence length (the
    /// first marker of temporal order and addition can sit near the start), or for agreement
    /// the longest subject–verb distance plus one.
    #[must_use]
    pub fn chrono_t_max(self, length: usize) -> f64 {
        match self {
            Problem::TemporalOrder | Problem::Addition => length as f64,
            Problem::Agreement => (length + 1) as f64,
        }
    }
    /// The smallest length: every marker window of the tasks non-empty (T ≥ 10), chrono's
    /// `T_max > 2` for agreement.
    #[must_use]
    pub fn min_length(self) -> usize {
        match self {
            Problem::TemporalOrder => Task::TemporalOrder.min_length(),
            Problem::Addition => Task::Addition.min_length(),
            Problem::Agreement => 2,
        }
    }
    /// The longest sequence a batch at `length` has.
    #[must_use]
    pub fn max_steps(self, length: usize, h: &Hyper) -> usize {
        match self {
            Problem::TemporalOrder => length,
            Problem::Addition => length.saturating_add(length / 10),
            // the preamble (3 tokens per noun), the determiner and the subject
            Problem::Agreement => length
                .saturating_add(h.agreement_preamble.saturating_mul(3))
                .saturating_add(3),
        }
    }
    /// The error rate of the best predictor that ignores the informative inputs: 0.75 for
    /// temporal order, 0.36 for addition ([`Task::chance_error`]), ½ for agreement (the
    /// subject's number is a fair coin).
    #[must_use]
    pub fn chance_error(self) -> f64 {
        match self {
            Problem::TemporalOrder => Task::TemporalOrder.chance_error(),
            Problem::Addition => Task::Addition.chance_error(),
            Problem::Agreement => 0.5,
        }
    }
}

impl FromStr for Problem {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_PROBLEMS
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown task '{s}' (expected temporal-order, addition or agreement)")
            })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parameters of `cell` with `hidden` units on `problem`: (the cell's, the readout's).
#[must_use]
pub fn parameter_count(cell: CellKind, problem: Problem, hidden: usize) -> (usize, usize) {
    let c = cell
        .zeros::<f64>(problem.input_size(), hidden)
        .parameter_count();
    (c, (hidden + 1) * problem.output_size())
}

/// The hidden size of `cell` whose total parameter count (cell + readout) on `problem` is
/// closest to `target` (the smaller size on a tie).
#[must_use]
pub fn matched_hidden(cell: CellKind, problem: Problem, target: usize) -> usize {
    crate::experiment::closest_size(
        |h| {
            let (c, r) = parameter_count(cell, problem, h);
            c + r
        },
        target,
    )
}

/// Hyper-parameters shared by every run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Hyper {
    /// H of the LSTMs and of `gru`.
    pub hidden: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// Updates per run (always all of them).
    pub updates: u64,
    /// Adam's learning rate.
    pub lr: f64,
    /// Global-norm clipping threshold.
    pub clip: f64,
    /// Validate every this many updates on `eval_sequences` fresh sequences.
    pub eval_every: u64,
    pub eval_sequences: usize,
    /// Sequences of the final test.
    pub test_sequences: usize,
    /// Write a learning-curve row every this many updates (and at every validation).
    pub log_every: u64,
    /// Validation error below which a run counts as having solved its problem.
    pub success_error: f64,
    /// Most attractors of agreement (P(a) ∝ 2^−a, [`agreement::draw_attractors`]).
    pub agreement_attractors: usize,
    /// Most preamble nouns of the agreement grammar.
    pub agreement_preamble: usize,
}

impl Hyper {
    /// The agreement grammar: the preamble grammar's defaults with `agreement_preamble` nouns.
    #[must_use]
    pub fn grammar(&self) -> Grammar {
        Grammar {
            max_preamble: self.agreement_preamble,
            ..Grammar::default()
        }
    }

    /// Check what the constructors below would otherwise reject mid-run.
    pub fn validate(&self) -> Result<(), BpttError> {
        let bad = |m: String| Err(BpttError::Invalid(m));
        for (name, v) in [
            ("hidden", self.hidden as u64),
            ("batch", self.batch as u64),
            ("updates", self.updates),
            ("eval-every", self.eval_every),
            ("eval-sequences", self.eval_sequences as u64),
            ("test-sequences", self.test_sequences as u64),
            ("log-every", self.log_every),
        ] {
            if v == 0 {
                return bad(format!("--{name} must be at least 1"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr must be a positive number, got {}", self.lr));
        }
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            return bad(format!(
                "--clip must be a positive number, got {}",
                self.clip
            ));
        }
        if !(self.success_error > 0.0 && self.success_error <= 1.0) {
            return bad(format!(
                "--success-error must be in (0, 1], got {}",
                self.success_error
            ));
        }
        self.grammar().validate()
    }
}

/// One run: a problem at a length, a model, a replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunSpec {
    pub problem: Problem,
    /// T of temporal order and addition; the longest subject–verb distance of agreement.
    pub length: usize,
    pub model: Model,
    pub replicate: u64,
}

impl RunSpec {
    /// The run's stream for `purpose` ([`purpose`]), `rest` appended.
    #[must_use]
    pub fn stream(&self, seed: u64, purpose: u64, rest: &[u64]) -> Rng {
        let mut path = vec![
            LSTM_VS_GRU,
            self.problem.id(),
            self.length as u64,
            self.replicate,
            purpose,
        ];
        path.extend_from_slice(rest);
        stream(seed, &path)
    }
}

/// The network every run trains: one cell read forward.
pub type Net = Unidirectional<AnyCell<f64>>;

/// The run's model at initialisation (see the module docs).
pub fn build(spec: &RunSpec, h: &Hyper, seed: u64) -> Result<NetworkModel<f64, Net>, BpttError> {
    let (problem, model) = (spec.problem, spec.model);
    let hidden = model.hidden(problem, h.hidden);
    let cell_kind = model.cell();
    let mut rng = spec.stream(
        seed,
        purpose::WEIGHTS,
        &[cell_kind.seed_id(), hidden as u64],
    );
    let cell = match (
        cell_kind.pytorch_init(problem.input_size(), hidden, &mut rng),
        model,
    ) {
        (AnyCell::Lstm(c), Model::Lstm(ForgetInit::Zero)) => AnyCell::Lstm(c.with_forget_bias(0.0)),
        (AnyCell::Lstm(c), Model::Lstm(ForgetInit::One)) => AnyCell::Lstm(c.with_forget_bias(1.0)),
        (AnyCell::Lstm(c), Model::Lstm(ForgetInit::Chrono)) => {
            let t_max = problem.chrono_t_max(spec.length);
            if t_max <= 2.0 {
                return Err(BpttError::Invalid(format!(
                    "chrono initialisation needs T_max > 2, got {t_max}"
                )));
            }
            let mut chrono = spec.stream(seed, purpose::CHRONO, &[]);
            AnyCell::Lstm(c.with_chrono_init(t_max, &mut chrono))
        }
        (cell, _) => cell,
    };
    // PyTorch's nn.Linear default: U(−1/√H, 1/√H)
    let readout = Readout::uniform(
        hidden,
        problem.output_size(),
        1.0 / (hidden as f64).sqrt(),
        &mut rng,
    );
    NetworkModel::new(Unidirectional::new(cell), readout)
}

/// A batch of one problem, owned: a task's batch or agreement's token columns.
pub enum OwnedBatch {
    Task(tasks::Batch),
    Tokens {
        /// Token ids, column `t·B + b`.
        ids: Vec<usize>,
        /// The subject's number class of every sentence.
        targets: Vec<usize>,
        sentences: Vec<Sentence>,
        steps: usize,
        batch: usize,
    },
}

impl OwnedBatch {
    /// T of this batch.
    #[must_use]
    pub fn steps(&self) -> usize {
        match self {
            OwnedBatch::Task(b) => b.steps,
            OwnedBatch::Tokens { steps, .. } => *steps,
        }
    }
    /// The batch as the trainer reads it.
    #[must_use]
    pub fn view(&self) -> trainer::Batch<'_, f64> {
        match self {
            OwnedBatch::Task(b) => b.for_trainer(),
            OwnedBatch::Tokens {
                ids,
                targets,
                batch,
                ..
            } => trainer::Batch {
                inputs: Inputs::Tokens {
                    ids,
                    vocab: agreement::VOCAB,
                },
                batch: *batch,
                targets: Targets::Classes(targets),
            },
        }
    }
}

/// `b` sequences of `problem` at `length` drawn from `rng`: a task batch, or agreement
/// sentences at one distance (uniform in `0..=length`) and one preamble size (uniform),
/// attractors from [`agreement::draw_attractors`].
pub fn draw(
    problem: Problem,
    length: usize,
    h: &Hyper,
    rng: &mut Rng,
    b: usize,
) -> Result<OwnedBatch, BpttError> {
    Ok(match problem {
        Problem::TemporalOrder => OwnedBatch::Task(Task::TemporalOrder.generate(rng, b, length)?),
        Problem::Addition => OwnedBatch::Task(Task::Addition.generate(rng, b, length)?),
        Problem::Agreement => {
            let grammar = h.grammar();
            let d = rng.random_range(0..=length);
            let p = rng.random_range(0..=grammar.max_preamble);
            let sentences =
                agreement::training_sentences(rng, &grammar, b, h.agreement_attractors, d, p)?;
            let ids = agreement::columns(&sentences, Sentence::prefix)?;
            OwnedBatch::Tokens {
                steps: ids.len() / b,
                targets: sentences.iter().map(|s| s.number.class()).collect(),
                ids,
                sentences,
                batch: b,
            }
        }
    })
}

/// Agreement sentences per validation or test draw (each draw has one distance and preamble
/// size, so many small draws cover the distribution).
pub const AGREEMENT_GROUP: usize = 50;

/// Error rate of `model` on `n` fresh sequences of `problem` at `length` from `rng`: temporal order and
/// addition as [`depth::error_rate`] counts them (wrong class; squared error above 0.04),
/// agreement as [`agreement::count_errors`] (P(right number) ≤ P(other)), in draws of
/// [`AGREEMENT_GROUP`] sentences.
pub fn error_rate(
    trainer: &mut Trainer<f64, Net>,
    model: &NetworkModel<f64, Net>,
    problem: Problem,
    length: usize,
    h: &Hyper,
    n: usize,
    rng: &mut Rng,
) -> Result<f64, BpttError> {
    match problem {
        Problem::TemporalOrder => {
            depth::error_rate(trainer, model, Task::TemporalOrder, length, n, rng)
        }
        Problem::Addition => depth::error_rate(trainer, model, Task::Addition, length, n, rng),
        Problem::Agreement => {
            let (mut errors, mut done) = (0, 0);
            while done < n {
                let b = (n - done).min(AGREEMENT_GROUP);
                let OwnedBatch::Tokens { sentences, .. } = draw(problem, length, h, rng, b)? else {
                    unreachable!("agreement draws token batches")
                };
                errors +=
                    agreement::count_errors(trainer, model, agreement::Task::Number, &sentences)?;
                done += b;
            }
            Ok(errors as f64 / n as f64)
        }
    }
}

/// One logged point of a learning curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// Updates done.
    pub update: u64,
    /// Sequence steps processed so far: Σ over the updates of their batch's T (the seconds
    /// axis is this times the benchmark's time per step).
    pub steps: u64,
    /// That update's loss and gradient norm (before clipping).
    pub loss: f64,
    pub grad_norm: f64,
    /// The validation error, at validation points.
    pub valid_error: Option<f64>,
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// H and the trainable scalars (cell + readout).
    pub hidden: usize,
    pub parameters: usize,
    /// The first update whose validation error was below `success_error`.
    pub solved_at: Option<u64>,
    /// Updates done (the budget, unless the parameters became non-finite).
    pub updates: u64,
    pub diverged: bool,
    /// Error rate on the final test (1 if diverged).
    pub test_error: f64,
    pub curve: Vec<CurvePoint>,
}

/// The training set-up of every run: `problem`'s readout and loss, Adam at `h.lr`, global-norm
/// clipping at `h.clip`, a constant learning rate, no safety net, fresh states per batch.
pub fn trainer_for(
    problem: Problem,
    h: &Hyper,
    model: &NetworkModel<f64, Net>,
) -> Result<Trainer<f64, Net>, BpttError> {
    let (readout_at, loss) = problem.readout();
    Trainer::new(
        model,
        trainer::Config {
            readout_at,
            loss,
            optimizer: Optimizer::adam(h.lr),
            schedule: Schedule::Constant,
            clip: Some(h.clip),
            safety_net: false,
            carry_state: false,
            omega: None,
        },
    )
}

/// Train one run for the whole budget and test it.
pub fn train(spec: &RunSpec, h: &Hyper, seed: u64) -> Result<Outcome, BpttError> {
    let mut model = build(spec, h, seed)?;
    let hidden = model.net.cell.hidden_size();
    let parameters = model.net.cell.parameter_count() + model.readout.params().scalar_count();
    let mut tr = trainer_for(spec.problem, h, &model)?;
    let mut data = spec.stream(seed, purpose::TRAIN, &[]);
    let mut valid = spec.stream(seed, purpose::VALID, &[]);
    let (mut curve, mut solved_at, mut diverged) = (Vec::new(), None, false);
    let (mut n, mut steps) = (0, 0u64);
    while n < h.updates {
        let batch = draw(spec.problem, spec.length, h, &mut data, h.batch)?;
        let rec = tr.update(&mut model, &batch.view())?;
        n += 1;
        steps += batch.steps() as u64;
        let finite = model.net.cell.params().is_finite() && model.readout.params().is_finite();
        let evaluate = finite && (n % h.eval_every == 0 || n == h.updates);
        if n % h.log_every == 0 || evaluate || !finite {
            let valid_error = if evaluate {
                Some(error_rate(
                    &mut tr,
                    &model,
                    spec.problem,
                    spec.length,
                    h,
                    h.eval_sequences,
                    &mut valid,
                )?)
            } else {
                None
            };
            if solved_at.is_none() && valid_error.is_some_and(|e| e < h.success_error) {
                solved_at = Some(n);
            }
            curve.push(CurvePoint {
                update: n,
                steps,
                loss: rec.loss,
                grad_norm: rec.grad_norm,
                valid_error,
            });
        }
        if !finite {
            diverged = true;
            break;
        }
    }
    let test_error = if diverged {
        1.0
    } else {
        let mut test = spec.stream(seed, purpose::TEST, &[]);
        error_rate(
            &mut tr,
            &model,
            spec.problem,
            spec.length,
            h,
            h.test_sequences,
            &mut test,
        )?
    };
    Ok(Outcome {
        hidden,
        parameters,
        solved_at,
        updates: n,
        diverged,
        test_error,
        curve,
    })
}

/// What one timed update needs: the model, its trainer, a batch.
pub struct TimedUpdate {
    pub model: NetworkModel<f64, Net>,
    pub trainer: Trainer<f64, Net>,
    pub batch: OwnedBatch,
}

/// The model, trainer and first training batch of run `spec`, for timing one update
/// (`benches/lstm_vs_gru.rs`).
pub fn timing_setup(spec: &RunSpec, h: &Hyper, seed: u64) -> Result<TimedUpdate, BpttError> {
    let model = build(spec, h, seed)?;
    let tr = trainer_for(spec.problem, h, &model)?;
    let mut rng = spec.stream(seed, purpose::TRAIN, &[]);
    let batch = draw(spec.problem, spec.length, h, &mut rng, h.batch)?;
    Ok(TimedUpdate {
        model,
        trainer: tr,
        batch,
    })
}
