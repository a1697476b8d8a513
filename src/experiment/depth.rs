//! Depth: deep recurrent stacks at initialisation and in training — the lecture's claim that a
//! stack of RNN layers is deep in a second direction (layers) besides time, and trains badly
//! when deep unless skip connections give the gradient a short path.
//!
//! Three ways to stack L layers of one cell (PyTorch-default initialisation,
//! [`CellKind::pytorch_init`]), all with H units per layer, reading D input units:
//!
//! - [`Architecture::Plain`] ([`Stacked`]): `h^{(l)}_t = cell_l(h^{(l−1)}_t, h^{(l)}_{t−1})`,
//!   `h^{(0)} = x`; the network's output is `h^{(L)}`.
//! - [`Architecture::Residual`] ([`Stacked`] of [`Residual`]): layer l outputs
//!   `y^{(l)}_t = h^{(l)}_t + y^{(l−1)}_t` (an identity skip) for every layer above the first; the
//!   first reads D ≠ H units, so its skip is the arch module's learned projection
//!   `y^{(1)}_t = h^{(1)}_t + P x_t` ([`Residual::new`]).
//! - [`Architecture::Dense`] ([`Dense`]): layer l reads `[x_t; h^{(1)}_t; …; h^{(l−1)}_t]`.
//!
//! [`last_step_gradients`] measures, for a loss read at the last step only, every gradient the
//! experiment reports: `∂L/∂θ_l` per layer, `∂L/∂x_t` at the first layer's input, and the depth ×
//! time map `∂L/∂h^{(l)}_t` (the total derivative: through the layers above *and* the later
//! steps). [`train`] trains a stack on one of the [`Task`]s with the one
//! [`Trainer`](crate::train::trainer::Trainer).
//!
//! Randomness of a work item `(cell, architecture, depth, replicate)` comes from
//! [`Item::stream`]: `stream(seed, [cell seed id, replicate, purpose, …])`. Neither the
//! architecture nor the depth is in the path of the weights and inputs: layer l of every stack of
//! one cell and replicate has the same cell weights (dense layers above the first read more
//! units, so theirs differ), and every stack of a replicate sees the same measurement batch and
//! the same training batches — common random numbers, so differences are the architectures'.

use std::fmt;
use std::str::FromStr;

use nalgebra::{DMatrix, DVectorView, RealField};

use crate::error::BpttError;
use crate::experiment::tasks::{self, Batch, Target, Task};
use crate::nn::arch::{
    CellWorkspace, Dense, LayerGrads, LayerUpstream, Residual, SeqLayer, Stacked, Unidirectional,
};
use crate::nn::cell::Cell;
use crate::nn::cells::{AnyCell, CellKind};
use crate::nn::engine::{Inputs, MatRef};
use crate::nn::model::NetworkModel;
use crate::nn::readout::{Readout, WEIGHT};
use crate::rng::{Rng, stream};
use crate::train::optim::Optimizer;
use crate::train::trainer::{self, Loss, Schedule, Trainer};

/// One layer of every stack: a cell run forward in time.
pub type Layer<T> = Unidirectional<AnyCell<T>>;
/// [`Architecture::Plain`]: layers in depth.
pub type PlainNet<T> = Stacked<Layer<T>>;
/// [`Architecture::Residual`]: layers in depth, each with a skip connection around it.
pub type ResidualNet<T> = Stacked<Residual<T, Layer<T>>>;
/// [`Architecture::Dense`]: each layer reads the input and every earlier layer's output.
pub type DenseNet<T> = Dense<Layer<T>>;

/// How the layers of a stack are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// [`Stacked`]: layer l reads layer l − 1's outputs.
    Plain,
    /// [`Stacked`] of [`Residual`]: `y^{(l)} = h^{(l)} + y^{(l−1)}` (a projection at the first).
    Residual,
    /// [`Dense`]: layer l reads `[x; h^{(1)}; …; h^{(l−1)}]`.
    Dense,
}

