//! Architectures: sequence-level layers and the wrappers that compose them.
//!
//! A [`SeqLayer`] maps a whole input sequence (T matrices `D × B`) and its initial states to a
//! whole output sequence (T matrices `O × B`) and final states, and back-propagates through it.
//! Cells become layers through [`Unidirectional`] or [`Bidirectional`]; [`Residual`] adds a skip
//! connection around any layer; [`Stacked`] and [`Dense`] compose layers in depth. So a
//! PyTorch `nn.LSTM(num_layers=2, bidirectional=True)` is
//! `Stacked<Bidirectional<Lstm<T>>>`, and a residual stack is `Stacked<Residual<…>>`.
//!
//! Parameters keep PyTorch's names with layer suffixes (`weight_ih_l1`, `bias_hh_l0_reverse`);
//! initial and final states are listed in PyTorch's `h_n` order (layer-major, forward before
//! reverse).

mod bidirectional;
mod dense;
mod residual;
mod stacked;

pub use bidirectional::Bidirectional;
pub use dense::Dense;
pub use residual::Residual;
pub use stacked::Stacked;

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::cell::Cell;
use crate::nn::engine::{self, Inputs, MatRef, Tape, Want};
use crate::nn::import::{StateDict, suffix};
use crate::nn::sequence::{self, Truncation};

/// `(outputs, final states, record)`: what [`SeqLayer::forward`] returns.
pub type ForwardResult<T, W> =
    Result<(Vec<DMatrix<T>>, Vec<DMatrix<T>>, Recorded<T, W>), BpttError>;

/// `(parameter gradients in params() order, ∂L/∂x_t for every t, ∂L/∂s0 for every state)`:
/// what [`SeqLayer::backward`] returns.
pub type LayerGrads<T> = (Vec<DMatrix<T>>, Vec<DMatrix<T>>, Vec<DMatrix<T>>);

/// A forward pass of [`SeqLayer::forward`] kept for [`SeqLayer::backward`]: the packed inputs
/// (`D × T·B`) and the layer's workspace.
#[derive(Clone, Debug)]
pub struct Recorded<T: RealField + Copy, W> {
    pub x: DMatrix<T>,
    pub workspace: W,
}

/// Upstream gradients of a layer's backward pass; `None` / empty means zero.
#[derive(Clone, Copy, Debug)]
pub struct LayerUpstream<'a, T> {
    /// `∂L/∂outputs`, `O × T·B`.
    pub d_outputs: Option<MatRef<'a, T>>,
    /// `∂L/∂(final state i)`, one per state (`S_i × B`), or empty for all zero.
    pub d_finals: &'a [MatRef<'a, T>],
}

/// A layer over whole sequences, with its backward pass, on slabs: inputs `D × T·B`
/// ([`SeqLayer::input_size`], column `t·B + b`), outputs `O × T·B`, initial/final states
/// `S_i × B` ([`SeqLayer::state_sizes`]). Every buffer lives in the layer's
/// [`SeqLayer::Workspace`], sized on first use and reused: a warm forward/backward allocates
/// nothing (`tests/allocations.rs`). [`SeqLayer::forward`] / [`SeqLayer::backward`] give the
/// same passes on lists of per-step matrices (what the checkers and PyTorch parity use).
pub trait SeqLayer<T: RealField + Copy>: Clone + Send + Sync {
    type Workspace: Default + Clone + Send + Sync;

