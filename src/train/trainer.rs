//! The trainer for any network: a [`SeqLayer`] (cells, bidirectional, residual, stacked, dense
//! and their combinations) with a linear readout, trained through the engine in f32 or f64.
//!
//! One update on a [`Batch`] (shapes: B sequences, T steps, `O_net` network outputs, `K` readout
//! outputs; column `t·B + b`):
//!
//! ```text
//! forward      the network's slab pass from s0 (zero, or the state carried from the previous
//!              batch of a stream: truncated BPTT with the state carried, detached)
//! readout      Y = W_o H + b_o 1ᵀ, H = the outputs at the last step (O_net × B) or at every
//!              step (O_net × T·B)
//! loss         softmax cross-entropy | MSE | element-wise sigmoid cross-entropy (multi-label)
//! backward     dW_o += dY Hᵀ, db_o += dY 1, ∂L/∂H = W_oᵀ dY → the network's slab backward
//! update       global norm → clipping → safety net → optimizer step (SGD, momentum, Adam) at
//!              the schedule's learning rate
//! ```
//!
//! Every buffer lives in the [`Trainer`]: a warm update allocates nothing
//! (`tests/allocations.rs`). `tests/trainer.rs` checks K updates against the generic per-step
//! reference ([`NetworkModel::loss_and_grads`] and a plain optimizer loop) to 1e-12 in f64, and
//! f32 against f64.
//!
//! ```
//! use bptt::nn::arch::{Stacked, Unidirectional};
//! use bptt::nn::engine::Inputs;
//! use bptt::train::trainer::{Batch, Config, Targets, Trainer};
//! use bptt::nn::cell::CellFamily;
//! use bptt::nn::cells::lstm::Lstm;
//! use bptt::nn::model::NetworkModel;
//! use bptt::nn::readout::Readout;
//!
//! let mut rng = bptt::rng::stream(1, &[]);
//! let net = Stacked::new(vec![
//!     Unidirectional::new(Lstm::<f32>::pytorch_init(5, 8, (), &mut rng)),
//!     Unidirectional::new(Lstm::<f32>::pytorch_init(8, 8, (), &mut rng)),
//! ])
//! .unwrap();
//! let mut model = NetworkModel::new(net, Readout::uniform(8, 3, 0.3, &mut rng)).unwrap();
//! let mut trainer = Trainer::new(&model, Config::default()).unwrap();
//! let ids: Vec<usize> = (0..4 * 2).map(|j| j % 5).collect(); // T = 4, B = 2
//! let classes = [0, 2];
//! let batch = Batch {
//!     inputs: Inputs::Tokens { ids: &ids, vocab: 5 },
//!     batch: 2,
//!     targets: Targets::Classes(&classes),
//! };
//! let first = trainer.update(&mut model, &batch).unwrap();
//! for _ in 0..50 {
//!     trainer.update(&mut model, &batch).unwrap();
//! }
//! assert!(trainer.update(&mut model, &batch).unwrap().loss < first.loss);
//! ```

use nalgebra::{DMatrix, RealField};

use nalgebra::DVectorView;

use crate::error::BpttError;
use crate::nn::arch::{LayerUpstream, SeqLayer};
use crate::nn::engine::mat::{add_to, row_sums};
use crate::nn::engine::{Inputs, MatMut, MatRef, Op, ensure, gemm};
use crate::nn::model::NetworkModel;
use crate::nn::params::Params;
use crate::nn::readout::{BIAS, WEIGHT, softmax_cross_entropy_into};
use crate::train::omega::{self, penalty_with};
use crate::train::optim::Optimizer;

/// The paper's safety net (its code, with clipping on): when the gradient norm is NaN, ∞ or
/// above 1e10, the update uses `0.02·W_hh` as the gradient of every recurrent matrix and zero
/// for every other parameter — it shrinks the recurrent matrices instead of applying a
/// meaningless step.
pub const SAFETY_NORM: f64 = 1e10;
pub const SAFETY_SHRINK: f64 = 0.02;

/// Whether the paper code's safety net takes over: a gradient norm that is NaN, ∞ or above
/// [`SAFETY_NORM`] (its code: `isnan | isinf | norm < 0 | norm > 1e10`).
#[must_use]
pub fn safety_net_triggered(norm: f64) -> bool {
    norm.is_nan() || norm > SAFETY_NORM
}

/// The scalar a run trains in, chosen at run time (`--dtype f32|f64`): a binary matches on it
/// and instantiates the generic [`Trainer`] with `f32` or `f64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F64,
}

