//! A recurrent cell with a linear readout and a loss: the whole differentiable function
//! `L(θ_cell, θ_readout, x_0..x_{T−1}, s_0)` that training and the gradient checker see.

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::arch::{LayerGrads, ParamsRef, SeqLayer};
use crate::nn::cell::Cell;
use crate::nn::params::Params;
use crate::nn::readout::{Readout, mse, softmax_cross_entropy, softmax_cross_entropy_magnitude};
use crate::nn::sequence::{self, Trajectory, Truncation, Upstream};

/// Where the loss reads the outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LossAt {
    /// Only `h_T` (e.g. sequence classification).
    Last,
    /// Every `h_1 ..= h_T`; the per-step losses are summed.
    EveryStep,
}

/// Targets of the loss, one entry per step the loss reads (1 for [`LossAt::Last`], T for
/// [`LossAt::EveryStep`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Targets<T: RealField + Copy> {
    /// Mean squared error against `O × B` targets.
    Mse(Vec<DMatrix<T>>),
    /// Softmax cross-entropy against one class index per sequence of the batch.
    CrossEntropy(Vec<Vec<usize>>),
}

/// The loss of a model: what it compares, and at which steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective<T: RealField + Copy> {
    pub targets: Targets<T>,
    pub at: LossAt,
}

impl<T: RealField + Copy> Objective<T> {
    fn target_count(&self) -> usize {
        match &self.targets {
            Targets::Mse(v) => v.len(),
            Targets::CrossEntropy(v) => v.len(),
        }
    }

    /// `(L_i, ∂L_i/∂y)` for the i-th target.
    fn loss(&self, i: usize, y: &DMatrix<T>) -> Result<(T, DMatrix<T>), BpttError> {
        match &self.targets {
            Targets::Mse(v) => mse(y, &v[i]),
            Targets::CrossEntropy(v) => softmax_cross_entropy(y, &v[i]),
        }
    }

    /// The magnitude with which rounding errors of the i-th loss term scale: the loss itself
    /// for MSE (a sum of squares), the sum of the cancelling terms for cross-entropy.
    fn magnitude(&self, i: usize, y: &DMatrix<T>) -> Result<T, BpttError> {
        match &self.targets {
            Targets::Mse(v) => Ok(mse(y, &v[i])?.0),
            Targets::CrossEntropy(v) => Ok(softmax_cross_entropy_magnitude(y, &v[i])),
        }
    }

    /// The 0-based steps whose outputs the loss reads, paired with their target index.
    fn read_steps(&self, steps: usize) -> Result<Vec<(usize, usize)>, BpttError> {
        if steps == 0 {
            return Err(BpttError::Invalid(
                "a loss needs a sequence of at least one step".into(),
            ));
        }
        let (wanted, pairs): (usize, Vec<(usize, usize)>) = match self.at {
            LossAt::Last => (1, vec![(steps - 1, 0)]),
            LossAt::EveryStep => (steps, (0..steps).map(|t| (t, t)).collect()),
        };
        if self.target_count() != wanted {
            return Err(BpttError::Invalid(format!(
                "{} targets given; the loss at {:?} of {steps} steps needs {wanted}",
                self.target_count(),
                self.at
            )));
        }
        Ok(pairs)
    }
}

/// A cell followed by a linear readout.
#[derive(Clone, Debug, PartialEq)]
pub struct Model<T: RealField + Copy, C: Cell<T>> {
    pub cell: C,
    pub readout: Readout<T>,
}

/// Every gradient of a [`Model`]'s loss.
#[derive(Clone, Debug)]
pub struct ModelGrads<T: RealField + Copy> {
    /// `∂L/∂θ_cell`, shaped like the cell's parameters.
    pub cell: Params<T>,
    /// `∂L/∂θ_readout`.
    pub readout: Params<T>,
    /// `∂L/∂x_t`, t = 0..T.
    pub dxs: Vec<DMatrix<T>>,
    /// `∂L/∂s_k`, k = 0..=T (see [`sequence::SequenceGrads::d_states`]).
    pub d_states: Vec<DMatrix<T>>,
}

impl<T: RealField + Copy> ModelGrads<T> {
    /// The parameter gradients as groups, for [`crate::train::clip`] and optimizers.
    pub fn param_groups_mut(&mut self) -> [&mut Params<T>; 2] {
        [&mut self.cell, &mut self.readout]
    }
}

impl<T: RealField + Copy> NetworkGrads<T> {
    /// The parameter gradients as groups, for [`crate::train::clip`] and optimizers.
    pub fn param_groups_mut(&mut self) -> [&mut Params<T>; 2] {
        [&mut self.params, &mut self.readout]
    }
}

impl<T: RealField + Copy, C: Cell<T>> Model<T, C> {
    pub fn new(cell: C, readout: Readout<T>) -> Result<Self, BpttError> {
        if readout.input_size() != cell.hidden_size() {
            return Err(BpttError::Invalid(format!(
                "readout reads {} units but the cell has hidden size {}",
                readout.input_size(),
                cell.hidden_size()
            )));
        }
        Ok(Model { cell, readout })
    }