    fn name(&self) -> String;
    fn input_size(&self) -> usize;
    fn output_size(&self) -> usize;
    /// Rows of each initial (and final) state, in PyTorch's `h_n` order.
    fn state_sizes(&self) -> Vec<usize>;
    /// Number of states (`state_sizes().len()`, without allocating).
    fn state_count(&self) -> usize;
    /// A label per state for reports, e.g. `"l0"`, `"l0_reverse"`, when this is layer `layer`.
    fn state_labels(&self, layer: usize) -> Vec<String>;
    /// Row-block names of each state (`["h"]`, or `["h", "c"]` for the LSTM).
    fn state_blocks(&self) -> Vec<&'static str>;
    /// Hidden size H of the states' row blocks.
    fn state_block_rows(&self) -> usize;
    /// Parameter names when this is layer `layer` (PyTorch's, with `_l{layer}[_reverse]`).
    fn param_names(&self, layer: usize) -> Vec<String>;
    /// The parameters, in the order of [`SeqLayer::param_names`].
    fn params(&self) -> Vec<&DMatrix<T>>;
    /// Mutable parameters, same order.
    fn params_mut(&mut self) -> Vec<&mut DMatrix<T>>;
    /// Number of parameter tensors (`params().len()`, without allocating).
    fn param_tensors(&self) -> usize;
    /// Visit every parameter tensor in [`SeqLayer::params`] order (no allocation).
    fn for_each_param(&self, f: &mut dyn FnMut(&DMatrix<T>));
    /// Visit every parameter tensor mutably, same order.
    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(&mut DMatrix<T>));

    /// Forward over every step at once from the initial states `s0` (one per state, `S_i × B`).
    /// Outputs and final states stay in `ws` ([`SeqLayer::outputs`], [`SeqLayer::final_state`]).
    fn forward_slab(
        &self,
        x: Inputs<'_, T>,
        s0: &[MatRef<'_, T>],
        ws: &mut Self::Workspace,
    ) -> Result<(), BpttError>;
    /// The outputs of the last forward pass, `O × T·B`.
    fn outputs<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T>;
    /// Final state `i` of the last forward pass, `S_i × B`.
    fn final_state<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T>;

    /// Backward over the pass recorded in `ws` (by [`SeqLayer::forward_slab`] with the same `x`):
    /// accumulates the parameter gradients into `grads` (one per parameter, [`SeqLayer::params`]
    /// order and shapes) and leaves `∂L/∂s0` ([`SeqLayer::d_initial`]) and, with `want_dx`
    /// (dense inputs only), `∂L/∂x` ([`SeqLayer::d_input`]) in `ws`.
    fn backward_slab(
        &self,
        x: Inputs<'_, T>,
        ws: &mut Self::Workspace,
        up: &LayerUpstream<'_, T>,
        grads: &mut [DMatrix<T>],
        want_dx: bool,
    ) -> Result<(), BpttError>;
    /// `∂L/∂x`, `D × T·B`, from the last backward pass with `want_dx`.
    fn d_input<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T>;
    /// `∂L/∂(initial state i)`, `S_i × B`, from the last backward pass.
    fn d_initial<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T>;

    /// Sign pattern of every kink argument (ReLU pre-activations) in the last forward pass.
    fn kink_pattern(&self, _ws: &Self::Workspace, _out: &mut Vec<bool>) {}

    /// The one vanilla cell of a layer that is nothing else (a [`Unidirectional`] cell whose
    /// [`Cell::omega_applies`]): what Pascanu's Ω reads. `None` for every other layer.
    fn omega_cell<'a>(&'a self, _ws: &'a mut Self::Workspace) -> Option<OmegaCell<'a, T>> {
        None
    }

    /// Max rounding amplification κ of the cells' backward passes (see [`Cell::conditioning`]).
    fn conditioning(&self, _ws: &Self::Workspace) -> f64 {
        1.0
    }

    /// Whether output t depends on inputs 1..=t only (no reverse direction): then a sequence
    /// may be run in chunks of steps with the states carried between them.
    fn causal(&self) -> bool {
        true
    }

    /// Number of trainable scalars.
    fn parameter_count(&self) -> usize {
        let mut n = 0;
        self.for_each_param(&mut |m| n += m.len());
        n
    }

    /// [`SeqLayer::forward_slab`] on per-step matrices `xs[t]` (`D × B`) and initial states,
    /// returning `(outputs per step, final states, record)`. Shapes are validated.
    fn forward(&self, xs: &[DMatrix<T>], s0: &[DMatrix<T>]) -> ForwardResult<T, Self::Workspace> {
        let batch = s0.first().map_or(0, |s| s.ncols());
        check_states(&self.state_sizes(), s0, batch)?;
        for (t, x) in xs.iter().enumerate() {
            crate::error::check_shape(|| format!("x[{t}]"), x, self.input_size(), batch)?;
        }
        let x = sequence::pack(xs, self.input_size(), batch);
        let views: Vec<MatRef<'_, T>> = s0.iter().map(MatRef::from).collect();
        let mut ws = Self::Workspace::default();
        self.forward_slab(Inputs::Dense(MatRef::from(&x)), &views, &mut ws)?;
        let outs = sequence::unpack(self.outputs(&ws), batch);
        let finals = (0..s0.len())
            .map(|i| self.final_state(&ws, i).to_owned())
            .collect();
        Ok((outs, finals, Recorded { x, workspace: ws }))
    }

    /// [`SeqLayer::backward_slab`] on per-step matrices: given `∂L/∂outputs` (T matrices) and
    /// `∂L/∂final states`, `(parameter gradients in params() order, ∂L/∂xs, ∂L/∂s0)`.
    fn backward(
        &self,
        rec: &Recorded<T, Self::Workspace>,
        d_outputs: &[DMatrix<T>],
        d_finals: &[DMatrix<T>],
    ) -> LayerGrads<T> {
        let batch = if d_outputs.is_empty() {
            d_finals.first().map_or(0, |d| d.ncols())
        } else {
            d_outputs[0].ncols()
        };
        let d_out = sequence::pack(d_outputs, self.output_size(), batch);
        let finals: Vec<MatRef<'_, T>> = d_finals.iter().map(MatRef::from).collect();
        let mut ws = rec.workspace.clone();
        let mut grads: Vec<DMatrix<T>> = self
            .params()
            .iter()
            .map(|m| DMatrix::zeros(m.nrows(), m.ncols()))
            .collect();
        let up = LayerUpstream {
            d_outputs: Some(MatRef::from(&d_out)),
            d_finals: &finals,
        };
        self.backward_slab(
            Inputs::Dense(MatRef::from(&rec.x)),
            &mut ws,
            &up,
            &mut grads,
            true,
        )
        .expect("shapes fixed by the forward pass");
        let dxs = sequence::unpack(self.d_input(&ws), batch);
        let ds0 = (0..self.state_count())
            .map(|i| self.d_initial(&ws, i).to_owned())
            .collect();
        (grads, dxs, ds0)
    }
}