impl std::str::FromStr for Dtype {
    type Err = BpttError;
    fn from_str(s: &str) -> Result<Self, BpttError> {
        match s {
            "f32" | "float32" => Ok(Dtype::F32),
            "f64" | "float64" => Ok(Dtype::F64),
            _ => Err(BpttError::Invalid(format!(
                "unknown dtype '{s}' (expected f32 or f64)"
            ))),
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        })
    }
}

/// Where the readout reads the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ReadoutAt {
    /// The outputs after the last step (sequence classification).
    Last,
    /// The outputs of every step (tagging, language models).
    EveryStep,
}

/// The loss on the readout's outputs `Y` (K × N, N = B or T·B columns), averaged over the N
/// columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Loss {
    /// Softmax over K classes, targets [`Targets::Classes`]: `(1/N) Σ_j [lse(y_j) − y_j[c_j]]`.
    SoftmaxCrossEntropy,
    /// `(1/N) Σ_j ‖y_j − t_j‖²`, targets [`Targets::Values`].
    Mse,
    /// Independent sigmoid per output (multi-label: piano rolls), targets [`Targets::Values`]
    /// in [0, 1]: `(1/N) Σ_j Σ_k [softplus(y) − t·y]`, summed over labels.
    SigmoidCrossEntropy,
}

/// Learning rate as a function of the update number t = 0, 1, ….
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Schedule {
    Constant,
    /// `lr · factor^⌊t / every⌋`.
    Step {
        every: u64,
        factor: f64,
    },
    /// `lr · γ^t`.
    Exponential {
        gamma: f64,
    },
    /// Cosine from `lr` to 0 over `total` updates (0 after).
    Cosine {
        total: u64,
    },
}

impl Schedule {
    /// This update's learning rate.
    #[must_use]
    pub fn lr(&self, base: f64, t: u64) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, factor } => base * factor.powi((t / every.max(1)) as i32),
            Schedule::Exponential { gamma } => base * gamma.powi(t as i32),
            Schedule::Cosine { total } => {
                let x = (t.min(total) as f64) / (total.max(1) as f64);
                base * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
        }
    }
}

/// How a [`Trainer`] trains.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Config {
    pub readout_at: ReadoutAt,
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    /// Global-norm clipping threshold (Pascanu et al. Algorithm 1); `None` for none.
    pub clip: Option<f64>,
    /// The paper's safety net: a gradient norm that is NaN, ∞ or above 1e10 is replaced by
    /// `0.02·W` for every recurrent matrix (`weight_hh*`) and 0 for every other parameter.
    pub safety_net: bool,
    /// Truncated BPTT over a stream: each batch starts from the previous batch's final states
    /// (detached; the first batch and [`Trainer::reset_state`] start from zero).
    pub carry_state: bool,
    /// Pascanu's regulariser Ω (a single vanilla layer only); `None` for none.
    pub omega: Option<OmegaRule>,
}

/// How an update uses Pascanu's Ω ([`crate::train::omega`]): `α·∂Ω/∂W_hh` (δ and h frozen, as in
/// the paper's code) is added to `∂L/∂W_hh` before the norm, clipping and the safety net.
/// α = 0 computes Ω (for learning curves) without using it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct OmegaRule {
    pub alpha: f64,
    /// Bound on `‖δ_k‖²` below which a (step, sequence) pair is left out.
    pub bound: f64,
    /// Ω's weight decreasing as 1/t: update t (0, 1, …) uses `α·τ/(τ + t)` with `decay = Some(τ)`
    /// (τ > 0 updates); `None` keeps α constant.
    pub decay: Option<f64>,
}

impl OmegaRule {
    /// A constant weight α.
    #[must_use]
    pub fn constant(alpha: f64, bound: f64) -> Self {
        OmegaRule {
            alpha,
            bound,
            decay: None,
        }
    }
    /// The weight of update `t` (0, 1, …): α, or `α·τ/(τ + t)`.
    #[must_use]
    pub fn weight(&self, t: u64) -> f64 {
        match self.decay {
            None => self.alpha,
            Some(tau) => self.alpha * tau / (tau + t as f64),
        }
    }
}

impl Default for Config {
    /// Last-step softmax cross-entropy, SGD lr 0.01, clipping at 1 (the peers' workload).
    fn default() -> Self {
        Config {
            readout_at: ReadoutAt::Last,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: Optimizer::sgd(0.01),
            schedule: Schedule::Constant,
            clip: Some(1.0),
            safety_net: false,
            carry_state: false,
            omega: None,
        }
    }
}

