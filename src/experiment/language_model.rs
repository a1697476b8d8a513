//! Language modelling on a symbol stream (PTB characters or words, [`crate::experiment::data`]):
//! the stream cut into `B` parallel streams for truncated BPTT, and the evaluation in bits per
//! symbol — the quantities of Pascanu et al.'s Table 1 (next character, and the character five
//! steps ahead).
//!
//! **Streams.** A sequence of `N` ids becomes `B` contiguous streams of `L = ⌊N/B⌋` ids (the
//! last `N − B·L` ids are dropped): stream `b` is `ids[b·L .. (b+1)·L]`. A chunk of `T` steps at
//! offset `t₀` has, for step `t` and stream `b`, the input `ids[b·L + t₀ + t]` and the target
//! `ids[b·L + t₀ + t + ahead]` (`ahead` = 1: the next symbol), in the engine's column order
//! `t·B + b`. Consecutive chunks continue every stream where the last one stopped, so a trainer
//! with [`Config::carry_state`](crate::train::trainer::Config::carry_state) carries each
//! stream's state across them.
//!
//! **Bits per symbol** ([`bits_per_symbol`]): over every position of every stream that has a
//! target, the mean of `−log₂ softmax(y)[target]`, from zero states at the start of each stream,
//! the states carried through the whole stream.
//!
//! **Training runs** ([`train`], the `language-model` binary): one cell ([`RunSpec::cell`]) with
//! a softmax readout, PyTorch's initialisation ([`build`]), trained by truncated BPTT: the
//! training split cut into [`Hyper::batch`] streams, update `n` takes chunk `n mod E` of every
//! stream (`E` = [`Hyper::chunks_per_epoch`], the full chunks of [`Hyper::steps`] steps; the
//! remainder of each stream is not trained on), the states carried from chunk to chunk and reset
//! to zero at each epoch's start — so the data a run sees is a function of its update count, and
//! no randomness is involved but the initial weights. [`Algorithm`]: Table 1's MSGD, MSGD-C
//! (clipping, Algorithm 1, with the safety net) and MSGD-CR (+ Ω, whose weight decreases as
//! `α·τ/(τ + t)`), with the paper's hyper-parameters converted to the trainer's mean loss
//! ([`Algorithm::config`]). Updates run in f32 or f64; validation, test and training bits in
//! f64 on the trained weights. A checkpoint (safetensors: parameters, carried states, optimizer
//! moments, the curve so far) every [`Hyper::checkpoint_every`] updates lets an interrupted run
//! continue bit-identically (`tests/language_model.rs`). Gated cells are sized to the vanilla
//! RNN's parameter count ([`matched_hidden`]).

use std::fmt;
use std::str::FromStr;

use nalgebra::{DMatrix, RealField};
use rand::RngExt;

use crate::error::BpttError;
use crate::experiment::data;
use crate::experiment::driver::write_atomic;
use crate::nn::arch::{SeqLayer, Unidirectional};
use crate::nn::cell::Cell;
use crate::nn::cells::{AnyCell, CellKind};
use crate::nn::engine::Inputs;
use crate::nn::import::StateDict;
use crate::nn::model::NetworkModel;
use crate::nn::params::Params;
use crate::nn::readout::Readout;
use crate::rng::{Rng, stream};
use crate::train::optim::Optimizer;
use crate::train::trainer::{self, Dtype, Loss, OmegaRule, ReadoutAt, Schedule, Targets, Trainer};

/// `B` parallel streams over one id sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams<'a> {
    ids: &'a [usize],
    batch: usize,
    len: usize,
}

impl<'a> Streams<'a> {
    /// Cut `ids` into `batch` streams of `⌊N/batch⌋` ids; an error unless every stream has at
    /// least `ahead + 1` ids (an input and its target).
    pub fn new(ids: &'a [usize], batch: usize, ahead: usize) -> Result<Self, BpttError> {
        if batch == 0 || ahead == 0 {
            return Err(BpttError::Invalid(format!(
                "streams need B ≥ 1 and a target ≥ 1 step ahead (got B = {batch}, ahead = \
                 {ahead})"
            )));
        }
        let len = ids.len() / batch;
        if len <= ahead {
            return Err(BpttError::Invalid(format!(
                "{} symbols in {batch} streams leave {len} per stream: too few for a target \
                 {ahead} steps ahead",
                ids.len()
            )));
        }
        Ok(Streams { ids, batch, len })
    }