/// The [`SeqLayer`] methods a depth wrapper ([`Stacked`], [`Dense`]) delegates to its list of
/// layers `self.layers`: sizes, states, names and parameters are the layers' in order.
macro_rules! delegate_to_layers {
    () => {
        fn input_size(&self) -> usize {
            self.layers[0].input_size()
        }
        fn output_size(&self) -> usize {
            self.layers.last().unwrap().output_size()
        }
        fn state_sizes(&self) -> Vec<usize> {
            list::state_sizes(&self.layers)
        }
        fn state_labels(&self, _layer: usize) -> Vec<String> {
            list::state_labels(&self.layers)
        }
        fn state_blocks(&self) -> Vec<&'static str> {
            self.layers[0].state_blocks()
        }
        fn state_block_rows(&self) -> usize {
            self.layers[0].state_block_rows()
        }
        fn param_names(&self, _layer: usize) -> Vec<String> {
            list::param_names(&self.layers)
        }
        fn params(&self) -> Vec<&DMatrix<T>> {
            list::params(&self.layers)
        }
        fn params_mut(&mut self) -> Vec<&mut DMatrix<T>> {
            list::params_mut(&mut self.layers)
        }
        fn state_count(&self) -> usize {
            list::state_count(&self.layers)
        }
        fn param_tensors(&self) -> usize {
            list::param_tensors(&self.layers)
        }
        fn for_each_param(&self, f: &mut dyn FnMut(&DMatrix<T>)) {
            list::for_each_param(&self.layers, f);
        }
        fn for_each_param_mut(&mut self, f: &mut dyn FnMut(&mut DMatrix<T>)) {
            list::for_each_param_mut(&mut self.layers, f);
        }
        fn final_state<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T> {
            let (l, j) = list::locate(&self.layers, i, |l| l.state_count());
            self.layers[l].final_state(list::layer_workspace(ws, l), j)
        }
        fn d_initial<'a>(&self, ws: &'a Self::Workspace, i: usize) -> MatRef<'a, T> {
            let (l, j) = list::locate(&self.layers, i, |l| l.state_count());
            self.layers[l].d_initial(list::layer_workspace(ws, l), j)
        }
        fn kink_pattern(&self, ws: &Self::Workspace, out: &mut Vec<bool>) {
            list::kink_pattern(&self.layers, list::layer_workspaces(ws), out);
        }
        fn conditioning(&self, ws: &Self::Workspace) -> f64 {
            list::conditioning(&self.layers, list::layer_workspaces(ws))
        }
        fn causal(&self) -> bool {
            self.layers.iter().all(|l| l.causal())
        }
    };
}
pub(crate) use delegate_to_layers;