/// The targets of a batch: one class per column, or a K × N matrix.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a, T> {
    Classes(&'a [usize]),
    Values(MatRef<'a, T>),
}

/// One batch: inputs of every step (`D × T·B` or token ids), B, and targets for the readout's
/// columns (B of them for [`ReadoutAt::Last`], T·B for [`ReadoutAt::EveryStep`]).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a, T> {
    pub inputs: Inputs<'a, T>,
    pub batch: usize,
    pub targets: Targets<'a, T>,
}

/// What one update did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record {
    pub loss: f64,
    /// Norm of the gradient before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
    pub safety: bool,
    /// The learning rate used.
    pub lr: f64,
    /// Ω before the update (0 without [`Config::omega`]).
    pub omega: f64,
    /// The weight α of Ω's gradient in this update ([`OmegaRule::weight`]; 0 without Ω).
    pub omega_weight: f64,
}

/// What a [`Trainer`] carries from one update to the next besides the model — everything a
/// checkpoint needs so that training continued from it is bit-identical to training never
/// stopped ([`Trainer::state`], [`Trainer::restore`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerState<T: RealField + Copy> {
    /// Updates taken (the schedule's and Ω's t, Adam's bias correction).
    pub updates: u64,
    /// The carried initial states of the next batch, one `S_i × B` matrix per network state
    /// ([`Config::carry_state`]); empty when the next batch starts from zero.
    pub carried: Vec<DMatrix<T>>,
    /// The optimizer's first moments (momentum velocity, Adam's m), network tensors then the
    /// readout's, shaped as the parameters.
    pub first_moments: Vec<DMatrix<T>>,
    /// Adam's second moments (empty for SGD).
    pub second_moments: Vec<DMatrix<T>>,
}

/// The most states a network may have (layers × directions) — the initial-state views are
/// kept on the stack.
pub const MAX_STATES: usize = 64;

/// Everything one training loop reuses: the network's workspace, the carried state, the
/// readout's slabs, the gradients and the optimizer's moments.
#[derive(Clone, Debug)]
pub struct Trainer<T: RealField + Copy, N: SeqLayer<T>> {
    config: Config,
    ws: N::Workspace,
    /// Initial states of the next batch (zero, or carried).
    state: Vec<DMatrix<T>>,
    carried: bool,
    y: DMatrix<T>,
    dy: DMatrix<T>,
    dy_sums: Vec<T>,
    /// ∂L/∂(network outputs), O_net × T·B.
    d_out: DMatrix<T>,
    /// Gradients: the network's (named, ordered and shaped as its `params()`), the readout's.
    grads: Params<T>,
    readout_grads: Params<T>,
    /// Optimizer moments, same order (second moments for Adam only).
    m: Vec<DMatrix<T>>,
    v: Vec<DMatrix<T>>,
    /// Which network tensors are recurrent matrices (the safety net's).
    recurrent: Vec<bool>,
    updates: u64,
    /// Ω's inputs `‖δ_k‖²` (B·T) and buffers.
    delta_sq: Vec<T>,
    omega: omega::Scratch<T>,
    /// The carried states of [`Trainer::predict`]'s chunks.
    chunk_state: Vec<DMatrix<T>>,
}