/// Every architecture, in plan order.
pub const ALL_ARCHITECTURES: [Architecture; 3] = [
    Architecture::Plain,
    Architecture::Residual,
    Architecture::Dense,
];

impl Architecture {
    /// The name the binary accepts and writes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Plain => "plain",
            Architecture::Residual => "residual",
            Architecture::Dense => "dense",
        }
    }
}

impl FromStr for Architecture {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_ARCHITECTURES
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                format!("unknown architecture '{s}' (expected plain, residual or dense)")
            })
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stack of recurrent layers whose layers the depth measurements can reach: how many there
/// are, which parameter tensors are whose, and each layer's cell workspace (its tape, where the
/// backward pass records `∂L/∂s^{(l)}_t` when asked).
pub trait DeepNet<T: RealField + Copy>: SeqLayer<T> {
    /// L, the number of layers.
    fn depth(&self) -> usize;
    /// The number of parameter tensors of layer `l` (a contiguous block of
    /// [`SeqLayer::params`], in layer order).
    fn layer_tensors(&self, l: usize) -> usize;
    /// Hidden units H of layer `l` (the rows of `h^{(l)}_t`).
    fn layer_hidden(&self, l: usize) -> usize;
    /// Layer `l`'s cell workspace within the network's workspace `ws` (after a forward pass).
    fn cell_workspace<'a>(&self, ws: &'a mut Self::Workspace, l: usize)
    -> &'a mut CellWorkspace<T>;
}

impl<T: RealField + Copy, C: Cell<T>> DeepNet<T> for Stacked<Unidirectional<C>> {
    fn depth(&self) -> usize {
        self.layers.len()
    }
    fn layer_tensors(&self, l: usize) -> usize {
        self.layers[l].param_tensors()
    }
    fn layer_hidden(&self, l: usize) -> usize {
        self.layers[l].cell.hidden_size()
    }
    fn cell_workspace<'a>(
        &self,
        ws: &'a mut Self::Workspace,
        l: usize,
    ) -> &'a mut CellWorkspace<T> {
        &mut ws[l]
    }
}

impl<T: RealField + Copy, C: Cell<T>> DeepNet<T> for Stacked<Residual<T, Unidirectional<C>>> {
    fn depth(&self) -> usize {
        self.layers.len()
    }
    fn layer_tensors(&self, l: usize) -> usize {
        self.layers[l].param_tensors()
    }
    fn layer_hidden(&self, l: usize) -> usize {
        self.layers[l].inner.cell.hidden_size()
    }
    fn cell_workspace<'a>(
        &self,
        ws: &'a mut Self::Workspace,
        l: usize,
    ) -> &'a mut CellWorkspace<T> {
        &mut ws[l].inner
    }
}

impl<T: RealField + Copy, C: Cell<T>> DeepNet<T> for Dense<Unidirectional<C>> {
    fn depth(&self) -> usize {
        self.layers.len()
    }
    fn layer_tensors(&self, l: usize) -> usize {
        self.layers[l].param_tensors()
    }
    fn layer_hidden(&self, l: usize) -> usize {
        self.layers[l].cell.hidden_size()
    }
    fn cell_workspace<'a>(
        &self,
        ws: &'a mut Self::Workspace,
        l: usize,
    ) -> &'a mut CellWorkspace<T> {
        &mut ws.layers[l]
    }
}

/// A plain stack of `depth` layers of `kind`, D = `input` and H = `hidden`; layer l's cell is
/// drawn by PyTorch's default initialisation from `layer_rng(l)`.
#[must_use]
pub fn plain(
    kind: CellKind,
    input: usize,
    hidden: usize,
    depth: usize,
    layer_rng: impl Fn(usize) -> Rng,
) -> PlainNet<f64> {
    let layers = (0..depth)
        .map(|l| {
            let d = if l == 0 { input } else { hidden };
            Unidirectional::new(kind.pytorch_init(d, hidden, &mut layer_rng(l)))
        })
        .collect();
    Stacked { layers }
}

