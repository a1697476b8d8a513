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

use crate::import::{StateDict, suffix};
use crate::sequence::{self, Trajectory, Truncation, Upstream};
use crate::{BpttError, Cell};

/// `(outputs, final states, cache)`: what a layer's forward pass returns.
pub type ForwardResult<T, Cache> = Result<(Vec<DMatrix<T>>, Vec<DMatrix<T>>, Cache), BpttError>;

/// `(parameter gradients in params() order, ∂L/∂x_t for every t, ∂L/∂s0 for every state)`:
/// what a layer's backward pass returns.
pub type LayerGrads<T> = (Vec<DMatrix<T>>, Vec<DMatrix<T>>, Vec<DMatrix<T>>);

/// A layer over whole sequences, with its backward pass. Shapes: inputs `D × B`
/// ([`SeqLayer::input_size`]), outputs `O × B` ([`SeqLayer::output_size`]), initial/final states
/// `S_i × B` ([`SeqLayer::state_sizes`]).
pub trait SeqLayer<T: RealField + Copy>: Clone + Send + Sync {
    type Cache: Clone + Send + Sync;

    fn name(&self) -> String;
    fn input_size(&self) -> usize;
    fn output_size(&self) -> usize;
    /// Rows of each initial (and final) state, in PyTorch's `h_n` order.
    fn state_sizes(&self) -> Vec<usize>;
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

    /// Forward over the sequence: `(outputs, final states, cache)`. Shapes are validated.
    fn forward(&self, xs: &[DMatrix<T>], s0: &[DMatrix<T>]) -> ForwardResult<T, Self::Cache>;

    /// Backward: given `∂L/∂outputs` (T matrices) and `∂L/∂final states`, return
    /// `(parameter gradients in params() order, ∂L/∂xs, ∂L/∂s0)`.
    fn backward(
        &self,
        cache: &Self::Cache,
        d_outputs: &[DMatrix<T>],
        d_finals: &[DMatrix<T>],
    ) -> LayerGrads<T>;

    /// Sign pattern of every kink argument (ReLU pre-activations) in the forward pass.
    fn kink_pattern(&self, _cache: &Self::Cache, _out: &mut Vec<bool>) {}

    /// Max rounding amplification κ of the cells' backward passes (see [`Cell::conditioning`]).
    fn conditioning(&self, _cache: &Self::Cache) -> f64 {
        1.0
    }

