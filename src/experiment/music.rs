//! Polyphonic music modelling on the Bach chorales ([`crate::experiment::data::chorales`]): a
//! recurrent network reads a piano roll and gives, at every step, an independent probability
//! per pitch for the next frame (sigmoid outputs, 88 channels), scored by the negative
//! log-likelihood per time step in nats — the measure of Boulanger-Lewandowski et al. (2012),
//! Pascanu et al. (2013, Table 1's music rows) and Chung et al. (2014).
//!
//! **The likelihood of a piece.** A piece of frames `v_1 … v_L` (each a set of sounding
//! channels) has `log P(v) = Σ_t Σ_k [v_tk log σ(y_tk) + (1 − v_tk) log(1 − σ(y_tk))]`, where
//! `y_t` is the readout after the network has read `x_1 … x_t`: `x_1` is the *start* frame
//! (only channel [`START`] = 88 on) and `x_t = v_{t−1}` for `t > 1` — so every frame, the
//! first included, is predicted from what precedes it, from zero states at the piece's start.
//! [`nll_per_step`] is `−Σ_pieces log P(v) / Σ_pieces L` (nats per time step) over a split.
//!
//! **Training** ([`train`], the `music` binary): the training pieces, in the export's order,
//! become one sequence of `N` (input, target) pairs ([`Pairs`]), cut into [`Hyper::batch`]
//! contiguous streams of `⌊N/B⌋` pairs; update `n` takes chunk `n mod E` of [`Hyper::steps`]
//! steps of every stream (`E` = [`Hyper::chunks_per_epoch`]), the states carried from chunk to
//! chunk (truncated BPTT, as the language model) and reset at each epoch's start. A piece's
//! first pair has the start frame as its input, so the network is told where a piece begins;
//! its carried state is the previous piece's (evaluation starts each piece from zero). The loss
//! is the trainer's [`Loss::SigmoidCrossEntropy`]: the mean over the chunk's `T·B` positions of
//! the NLL of a frame — the NLL per time step. Every hyper-parameter is for that mean loss.
//! [`Algorithm`] is the language model's: MSGD, MSGD-C (clipping with the safety net), MSGD-CR
//! (+ Ω, weight `α·τ/(τ + t)`). Validation every [`Hyper::eval_every`] updates; the reported
//! model is the one of the best validation NLL (early stopping), tested once at the end.
//! Updates in f32 or f64, evaluations in f64.

use nalgebra::{DMatrix, RealField};
use rand::RngExt;

use crate::error::BpttError;
use crate::experiment::data::{PITCHES, PianoRoll};
use crate::experiment::language_model::{Algorithm, Net};
use crate::nn::arch::{SeqLayer, Unidirectional};
use crate::nn::cell::Cell;
use crate::nn::cells::CellKind;
use crate::nn::engine::{Inputs, MatRef};
use crate::nn::model::NetworkModel;
use crate::nn::readout::Readout;
use crate::rng::{Rng, stream};
use crate::train::optim::Optimizer;
use crate::train::trainer::{self, Dtype, Loss, OmegaRule, ReadoutAt, Schedule, Targets, Trainer};

/// The input channel that marks a piece's first step.
pub const START: usize = PITCHES;
/// Input channels: the 88 pitches and [`START`].
pub const INPUTS: usize = PITCHES + 1;

/// The model of every run: one cell read forward, a readout of 88 sigmoid logits.
pub type MusicModel<T> = NetworkModel<T, Net<T>>;

/// The (input, target) pairs of a split's pieces, concatenated in order: pair `i` has the
/// target frame `frames[i]` and the input `frames[i − 1]`, or the start frame where a piece
/// begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pairs {
    frames: Vec<Vec<u8>>,
    starts: Vec<bool>,
}