/// The plain stack's layers (the same cells) with a skip around each: identity where the widths
/// agree, the first layer's projection `P` (H × D, U(−1/√D, 1/√D)) drawn from `layer_rng(0)`
/// after its cell.
#[must_use]
pub fn residual(
    kind: CellKind,
    input: usize,
    hidden: usize,
    depth: usize,
    layer_rng: impl Fn(usize) -> Rng,
) -> ResidualNet<f64> {
    let layers = (0..depth)
        .map(|l| {
            let d = if l == 0 { input } else { hidden };
            let mut rng = layer_rng(l);
            let cell = Unidirectional::new(kind.pytorch_init(d, hidden, &mut rng));
            Residual::new(cell, &mut rng)
        })
        .collect();
    Stacked { layers }
}

/// A dense stack: layer l reads `D + l·H` units (its cell drawn from `layer_rng(l)`).
#[must_use]
pub fn dense(
    kind: CellKind,
    input: usize,
    hidden: usize,
    depth: usize,
    layer_rng: impl Fn(usize) -> Rng,
) -> DenseNet<f64> {
    let layers = (0..depth)
        .map(|l| {
            Unidirectional::new(kind.pytorch_init(input + l * hidden, hidden, &mut layer_rng(l)))
        })
        .collect();
    Dense { layers }
}

/// Every gradient of a loss read at the last step of a stack's output.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthGradients {
    /// The loss.
    pub loss: f64,
    /// `∂L/∂θ` (named and ordered as the network's parameters), `∂L/∂x_t` at the first layer's
    /// input (`D × B` per step), `∂L/∂s0` per layer.
    pub grads: LayerGrads<f64>,
    /// `∂L/∂h^{(l)}_t` for every layer l (the entry `l − 1`), `H × T·B` with column `(t−1)·B + b`
    /// for step t = 1..T: the total derivative, through the layers above and the later steps.
    pub d_hidden: Vec<DMatrix<f64>>,
    /// Parameter tensors per layer (to split [`LayerGrads::params`] by layer).
    pub layer_tensors: Vec<usize>,
    /// B.
    pub batch: usize,
}

/// Batch mean of the columns' Euclidean norms of `g` (`R × B`).
#[must_use]
pub fn mean_column_norm(g: MatRef<'_, f64>) -> f64 {
    let b = g.cols();
    let total: f64 = (0..b)
        .map(|j| DVectorView::from_slice(g.col(j), g.rows()).norm())
        .sum();
    total / b.max(1) as f64
}

impl DepthGradients {
    /// `‖∂L/∂θ_l‖` (Euclidean, over every entry of layer l's tensors) for l = 1..L.
    #[must_use]
    pub fn layer_norms(&self) -> Vec<f64> {
        let mut tensors = self.grads.params.iter().map(|(_, m)| m);
        self.layer_tensors
            .iter()
            .map(|&n| {
                let sq: f64 = tensors.by_ref().take(n).map(|m| m.norm_squared()).sum();
                sq.sqrt()
            })
            .collect()
    }

    /// Scalars per layer, in the order of [`Self::layer_norms`].
    #[must_use]
    pub fn layer_parameters(&self) -> Vec<usize> {
        let mut tensors = self.grads.params.iter().map(|(_, m)| m.len());
        self.layer_tensors
            .iter()
            .map(|&n| tensors.by_ref().take(n).sum())
            .collect()
    }

    /// The depth × time map: `map[l − 1][t − 1]` = batch mean of `‖∂L/∂h^{(l)}_t‖`.
    #[must_use]
    pub fn map(&self) -> Vec<Vec<f64>> {
        self.d_hidden
            .iter()
            .map(|d| {
                (0..d.ncols() / self.batch)
                    .map(|t| {
                        mean_column_norm(MatRef::from(d).col_block(t * self.batch, self.batch))
                    })
                    .collect()
            })
            .collect()
    }