    /// B.
    #[must_use]
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// L, the ids per stream.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: [`Streams::new`] refuses empty streams.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The positions of a stream that have a target `ahead` steps later: `L − ahead`.
    #[must_use]
    pub fn positions(&self, ahead: usize) -> usize {
        self.len.saturating_sub(ahead)
    }

    /// The chunk of up to `steps` steps at offset `t0`, targets `ahead` steps later, written
    /// into `inputs` and `targets` (column `t·B + b`); returns the steps written (fewer than
    /// `steps` at the end of the streams, 0 past it).
    pub fn chunk(
        &self,
        t0: usize,
        steps: usize,
        ahead: usize,
        inputs: &mut Vec<usize>,
        targets: &mut Vec<usize>,
    ) -> usize {
        let n = steps.min(self.positions(ahead).saturating_sub(t0));
        inputs.clear();
        targets.clear();
        for t in 0..n {
            for b in 0..self.batch {
                let i = b * self.len + t0 + t;
                inputs.push(self.ids[i]);
                targets.push(self.ids[i + ahead]);
            }
        }
        n
    }
}

/// Steps per forward pass of [`bits_per_symbol`] (the workspace holds this many; the states are
/// carried from one pass to the next).
pub const EVAL_CHUNK: usize = 200;

/// Bits per symbol of `model` on `ids` cut into `batch` streams, targets `ahead` steps later:
/// the mean over all `B·(L − ahead)` positions of `−log₂ softmax(y_t)[target]`, the states from
/// zero at each stream's start and carried through it. The readout is read at every step.
pub fn bits_per_symbol<T: RealField + Copy, N: SeqLayer<T>>(
    trainer: &mut Trainer<T, N>,
    model: &NetworkModel<T, N>,
    ids: &[usize],
    vocab: usize,
    batch: usize,
    ahead: usize,
) -> Result<f64, BpttError> {
    let streams = Streams::new(ids, batch, ahead)?;
    if model.readout.output_size() != vocab {
        return Err(BpttError::Invalid(format!(
            "the readout has {} outputs for a vocabulary of {vocab}",
            model.readout.output_size()
        )));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i >= vocab) {
        return Err(BpttError::Invalid(format!(
            "symbol id {bad} outside the vocabulary of {vocab}"
        )));
    }
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let steps = streams.chunk(0, usize::MAX, ahead, &mut inputs, &mut targets);
    let mut nats = 0.0f64;
    trainer.predict(
        model,
        Inputs::Tokens {
            ids: &inputs,
            vocab,
        },
        batch,
        EVAL_CHUNK,
        &mut |t, y: &DMatrix<T>| {
            let k = y.nrows();
            for b in 0..batch {
                let col = &y.as_slice()[b * k..(b + 1) * k];
                nats += neg_log_softmax(col, targets[t * batch + b]);
            }
        },
    )?;
    Ok(nats / (steps * batch) as f64 / std::f64::consts::LN_2)
}

/// `−log softmax(y)[c] = logsumexp(y) − y_c`, in f64, shifted by the maximum (no overflow).
fn neg_log_softmax<T: RealField + Copy>(y: &[T], c: usize) -> f64 {
    let f = |v: T| v.to_subset().unwrap_or(f64::NAN);
    let m = y.iter().map(|&v| f(v)).fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = y.iter().map(|&v| (f(v) - m).exp()).sum();
    m + sum.ln() - f(y[c])
}

// ---------------------------------------------------------------------------------------------
// Training runs: Pascanu et al.'s Table 1 on PTB, and the gated cells beside it
// ---------------------------------------------------------------------------------------------

/// The first component of every stream path of this experiment.
pub const LANGUAGE_MODEL: u64 = 0x1A46;

/// Stream purposes (the last component of a run's path).
pub mod purpose {
    /// Cell and readout weights (the same for every algorithm and target distance).
    pub const WEIGHTS: u64 = 0;
    /// The sampled text.
    pub const SAMPLE: u64 = 1;
}

/// Which PTB stream a run models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Characters (50 symbols): Table 1's task; reported in bits per character.
    Chars,
    /// Words (10,000 symbols); reported as perplexity `2^bits`.
    Words,
}