    /// The loss (forward only).
    pub fn loss(
        &self,
        xs: &[DMatrix<T>],
        s0: &DMatrix<T>,
        objective: &Objective<T>,
    ) -> Result<T, BpttError> {
        let traj = sequence::forward(&self.cell, xs, s0)?;
        Ok(self.readout_loss(&traj, objective, None)?.0)
    }

    /// The loss of the forward pass with the states at the cuts of `truncation` replaced by the
    /// constants `fixed_states` (see [`sequence::forward_detached`]); also returns the trajectory.
    pub fn loss_detached(
        &self,
        xs: &[DMatrix<T>],
        s0: &DMatrix<T>,
        objective: &Objective<T>,
        truncation: Truncation,
        fixed_states: &[DMatrix<T>],
    ) -> Result<(T, Trajectory<T, C>), BpttError> {
        let traj = sequence::forward_detached(&self.cell, xs, s0, truncation, fixed_states)?;
        let loss = self.readout_loss(&traj, objective, None)?.0;
        Ok((loss, traj))
    }

    /// `Λ`, the magnitude with which rounding errors in the computed loss scale (the loss for
    /// MSE; for cross-entropy the sum of the absolute values of the terms whose difference is
    /// the loss, which can be huge while the loss is tiny). Used by the gradient checker to
    /// size its absolute floor.
    pub fn loss_magnitude(
        &self,
        xs: &[DMatrix<T>],
        s0: &DMatrix<T>,
        objective: &Objective<T>,
    ) -> Result<T, BpttError> {
        let traj = sequence::forward(&self.cell, xs, s0)?;
        loss_magnitude(&self.readout, &self.outputs(&traj), objective)
    }

    /// The loss and all its gradients by (possibly truncated) BPTT.
    pub fn loss_and_grads(
        &self,
        xs: &[DMatrix<T>],
        s0: &DMatrix<T>,
        objective: &Objective<T>,
        truncation: Truncation,
    ) -> Result<(T, ModelGrads<T>), BpttError> {
        let traj = sequence::forward(&self.cell, xs, s0)?;
        let mut readout_grads = self.readout.params().zeros_like();
        let (loss, upstream) = self.readout_loss(&traj, objective, Some(&mut readout_grads))?;
        let g = sequence::backward(&self.cell, &traj, &upstream, truncation)?;
        Ok((
            loss,
            ModelGrads {
                cell: g.params,
                readout: readout_grads,
                dxs: g.dxs,
                d_states: g.d_states,
            },
        ))
    }

    /// The outputs `h_1..h_T` of a trajectory.
    fn outputs(&self, traj: &Trajectory<T, C>) -> Vec<DMatrix<T>> {
        (1..=traj.len())
            .map(|k| traj.output(k, self.cell.hidden_size()))
            .collect()
    }

    fn readout_loss(
        &self,
        traj: &Trajectory<T, C>,
        objective: &Objective<T>,
        grads: Option<&mut Params<T>>,
    ) -> Result<(T, Upstream<T>), BpttError> {
        let (loss, d_outputs) = readout_loss(&self.readout, &self.outputs(traj), objective, grads)?;
        Ok((
            loss,
            Upstream {
                d_outputs,
                d_final: None,
            },
        ))
    }
}

/// `∂L/∂h_{t+1}` for every step (`None` where the loss does not read the output).
pub type OutputGrads<T> = Vec<Option<DMatrix<T>>>;

/// Readout and loss over the per-step outputs `h_1..h_T` (`outputs[t]` is `h_{t+1}`) at the
/// steps the objective reads. With `grads`, also their backward: accumulates the readout's
/// gradients and returns `∂L/∂h_{t+1}` for every step the loss reads (`None` elsewhere).
pub fn readout_loss<T: RealField + Copy>(
    readout: &Readout<T>,
    outputs: &[DMatrix<T>],
    objective: &Objective<T>,
    mut grads: Option<&mut Params<T>>,
) -> Result<(T, OutputGrads<T>), BpttError> {
    if let Some(o) = outputs.first() {
        crate::error::check_shape(
            || "readout input".into(),
            o,
            readout.input_size(),
            o.ncols(),
        )?;
    }
    let mut d_outputs = vec![None; outputs.len()];
    let mut loss = T::zero();
    for (t, i) in objective.read_steps(outputs.len())? {
        let y = readout.forward(&outputs[t]);
        let (l, dy) = objective.loss(i, &y)?;
        loss += l;
        if let Some(g) = grads.as_deref_mut() {
            d_outputs[t] = Some(readout.backward(&dy, &outputs[t], g));
        }
    }
    Ok((loss, d_outputs))
}