impl Pairs {
    /// The pairs of `pieces`; an error for no piece or a piece without steps.
    pub fn new(pieces: &[PianoRoll]) -> Result<Self, BpttError> {
        if pieces.is_empty() {
            return Err(BpttError::Invalid("no pieces to model".into()));
        }
        let (mut frames, mut starts) = (Vec::new(), Vec::new());
        for p in pieces {
            if p.steps.is_empty() {
                return Err(BpttError::Invalid(format!("piece {} has no steps", p.name)));
            }
            for (t, f) in p.steps.iter().enumerate() {
                if let Some(&c) = f.iter().find(|&&c| usize::from(c) >= PITCHES) {
                    return Err(BpttError::Invalid(format!(
                        "piece {}: channel {c} at step {t} is not one of the {PITCHES} pitches",
                        p.name
                    )));
                }
                frames.push(f.clone());
                starts.push(t == 0);
            }
        }
        Ok(Pairs { frames, starts })
    }

    /// N, the pairs (= the pieces' steps).
    #[must_use]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Never: [`Pairs::new`] refuses empty splits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The channels on in pair `i`'s input.
    #[must_use]
    pub fn input(&self, i: usize) -> &[u8] {
        const START_FRAME: [u8; 1] = [START as u8];
        if self.starts[i] {
            &START_FRAME
        } else {
            &self.frames[i - 1]
        }
    }

    /// The channels on in pair `i`'s target.
    #[must_use]
    pub fn target(&self, i: usize) -> &[u8] {
        &self.frames[i]
    }

    /// Write pair `positions[j]` into column `j` of `x` (`INPUTS × n`) and `y` (`PITCHES ×
    /// n`), as 0/1 values.
    pub fn write<T: RealField + Copy>(
        &self,
        positions: &[usize],
        x: &mut DMatrix<T>,
        y: &mut DMatrix<T>,
    ) {
        let n = positions.len();
        if x.shape() != (INPUTS, n) {
            *x = DMatrix::zeros(INPUTS, n);
        } else {
            x.fill(T::zero());
        }
        if y.shape() != (PITCHES, n) {
            *y = DMatrix::zeros(PITCHES, n);
        } else {
            y.fill(T::zero());
        }
        for (j, &i) in positions.iter().enumerate() {
            for &c in self.input(i) {
                x[(usize::from(c), j)] = T::one();
            }
            for &c in self.target(i) {
                y[(usize::from(c), j)] = T::one();
            }
        }
    }

    /// The positions of chunk `chunk` of `steps` steps over `batch` contiguous streams of
    /// `⌊N/B⌋` pairs, in the engine's column order `t·B + b` (position `b·⌊N/B⌋ + chunk·T + t`);
    /// empty past the streams' end.
    #[must_use]
    pub fn chunk(&self, batch: usize, steps: usize, chunk: usize) -> Vec<usize> {
        let mut out = Vec::new();
        self.chunk_into(batch, steps, chunk, &mut out);
        out
    }

    /// [`Pairs::chunk`] into `out` (cleared first): the training loop reuses one buffer.
    pub fn chunk_into(&self, batch: usize, steps: usize, chunk: usize, out: &mut Vec<usize>) {
        let per_stream = self.len() / batch.max(1);
        let t0 = chunk * steps;
        let n = steps.min(per_stream.saturating_sub(t0));
        out.clear();
        for t in 0..n {
            for b in 0..batch {
                out.push(b * per_stream + t0 + t);
            }
        }
    }
}

/// The NLL per time step (nats) of `model` on `pieces`: each piece read from zero states, the
/// start frame first (module docs), in f64.
pub fn nll_per_step(model: &MusicModel<f64>, pieces: &[PianoRoll]) -> Result<f64, BpttError> {
    if model.net.input_size() != INPUTS || model.readout.output_size() != PITCHES {
        return Err(BpttError::Invalid(format!(
            "a music model reads {INPUTS} channels and predicts {PITCHES}, not {} and {}",
            model.net.input_size(),
            model.readout.output_size()
        )));
    }
    let mut trainer = Trainer::new(model, eval_config())?;
    let (mut x, mut y) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
    let (mut nats, mut steps) = (0.0, 0usize);
    for p in pieces {
        let pairs = Pairs::new(std::slice::from_ref(p))?;
        let positions: Vec<usize> = (0..pairs.len()).collect();
        pairs.write(&positions, &mut x, &mut y);
        let batch = trainer::Batch {
            inputs: Inputs::Dense(MatRef::from(&x)),
            batch: 1,
            targets: Targets::Values(MatRef::from(&y)),
        };
        // the trainer's loss is the mean over the piece's steps
        nats += trainer.loss(model, &batch)? * pairs.len() as f64;
        steps += pairs.len();
    }
    if steps == 0 {
        return Err(BpttError::Invalid("no pieces to evaluate".into()));
    }
    Ok(nats / steps as f64)
}