impl Level {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Level::Chars => "chars",
            Level::Words => "words",
        }
    }
    fn id(self) -> u64 {
        self as u64
    }
    /// The level's corpus from an export (`scripts/fetch-data.sh`).
    pub fn load(self, dir: &std::path::Path) -> Result<data::Corpus, data::DataError> {
        match self {
            Level::Chars => data::ptb_chars(dir),
            Level::Words => data::ptb_words(dir),
        }
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "chars" => Ok(Level::Chars),
            "words" => Ok(Level::Words),
            _ => Err(format!("unknown level '{s}' (expected chars or words)")),
        }
    }
}

/// Table 1's training algorithms: minibatch SGD, with clipping (Algorithm 1), and with clipping
/// and Pascanu's Ω.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Algorithm {
    Msgd,
    MsgdC,
    MsgdCR,
}

pub const ALL_ALGORITHMS: [Algorithm; 3] = [Algorithm::Msgd, Algorithm::MsgdC, Algorithm::MsgdCR];

impl Algorithm {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Msgd => "msgd",
            Algorithm::MsgdC => "msgd-c",
            Algorithm::MsgdCR => "msgd-cr",
        }
    }
    /// The algorithm's component of stream paths.
    #[must_use]
    pub fn id(self) -> u64 {
        self as u64
    }
    /// The paper's learning rate of the algorithm (for the cost summed over a chunk's steps).
    #[must_use]
    pub fn lr(self, h: &Hyper) -> f64 {
        match self {
            Algorithm::Msgd => h.lr_msgd,
            Algorithm::MsgdC => h.lr_c,
            Algorithm::MsgdCR => h.lr_cr,
        }
    }

    /// The trainer's configuration: every-step softmax, SGD, the state carried across chunks;
    /// clipping and the safety net for `-c` and `-cr`, Ω for `-cr`. The paper's cost is summed
    /// over the chunk's `T` steps (and averaged over the streams), the trainer's is the mean
    /// over `T·B` positions — `T` times smaller, and so its gradient — so the paper's learning
    /// rate becomes `lr·T`, its clipping threshold `clip/T` and Ω's weight `α/T`: the same
    /// updates.
    #[must_use]
    pub fn config(self, h: &Hyper, decay: f64) -> trainer::Config {
        let t = h.steps as f64;
        let clipping = self != Algorithm::Msgd;
        trainer::Config {
            readout_at: ReadoutAt::EveryStep,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: Optimizer::sgd(self.lr(h) * t),
            schedule: Schedule::Constant,
            clip: clipping.then_some(h.clip / t),
            safety_net: clipping,
            carry_state: true,
            omega: (self == Algorithm::MsgdCR).then_some(OmegaRule {
                alpha: h.alpha / t,
                bound: crate::train::omega::DEFAULT_BOUND,
                decay: Some(decay),
            }),
        }
    }

    /// Table 1 of the paper (ICML version), Penn Treebank characters, bits per character
    /// (train, test): next character (`ahead` 1) and the character five steps ahead (`ahead`
    /// 5; MSGD is not reported there).
    #[must_use]
    pub fn paper_bits(self, ahead: usize) -> Option<(f64, f64)> {
        match (self, ahead) {
            (Algorithm::Msgd, 1) => Some((1.46, 1.50)),
            (Algorithm::MsgdC, 1) => Some((1.34, 1.42)),
            (Algorithm::MsgdCR, 1) => Some((1.36, 1.41)),
            (Algorithm::MsgdC, 5) => Some((3.76, 3.89)),
            (Algorithm::MsgdCR, 5) => Some((3.70, 3.74)),
            _ => None,
        }
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_ALGORITHMS
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown algorithm '{s}' (expected msgd, msgd-c or msgd-cr)"))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Hyper-parameters shared by every run. Learning rates, the clipping threshold and α are the
/// paper's, for the cost summed over a chunk ([`Algorithm::config`] converts them).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Hyper {
    /// B, the parallel streams of a training batch.
    pub batch: usize,
    /// T, the steps of a chunk (truncated BPTT; the state carried between chunks).
    pub steps: usize,
    /// Updates per run.
    pub updates: u64,
    pub lr_msgd: f64,
    pub lr_c: f64,
    pub lr_cr: f64,
    pub clip: f64,
    pub alpha: f64,
    /// τ of Ω's weight `α·τ/(τ + t)`, in updates; `None`: one epoch.
    pub omega_decay: Option<f64>,
    /// Validation every N updates (and after the last).
    pub eval_every: u64,
    /// A learning-curve row every N updates.
    pub log_every: u64,
    /// A checkpoint every N updates (a multiple of `log_every`).
    pub checkpoint_every: u64,
    /// Streams of the evaluations (valid, test, train).
    pub eval_streams: usize,
    /// At most this many symbols of the validation and test splits evaluated (0: all).
    pub eval_symbols: usize,
    /// The training bits at the end: over the first this many training symbols (0: all).
    pub train_eval_symbols: usize,
    /// Symbols sampled from each next-symbol model at the end (0: none).
    pub sample_symbols: usize,
    /// The scalar of the updates (evaluations run in f64 on the trained weights).
    pub dtype: Dtype,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            batch: 32,
            steps: 200,
            updates: 800,
            lr_msgd: 0.001,
            lr_c: 0.01,
            lr_cr: 0.05,
            clip: 45.0,
            alpha: 2.0,
            omega_decay: None,
            eval_every: 200,
            log_every: 10,
            checkpoint_every: 100,
            eval_streams: 100,
            eval_symbols: 0,
            train_eval_symbols: 500_000,
            sample_symbols: 400,
            dtype: Dtype::F32,
        }
    }
}