/// `Λ` of the loss over `outputs` (see [`Model::loss_magnitude`]).
pub fn loss_magnitude<T: RealField + Copy>(
    readout: &Readout<T>,
    outputs: &[DMatrix<T>],
    objective: &Objective<T>,
) -> Result<T, BpttError> {
    let mut total = T::zero();
    for (t, i) in objective.read_steps(outputs.len())? {
        total += objective.magnitude(i, &readout.forward(&outputs[t]))?;
    }
    Ok(total)
}

/// A sequence-level network ([`SeqLayer`]: stacked, bidirectional, residual, dense) followed by
/// a linear readout.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkModel<T: RealField + Copy, N: SeqLayer<T>> {
    pub net: N,
    pub readout: Readout<T>,
}

/// Every gradient of a [`NetworkModel`]'s loss.
#[derive(Clone, Debug)]
pub struct NetworkGrads<T: RealField + Copy> {
    /// `∂L/∂θ_net`: named, ordered and shaped as the network's parameters ([`SeqLayer::params`]).
    pub params: Params<T>,
    /// `∂L/∂θ_readout`.
    pub readout: Params<T>,
    /// `∂L/∂x_t`.
    pub dxs: Vec<DMatrix<T>>,
    /// `∂L/∂s0` for every initial state, in PyTorch's `h_n` order.
    pub d_s0: Vec<DMatrix<T>>,
}

impl<T: RealField + Copy, N: crate::nn::arch::RescalarLayer<T>> NetworkModel<T, N> {
    /// The same model in another scalar `U` (every parameter through f64: exact from f32 to
    /// f64, rounded to nearest from f64 to f32) — e.g. f64-drawn weights trained in f32.
    #[must_use]
    pub fn rescalar<U: RealField + Copy>(&self) -> NetworkModel<U, N::With<U>> {
        let params = self.net.params();
        let mut params = params.tensors().map(crate::nn::params::rescalar_matrix);
        NetworkModel {
            net: self.net.rebuild(&mut params),
            readout: self.readout.rescalar(),
        }
    }
}

impl<T: RealField + Copy, N: SeqLayer<T>> NetworkModel<T, N> {
    pub fn new(net: N, readout: Readout<T>) -> Result<Self, BpttError> {
        if readout.input_size() != net.output_size() {
            return Err(BpttError::Invalid(format!(
                "readout reads {} units but the network outputs {}",
                readout.input_size(),
                net.output_size()
            )));
        }
        Ok(NetworkModel { net, readout })
    }

    /// The network's parameters, named as PyTorch names them (`weight_ih_l0`, …,
    /// `bias_hh_l1_reverse`), in order: a view borrowing the cells' matrices, nothing copied
    /// ([`ParamsRef::to_params`] makes the copy).
    #[must_use]
    pub fn net_params(&self) -> ParamsRef<'_, T> {
        self.net.params()
    }

    /// The loss (forward only); also returns the forward cache.
    pub fn loss(
        &self,
        xs: &[DMatrix<T>],
        s0: &[DMatrix<T>],
        objective: &Objective<T>,
    ) -> Result<(T, crate::nn::arch::Recorded<T, N::Workspace>), BpttError> {
        let (ys, _, cache) = self.net.forward(xs, s0)?;
        Ok((readout_loss(&self.readout, &ys, objective, None)?.0, cache))
    }

    /// `Λ` of the loss (see [`Model::loss_magnitude`]).
    pub fn loss_magnitude(
        &self,
        xs: &[DMatrix<T>],
        s0: &[DMatrix<T>],
        objective: &Objective<T>,
    ) -> Result<T, BpttError> {
        let (ys, _, _) = self.net.forward(xs, s0)?;
        loss_magnitude(&self.readout, &ys, objective)
    }

    /// The loss and all its gradients.
    pub fn loss_and_grads(
        &self,
        xs: &[DMatrix<T>],
        s0: &[DMatrix<T>],
        objective: &Objective<T>,
    ) -> Result<(T, NetworkGrads<T>), BpttError> {
        let (ys, finals, cache) = self.net.forward(xs, s0)?;
        let mut readout_grads = self.readout.params().zeros_like();
        let (loss, d_ys) = readout_loss(&self.readout, &ys, objective, Some(&mut readout_grads))?;
        let d_ys: Vec<DMatrix<T>> = d_ys
            .into_iter()
            .zip(&ys)
            .map(|(d, y)| d.unwrap_or_else(|| DMatrix::zeros(y.nrows(), y.ncols())))
            .collect();
        let d_finals: Vec<DMatrix<T>> = finals
            .iter()
            .map(|f| DMatrix::zeros(f.nrows(), f.ncols()))
            .collect();
        let LayerGrads { params, dxs, d_s0 } = self.net.backward(&cache, &d_ys, &d_finals);
        Ok((
            loss,
            NetworkGrads {
                params,
                readout: readout_grads,
                dxs,
                d_s0,
            },
        ))
    }
}
