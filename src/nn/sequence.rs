//! Unrolling a cell over time, and backpropagation through time (BPTT).
//!
//! ```text
//! s_0 ──step(x_0)──▶ s_1 ──step(x_1)──▶ s_2 ⋯ ──step(x_{T−1})──▶ s_T
//!                     │                   │                        │
//!                    h_1                 h_2                      h_T   (per-step outputs)
//! ```
//!
//! Step `t` (0-based) reads `x_t` and maps `s_t` to `s_{t+1}`; its output is `h_{t+1}`, the
//! first H rows of `s_{t+1}`. The backward pass returns, besides parameter and input gradients,
//! the per-step gradient `∂L/∂s_k` for every `k = 0..=T` — the quantity whose decay with
//! `T − k` every vanishing-gradient experiment measures.

use std::marker::PhantomData;

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::error::check_shape;
use crate::nn::cell::Cell;
use crate::nn::engine::{self, Inputs, MatRef, Tape, Want};
use crate::nn::params::Params;

/// The forward pass over a sequence, as the engine saved it: every state and every step's tape
/// columns (see [`crate::nn::engine`]), with the inputs packed as one `D × T·B` matrix.
#[derive(Clone, Debug)]
pub struct Trajectory<T: RealField + Copy, C: Cell<T>> {
    /// The engine's workspace after the forward pass.
    pub tape: Tape<T>,
    /// `[x_0 … x_{T−1}]`, D × T·B.
    pub x: DMatrix<T>,
    cell: PhantomData<C>,
}

impl<T: RealField + Copy, C: Cell<T>> Trajectory<T, C> {
    /// Number of steps T.
    pub fn len(&self) -> usize {
        self.tape.steps()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The state `s_k` (`S × B`), k = 0..=T.
    pub fn state(&self, k: usize) -> DMatrix<T> {
        self.tape.state(k).to_owned()
    }
    /// Every state `s_0 … s_T` as T + 1 matrices `S × B`.
    pub fn states(&self) -> Vec<DMatrix<T>> {
        (0..=self.len()).map(|k| self.state(k)).collect()
    }
    /// The output `h_k` of the state `s_k` (its first H rows), `H × B`.
    pub fn output(&self, k: usize, hidden_size: usize) -> DMatrix<T> {
        self.tape.state(k).row_block(0, hidden_size).to_owned()
    }
    /// The cell's kink pattern over every step (see [`Cell::kink_pattern`]).
    pub fn kink_pattern(&self, cell: &C, out: &mut Vec<bool>) {
        cell.kink_pattern(self.tape.slab(), out);
    }
    /// Max rounding amplification κ over every step (see [`Cell::conditioning`]).
    pub fn conditioning(&self, cell: &C) -> f64 {
        let (steps, batch) = (self.tape.steps(), self.tape.batch());
        let states = self.tape.states().col_block(batch, steps * batch);
        cell.conditioning(self.tape.slab(), states)
    }
}

/// `[x_0 … x_{T−1}]` as one `D × T·B` matrix (column `t·B + b`).
pub fn pack<T: RealField + Copy>(xs: &[DMatrix<T>], rows: usize, batch: usize) -> DMatrix<T> {
    let mut x = DMatrix::zeros(rows, xs.len() * batch);
    for (t, m) in xs.iter().enumerate() {
        x.columns_mut(t * batch, batch).copy_from(m);
    }
    x
}

/// The column blocks of a `R × T·B` matrix as T matrices `R × B`.
pub fn unpack<T: RealField + Copy>(m: MatRef<'_, T>, batch: usize) -> Vec<DMatrix<T>> {
    (0..m.cols() / batch.max(1))
        .map(|t| m.col_block(t * batch, batch).to_owned())
        .collect()
}

/// Upstream gradients for [`backward`]: on any subset of the per-step outputs, and on the
/// final state.
#[derive(Clone, Debug)]
pub struct Upstream<T: RealField + Copy> {
    /// `d_outputs[t]` is `∂L/∂h_{t+1}` (`H × B`) for the output of step `t`, or `None` when
    /// the loss does not read that output directly. Length T.
    pub d_outputs: Vec<Option<DMatrix<T>>>,
    /// `∂L/∂s_T` (`S × B`), or `None`.
    pub d_final: Option<DMatrix<T>>,
}

impl<T: RealField + Copy> Upstream<T> {
    /// No upstream gradient anywhere, for `steps` steps (fill in what the loss reads).
    pub fn none(steps: usize) -> Self {
        Upstream {
            d_outputs: vec![None; steps],
            d_final: None,
        }
    }
}

/// How far gradients flow back in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Truncation {
    /// Full BPTT over the whole sequence.
    #[default]
    Full,
    /// Truncated BPTT with chunks of `k1` steps, as in PyTorch practice (`h.detach()` every
    /// `k1` steps): the states `s_{k1}, s_{2 k1}, …` are treated as constants when
    /// differentiating, so no gradient crosses a chunk boundary. Each chunk's loss terms
    /// reach back at most to the start of their chunk.
    Chunks(usize),
}