impl Hyper {
    /// An error naming the first hyper-parameter out of range.
    pub fn validate(&self) -> Result<(), BpttError> {
        let positive = [
            ("batch", self.batch as f64),
            ("steps", self.steps as f64),
            ("updates", self.updates as f64),
            ("eval-every", self.eval_every as f64),
            ("log-every", self.log_every as f64),
            ("checkpoint-every", self.checkpoint_every as f64),
            ("eval-streams", self.eval_streams as f64),
            ("lr-msgd", self.lr_msgd),
            ("lr-c", self.lr_c),
            ("lr-cr", self.lr_cr),
            ("clip", self.clip),
        ];
        crate::experiment::check_positive(&positive)?;
        crate::experiment::check_omega(self.alpha, self.omega_decay)?;
        if !self.checkpoint_every.is_multiple_of(self.log_every) {
            return Err(BpttError::Invalid(format!(
                "--checkpoint-every ({}) must be a multiple of --log-every ({})",
                self.checkpoint_every, self.log_every
            )));
        }
        Ok(())
    }

    /// Full chunks per epoch of `train` (the remainder of each stream is not trained on).
    pub fn chunks_per_epoch(&self, train: usize, ahead: usize) -> Result<usize, BpttError> {
        let per_stream = train / self.batch.max(1);
        let n = per_stream.saturating_sub(ahead) / self.steps.max(1);
        if n == 0 {
            return Err(BpttError::Invalid(format!(
                "{train} training symbols in {} streams are less than one chunk of {} steps",
                self.batch, self.steps
            )));
        }
        Ok(n)
    }
}

/// One run: a cell of `hidden` units trained by `algorithm` to predict the symbol `ahead` steps
/// later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunSpec {
    pub level: Level,
    #[serde(serialize_with = "serialize_cell")]
    pub cell: CellKind,
    pub hidden: usize,
    pub algorithm: Algorithm,
    pub ahead: usize,
    pub replicate: u64,
}