impl<T: RealField + Copy, N: SeqLayer<T>> Trainer<T, N> {
    /// A trainer for `model`'s shapes; an error for out-of-range hyper-parameters.
    pub fn new(model: &NetworkModel<T, N>, config: Config) -> Result<Self, BpttError> {
        config.optimizer.validate()?;
        if let Some(c) = config.clip
            && !(c > 0.0 && c.is_finite())
        {
            return Err(BpttError::Invalid(format!(
                "the clipping threshold must be a positive finite number, got {c}"
            )));
        }
        let mut ws = N::Workspace::default();
        if let Some(rule) = config.omega {
            let usable = |v: f64| v >= 0.0 && v.is_finite();
            if !(usable(rule.alpha) && usable(rule.bound)) {
                return Err(BpttError::Invalid(format!(
                    "Ω needs a finite α ≥ 0 and bound ≥ 0, got α = {}, bound = {}",
                    rule.alpha, rule.bound
                )));
            }
            if let Some(tau) = rule.decay
                && !(tau > 0.0 && tau.is_finite())
            {
                return Err(BpttError::Invalid(format!(
                    "Ω's decay τ must be a positive finite number of updates, got {tau}"
                )));
            }
            // the backward pass keeps every ∂L/∂h_k for Ω
            omega_cell(&model.net, &mut ws)?
                .workspace
                .record_state_grads = true;
        }
        if model.net.state_count() > MAX_STATES {
            return Err(BpttError::Invalid(format!(
                "{} states: at most {MAX_STATES} supported",
                model.net.state_count()
            )));
        }
        let params = model.net.params();
        let grads = params.zeros_like();
        let readout_grads = model.readout.params().zeros_like();
        let all: Vec<DMatrix<T>> = grads
            .iter()
            .chain(readout_grads.iter())
            .map(|(_, m)| m.clone())
            .collect();
        let v = match config.optimizer {
            Optimizer::Adam { .. } => all.clone(),
            Optimizer::Sgd { .. } => Vec::new(),
        };
        let recurrent = params
            .names()
            .iter()
            .map(|n| n.starts_with("weight_hh"))
            .collect();
        let e = || DMatrix::zeros(0, 0);
        Ok(Trainer {
            config,
            ws,
            state: Vec::new(),
            carried: false,
            y: e(),
            dy: e(),
            dy_sums: Vec::new(),
            d_out: e(),
            grads,
            readout_grads,
            m: all,
            v,
            recurrent,
            updates: 0,
            delta_sq: Vec::new(),
            omega: omega::Scratch::default(),
            chunk_state: Vec::new(),
        })
    }

    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// Updates taken.
    #[must_use]
    pub fn updates(&self) -> u64 {
        self.updates
    }
    /// The gradients of the last [`Self::loss_and_grads`] / [`Self::update`] (before clipping
    /// for the former): the network's, named, ordered and shaped as its `params()`, and the
    /// readout's.
    #[must_use]
    pub fn grads(&self) -> (&Params<T>, &Params<T>) {
        (&self.grads, &self.readout_grads)
    }
    /// The network's workspace after the last pass (outputs, states, tapes).
    #[must_use]
    pub fn workspace(&self) -> &N::Workspace {
        &self.ws
    }
    /// The network's workspace, mutably: e.g. to set a cell's
    /// [`CellWorkspace::record_state_grads`](crate::nn::arch::CellWorkspace::record_state_grads)
    /// so that the next backward pass keeps every `∂L/∂s_k` ([`Tape::d_state`](crate::nn::engine::Tape::d_state)).
    pub fn workspace_mut(&mut self) -> &mut N::Workspace {
        &mut self.ws
    }
    /// The readout's outputs of the last pass (K × N).
    #[must_use]
    pub fn readout_outputs(&self) -> &DMatrix<T> {
        &self.y
    }
    /// Start the next batch from zero states (a new stream).
    pub fn reset_state(&mut self) {
        self.carried = false;
    }

    /// A copy of what the trainer carries between updates (for a checkpoint).
    #[must_use]
    pub fn state(&self) -> TrainerState<T> {
        TrainerState {
            updates: self.updates,
            carried: if self.carried {
                self.state.clone()
            } else {
                Vec::new()
            },
            first_moments: self.m.clone(),
            second_moments: self.v.clone(),
        }
    }

    /// Continue from a checkpoint's [`TrainerState`] (of a trainer of the same network and
    /// configuration): the next update is the one the saved trainer would have taken. An error
    /// when a matrix's count or shape does not fit `net`.
    pub fn restore(&mut self, net: &N, saved: TrainerState<T>) -> Result<(), BpttError> {
        let fit = |what: &str, got: &[DMatrix<T>], want: &[DMatrix<T>]| {
            if got.len() != want.len() {
                return Err(BpttError::Invalid(format!(
                    "the checkpoint has {} {what}, the trainer {}",
                    got.len(),
                    want.len()
                )));
            }
            for (g, w) in got.iter().zip(want) {
                if g.shape() != w.shape() {
                    return Err(BpttError::shape(what, w.shape(), g.shape()));
                }
            }
            Ok(())
        };
        fit("first moments", &saved.first_moments, &self.m)?;
        fit("second moments", &saved.second_moments, &self.v)?;
        if !saved.carried.is_empty() {
            let sizes = net.state_sizes();
            let b = saved.carried[0].ncols();
            let want: Vec<DMatrix<T>> = sizes.iter().map(|&r| DMatrix::zeros(r, b)).collect();
            fit("carried states", &saved.carried, &want)?;
        }
        self.updates = saved.updates;
        self.carried = !saved.carried.is_empty();
        if self.carried {
            self.state = saved.carried;
        }
        self.m = saved.first_moments;
        self.v = saved.second_moments;
        Ok(())
    }