    /// Batch mean of `‖∂L/∂x_t‖` for t = 1..T.
    #[must_use]
    pub fn input_norms(&self) -> Vec<f64> {
        self.grads
            .dxs
            .iter()
            .map(|d| mean_column_norm(MatRef::from(d)))
            .collect()
    }
}

/// Forward `net` over the dense inputs `x` (`D × T·B`, column `t·B + b`) from zero states, read
/// the top output at the last step `h_T` (`O × B`) with `loss` (which returns `L` and
/// `∂L/∂h_T`), and back-propagate with every state gradient recorded: [`DepthGradients`].
pub fn last_step_gradients<N: DeepNet<f64>>(
    net: &N,
    x: &DMatrix<f64>,
    batch: usize,
    loss: impl FnOnce(&DMatrix<f64>) -> Result<(f64, DMatrix<f64>), BpttError>,
) -> Result<DepthGradients, BpttError> {
    let cols = x.ncols();
    if batch == 0 || cols == 0 || !cols.is_multiple_of(batch) {
        return Err(BpttError::Invalid(format!(
            "inputs of {cols} columns are not T ≥ 1 steps of B = {batch} ≥ 1 sequences"
        )));
    }
    crate::error::check_shape(|| "x".into(), x, net.input_size(), cols)?;
    let steps = cols / batch;
    let zeros: Vec<DMatrix<f64>> = net
        .state_sizes()
        .iter()
        .map(|&s| DMatrix::zeros(s, batch))
        .collect();
    let s0: Vec<MatRef<'_, f64>> = zeros.iter().map(MatRef::from).collect();
    let input = Inputs::Dense(MatRef::from(x));
    let mut ws = N::Workspace::default();
    net.forward_slab(input, &s0, &mut ws)?;
    let h_last = net
        .outputs(&ws)
        .col_block((steps - 1) * batch, batch)
        .to_owned();
    let (value, d_last) = loss(&h_last)?;
    crate::error::check_shape(|| "∂L/∂h_T".into(), &d_last, net.output_size(), batch)?;
    // the loss reads step T only
    let mut d_out = DMatrix::zeros(net.output_size(), cols);
    d_out
        .columns_mut((steps - 1) * batch, batch)
        .copy_from(&d_last);
    for l in 0..net.depth() {
        net.cell_workspace(&mut ws, l).record_state_grads = true;
    }
    let mut params = net.params().zeros_like();
    let up = LayerUpstream {
        d_outputs: Some(MatRef::from(&d_out)),
        d_finals: &[],
    };
    net.backward_slab(input, &mut ws, &up, params.as_mut_slice(), true)?;
    let dxs = crate::nn::sequence::unpack(net.d_input(&ws), batch);
    let d_s0 = (0..net.state_count())
        .map(|i| net.d_initial(&ws, i).to_owned())
        .collect();
    let d_hidden = (0..net.depth())
        .map(|l| {
            let h = net.layer_hidden(l);
            let tape = &net.cell_workspace(&mut ws, l).tape;
            let mut d = DMatrix::zeros(h, cols);
            for t in 1..=steps {
                // ∂L/∂s_t's first H rows: ∂L/∂h_t
                d.columns_mut((t - 1) * batch, batch)
                    .copy_from(&tape.d_state(t).row_block(0, h).to_owned());
            }
            d
        })
        .collect();
    Ok(DepthGradients {
        loss: value,
        grads: LayerGrads { params, dxs, d_s0 },
        d_hidden,
        layer_tensors: (0..net.depth()).map(|l| net.layer_tensors(l)).collect(),
        batch,
    })
}