fn serialize_cell<S: serde::Serializer>(c: &CellKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

impl RunSpec {
    /// A readable identifier (checkpoint file names).
    #[must_use]
    pub fn id(&self) -> String {
        format!(
            "{}_{}{}_{}_ahead{}_s{}",
            self.level.name(),
            self.cell.name(),
            self.hidden,
            self.algorithm,
            self.ahead,
            self.replicate
        )
    }
    /// The run's stream for `purpose`: weights are keyed by everything but the algorithm and
    /// the target distance (paired comparisons), samples by the whole run.
    #[must_use]
    pub fn stream(&self, seed: u64, purpose: u64) -> Rng {
        let mut path = vec![
            LANGUAGE_MODEL,
            self.level.id(),
            self.cell.seed_id(),
            self.hidden as u64,
            self.replicate,
        ];
        if purpose != purpose::WEIGHTS {
            path.extend([self.algorithm.id(), self.ahead as u64]);
        }
        path.push(purpose);
        stream(seed, &path)
    }
}

/// The network of every run: one cell read forward.
pub type Net<T> = Unidirectional<AnyCell<T>>;
pub type LmModel<T> = NetworkModel<T, Net<T>>;

/// The parameters of `cell` with `hidden` units over `vocab` symbols: (the cell's, the
/// readout's).
#[must_use]
pub fn parameter_count(cell: CellKind, vocab: usize, hidden: usize) -> (usize, usize) {
    let c = cell.zeros::<f64>(vocab, hidden).parameter_count();
    (c, (hidden + 1) * vocab)
}

/// The hidden size of `cell` whose parameter count (cell + readout) is closest to `target`.
#[must_use]
pub fn matched_hidden(cell: CellKind, vocab: usize, target: usize) -> usize {
    crate::experiment::closest_size(
        |h| {
            let (c, r) = parameter_count(cell, vocab, h);
            c + r
        },
        target,
    )
}

/// The hidden size of `cell` in a grid whose vanilla RNNs have `hidden` units: `hidden` for the
/// vanilla cells (those Pascanu's Ω applies to, by the trainer's own verdict), else the size
/// whose parameter count matches the `rnn-sigmoid` of `hidden` units ([`matched_hidden`]).
#[must_use]
pub fn run_hidden(cell: CellKind, vocab: usize, hidden: usize) -> usize {
    if check_applicable(cell, Algorithm::MsgdCR).is_ok() {
        return hidden;
    }
    let (c, r) = parameter_count(CellKind::RnnSigmoid, vocab, hidden);
    matched_hidden(cell, vocab, c + r)
}

/// The run's model at initialisation: PyTorch's U(−1/√H, 1/√H) for the cell and the readout.
pub fn build(spec: &RunSpec, vocab: usize, seed: u64) -> Result<LmModel<f64>, BpttError> {
    let mut rng = spec.stream(seed, purpose::WEIGHTS);
    let cell = spec.cell.pytorch_init(vocab, spec.hidden, &mut rng);
    let readout = Readout::uniform(
        spec.hidden,
        vocab,
        1.0 / (spec.hidden as f64).sqrt(),
        &mut rng,
    );
    NetworkModel::new(Unidirectional::new(cell), readout)
}

/// Whether `algorithm` can train `cell` (Ω is defined for a single vanilla layer): the
/// trainer's own verdict on a tiny model.
pub fn check_applicable(cell: CellKind, algorithm: Algorithm) -> Result<(), BpttError> {
    let model = NetworkModel::new(
        Unidirectional::new(cell.zeros::<f64>(2, 2)),
        Readout::uniform(2, 2, 0.1, &mut stream(0, &[])),
    )?;
    Trainer::new(&model, algorithm.config(&Hyper::default(), 1.0)).map(|_| ())
}

/// A logged point of a learning curve (the window: the updates since the previous point).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    pub update: u64,
    /// Updates / chunks per epoch.
    pub epoch: f64,
    /// The window's mean training loss in bits per symbol.
    pub train_bits: f64,
    /// The last update's gradient norm before clipping, and the window's largest.
    pub grad_norm: f64,
    pub max_grad_norm: f64,
    /// Updates of the window that were clipped.
    pub clipped: u64,
    /// Ω and its weight (as the trainer used it) at the last update.
    pub omega: f64,
    pub omega_weight: f64,
    /// Validation bits per symbol (at evaluations).
    pub valid_bits: Option<f64>,
}

/// Columns of a curve point as a checkpoint stores it (f64 bits: NaN and ∞ exact).
const CURVE_COLUMNS: usize = 10;

impl CurvePoint {
    fn to_row(&self) -> [f64; CURVE_COLUMNS] {
        [
            self.update as f64,
            self.epoch,
            self.train_bits,
            self.grad_norm,
            self.max_grad_norm,
            self.clipped as f64,
            self.omega,
            self.omega_weight,
            f64::from(u8::from(self.valid_bits.is_some())),
            self.valid_bits.unwrap_or(0.0),
        ]
    }
    fn from_row(r: &[f64]) -> Self {
        CurvePoint {
            update: r[0] as u64,
            epoch: r[1],
            train_bits: r[2],
            grad_norm: r[3],
            max_grad_norm: r[4],
            clipped: r[5] as u64,
            omega: r[6],
            omega_weight: r[7],
            valid_bits: (r[8] != 0.0).then_some(r[9]),
        }
    }
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub updates: u64,
    pub chunks_per_epoch: usize,
    /// Stopped early: the parameters became non-finite.
    pub diverged: bool,
    pub curve: Vec<CurvePoint>,
    pub valid_bits: f64,
    pub test_bits: f64,
    pub train_bits: f64,
    /// The trained model (in f64; exact from f32).
    pub model: LmModel<f64>,
    /// A sample of [`Hyper::sample_symbols`] symbols after a prime (next-symbol runs only).
    pub sample: Option<(Vec<usize>, Vec<usize>)>,
    /// Updates restored from a checkpoint (0: trained from the start).
    pub resumed_from: u64,
}