/// An error unless `got` initial states were given for a network of `expected`.
pub(crate) fn check_state_count(got: usize, expected: usize) -> Result<(), BpttError> {
    if got == expected {
        Ok(())
    } else {
        Err(BpttError::Invalid(format!(
            "{got} initial states given, the network has {expected}"
        )))
    }
}

/// The plumbing shared by the depth wrappers ([`Stacked`], [`Dense`]): a list of layers whose
/// states, names and parameters are the layers' in order, layer i named with `_l{i}`.
pub(crate) mod list {
    use super::SeqLayer;
    use nalgebra::{DMatrix, RealField};

    pub fn state_sizes<T: RealField + Copy, L: SeqLayer<T>>(layers: &[L]) -> Vec<usize> {
        layers.iter().flat_map(|l| l.state_sizes()).collect()
    }
    pub fn state_labels<T: RealField + Copy, L: SeqLayer<T>>(layers: &[L]) -> Vec<String> {
        layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.state_labels(i))
            .collect()
    }
    pub fn param_names<T: RealField + Copy, L: SeqLayer<T>>(layers: &[L]) -> Vec<String> {
        layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.param_names(i))
            .collect()
    }
    pub fn params<T: RealField + Copy, L: SeqLayer<T>>(layers: &[L]) -> Vec<&DMatrix<T>> {
        layers.iter().flat_map(|l| l.params()).collect()
    }
    pub fn params_mut<T: RealField + Copy, L: SeqLayer<T>>(
        layers: &mut [L],
    ) -> Vec<&mut DMatrix<T>> {
        layers.iter_mut().flat_map(|l| l.params_mut()).collect()
    }
    pub fn state_count<T: RealField + Copy, L: SeqLayer<T>>(layers: &[L]) -> usize {
        layers.iter().map(|l| l.state_count()).sum()
    }
    pub fn param_tensors<T: RealField + Copy, L: SeqLayer<T>>(layers: &[L]) -> usize {
        layers.iter().map(|l| l.param_tensors()).sum()
    }
    pub fn for_each_param<T: RealField + Copy, L: SeqLayer<T>>(
        layers: &[L],
        f: &mut dyn FnMut(&DMatrix<T>),
    ) {
        for l in layers {
            l.for_each_param(f);
        }
    }
    pub fn for_each_param_mut<T: RealField + Copy, L: SeqLayer<T>>(
        layers: &mut [L],
        f: &mut dyn FnMut(&mut DMatrix<T>),
    ) {
        for l in layers {
            l.for_each_param_mut(f);
        }
    }
    /// The per-layer workspaces of a depth wrapper's workspace.
    pub fn layer_workspaces<W: LayerWorkspaces>(ws: &W) -> &[W::Layer] {
        ws.layers()
    }
    /// Layer `l`'s workspace.
    pub fn layer_workspace<W: LayerWorkspaces>(ws: &W, l: usize) -> &W::Layer {
        &ws.layers()[l]
    }
    /// A depth wrapper's workspace: one workspace per layer (and maybe more).
    pub trait LayerWorkspaces {
        type Layer;
        fn layers(&self) -> &[Self::Layer];
    }
    impl<W> LayerWorkspaces for Vec<W> {
        type Layer = W;
        fn layers(&self) -> &[W] {
            self
        }
    }
    /// Which layer holds entry `i` of the end-to-end list counted by `count`, and its index
    /// within that layer.
    pub fn locate<L>(layers: &[L], i: usize, count: impl Fn(&L) -> usize) -> (usize, usize) {
        let mut start = 0;
        for (l, layer) in layers.iter().enumerate() {
            let n = count(layer);
            if i < start + n {
                return (l, i - start);
            }
            start += n;
        }
        panic!("index {i} beyond the {start} entries of the layers");
    }
    /// Layer `l`'s range in a list of every layer's states (or parameter tensors) laid end to
    /// end, counted by `count` (no allocation).
    pub fn range<L>(layers: &[L], l: usize, count: impl Fn(&L) -> usize) -> std::ops::Range<usize> {
        let start: usize = layers[..l].iter().map(&count).sum();
        start..start + count(&layers[l])
    }
    pub fn conditioning<T: RealField + Copy, L: SeqLayer<T>>(
        layers: &[L],
        caches: &[L::Workspace],
    ) -> f64 {
        layers
            .iter()
            .zip(caches)
            .map(|(l, c)| l.conditioning(c))
            .fold(1.0, f64::max)
    }
    pub fn kink_pattern<T: RealField + Copy, L: SeqLayer<T>>(
        layers: &[L],
        caches: &[L::Workspace],
        out: &mut Vec<bool>,
    ) {
        for (l, c) in layers.iter().zip(caches) {
            l.kink_pattern(c, out);
        }
    }
}