fn eval_config() -> trainer::Config {
    trainer::Config {
        readout_at: ReadoutAt::EveryStep,
        loss: Loss::SigmoidCrossEntropy,
        ..trainer::Config::default()
    }
}

/// The baseline without memory: every frame an independent Bernoulli per pitch, `p_k` the
/// training frequency of pitch `k` with add-one smoothing `(n_k + 1)/(N + 2)`. Returns its NLL
/// per time step on `pieces` (nats).
pub fn bernoulli_baseline(train: &[PianoRoll], pieces: &[PianoRoll]) -> Result<f64, BpttError> {
    let (t, e) = (Pairs::new(train)?, Pairs::new(pieces)?);
    let mut on = [0usize; PITCHES];
    for i in 0..t.len() {
        for &c in t.target(i) {
            on[usize::from(c)] += 1;
        }
    }
    let p: Vec<f64> = on
        .iter()
        .map(|&k| (k as f64 + 1.0) / (t.len() as f64 + 2.0))
        .collect();
    // every pitch off, then the sounding ones corrected
    let all_off: f64 = p.iter().map(|&q| -(1.0 - q).ln()).sum();
    let mut nats = 0.0;
    for i in 0..e.len() {
        nats += all_off;
        for &c in e.target(i) {
            let q = p[usize::from(c)];
            nats += (1.0 - q).ln() - q.ln();
        }
    }
    Ok(nats / e.len() as f64)
}

// ---------------------------------------------------------------------------------------------
// Training runs
// ---------------------------------------------------------------------------------------------

/// The first component of every stream path of this experiment.
pub const MUSIC: u64 = 0x3051;

/// Stream purposes (the last component of a run's path).
pub mod purpose {
    /// Cell and readout weights (the same for every algorithm).
    pub const WEIGHTS: u64 = 0;
    /// The sampled piano roll.
    pub const SAMPLE: u64 = 1;
}