/// Where a run keeps its checkpoint, and when the trainer stops (tests: a simulated kill).
#[derive(Clone, Copy, Debug, Default)]
pub struct Checkpointing<'a> {
    /// `<dir>/<run id>.safetensors`, written every [`Hyper::checkpoint_every`] updates and at
    /// the end (then it holds the trained model); read at the start when present.
    pub dir: Option<&'a std::path::Path>,
    /// Return after this many updates (after their checkpoint), without evaluating.
    pub stop_after: Option<u64>,
}

/// Symbols of each prime of a sample (taken from the start of the validation split).
pub const SAMPLE_PRIME: usize = 100;

/// Train one run on `corpus` (see the module docs): updates in `h.dtype`, evaluations in f64.
/// With `ckpt.dir`, a checkpoint of the run continues it bit-identically.
pub fn train(
    spec: &RunSpec,
    h: &Hyper,
    corpus: &data::Corpus,
    seed: u64,
    ckpt: Checkpointing<'_>,
) -> Result<Option<Outcome>, BpttError> {
    match h.dtype {
        Dtype::F32 => train_in::<f32>(spec, h, corpus, seed, ckpt),
        Dtype::F64 => train_in::<f64>(spec, h, corpus, seed, ckpt),
    }
}

fn train_in<T: RealField + Copy>(
    spec: &RunSpec,
    h: &Hyper,
    corpus: &data::Corpus,
    seed: u64,
    ckpt: Checkpointing<'_>,
) -> Result<Option<Outcome>, BpttError> {
    h.validate()?;
    let vocab = corpus.symbols.len();
    let per_epoch = h.chunks_per_epoch(corpus.train.len(), spec.ahead)?;
    let decay = h.omega_decay.unwrap_or(per_epoch as f64);
    let config = spec.algorithm.config(h, decay);
    let mut model: LmModel<T> = build(spec, vocab, seed)?.rescalar();
    let mut trainer = Trainer::new(&model, config)?;
    let mut curve = Vec::new();
    let path = ckpt
        .dir
        .map(|d| d.join(format!("{}.safetensors", spec.id())));
    let mut resumed_from = 0;
    if let Some(p) = path.as_deref().filter(|p| p.exists()) {
        curve = load_checkpoint(p, spec, &mut model, &mut trainer)?;
        resumed_from = trainer.updates();
    }
    let streams = Streams::new(&corpus.train, h.batch, spec.ahead)?;
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let mut eval = Evaluator::new(h, spec.ahead);
    let mut window = crate::experiment::Window::default();
    let mut diverged = false;
    let mut n = trainer.updates();
    while n < h.updates {
        // each epoch runs the streams from their start, from zero states
        let chunk = (n % per_epoch as u64) as usize;
        if chunk == 0 {
            trainer.reset_state();
        }
        streams.chunk(
            chunk * h.steps,
            h.steps,
            spec.ahead,
            &mut inputs,
            &mut targets,
        );
        let batch = trainer::Batch {
            inputs: Inputs::Tokens {
                ids: &inputs,
                vocab,
            },
            batch: h.batch,
            targets: Targets::Classes(&targets),
        };
        let rec = trainer.update(&mut model, &batch)?;
        n += 1;
        window.add(&rec);
        let finite = model.net.params().is_finite() && model.readout.params().is_finite();
        let evaluate = n.is_multiple_of(h.eval_every) || n == h.updates || !finite;
        if n.is_multiple_of(h.log_every) || evaluate {
            let valid_bits = if evaluate && finite {
                Some(eval.bits(&model.rescalar(), &corpus.valid, vocab)?)
            } else if evaluate {
                Some(f64::NAN)
            } else {
                None
            };
            let (mean_loss, max_grad_norm, clipped) = window.take();
            curve.push(CurvePoint {
                update: n,
                epoch: n as f64 / per_epoch as f64,
                train_bits: mean_loss / std::f64::consts::LN_2,
                grad_norm: rec.grad_norm,
                max_grad_norm,
                clipped,
                omega: rec.omega,
                omega_weight: rec.omega_weight * h.steps as f64,
                valid_bits,
            });
            if !finite {
                diverged = true;
                break;
            }
            if let Some(p) = &path
                && (n.is_multiple_of(h.checkpoint_every) || n == h.updates)
            {
                save_checkpoint(p, spec, &model, &trainer, &curve)?;
            }
            if ckpt.stop_after.is_some_and(|s| n >= s) && n < h.updates {
                return Ok(None);
            }
        }
    }
    let model: LmModel<f64> = model.rescalar();
    let (valid_bits, test_bits, train_bits) = if diverged {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        (
            curve
                .last()
                .and_then(|c| c.valid_bits)
                .filter(|_| curve.last().is_some_and(|c| c.update == n))
                .map_or_else(|| eval.bits(&model, &corpus.valid, vocab), Ok)?,
            eval.bits(&model, &corpus.test, vocab)?,
            {
                let n = match h.train_eval_symbols {
                    0 => corpus.train.len(),
                    n => n.min(corpus.train.len()),
                };
                eval.bits(&model, &corpus.train[..n], vocab)?
            },
        )
    };
    let sample = if spec.ahead == 1 && h.sample_symbols > 0 && !diverged {
        let prime = &corpus.valid[..SAMPLE_PRIME.min(corpus.valid.len())];
        let mut rng = spec.stream(seed, purpose::SAMPLE);
        Some((
            prime.to_vec(),
            sample(&model, prime, h.sample_symbols, &mut rng)?,
        ))
    } else {
        None
    };
    Ok(Some(Outcome {
        updates: n,
        chunks_per_epoch: per_epoch,
        diverged,
        curve,
        valid_bits,
        test_bits,
        train_bits,
        model,
        sample,
        resumed_from,
    }))
}