    /// Forward over `batch` from the initial states (zero or carried), then the readout and
    /// loss; leaves `∂L/∂Y` in `dy` when `grads`.
    fn forward_loss(
        &mut self,
        model: &NetworkModel<T, N>,
        batch: &Batch<'_, T>,
        grads: bool,
    ) -> Result<T, BpttError> {
        let net = &model.net;
        let b = batch.batch;
        let cols = batch.inputs.columns();
        if b == 0 || cols == 0 || !cols.is_multiple_of(b) {
            return Err(BpttError::Invalid(format!(
                "a batch of {cols} columns is not T ≥ 1 steps of {b} sequences"
            )));
        }
        let steps = cols / b;
        // initial states: the carried final states of the previous batch, or zero
        let fits = self.state.len() == net.state_count()
            && self.state.first().is_none_or(|s| s.ncols() == b);
        let keep = self.config.carry_state && self.carried && fits;
        if !keep {
            zero_states(&mut self.state, net, b);
        }
        forward_from(net, batch.inputs, &self.state, &mut self.ws)?;
        if self.config.carry_state {
            for (i, s) in self.state.iter_mut().enumerate() {
                MatMut::from(s).copy_from(net.final_state(&self.ws, i));
            }
            self.carried = true;
        }
        // Y = W_o H + b_o 1ᵀ
        let h_all = net.outputs(&self.ws);
        let h = match self.config.readout_at {
            ReadoutAt::Last => h_all.col_block((steps - 1) * b, b),
            ReadoutAt::EveryStep => h_all,
        };
        let p = model.readout.params();
        ensure(&mut self.y, p[WEIGHT].nrows(), h.cols());
        MatMut::from(&mut self.y).fill_columns(p[BIAS].as_slice());
        gemm(
            MatMut::from(&mut self.y),
            true,
            Op::N(MatRef::from(&p[WEIGHT])),
            Op::N(h),
        );
        let loss = loss_into(
            self.config.loss,
            &self.y,
            batch.targets,
            grads.then_some(&mut self.dy),
        )?;
        Ok(loss)
    }

    /// The loss on `batch` and every gradient (into [`Self::grads`]), without an update.
    pub fn loss_and_grads(
        &mut self,
        model: &NetworkModel<T, N>,
        batch: &Batch<'_, T>,
    ) -> Result<T, BpttError> {
        let loss = self.forward_loss(model, batch, true)?;
        let net = &model.net;
        let b = batch.batch;
        let cols = batch.inputs.columns();
        let h_all = net.outputs(&self.ws);
        let (o_net, steps) = (h_all.rows(), cols / b);
        for g in self
            .grads
            .tensors_mut()
            .chain(self.readout_grads.tensors_mut())
        {
            g.fill(T::zero());
        }
        // dW_o += dY Hᵀ ; db_o += dY 1 ; ∂L/∂H = W_oᵀ dY
        let (h, first) = match self.config.readout_at {
            ReadoutAt::Last => (h_all.col_block((steps - 1) * b, b), (steps - 1) * b),
            ReadoutAt::EveryStep => (h_all, 0),
        };
        let dy = MatRef::from(&self.dy);
        gemm(
            MatMut::from(&mut self.readout_grads[WEIGHT]),
            true,
            Op::N(dy),
            Op::T(h),
        );
        self.dy_sums.resize(dy.rows(), T::zero());
        row_sums(dy, &mut self.dy_sums);
        add_to(self.readout_grads[BIAS].as_mut_slice(), &self.dy_sums);
        if self.d_out.shape() != (o_net, cols) {
            // the blocks a last-step readout never writes stay zero
            ensure(&mut self.d_out, o_net, cols);
            self.d_out.fill(T::zero());
        }
        gemm(
            MatMut::from(&mut self.d_out).col_block(first, h.cols()),
            false,
            Op::T(MatRef::from(&model.readout.params()[WEIGHT])),
            Op::N(dy),
        );
        let up = LayerUpstream {
            d_outputs: Some(MatRef::from(&self.d_out)),
            d_finals: &[],
        };
        let grads = self.grads.as_mut_slice();
        net.backward_slab(batch.inputs, &mut self.ws, &up, grads, false)?;
        Ok(loss)
    }

    /// The loss on `batch` (forward only). With [`Config::carry_state`] the carried state
    /// advances as in training: evaluate a validation stream with a trainer of its own.
    pub fn loss(
        &mut self,
        model: &NetworkModel<T, N>,
        batch: &Batch<'_, T>,
    ) -> Result<T, BpttError> {
        self.forward_loss(model, batch, false)
    }