/// Hyper-parameters shared by every run, for the trainer's loss (the mean NLL per time step).
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
    /// The learning rate of gated cells (those Ω does not apply to), whatever the algorithm.
    pub lr_gated: f64,
    /// Clipping threshold of the gradient norm of the mean loss.
    pub clip: f64,
    /// Ω's weight at the first update, relative to the mean loss.
    pub alpha: f64,
    /// τ of Ω's weight `α·τ/(τ + t)`, in updates; `None`: one epoch.
    pub omega_decay: Option<f64>,
    /// Validation every N updates (and after the last).
    pub eval_every: u64,
    /// A learning-curve row every N updates (a divisor of `eval_every`).
    pub log_every: u64,
    /// Steps sampled from each model at the end (0: none).
    pub sample_steps: usize,
    /// The scalar of the updates (evaluations run in f64 on the trained weights).
    pub dtype: Dtype,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            batch: 8,
            steps: 50,
            updates: 3000,
            lr_msgd: 0.3,
            lr_c: 0.3,
            lr_cr: 0.3,
            lr_gated: 1.0,
            clip: 5.0,
            alpha: 0.1,
            omega_decay: None,
            eval_every: 50,
            log_every: 10,
            sample_steps: 64,
            dtype: Dtype::F64,
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
            ("lr-msgd", self.lr_msgd),
            ("lr-c", self.lr_c),
            ("lr-cr", self.lr_cr),
            ("lr-gated", self.lr_gated),
            ("clip", self.clip),
        ];
        crate::experiment::check_positive(&positive)?;
        crate::experiment::check_omega(self.alpha, self.omega_decay)?;
        if !self.eval_every.is_multiple_of(self.log_every) {
            return Err(BpttError::Invalid(format!(
                "--eval-every ({}) must be a multiple of --log-every ({})",
                self.eval_every, self.log_every
            )));
        }
        Ok(())
    }

    /// Full chunks per epoch of `pairs` training pairs (the remainder of each stream is not
    /// trained on).
    pub fn chunks_per_epoch(&self, pairs: usize) -> Result<usize, BpttError> {
        let n = pairs / self.batch.max(1) / self.steps.max(1);
        if n == 0 {
            return Err(BpttError::Invalid(format!(
                "{pairs} training steps in {} streams are less than one chunk of {} steps",
                self.batch, self.steps
            )));
        }
        Ok(n)
    }

    /// The learning rate of `cell` trained by `algorithm`: [`Hyper::lr_gated`] for gated
    /// cells, else the algorithm's.
    #[must_use]
    pub fn lr(&self, cell: CellKind, algorithm: Algorithm) -> f64 {
        if !is_vanilla(cell) {
            return self.lr_gated;
        }
        match algorithm {
            Algorithm::Msgd => self.lr_msgd,
            Algorithm::MsgdC => self.lr_c,
            Algorithm::MsgdCR => self.lr_cr,
        }
    }

    /// The trainer's configuration of `cell` trained by `algorithm`: sigmoid outputs at every
    /// step, SGD, the state carried across chunks; clipping and the safety net for `-c` and
    /// `-cr`, Ω with weight `α·τ/(τ + t)` for `-cr`.
    #[must_use]
    pub fn config(&self, cell: CellKind, algorithm: Algorithm, decay: f64) -> trainer::Config {
        let clipping = algorithm != Algorithm::Msgd;
        trainer::Config {
            readout_at: ReadoutAt::EveryStep,
            loss: Loss::SigmoidCrossEntropy,
            optimizer: Optimizer::sgd(self.lr(cell, algorithm)),
            schedule: Schedule::Constant,
            clip: clipping.then_some(self.clip),
            safety_net: clipping,
            carry_state: true,
            omega: (algorithm == Algorithm::MsgdCR).then_some(OmegaRule {
                alpha: self.alpha,
                bound: crate::train::omega::DEFAULT_BOUND,
                decay: Some(decay),
            }),
        }
    }
}

/// One run: a cell of `hidden` units trained by `algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunSpec {
    #[serde(serialize_with = "serialize_cell")]
    pub cell: CellKind,
    pub hidden: usize,
    pub algorithm: Algorithm,
    pub replicate: u64,
}