/// The loss of [`last_step_gradients`] for a classification task: a linear `readout` and the
/// mean softmax cross-entropy against `classes`; returns `(L, Wᵀ ∂L/∂y)`.
pub fn readout_cross_entropy<'a>(
    readout: &'a Readout<f64>,
    classes: &'a [usize],
) -> impl FnOnce(&DMatrix<f64>) -> Result<(f64, DMatrix<f64>), BpttError> + 'a {
    move |h| {
        let y = readout.forward(h);
        let mut dy = DMatrix::zeros(0, 0);
        let loss = trainer::loss_into(
            Loss::SoftmaxCrossEntropy,
            &y,
            trainer::Targets::Classes(classes),
            Some(&mut dy),
        )?;
        Ok((loss, readout.params()[WEIGHT].tr_mul(&dy)))
    }
}

/// One work item of the experiment: a stack of `depth` layers of `cell` connected by
/// `architecture`, replicate `replicate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// The cell of every layer.
    pub cell: CellKind,
    /// How the layers are connected.
    pub architecture: Architecture,
    /// L, the number of layers.
    pub depth: usize,
    /// The seed index within the run (its streams' `replicate`).
    pub replicate: u64,
}

/// Stream purposes (the third entry of [`Item::stream`]'s path).
pub mod purpose {
    /// Layer l's cell weights: path `[cell, replicate, WEIGHTS, l]`.
    pub const WEIGHTS: u64 = 0;
    /// The readout's weights.
    pub const READOUT: u64 = 1;
    /// The measurement batch at initialisation (path `[replicate, INIT_BATCH]`: also shared by
    /// the cells).
    pub const INIT_BATCH: u64 = 2;
    /// The training batches.
    pub const TRAIN: u64 = 3;
    /// The validation batches.
    pub const VALID: u64 = 4;
    /// The final test.
    pub const TEST: u64 = 5;
}

impl Item {
    /// The item's ChaCha8 stream for `purpose` (see [`purpose`]): `stream(seed, [cell seed id,
    /// replicate, purpose, rest…])` — neither architecture nor depth is in the path.
    #[must_use]
    pub fn stream(&self, seed: u64, purpose: u64, rest: &[u64]) -> Rng {
        let mut path = vec![self.cell.seed_id(), self.replicate, purpose];
        path.extend_from_slice(rest);
        stream(seed, &path)
    }

    /// A readable identifier, e.g. `lstm_residual_L4_s0`.
    #[must_use]
    pub fn id(&self) -> String {
        format!(
            "{}_{}_L{}_s{}",
            self.cell.name(),
            self.architecture,
            self.depth,
            self.replicate
        )
    }
}

/// What every item of a run shares.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Setup {
    /// The task: its inputs are the measurement's inputs, its loss the measured loss.
    pub task: Task,
    /// Hidden units per layer.
    pub hidden: usize,
    /// Sequence length T (measurement and training).
    pub length: usize,
}

/// The item's network and readout, at initialisation, for the setup's task.
pub fn build_model(
    item: &Item,
    setup: &Setup,
    seed: u64,
) -> Result<(AnyNet, Readout<f64>), BpttError> {
    let (d, h, depth) = (setup.task.input_size(), setup.hidden, item.depth);
    if depth == 0 {
        return Err(BpttError::Invalid(
            "a stack needs at least one layer".into(),
        ));
    }
    let layer_rng = |l: usize| item.stream(seed, purpose::WEIGHTS, &[l as u64]);
    let net = match item.architecture {
        Architecture::Plain => AnyNet::Plain(plain(item.cell, d, h, depth, layer_rng)),
        Architecture::Residual => AnyNet::Residual(residual(item.cell, d, h, depth, layer_rng)),
        Architecture::Dense => AnyNet::Dense(dense(item.cell, d, h, depth, layer_rng)),
    };
    // PyTorch's nn.Linear default: U(−1/√H, 1/√H)
    let mut rng = item.stream(seed, purpose::READOUT, &[]);
    let readout = Readout::uniform(
        h,
        setup.task.output_size(),
        1.0 / (h as f64).sqrt(),
        &mut rng,
    );
    Ok((net, readout))
}