    /// One update: gradients, norm, clipping, the safety net, the optimizer step.
    pub fn update(
        &mut self,
        model: &mut NetworkModel<T, N>,
        batch: &Batch<'_, T>,
    ) -> Result<Record, BpttError> {
        let loss = self.loss_and_grads(model, batch)?;
        let omega_weight = self.config.omega.map_or(0.0, |r| r.weight(self.updates));
        let omega = match self.config.omega {
            Some(rule) => self.add_omega(&model.net, rule.bound, omega_weight)?,
            None => 0.0,
        };
        let norm = self.grad_norm();
        let mut clipped = false;
        if let Some(threshold) = self.config.clip
            && norm.is_finite()
            && norm >= threshold
        {
            let s: T = nalgebra::convert(threshold / norm);
            for g in self
                .grads
                .tensors_mut()
                .chain(self.readout_grads.tensors_mut())
            {
                *g *= s;
            }
            clipped = true;
        }
        let safety = self.config.safety_net && safety_net_triggered(norm);
        if safety {
            // the paper's code: g(W_hh) = 0.02·W_hh, every other gradient 0
            let shrink: T = nalgebra::convert(SAFETY_SHRINK);
            let (grads, recurrent) = (&mut self.grads, &self.recurrent);
            let mut i = 0;
            model.net.for_each_param(0, &mut |_, w| {
                if recurrent[i] {
                    grads[i].copy_from(w);
                    grads[i] *= shrink;
                } else {
                    grads[i].fill(T::zero());
                }
                i += 1;
            });
            self.readout_grads.scale_mut(T::zero());
        }
        let lr = self
            .config
            .schedule
            .lr(self.config.optimizer.lr(), self.updates);
        self.updates += 1;
        let (opt, t) = (self.config.optimizer, self.updates);
        let (m, v) = (&mut self.m, &mut self.v);
        let mut i = 0;
        // the optimizer's rule on tensor i (network tensors, then the readout's)
        let mut step = |p: &mut DMatrix<T>, g: &DMatrix<T>| {
            let v = v.get_mut(i).map(|v| v.as_mut_slice());
            opt.apply(
                lr,
                t,
                p.as_mut_slice(),
                g.as_slice(),
                m[i].as_mut_slice(),
                v,
            );
            i += 1;
        };
        let mut k = 0;
        let grads = &self.grads;
        model.net.for_each_param_mut(&mut |p| {
            step(p, &grads[k]);
            k += 1;
        });
        for (p, (_, g)) in model
            .readout
            .params_mut()
            .tensors_mut()
            .zip(self.readout_grads.iter())
        {
            step(p, g);
        }
        Ok(Record {
            loss: to_f64(loss),
            grad_norm: norm,
            clipped,
            safety,
            lr,
            omega,
            omega_weight,
        })
    }

    /// After [`Self::loss_and_grads`] with [`Config::omega`]: Ω of the last pass, with
    /// `α·∂Ω/∂W_hh` added to the gradient of `W_hh` when α ≠ 0.
    fn add_omega(&mut self, net: &N, bound: f64, alpha: f64) -> Result<f64, BpttError> {
        let (delta_sq, scratch) = (&mut self.delta_sq, &mut self.omega);
        let cell = omega_cell(net, &mut self.ws)?;
        let (w_hh, index) = (cell.w_hh, cell.weight_hh);
        let u = fill_delta_sq(cell, delta_sq);
        let target = (alpha != 0.0).then_some((&mut self.grads[index], alpha));
        Ok(penalty_with(scratch, w_hh, u, delta_sq, bound, target)?.value)
    }