fn serialize_cell<S: serde::Serializer>(c: &CellKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

impl RunSpec {
    /// A readable identifier.
    #[must_use]
    pub fn id(&self) -> String {
        format!(
            "chorales_{}{}_{}_s{}",
            self.cell.name(),
            self.hidden,
            self.algorithm,
            self.replicate
        )
    }
    /// The run's stream for `purpose`: weights are keyed by everything but the algorithm
    /// (paired comparisons), samples by the whole run.
    #[must_use]
    pub fn stream(&self, seed: u64, purpose: u64) -> Rng {
        let mut path = vec![
            MUSIC,
            self.cell.seed_id(),
            self.hidden as u64,
            self.replicate,
        ];
        if purpose != purpose::WEIGHTS {
            path.push(self.algorithm.id());
        }
        path.push(purpose);
        stream(seed, &path)
    }
}

/// Whether `cell` is a vanilla RNN — one Pascanu's Ω applies to, by the trainer's own verdict.
#[must_use]
pub fn is_vanilla(cell: CellKind) -> bool {
    crate::experiment::language_model::check_applicable(cell, Algorithm::MsgdCR).is_ok()
}

/// The parameters of `cell` with `hidden` units: (the cell's, the readout's).
#[must_use]
pub fn parameter_count(cell: CellKind, hidden: usize) -> (usize, usize) {
    let c = cell.zeros::<f64>(INPUTS, hidden).parameter_count();
    (c, (hidden + 1) * PITCHES)
}

/// The hidden size of `cell` in a grid whose vanilla RNNs have `hidden` units: `hidden` for
/// the vanilla cells (those Ω applies to, by the trainer's verdict), else the size whose
/// parameter count (cell + readout) is closest to the `rnn-tanh` of `hidden` units.
#[must_use]
pub fn run_hidden(cell: CellKind, hidden: usize) -> usize {
    if is_vanilla(cell) {
        return hidden;
    }
    let (c, r) = parameter_count(CellKind::RnnTanh, hidden);
    crate::experiment::closest_size(
        |h| {
            let (c, r) = parameter_count(cell, h);
            c + r
        },
        c + r,
    )
}

/// The run's model at initialisation: PyTorch's U(−1/√H, 1/√H) for the cell and the readout.
pub fn build(spec: &RunSpec, seed: u64) -> Result<MusicModel<f64>, BpttError> {
    let mut rng = spec.stream(seed, purpose::WEIGHTS);
    let cell = spec.cell.pytorch_init(INPUTS, spec.hidden, &mut rng);
    let bound = 1.0 / (spec.hidden as f64).sqrt();
    let readout = Readout::uniform(spec.hidden, PITCHES, bound, &mut rng);
    NetworkModel::new(Unidirectional::new(cell), readout)
}

/// A logged point of a learning curve (the window: the updates since the previous point).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    pub update: u64,
    /// Updates / chunks per epoch.
    pub epoch: f64,
    /// The window's mean training loss, nats per time step.
    pub train_nll: f64,
    /// The last update's gradient norm before clipping, and the window's largest.
    pub grad_norm: f64,
    pub max_grad_norm: f64,
    /// Updates of the window that were clipped.
    pub clipped: u64,
    /// Ω and its weight at the last update.
    pub omega: f64,
    pub omega_weight: f64,
    /// Validation NLL per time step (at evaluations).
    pub valid_nll: Option<f64>,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub updates: u64,
    pub chunks_per_epoch: usize,
    /// Stopped early: the parameters became non-finite.
    pub diverged: bool,
    pub curve: Vec<CurvePoint>,
    /// The update of the best validation NLL, and the NLLs of the model there.
    pub best_update: u64,
    pub train_nll: f64,
    pub valid_nll: f64,
    pub test_nll: f64,
    /// The validation NLL after the last update.
    pub final_valid_nll: f64,
    /// The model of the best validation NLL (in f64; exact from f32).
    pub model: MusicModel<f64>,
    /// A piano roll sampled from that model ([`Hyper::sample_steps`] frames).
    pub sample: Vec<Vec<u8>>,
}

/// Train one run (module docs) on the chorales' splits.
pub fn train(
    spec: &RunSpec,
    h: &Hyper,
    splits: &crate::experiment::data::Chorales,
    seed: u64,
) -> Result<Outcome, BpttError> {
    match h.dtype {
        Dtype::F32 => train_in::<f32>(spec, h, splits, seed),
        Dtype::F64 => train_in::<f64>(spec, h, splits, seed),
    }
}