impl Truncation {
    /// Whether the gradient flowing from step `t` into `s_t` is cut (i.e. `s_t` is the
    /// detached start of a chunk other than the first).
    pub fn cuts_at(self, t: usize) -> bool {
        match self {
            Truncation::Full => false,
            Truncation::Chunks(k1) => t > 0 && t.is_multiple_of(k1),
        }
    }

    fn validate(self) -> Result<(), BpttError> {
        match self {
            Truncation::Chunks(0) => Err(BpttError::Invalid(
                "truncation length k1 must be at least 1".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Gradients of one sequence: parameters, inputs, and every state.
#[derive(Clone, Debug)]
pub struct SequenceGrads<T: RealField + Copy> {
    /// `∂L/∂θ`, shaped like [`Cell::params`].
    pub params: Params<T>,
    /// `∂L/∂x_t` for t = 0..T, each `D × B`.
    pub dxs: Vec<DMatrix<T>>,
    /// `∂L/∂s_k` for k = 0..=T, each `S × B`; `d_states[0]` is the gradient w.r.t. `s_0`.
    ///
    /// Under [`Truncation::Chunks`], `d_states[k]` is the gradient that enters step `k`'s
    /// backward pass (what flows through `s_k` to earlier steps); at a cut `k` that is only the
    /// upstream gradient of `s_k` itself.
    pub d_states: Vec<DMatrix<T>>,
}

impl<T: RealField + Copy> SequenceGrads<T> {
    /// `∂L/∂s_0`.
    pub fn d_s0(&self) -> &DMatrix<T> {
        &self.d_states[0]
    }
}

/// Check `xs` (each `D × B`) and `s0` (`S × B`) against `cell`; returns B.
pub fn validate_inputs<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    xs: &[DMatrix<T>],
    s0: &DMatrix<T>,
) -> Result<usize, BpttError> {
    let batch = s0.ncols();
    if batch == 0 {
        return Err(BpttError::Invalid("batch size must be at least 1".into()));
    }
    check_shape(|| "s0".into(), s0, cell.state_size(), batch)?;
    for (t, x) in xs.iter().enumerate() {
        check_shape(|| format!("x[{t}]"), x, cell.input_size(), batch)?;
    }
    Ok(batch)
}

/// Unroll `cell` over `xs` from `s0`.
pub fn forward<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    xs: &[DMatrix<T>],
    s0: &DMatrix<T>,
) -> Result<Trajectory<T, C>, BpttError> {
    forward_detached(cell, xs, s0, Truncation::Full, &[])
}

/// One step through the engine: `s_1` from `x_0` (`D × B`) and `s_0` (`S × B`).
pub fn step<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    x: &DMatrix<T>,
    s_prev: &DMatrix<T>,
) -> Result<DMatrix<T>, BpttError> {
    Ok(forward(cell, std::slice::from_ref(x), s_prev)?.state(1))
}

/// Unroll `cell` over `xs` from `s0`, replacing the state at every cut of `truncation` by the
/// constant `fixed_states[t]`.
///
/// With `fixed_states` the states of an unperturbed [`forward`], this evaluates the function
/// whose exact gradient truncated BPTT computes — the oracle the gradient checker differentiates
/// numerically. With [`Truncation::Full`] it is [`forward`].
pub fn forward_detached<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    xs: &[DMatrix<T>],
    s0: &DMatrix<T>,
    truncation: Truncation,
    fixed_states: &[DMatrix<T>],
) -> Result<Trajectory<T, C>, BpttError> {
    let batch = validate_inputs(cell, xs, s0)?;
    truncation.validate()?;
    let x = pack(xs, cell.input_size(), batch);
    let mut tape = Tape::default();
    let detach = match truncation {
        Truncation::Full => None,
        tr => Some((tr, fixed_states)),
    };
    engine::forward(
        cell,
        Inputs::Dense(MatRef::from(&x)),
        MatRef::from(s0),
        &mut tape,
        detach,
    )?;
    Ok(Trajectory {
        tape,
        x,
        cell: PhantomData,
    })
}

/// Backpropagation through time (the engine's [`engine::backward`] on a copy of the
/// trajectory's tape, with every gradient wanted).
///
/// Walks the steps in reverse; at step `t` the running gradient `ds = ∂L/∂s_{t+1}` receives the
/// upstream gradient of the output `h_{t+1}`, is recorded as `d_states[t+1]`, and is pushed
/// through [`Cell::step_backward`] to become `∂L/∂s_t`.
pub fn backward<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    trajectory: &Trajectory<T, C>,
    upstream: &Upstream<T>,
    truncation: Truncation,
) -> Result<SequenceGrads<T>, BpttError> {
    truncation.validate()?;
    let steps = trajectory.len();
    let (h, s) = (cell.hidden_size(), cell.state_size());
    let batch = trajectory.tape.batch();
    if upstream.d_outputs.len() != steps {
        return Err(BpttError::Invalid(format!(
            "upstream has {} per-step output gradients for a sequence of {steps} steps",
            upstream.d_outputs.len()
        )));
    }
    let mut d_out = DMatrix::zeros(h, steps * batch);
    for (t, d) in upstream.d_outputs.iter().enumerate() {
        if let Some(d) = d {
            check_shape(|| format!("d_outputs[{t}]"), d, h, batch)?;
            d_out.columns_mut(t * batch, batch).copy_from(d);
        }
    }
    if let Some(d) = &upstream.d_final {
        check_shape(|| "d_final".into(), d, s, batch)?;
    }
    let up = engine::Upstream {
        d_outputs: Some(MatRef::from(&d_out)),
        d_last: None,
        d_final: upstream.d_final.as_ref().map(MatRef::from),
    };
    let mut tape = trajectory.tape.clone();
    let mut params = cell.params().zeros_like();
    let mut dx = DMatrix::zeros(0, 0);
    engine::backward(
        cell,
        Inputs::Dense(MatRef::from(&trajectory.x)),
        &mut tape,
        &up,
        truncation,
        Want::ALL,
        Some(params.as_mut_slice()),
        Some(&mut dx),
    )?;
    let d_states = (0..=steps).map(|k| tape.d_state(k).to_owned()).collect();
    Ok(SequenceGrads {
        params,
        dxs: unpack(MatRef::from(&dx), batch),
        d_states,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::activation::Activation;
    use crate::nn::cell::CellFamily;
    use crate::nn::cells::vanilla::VanillaRnn;
    use crate::rng::{stream, uniform_matrix};

    #[test]
    fn bad_shapes_are_reported_by_name() {
        let cell: VanillaRnn<f64> = VanillaRnn::zeros(3, 4, Activation::Tanh);
        let xs = vec![DMatrix::zeros(3, 2), DMatrix::zeros(2, 2)];
        let err = forward(&cell, &xs, &DMatrix::zeros(4, 2)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "shape mismatch for x[1]: expected 3x2, got 2x2"
        );
        let err = forward(&cell, &xs[..1], &DMatrix::zeros(5, 2)).unwrap_err();
        assert!(err.to_string().contains("s0"));
        let traj = forward(&cell, &xs[..1], &DMatrix::zeros(4, 2)).unwrap();
        assert!(backward(&cell, &traj, &Upstream::none(2), Truncation::Full).is_err());
        assert!(backward(&cell, &traj, &Upstream::none(1), Truncation::Chunks(0)).is_err());
    }

    #[test]
    fn empty_sequence_passes_the_final_gradient_to_s0() {
        let cell: VanillaRnn<f64> = VanillaRnn::zeros(3, 4, Activation::Tanh);
        let s0 = uniform_matrix::<f64>(&mut stream(3, &[]), 4, 2, 1.0);
        let traj = forward(&cell, &[], &s0).unwrap();
        let up = Upstream {
            d_outputs: vec![],
            d_final: Some(s0.clone()),
        };
        let g = backward(&cell, &traj, &up, Truncation::Full).unwrap();
        assert_eq!(g.d_s0(), &s0);
        assert_eq!(g.params.norm(), 0.0);
    }
}