    /// Number of trainable scalars.
    fn parameter_count(&self) -> usize {
        self.params().iter().map(|m| m.len()).sum()
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
    /// Where each layer's states start in the list of all states (and the total, last).
    pub fn state_offsets<T: RealField + Copy, L: SeqLayer<T>>(layers: &[L]) -> Vec<usize> {
        let mut off = vec![0];
        for l in layers {
            off.push(off.last().unwrap() + l.state_sizes().len());
        }
        off
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
    pub fn conditioning<T: RealField + Copy, L: SeqLayer<T>>(
        layers: &[L],
        caches: &[L::Cache],
    ) -> f64 {
        layers
            .iter()
            .zip(caches)
            .map(|(l, c)| l.conditioning(c))
            .fold(1.0, f64::max)
    }
    pub fn kink_pattern<T: RealField + Copy, L: SeqLayer<T>>(
        layers: &[L],
        caches: &[L::Cache],
        out: &mut Vec<bool>,
    ) {
        for (l, c) in layers.iter().zip(caches) {
            l.kink_pattern(c, out);
        }
    }
}

/// A layer that can be rebuilt over another scalar type with given parameters, in
/// [`SeqLayer::params`] order: the forward-mode (dual-number) oracle and precision checks run
/// the same generic code on it (see [`crate::cell::Rescalar`]).
pub trait RescalarLayer<T: RealField + Copy>: SeqLayer<T> {
    type With<U: RealField + Copy>: SeqLayer<U>;
    /// This layer's structure with parameters taken, in order, from `params`.
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U>;
}

/// Rebuild a cell with the next `cell.params().len()` matrices of `params`.
fn rebuild_cell<T: RealField + Copy, U: RealField + Copy, C: crate::cell::Rescalar<T>>(
    cell: &C,
    params: &mut dyn Iterator<Item = DMatrix<U>>,
) -> C::With<U> {
    let mut p = crate::Params::new();
    for name in cell.params().names() {
        p.push(
            name.clone(),
            params.next().expect("rebuild: too few parameter matrices"),
        );
    }
    cell.with_params(p)
}

impl<T: RealField + Copy, C: crate::cell::Rescalar<T>> RescalarLayer<T> for Unidirectional<C> {
    type With<U: RealField + Copy> = Unidirectional<C::With<U>>;
    fn rebuild<U: RealField + Copy>(
        &self,
        params: &mut dyn Iterator<Item = DMatrix<U>>,
    ) -> Self::With<U> {
        Unidirectional::new(rebuild_cell(&self.cell, params))
    }
}

impl<T: RealField + Copy, C: crate::cell::Rescalar<T>> RescalarLayer<T> for Bidirectional<C> {
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
    if s0.len() != sizes.len() {
        return Err(BpttError::Invalid(format!(
            "{} initial states given, the network has {}",
            s0.len(),
            sizes.len()
        )));
    }
    for (i, (s, &rows)) in s0.iter().zip(sizes).enumerate() {
        crate::error::check_shape(|| format!("s0[{i}]"), s, rows, batch)?;
    }
    Ok(())
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

/// Outputs `h_1..h_T` of a trajectory.
pub(crate) fn outputs<T: RealField + Copy, C: Cell<T>>(
    traj: &Trajectory<T, C>,
    hidden: usize,
) -> Vec<DMatrix<T>> {
    (1..=traj.len()).map(|k| traj.output(k, hidden)).collect()
}

/// Full BPTT of a trajectory with dense output gradients; `(param grads, dxs, ds0)`.
pub(crate) fn cell_backward<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    traj: &Trajectory<T, C>,
    d_outputs: &[DMatrix<T>],
    d_final: &DMatrix<T>,
) -> (Vec<DMatrix<T>>, Vec<DMatrix<T>>, DMatrix<T>) {
    let up = Upstream {
        d_outputs: d_outputs.iter().cloned().map(Some).collect(),
        d_final: Some(d_final.clone()),
    };
    let g = sequence::backward(cell, traj, &up, Truncation::Full)
        .expect("shapes fixed by the forward pass");
    let ds0 = g.d_states[0].clone();
    let params = (0..g.params.len()).map(|i| g.params[i].clone()).collect();
    (params, g.dxs, ds0)
}

impl<T: RealField + Copy, C: Cell<T>> SeqLayer<T> for Unidirectional<C> {
    type Cache = Trajectory<T, C>;

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

    fn forward(&self, xs: &[DMatrix<T>], s0: &[DMatrix<T>]) -> ForwardResult<T, Self::Cache> {
        check_states(&self.state_sizes(), s0, s0.first().map_or(0, |s| s.ncols()))?;
        let traj = sequence::forward(&self.cell, xs, &s0[0])?;
        let finals = vec![traj.state(xs.len())];
        Ok((outputs(&traj, self.cell.hidden_size()), finals, traj))
    }

    fn backward(
        &self,
        traj: &Self::Cache,
        d_outputs: &[DMatrix<T>],
        d_finals: &[DMatrix<T>],
    ) -> LayerGrads<T> {
        let (params, dxs, ds0) = cell_backward(&self.cell, traj, d_outputs, &d_finals[0]);
        (params, dxs, vec![ds0])
    }

    fn kink_pattern(&self, traj: &Self::Cache, out: &mut Vec<bool>) {
        traj.kink_pattern(&self.cell, out);
    }

    fn conditioning(&self, traj: &Self::Cache) -> f64 {
        traj.conditioning(&self.cell)
    }
}

/// How to build one direction of one layer of a cell type from a PyTorch state_dict:
/// `(state_dict, layer, reverse) -> cell`. E.g. `|sd, l, r| Lstm::from_state_dict(sd, l, r)`.
pub trait LoadCell<T: RealField + Copy, C: Cell<T>>:
    Fn(&StateDict, usize, bool) -> Result<C, BpttError>
{
}
impl<T: RealField + Copy, C: Cell<T>, F: Fn(&StateDict, usize, bool) -> Result<C, BpttError>>
    LoadCell<T, C> for F
{
}