/// A layer that can be rebuilt over another scalar type with given parameters, in
/// [`SeqLayer::params`] order: the forward-mode (dual-number) oracle and precision checks run
/// the same generic code on it (see [`crate::nn::cell::Rescalar`]).
pub trait RescalarLayer<T: RealField + Copy>: SeqLayer<T> {
    type With<U: RealField + Copy>: SeqLayer<U>;
    /// This layer's structure with parameters taken, in order, from `params`.
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U>;
}

/// Rebuild a cell with the next `cell.params().len()` matrices of `params`.
fn rebuild_cell<T: RealField + Copy, U: RealField + Copy, C: crate::nn::cell::Rescalar<T>>(
    cell: &C,
    params: &mut dyn Iterator<Item = DMatrix<U>>,
) -> C::With<U> {
    let mut p = crate::nn::params::Params::new();
    for name in cell.params().names() {
        p.push(
            name.clone(),
            params.next().expect("rebuild: too few parameter matrices"),
        );
    }
    cell.with_params(p)
}

impl<T: RealField + Copy, C: crate::nn::cell::Rescalar<T>> RescalarLayer<T> for Unidirectional<C> {
    type With<U: RealField + Copy> = Unidirectional<C::With<U>>;
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U> {
        Unidirectional::new(rebuild_cell(&self.cell, params))
    }
}

impl<T: RealField + Copy, C: crate::nn::cell::Rescalar<T>> RescalarLayer<T> for Bidirectional<C> {
    type With<U: RealField + Copy> = Bidirectional<C::With<U>>;
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U> {
        let forward = rebuild_cell(&self.forward, params);
        Bidirectional::new(forward, rebuild_cell(&self.reverse, params))
    }
}

impl<T: RealField + Copy, L: RescalarLayer<T>> RescalarLayer<T> for Residual<T, L> {
    type With<U: RealField + Copy> = Residual<U, L::With<U>>;
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U> {
        let inner = self.inner.rebuild(params);
        let projection = self
            .projection
            .as_ref()
            .map(|_| params.next().expect("rebuild: missing skip_proj"));
        Residual { inner, projection }
    }
}

impl<T: RealField + Copy, L: RescalarLayer<T>> RescalarLayer<T> for Stacked<L> {
    type With<U: RealField + Copy> = Stacked<L::With<U>>;
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U> {
        Stacked {
            layers: self.layers.iter().map(|l| l.rebuild(params)).collect(),
        }
    }
}

impl<T: RealField + Copy, L: RescalarLayer<T>> RescalarLayer<T> for Dense<L> {
    type With<U: RealField + Copy> = Dense<L::With<U>>;
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U> {
        Dense {
            layers: self.layers.iter().map(|l| l.rebuild(params)).collect(),
        }
    }
}

/// Check that there are as many initial states as the layer has, each `S_i × B`.
pub(crate) fn check_states<T: RealField + Copy>(
    sizes: &[usize],
    s0: &[DMatrix<T>],
    batch: usize,
) -> Result<(), BpttError> {
    check_state_count(s0.len(), sizes.len())?;
    for (i, (s, &rows)) in s0.iter().zip(sizes).enumerate() {
        crate::error::check_shape(|| format!("s0[{i}]"), s, rows, batch)?;
    }
    Ok(())
}