    /// Ω's inputs from the last [`Self::loss_and_grads`] of a trainer with [`Config::omega`]:
    /// the frozen `u_k = σ'(a_k) ⊙ δ_k` (`H × T·B`, the engine's `∂L/∂a`) and `‖δ_k‖²`
    /// (T·B values, same column order), `δ_k = ∂L/∂h_k`.
    pub fn omega_inputs<'s>(
        &'s mut self,
        net: &'s N,
    ) -> Result<(&'s DMatrix<T>, &'s [T]), BpttError> {
        if self.config.omega.is_none() {
            return Err(BpttError::Invalid(
                "Ω's inputs are recorded only by a trainer configured with Ω".into(),
            ));
        }
        let cell = omega_cell(net, &mut self.ws)?;
        let u = fill_delta_sq(cell, &mut self.delta_sq);
        Ok((u, &self.delta_sq))
    }

    /// The readout's outputs over `inputs` (B sequences of any length T) from zero states,
    /// forward only, `chunk` steps at a time with the states carried from one chunk to the
    /// next (the workspace holds `chunk` steps, not T). Calls `visit(t, Y_t)` with the
    /// readout's `K × B` outputs at every step t = 0…T−1 ([`ReadoutAt::EveryStep`]) or at the
    /// last step only ([`ReadoutAt::Last`]). The carried training state is left alone; the
    /// workspace's last pass is overwritten. A network with a reverse direction
    /// ([`SeqLayer::causal`] false) needs one chunk of all T steps.
    pub fn predict(
        &mut self,
        model: &NetworkModel<T, N>,
        inputs: Inputs<'_, T>,
        batch: usize,
        chunk: usize,
        visit: &mut dyn FnMut(usize, &DMatrix<T>),
    ) -> Result<(), BpttError> {
        let net = &model.net;
        let cols = inputs.columns();
        if batch == 0 || cols == 0 || !cols.is_multiple_of(batch) || chunk == 0 {
            return Err(BpttError::Invalid(format!(
                "a prediction over {cols} columns needs T ≥ 1 steps of B = {batch} ≥ 1 \
                 sequences and a chunk of ≥ 1 steps (got {chunk})"
            )));
        }
        let steps = cols / batch;
        if chunk < steps && !net.causal() {
            return Err(BpttError::Invalid(format!(
                "{} reads the whole sequence (a reverse direction): predict it in one chunk \
                 of ≥ {steps} steps, not {chunk}",
                net.name()
            )));
        }
        zero_states(&mut self.chunk_state, net, batch);
        let p = model.readout.params();
        let mut t0 = 0;
        while t0 < steps {
            let len = chunk.min(steps - t0);
            let x = inputs.col_block(t0 * batch, len * batch);
            forward_from(net, x, &self.chunk_state, &mut self.ws)?;
            let h = net.outputs(&self.ws);
            let read = |t: usize| match self.config.readout_at {
                ReadoutAt::EveryStep => true,
                ReadoutAt::Last => t + 1 == steps,
            };
            for t in (t0..t0 + len).filter(|&t| read(t)) {
                // Y_t = W_o H_t + b_o 1ᵀ
                ensure(&mut self.y, p[WEIGHT].nrows(), batch);
                MatMut::from(&mut self.y).fill_columns(p[BIAS].as_slice());
                gemm(
                    MatMut::from(&mut self.y),
                    true,
                    Op::N(MatRef::from(&p[WEIGHT])),
                    Op::N(h.col_block((t - t0) * batch, batch)),
                );
                visit(t, &self.y);
            }
            // carry the chunk's final states into the next
            for (i, s) in self.chunk_state.iter_mut().enumerate() {
                MatMut::from(s).copy_from(net.final_state(&self.ws, i));
            }
            t0 += len;
        }
        Ok(())
    }

    /// The Euclidean norm of every gradient (network and readout), in f64, without overflow.
    #[must_use]
    pub fn grad_norm(&self) -> f64 {
        let entries = || {
            self.grads
                .iter()
                .chain(self.readout_grads.iter())
                .flat_map(|(_, m)| m.iter().map(|x| to_f64(*x)))
        };
        let mut scale = 0.0f64;
        for g in entries() {
            if g.is_nan() {
                return g;
            }
            scale = scale.max(g.abs());
        }
        if scale == 0.0 || !scale.is_finite() {
            return scale;
        }
        scale
            * entries()
                .map(|g| (g / scale) * (g / scale))
                .sum::<f64>()
                .sqrt()
    }
}

/// One zero matrix per state of `net`, `S_i × b` (allocated on first use, then reused).
fn zero_states<T: RealField + Copy, N: SeqLayer<T>>(
    states: &mut Vec<DMatrix<T>>,
    net: &N,
    b: usize,
) {
    if states.len() != net.state_count() {
        *states = net
            .state_sizes()
            .iter()
            .map(|&r| DMatrix::zeros(r, b))
            .collect();
    }
    for s in states.iter_mut() {
        ensure(s, s.nrows(), b);
        s.fill(T::zero());
    }
}

/// `net`'s slab forward pass over `x` from `states` (views kept on the stack).
fn forward_from<T: RealField + Copy, N: SeqLayer<T>>(
    net: &N,
    x: Inputs<'_, T>,
    states: &[DMatrix<T>],
    ws: &mut N::Workspace,
) -> Result<(), BpttError> {
    let empty = MatRef::new(&[], 0, 0, 1);
    let mut views = [empty; MAX_STATES];
    for (v, s) in views.iter_mut().zip(states) {
        *v = MatRef::from(s);
    }
    net.forward_slab(x, &views[..states.len()], ws)
}