/// Bits per symbol in f64 over (the first `eval_symbols` of) a split, `eval_streams` streams.
struct Evaluator {
    trainer: Option<Trainer<f64, Net<f64>>>,
    streams: usize,
    symbols: usize,
    ahead: usize,
}

impl Evaluator {
    fn new(h: &Hyper, ahead: usize) -> Self {
        Evaluator {
            trainer: None,
            streams: h.eval_streams,
            symbols: h.eval_symbols,
            ahead,
        }
    }
    fn bits(
        &mut self,
        model: &LmModel<f64>,
        ids: &[usize],
        vocab: usize,
    ) -> Result<f64, BpttError> {
        let ids = match self.symbols {
            0 => ids,
            n => &ids[..n.min(ids.len())],
        };
        let config = trainer::Config {
            readout_at: ReadoutAt::EveryStep,
            ..trainer::Config::default()
        };
        let trainer = match &mut self.trainer {
            Some(t) => t,
            slot => slot.insert(Trainer::new(model, config)?),
        };
        bits_per_symbol(trainer, model, ids, vocab, self.streams, self.ahead)
    }
}

/// `count` symbols sampled from `model` (softmax at temperature 1) after feeding `prime`.
pub fn sample(
    model: &LmModel<f64>,
    prime: &[usize],
    count: usize,
    rng: &mut Rng,
) -> Result<Vec<usize>, BpttError> {
    if prime.is_empty() {
        return Err(BpttError::Invalid(
            "a sample needs a prime of ≥ 1 symbol".into(),
        ));
    }
    let vocab = model.readout.output_size();
    let config = trainer::Config {
        readout_at: ReadoutAt::EveryStep,
        carry_state: true,
        ..trainer::Config::default()
    };
    let mut tr = Trainer::new(model, config)?;
    let mut out = Vec::with_capacity(count);
    // feed the prime (targets unused), then one symbol at a time from the carried state
    let mut feed = prime.to_vec();
    for _ in 0..count {
        let dummy = vec![0; feed.len()];
        tr.loss(
            model,
            &trainer::Batch {
                inputs: Inputs::Tokens { ids: &feed, vocab },
                batch: 1,
                targets: Targets::Classes(&dummy),
            },
        )?;
        let y = tr.readout_outputs();
        let logits: Vec<f64> = y.column(y.ncols() - 1).iter().copied().collect();
        let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = logits.iter().map(|&v| (v - m).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut u = rng.random::<f64>() * total;
        let mut next = vocab - 1;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                next = i;
                break;
            }
            u -= w;
        }
        out.push(next);
        feed.clear();
        feed.push(next);
    }
    Ok(out)
}