/// `f(net)` for the concrete stack inside an [`AnyNet`].
macro_rules! with_net {
    ($net:expr, $n:ident => $body:expr) => {
        match $net {
            AnyNet::Plain($n) => $body,
            AnyNet::Residual($n) => $body,
            AnyNet::Dense($n) => $body,
        }
    };
}

/// A stack of any [`Architecture`].
#[derive(Clone, Debug, PartialEq)]
pub enum AnyNet {
    /// [`Architecture::Plain`].
    Plain(PlainNet<f64>),
    /// [`Architecture::Residual`].
    Residual(ResidualNet<f64>),
    /// [`Architecture::Dense`].
    Dense(DenseNet<f64>),
}

impl AnyNet {
    /// Trainable scalars of the stack.
    #[must_use]
    pub fn parameter_count(&self) -> usize {
        with_net!(self, n => n.parameter_count())
    }
}

/// The gradients at initialisation of `net` and `readout` on `batch` (a classification task's
/// batch: the dense one-hot inputs, the cross-entropy at the last step).
pub fn init_gradients(
    net: &AnyNet,
    readout: &Readout<f64>,
    batch: &Batch,
) -> Result<DepthGradients, BpttError> {
    let Target::Class(classes) = &batch.target else {
        return Err(BpttError::Invalid(
            "the depth measurement needs a task with one class per sequence".into(),
        ));
    };
    let x = batch.inputs.to_dense();
    with_net!(net, n => last_step_gradients(n, &x, batch.batch, readout_cross_entropy(readout, classes)))
}

/// Training hyper-parameters shared by every trained item.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Hyper {
    /// Sequences per minibatch.
    pub batch: usize,
    /// The update rule.
    pub optimizer: Optimizer,
    /// Global-norm clipping threshold.
    pub clip: f64,
    /// Update budget.
    pub updates: u64,
    /// Validate every this many updates, on `eval_sequences` fresh sequences.
    pub eval_every: u64,
    /// Fresh sequences per validation.
    pub eval_sequences: usize,
    /// Sequences of the final test.
    pub test_sequences: usize,
    /// Write a learning-curve point every this many updates.
    pub log_every: u64,
    /// Error rate below which the task counts as solved (validation, then the final test).
    pub success_error: f64,
}

/// One logged point of a learning curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// Updates done.
    pub update: u64,
    /// Loss and gradient norm (before clipping) of that update.
    pub loss: f64,
    /// `‖∂L/∂θ‖` of that update, before clipping.
    pub grad_norm: f64,
    /// Validation error rate, at evaluation points.
    pub valid_error: Option<f64>,
}

/// The result of a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Updates done (the update of the success, when there is one).
    pub updates: u64,
    /// Error rate on the final test (the same `test_sequences` fresh sequences for every stack
    /// of a replicate).
    pub test_error: f64,
    /// The final test's error rate is below [`Hyper::success_error`].
    pub success: bool,
    /// The parameters became non-finite: the run stopped.
    pub diverged: bool,
    /// The logged learning curve.
    pub curve: Vec<CurvePoint>,
}

/// Train `item` on the setup's task: minibatches of fresh sequences, validation every
/// `h.eval_every` updates; when the validation error falls below `h.success_error` the final
/// test decides, and a success ends the run.
pub fn train(item: &Item, setup: &Setup, h: &Hyper, seed: u64) -> Result<Outcome, BpttError> {
    let (net, readout) = build_model(item, setup, seed)?;
    with_net!(net, n => train_net(NetworkModel::new(n, readout)?, item, setup, h, seed))
}