/// The network's one vanilla cell, or the error that Ω does not apply to it.
fn omega_cell<'a, T: RealField + Copy, N: SeqLayer<T>>(
    net: &'a N,
    ws: &'a mut N::Workspace,
) -> Result<crate::nn::arch::OmegaCell<'a, T>, BpttError> {
    net.omega_cell(ws).ok_or_else(|| {
        BpttError::Invalid(format!(
            "Pascanu's Ω is defined for a single vanilla RNN layer, not {}",
            net.name()
        ))
    })
}

/// `‖δ_k‖²` per (step, sequence), k = 1..=T, column `(k−1)·B + b`, from the cell's recorded
/// state gradients (its first H rows: `δ_k = ∂L/∂h_k`); returns Ω's `u` (the tape's `∂L/∂a`).
fn fill_delta_sq<'a, T: RealField + Copy>(
    cell: crate::nn::arch::OmegaCell<'a, T>,
    delta_sq: &mut Vec<T>,
) -> &'a DMatrix<T> {
    let hid = cell.w_hh.nrows();
    let workspace: &'a crate::nn::arch::CellWorkspace<T> = cell.workspace;
    let tape = &workspace.tape;
    let (steps, batch) = (tape.steps(), tape.batch());
    delta_sq.resize(steps * batch, T::zero());
    for k in 1..=steps {
        let d = tape.d_state(k);
        for b in 0..batch {
            delta_sq[(k - 1) * batch + b] =
                DVectorView::from_slice(&d.col(b)[..hid], hid).norm_squared();
        }
    }
    tape.d_projection()
}

/// A scalar's f64 value (f32 and f64 exactly; other scalars through their real part).
fn to_f64<T: RealField + Copy>(x: T) -> f64 {
    x.to_subset().unwrap_or(f64::NAN)
}

/// The loss of `y` against `targets`, with `∂L/∂y` into `dy` when given (reusing its storage).
pub fn loss_into<T: RealField + Copy>(
    loss: Loss,
    y: &DMatrix<T>,
    targets: Targets<'_, T>,
    dy: Option<&mut DMatrix<T>>,
) -> Result<T, BpttError> {
    let n = y.ncols();
    match (loss, targets) {
        (Loss::SoftmaxCrossEntropy, Targets::Classes(c)) => match dy {
            Some(dy) => softmax_cross_entropy_into(y, c, dy),
            None => Ok(crate::nn::readout::softmax_cross_entropy(y, c)?.0),
        },
        (Loss::Mse | Loss::SigmoidCrossEntropy, Targets::Values(t)) => {
            if (t.rows(), t.cols()) != y.shape() {
                return Err(BpttError::shape("targets", y.shape(), (t.rows(), t.cols())));
            }
            let c = |x: f64| -> T { nalgebra::convert(x) };
            let inv_n = c(1.0 / n as f64);
            let mut total = T::zero();
            match (loss, dy) {
                (Loss::Mse, Some(dy)) => {
                    // dy = y − t first (its squared norm is the loss), then scaled in place
                    ensure(dy, y.nrows(), n);
                    for j in 0..n {
                        for i in 0..y.nrows() {
                            dy[(i, j)] = y[(i, j)] - t.at(i, j);
                        }
                    }
                    total = dy.norm_squared() / c(n as f64);
                    *dy *= c(2.0 / n as f64);
                }
                (Loss::Mse, None) => {
                    for j in 0..n {
                        for i in 0..y.nrows() {
                            let d = y[(i, j)] - t.at(i, j);
                            total += d * d;
                        }
                    }
                    total /= c(n as f64);
                }
                (_, mut dy) => {
                    if let Some(d) = dy.as_deref_mut() {
                        ensure(d, y.nrows(), n);
                    }
                    for j in 0..n {
                        for i in 0..y.nrows() {
                            let (yv, tv) = (y[(i, j)], t.at(i, j));
                            // softplus(y) − t·y, stable for large |y|; ∂/∂y = σ(y) − t
                            let sp = yv.max(T::zero()) + (T::one() + (-yv.abs()).exp()).ln();
                            total += sp - tv * yv;
                            if let Some(d) = dy.as_deref_mut() {
                                d[(i, j)] = (crate::nn::activation::sigmoid(yv) - tv) * inv_n;
                            }
                        }
                    }
                    total *= inv_n;
                }
            }
            Ok(total)
        }
        (l, _) => Err(BpttError::Invalid(format!(
            "{l:?} needs {} targets",
            if l == Loss::SoftmaxCrossEntropy {
                "class"
            } else {
                "value"
            }
        ))),
    }
}