/// The checkpoint's tensors: the network's and the readout's parameters, the carried states
/// and the optimizer's moments; the metadata holds the run id, the update count and the
/// curve so far.
fn save_checkpoint<T: RealField + Copy>(
    path: &std::path::Path,
    spec: &RunSpec,
    model: &LmModel<T>,
    trainer: &Trainer<T, Net<T>>,
    curve: &[CurvePoint],
) -> Result<(), BpttError> {
    let f64_of = |x: T| x.to_subset().unwrap_or(f64::NAN);
    let f = |m: &DMatrix<T>| m.map(f64_of);
    let state = trainer.state();
    let mut extra = Params::new();
    for (prefix, list) in [
        ("carried", &state.carried),
        ("m", &state.first_moments),
        ("v", &state.second_moments),
    ] {
        for (i, m) in list.iter().enumerate() {
            extra.push(format!("{prefix}.{i}"), f(m));
        }
    }
    let net = model.net.params().map(f64_of);
    let readout = model.readout.params().map(f64_of);
    let rows: Vec<f64> = curve.iter().flat_map(|c| c.to_row()).collect();
    extra.push(
        "curve",
        DMatrix::from_row_slice(curve.len(), CURVE_COLUMNS, &rows),
    );
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("run".to_string(), spec.id());
    meta.insert("updates".into(), state.updates.to_string());
    meta.insert("scalar".into(), std::any::type_name::<T>().into());
    let bytes = crate::nn::import::to_safetensors(
        &[
            ("net.", &net, ""),
            ("readout.", &readout, ""),
            ("", &extra, ""),
        ],
        meta,
    )?;
    write_atomic(path, &bytes).map_err(|e| BpttError::Invalid(format!("{}: {e}", path.display())))
}

/// Restore `model` and `trainer` from a checkpoint of `spec`; returns the curve so far.
fn load_checkpoint<T: RealField + Copy>(
    path: &std::path::Path,
    spec: &RunSpec,
    model: &mut LmModel<T>,
    trainer: &mut Trainer<T, Net<T>>,
) -> Result<Vec<CurvePoint>, BpttError> {
    let sd = StateDict::load(path)?;
    let bad = |what: String| BpttError::Invalid(format!("{}: {what}", path.display()));
    let meta = sd.metadata();
    if meta.get("run") != Some(&spec.id()) {
        return Err(bad(format!(
            "a checkpoint of run {:?}, not {}",
            meta.get("run"),
            spec.id()
        )));
    }
    if meta.get("scalar").map(String::as_str) != Some(std::any::type_name::<T>()) {
        return Err(bad(format!(
            "a checkpoint in {:?}, the run trains in {}",
            meta.get("scalar"),
            std::any::type_name::<T>()
        )));
    }
    let updates: u64 = meta
        .get("updates")
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| bad("no update count".into()))?;
    let points = sd.tensor("curve")?;
    if points.shape.len() != 2 || points.shape[1] != CURVE_COLUMNS {
        return Err(bad(format!("a curve of shape {:?}", points.shape)));
    }
    let curve: Vec<CurvePoint> = points
        .data
        .chunks_exact(CURVE_COLUMNS)
        .map(CurvePoint::from_row)
        .collect();
    let read = |name: &str, like: &DMatrix<T>| sd.matrix::<T>(name, like.nrows(), like.ncols());
    for (name, p) in model.net.params_mut().iter_mut() {
        let m = read(&format!("net.{name}"), p)?;
        p.copy_from(&m);
    }
    let readout_names: Vec<String> = model.readout.params().names().to_vec();
    for (name, p) in readout_names
        .iter()
        .zip(model.readout.params_mut().tensors_mut())
    {
        let m = read(&format!("readout.{name}"), p)?;
        p.copy_from(&m);
    }
    let mut state = trainer.state();
    let list = |prefix: &str, like: &[DMatrix<T>]| -> Result<Vec<DMatrix<T>>, BpttError> {
        like.iter()
            .enumerate()
            .map(|(i, m)| read(&format!("{prefix}.{i}"), m))
            .collect()
    };
    state.first_moments = list("m", &state.first_moments)?;
    state.second_moments = list("v", &state.second_moments)?;
    let sizes = model.net.state_sizes();
    state.carried = if sd.names().any(|n| n == "carried.0") {
        let b = sd.tensor("carried.0")?.shape.get(1).copied().unwrap_or(1);
        let like: Vec<DMatrix<T>> = sizes.iter().map(|&r| DMatrix::zeros(r, b)).collect();
        list("carried", &like)?
    } else {
        Vec::new()
    };
    state.updates = updates;
    trainer.restore(&model.net, state)?;
    Ok(curve)
}