/// A single vanilla cell seen by Pascanu's Ω ([`SeqLayer::omega_cell`]).
#[derive(Debug)]
pub struct OmegaCell<'a, T: RealField + Copy> {
    /// Index of `W_hh` among the layer's [`SeqLayer::params`].
    pub weight_hh: usize,
    pub w_hh: &'a DMatrix<T>,
    /// The cell's workspace: set `record_state_grads` before the backward pass, read the
    /// tape's `∂L/∂a_k` ([`Tape::d_projection`]) and `∂L/∂h_k` ([`Tape::d_state`]) after it.
    pub workspace: &'a mut CellWorkspace<T>,
}

/// A cell run forward in time over the sequence: the building block of every architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct Unidirectional<C> {
    pub cell: C,
}

impl<C> Unidirectional<C> {
    pub fn new(cell: C) -> Self {
        Unidirectional { cell }
    }
}

/// The workspace of one direction of one layer: the engine's tape and the input gradient.
#[derive(Clone, Debug)]
pub struct CellWorkspace<T: RealField + Copy> {
    pub tape: Tape<T>,
    pub dx: DMatrix<T>,
    /// Keep every `∂L/∂s_k` of the backward pass in the tape ([`Tape::d_state`]): what
    /// Pascanu's Ω reads (off by default: the pass then stores only the running gradient).
    pub record_state_grads: bool,
}

impl<T: RealField + Copy> Default for CellWorkspace<T> {
    fn default() -> Self {
        CellWorkspace {
            tape: Tape::default(),
            dx: DMatrix::zeros(0, 0),
            record_state_grads: false,
        }
    }
}

impl<T: RealField + Copy> CellWorkspace<T> {
    /// One cell's forward pass through the engine.
    pub(crate) fn forward<C: Cell<T>>(
        &mut self,
        cell: &C,
        x: Inputs<'_, T>,
        s0: MatRef<'_, T>,
    ) -> Result<(), BpttError> {
        engine::forward(cell, x, s0, &mut self.tape, None)
    }

    /// One cell's backward pass through the engine (full BPTT): parameter gradients into
    /// `grads`, `∂L/∂x` into `dx` with `want_dx`.
    pub(crate) fn backward<C: Cell<T>>(
        &mut self,
        cell: &C,
        x: Inputs<'_, T>,
        d_outputs: Option<MatRef<'_, T>>,
        d_final: Option<MatRef<'_, T>>,
        grads: &mut [DMatrix<T>],
        want_dx: bool,
    ) -> Result<(), BpttError> {
        let up = engine::Upstream {
            d_outputs,
            d_last: None,
            d_final,
        };
        let want = Want {
            params: true,
            inputs: want_dx,
            states: self.record_state_grads,
        };
        engine::backward(
            cell,
            x,
            &mut self.tape,
            &up,
            Truncation::Full,
            want,
            Some(grads),
            want_dx.then_some(&mut self.dx),
        )
    }

    /// Final state `s_T`.
    pub(crate) fn final_state(&self) -> MatRef<'_, T> {
        self.tape.state(self.tape.steps())
    }

    pub(crate) fn kink_pattern<C: Cell<T>>(&self, cell: &C, out: &mut Vec<bool>) {
        cell.kink_pattern(self.tape.slab(), out);
    }

    pub(crate) fn conditioning<C: Cell<T>>(&self, cell: &C) -> f64 {
        let (steps, batch) = (self.tape.steps(), self.tape.batch());
        cell.conditioning(
            self.tape.slab(),
            self.tape.states().col_block(batch, steps * batch),
        )
    }
}