fn train_in<T: RealField + Copy>(
    spec: &RunSpec,
    h: &Hyper,
    splits: &crate::experiment::data::Chorales,
    seed: u64,
) -> Result<Outcome, BpttError> {
    h.validate()?;
    let pairs = Pairs::new(&splits.train)?;
    let per_epoch = h.chunks_per_epoch(pairs.len())?;
    let decay = h.omega_decay.unwrap_or(per_epoch as f64);
    let mut best: MusicModel<f64> = build(spec, seed)?;
    let mut model: MusicModel<T> = best.rescalar();
    let mut trainer = Trainer::new(&model, h.config(spec.cell, spec.algorithm, decay))?;
    let (mut x, mut y) = (DMatrix::zeros(0, 0), DMatrix::zeros(0, 0));
    let mut positions = Vec::new();
    let mut curve = Vec::new();
    let mut window = crate::experiment::Window::default();
    let (mut best_update, mut best_valid) = (0u64, f64::INFINITY);
    let mut final_valid = f64::NAN;
    let mut diverged = false;
    let mut n = 0u64;
    while n < h.updates {
        // each epoch runs the streams from their start, from zero states
        let chunk = (n % per_epoch as u64) as usize;
        if chunk == 0 {
            trainer.reset_state();
        }
        pairs.chunk_into(h.batch, h.steps, chunk, &mut positions);
        pairs.write(&positions, &mut x, &mut y);
        let batch = trainer::Batch {
            inputs: Inputs::Dense(MatRef::from(&x)),
            batch: h.batch,
            targets: Targets::Values(MatRef::from(&y)),
        };
        let rec = trainer.update(&mut model, &batch)?;
        n += 1;
        window.add(&rec);
        let finite = model.net.params().is_finite() && model.readout.params().is_finite();
        let evaluate = n.is_multiple_of(h.eval_every) || n == h.updates || !finite;
        if n.is_multiple_of(h.log_every) || evaluate {
            let valid_nll = if evaluate && finite {
                let m: MusicModel<f64> = model.rescalar();
                let v = nll_per_step(&m, &splits.valid)?;
                final_valid = v;
                // early stopping: keep the model of the best validation NLL
                if v < best_valid {
                    (best_valid, best_update, best) = (v, n, m);
                }
                Some(v)
            } else if evaluate {
                Some(f64::NAN)
            } else {
                None
            };
            let (mean_loss, max_grad_norm, clipped) = window.take();
            curve.push(CurvePoint {
                update: n,
                epoch: n as f64 / per_epoch as f64,
                train_nll: mean_loss,
                grad_norm: rec.grad_norm,
                max_grad_norm,
                clipped,
                omega: rec.omega,
                omega_weight: rec.omega_weight,
                valid_nll,
            });
            if !finite {
                diverged = true;
                final_valid = f64::NAN;
                break;
            }
        }
    }
    if best_valid.is_infinite() {
        // never validated finite: report the initial model
        best_valid = nll_per_step(&best, &splits.valid)?;
    }
    let sample = if h.sample_steps > 0 {
        sample(
            &best,
            h.sample_steps,
            &mut spec.stream(seed, purpose::SAMPLE),
        )?
    } else {
        Vec::new()
    };
    Ok(Outcome {
        updates: n,
        chunks_per_epoch: per_epoch,
        diverged,
        curve,
        best_update,
        train_nll: nll_per_step(&best, &splits.train)?,
        valid_nll: best_valid,
        test_nll: nll_per_step(&best, &splits.test)?,
        final_valid_nll: final_valid,
        model: best,
        sample,
    })
}

/// `steps` frames sampled from `model`: the start frame first, then each frame's pitches drawn
/// independently, pitch `k` on with probability `σ(y_k)`, and fed back as the next input.
pub fn sample(
    model: &MusicModel<f64>,
    steps: usize,
    rng: &mut Rng,
) -> Result<Vec<Vec<u8>>, BpttError> {
    let config = trainer::Config {
        carry_state: true,
        ..eval_config()
    };
    let mut tr = Trainer::new(model, config)?;
    let mut x = DMatrix::zeros(INPUTS, 1);
    x[(START, 0)] = 1.0;
    let dummy = DMatrix::zeros(PITCHES, 1);
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        tr.loss(
            model,
            &trainer::Batch {
                inputs: Inputs::Dense(MatRef::from(&x)),
                batch: 1,
                targets: Targets::Values(MatRef::from(&dummy)),
            },
        )?;
        let logits = tr.readout_outputs().column(0).clone_owned();
        let mut frame = Vec::new();
        for (k, &l) in logits.iter().enumerate() {
            let p = 1.0 / (1.0 + (-l).exp());
            if rng.random::<f64>() < p {
                frame.push(k as u8);
            }
        }
        x.fill(0.0);
        for &c in &frame {
            x[(usize::from(c), 0)] = 1.0;
        }
        out.push(frame);
    }
    Ok(out)
}
