//! Architectures: sequence-level layers and the wrappers that compose them.
//!
//! A [`SeqLayer`] maps a whole input sequence (T matrices `D × B`) and its initial states to a
//! whole output sequence (T matrices `O × B`) and final states, and back-propagates through it.
//! Cells become layers through [`Unidirectional`] or [`Bidirectional`]; [`Residual`] adds a skip
//! connection around any layer; [`Stacked`] and [`Dense`] compose layers in depth. So a
//! PyTorch `nn.LSTM(num_layers=2, bidirectional=True)` is
//! `Stacked<Bidirectional<Lstm<T>>>`, and a residual stack is `Stacked<Residual<…>>`.
//!
//! A layer's parameters stay in its cells; [`SeqLayer::params`] names them all, in order, with
//! PyTorch's names and layer suffixes (`weight_ih_l1`, `bias_hh_l0_reverse`) in a borrowed view
//! ([`ParamsRef`]), and its gradients are a [`Params`] of the same names, order and shapes.
//! Initial and final states are listed in PyTorch's `h_n` order (layer-major, forward before
//! reverse).

mod bidirectional;
mod dense;
pub(crate) mod list;
mod residual;
mod stacked;
mod view;

pub use bidirectional::Bidirectional;
pub use dense::Dense;
pub use residual::Residual;
pub use stacked::Stacked;
pub use view::{ParamName, ParamsMut, ParamsRef};

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::cell::Cell;
use crate::nn::engine::{self, Inputs, MatRef, Tape, Want};
use crate::nn::import::StateDict;
use crate::nn::params::Params;
use crate::nn::sequence::{self, Truncation};

/// `(outputs, final states, record)`: what [`SeqLayer::forward`] returns.
pub type ForwardResult<T, W> =
    Result<(Vec<DMatrix<T>>, Vec<DMatrix<T>>, Recorded<T, W>), BpttError>;

/// Every gradient of a layer's pass: what [`SeqLayer::backward`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerGrads<T: RealField + Copy> {
    /// `∂L/∂θ`, named, ordered and shaped as [`SeqLayer::params`].
    pub params: Params<T>,
    /// `∂L/∂x_t` for every t (`D × B`).
    pub dxs: Vec<DMatrix<T>>,
    /// `∂L/∂s0` for every initial state (`S_i × B`), in PyTorch's `h_n` order.
    pub d_s0: Vec<DMatrix<T>>,
}

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
    /// Visit every parameter in order with its PyTorch name when this is layer `layer`
    /// (`weight_ih_l{layer}`, …, `_reverse` for a reverse direction), allocating nothing: the
    /// order and names of [`SeqLayer::params`], of the gradients and of the optimizer's state.
    fn for_each_param<'a>(&'a self, layer: usize, f: &mut dyn FnMut(ParamName<'a>, &'a DMatrix<T>));
    /// Visit every parameter mutably, same order (names and shapes must not change).
    fn for_each_param_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut DMatrix<T>));

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
    /// accumulates the parameter gradients into `grads`, the matrices of a gradient [`Params`]
    /// (`params().zeros_like()`, passed as [`Params::as_mut_slice`]: one per parameter, in
    /// [`SeqLayer::params`] order and shapes, so that a wrapper hands each inner layer its
    /// range), and leaves `∂L/∂s0` ([`SeqLayer::d_initial`]) and, with `want_dx` (dense inputs
    /// only), `∂L/∂x` ([`SeqLayer::d_input`]) in `ws`.
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

    /// The parameters, named as PyTorch names them (this layer as layer 0), in order: a view
    /// borrowing the cells' matrices (nothing is copied).
    #[must_use]
    fn params(&self) -> ParamsRef<'_, T> {
        let mut view = ParamsRef::new();
        self.for_each_param(0, &mut |name, m| {
            view.push(name, m);
        });
        view
    }

    /// The parameters, named, mutable: the view of [`SeqLayer::params`] with `&mut` matrices.
    #[must_use]
    fn params_mut(&mut self) -> ParamsMut<'_, T> {
        let names = self.params().into_names();
        let mut tensors = Vec::with_capacity(names.len());
        self.for_each_param_mut(&mut |m| tensors.push(m));
        ParamsMut::new(names, tensors)
    }

    /// Number of parameter matrices (`params().len()`, without allocating).
    fn param_tensors(&self) -> usize {
        let mut n = 0;
        self.for_each_param(0, &mut |_, _| n += 1);
        n
    }

    /// Number of trainable scalars.
    fn parameter_count(&self) -> usize {
        let mut n = 0;
        self.for_each_param(0, &mut |_, m| n += m.len());
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
    /// `∂L/∂final states`, every gradient ([`LayerGrads`]: `∂L/∂θ` as a [`Params`] named as
    /// [`SeqLayer::params`], `∂L/∂xs`, `∂L/∂s0`).
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
        let mut params = self.params().zeros_like();
        let up = LayerUpstream {
            d_outputs: Some(MatRef::from(&d_out)),
            d_finals: &finals,
        };
        self.backward_slab(
            Inputs::Dense(MatRef::from(&rec.x)),
            &mut ws,
            &up,
            params.as_mut_slice(),
            true,
        )
        .expect("shapes fixed by the forward pass");
        let dxs = sequence::unpack(self.d_input(&ws), batch);
        let d_s0 = (0..self.state_count())
            .map(|i| self.d_initial(&ws, i).to_owned())
            .collect();
        LayerGrads { params, dxs, d_s0 }
    }
}

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
    fn for_each_param<'a>(
        &'a self,
        layer: usize,
        f: &mut dyn FnMut(ParamName<'a>, &'a DMatrix<T>),
    ) {
        for (name, m) in self.cell.params().iter() {
            f(ParamName::new(name, layer, false), m);
        }
    }
    fn for_each_param_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut DMatrix<T>)) {
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