/// Check a slab pass's initial states: one per state, each `S_i × B`.
pub(crate) fn check_views<T: Copy>(sizes: &[usize], s0: &[MatRef<'_, T>]) -> Result<(), BpttError> {
    check_state_count(s0.len(), sizes.len())?;
    let batch = s0.first().map_or(0, |s| s.cols());
    for (i, (s, &rows)) in s0.iter().zip(sizes).enumerate() {
        if (s.rows(), s.cols()) != (rows, batch) {
            return Err(BpttError::Shape {
                what: format!("s0[{i}]"),
                expected: (rows, batch),
                got: (s.rows(), s.cols()),
            });
        }
    }
    Ok(())
}

impl<T: RealField + Copy, C: Cell<T>> SeqLayer<T> for Unidirectional<C> {
    type Workspace = CellWorkspace<T>;

    fn name(&self) -> String {
        self.cell.name()
    }
    fn input_size(&self) -> usize {
        self.cell.input_size()
    }
    fn output_size(&self) -> usize {
        self.cell.hidden_size()
    }
    fn state_sizes(&self) -> Vec<usize> {
        vec![self.cell.state_size()]
    }
    fn state_count(&self) -> usize {
        1
    }
    fn state_labels(&self, layer: usize) -> Vec<String> {
        vec![format!("l{layer}")]
    }
    fn state_blocks(&self) -> Vec<&'static str> {
        self.cell.state_names()
    }
    fn state_block_rows(&self) -> usize {
        self.cell.hidden_size()
    }
    fn param_names(&self, layer: usize) -> Vec<String> {
        let sfx = suffix(layer, false);
        self.cell
            .params()
            .names()
            .iter()
            .map(|n| format!("{n}{sfx}"))
            .collect()
    }
    fn params(&self) -> Vec<&DMatrix<T>> {
        self.cell.params().iter().map(|(_, m)| m).collect()
    }
    fn params_mut(&mut self) -> Vec<&mut DMatrix<T>> {
        self.cell.params_mut().tensors_mut().collect()
    }
    fn param_tensors(&self) -> usize {
        self.cell.params().len()
    }
    fn for_each_param(&self, f: &mut dyn FnMut(&DMatrix<T>)) {
        self.cell.params().iter().for_each(|(_, m)| f(m));
    }
    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(&mut DMatrix<T>)) {
        self.cell.params_mut().tensors_mut().for_each(f);
    }

    fn forward_slab(
        &self,
        x: Inputs<'_, T>,
        s0: &[MatRef<'_, T>],
        ws: &mut Self::Workspace,
    ) -> Result<(), BpttError> {
        check_state_count(s0.len(), 1)?;
        ws.forward(&self.cell, x, s0[0])
    }
    fn outputs<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        ws.tape.outputs()
    }
    fn final_state<'a>(&self, ws: &'a Self::Workspace, _i: usize) -> MatRef<'a, T> {
        ws.final_state()
    }

    fn backward_slab(
        &self,
        x: Inputs<'_, T>,
        ws: &mut Self::Workspace,
        up: &LayerUpstream<'_, T>,
        grads: &mut [DMatrix<T>],
        want_dx: bool,
    ) -> Result<(), BpttError> {
        let d_final = up.d_finals.first().copied();
        ws.backward(&self.cell, x, up.d_outputs, d_final, grads, want_dx)
    }
    fn d_input<'a>(&self, ws: &'a Self::Workspace) -> MatRef<'a, T> {
        MatRef::from(&ws.dx)
    }
    fn d_initial<'a>(&self, ws: &'a Self::Workspace, _i: usize) -> MatRef<'a, T> {
        ws.tape.d_state(0)
    }

    fn kink_pattern(&self, ws: &Self::Workspace, out: &mut Vec<bool>) {
        ws.kink_pattern(&self.cell, out);
    }

    fn conditioning(&self, ws: &Self::Workspace) -> f64 {
        ws.conditioning(&self.cell)
    }

    fn omega_cell<'a>(&'a self, ws: &'a mut Self::Workspace) -> Option<OmegaCell<'a, T>> {
        self.cell.omega_applies().then(|| OmegaCell {
            weight_hh: crate::nn::cell::WEIGHT_HH,
            w_hh: &self.cell.params()[crate::nn::cell::WEIGHT_HH],
            workspace: ws,
        })
    }
}

/// How to build one direction of one layer of a cell type from a PyTorch state_dict:
/// `(state_dict, layer, reverse) -> cell`. E.g. `|sd, l, r| Lstm::from_state_dict(sd, l, r, ())`.
pub trait LoadCell<T: RealField + Copy, C: Cell<T>>:
    Fn(&StateDict, usize, bool) -> Result<C, BpttError>
{
}
impl<T: RealField + Copy, C: Cell<T>, F: Fn(&StateDict, usize, bool) -> Result<C, BpttError>>
    LoadCell<T, C> for F
{
}