fn train_net<N: SeqLayer<f64>>(
    mut model: NetworkModel<f64, N>,
    item: &Item,
    setup: &Setup,
    h: &Hyper,
    seed: u64,
) -> Result<Outcome, BpttError> {
    let task = setup.task;
    let (readout_at, loss) = task.readout();
    let config = trainer::Config {
        readout_at,
        loss,
        optimizer: h.optimizer,
        schedule: Schedule::Constant,
        clip: Some(h.clip),
        safety_net: false,
        carry_state: false,
        omega: None,
    };
    let mut trainer = Trainer::new(&model, config)?;
    let mut data = item.stream(seed, purpose::TRAIN, &[]);
    let mut valid = item.stream(seed, purpose::VALID, &[]);
    let mut curve = Vec::new();
    let mut n = 0;
    let mut diverged = false;
    let mut tested: Option<(u64, f64)> = None;
    while n < h.updates {
        let batch = task.generate(&mut data, h.batch, setup.length)?;
        let rec = trainer.update(&mut model, &batch.for_trainer())?;
        n += 1;
        let finite = model
            .net
            .params()
            .tensors()
            .all(|m| m.iter().all(|v| v.is_finite()))
            && model.readout.params().is_finite();
        let evaluate = n % h.eval_every == 0 || n == h.updates || !finite;
        if n % h.log_every == 0 || evaluate {
            let valid_error = if evaluate && finite {
                Some(error_rate(
                    &mut trainer,
                    &model,
                    task,
                    setup.length,
                    h.eval_sequences,
                    &mut valid,
                )?)
            } else {
                None
            };
            curve.push(CurvePoint {
                update: n,
                loss: rec.loss,
                grad_norm: rec.grad_norm,
                valid_error,
            });
            if !finite {
                diverged = true;
                break;
            }
            if valid_error.is_some_and(|e| e < h.success_error) {
                let e = final_test(&mut trainer, &model, item, setup, h, seed)?;
                tested = Some((n, e));
                if e < h.success_error {
                    break;
                }
            }
        }
    }
    let test_error = match tested {
        Some((at, e)) if at == n => e,
        _ if diverged => 1.0,
        _ => final_test(&mut trainer, &model, item, setup, h, seed)?,
    };
    Ok(Outcome {
        updates: n,
        test_error,
        success: !diverged && test_error < h.success_error,
        diverged,
        curve,
    })
}

/// The final test: `h.test_sequences` fresh sequences of the replicate's test stream.
fn final_test<N: SeqLayer<f64>>(
    trainer: &mut Trainer<f64, N>,
    model: &NetworkModel<f64, N>,
    item: &Item,
    setup: &Setup,
    h: &Hyper,
    seed: u64,
) -> Result<f64, BpttError> {
    let mut rng = item.stream(seed, purpose::TEST, &[]);
    error_rate(
        trainer,
        model,
        setup.task,
        setup.length,
        h.test_sequences,
        &mut rng,
    )
}

/// Error rate of `model` on `n` fresh sequences of `task` at `length` drawn (in batches of at
/// most 500) from `rng`: a sequence is wrong as [`tasks::count_errors`] counts it.
pub fn error_rate<N: SeqLayer<f64>>(
    trainer: &mut Trainer<f64, N>,
    model: &NetworkModel<f64, N>,
    task: Task,
    length: usize,
    n: usize,
    rng: &mut Rng,
) -> Result<f64, BpttError> {
    let (mut errors, mut done) = (0, 0);
    while done < n {
        let b = (n - done).min(500);
        let batch = task.generate(rng, b, length)?;
        let every_step = matches!(batch.target, Target::ClassEveryStep(_));
        let mut wrong = vec![false; b];
        let mut at_last = 0;
        trainer.predict(
            model,
            batch.for_trainer().inputs,
            b,
            batch.steps,
            &mut |t, y| match &batch.target {
                Target::ClassEveryStep(c) => {
                    for (j, w) in wrong.iter_mut().enumerate() {
                        *w |= tasks::argmax(y.column(j)) != c[t * b + j];
                    }
                }
                target => at_last = tasks::count_errors(target, y, b),
            },
        )?;
        errors += if every_step {
            wrong.iter().filter(|&&w| w).count()
        } else {
            at_last
        };
        done += b;
    }
    Ok(errors as f64 / n.max(1) as f64)
}
