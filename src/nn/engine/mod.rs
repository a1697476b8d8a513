//! The engine: one forward and one backward pass through time for every [`Cell`], over
//! workspaces sized once and reused — the code every proof in `tests/` checks and every
//! experiment runs.
//!
//! Layout (batch as columns; column `t·B + b` is step t of sequence b):
//!
//! ```text
//! X       D × T·B          inputs x_0 … x_{T−1} (or token ids, gathered)
//! tape    R × T·B          per step the cell's saved values; rows 0..G·H start as the input
//!                          projection P = W_ih X + b 1ᵀ, computed for all steps in ONE GEMM
//! states  S × (T+1)·B      s_0 … s_T; the outputs h_1 … h_T are rows 0..H of blocks 1..=T
//! d_ih    G·H × T·B        ∂L/∂P for every step (d_hh beside it where the cell needs both)
//! ```
//!
//! Forward, per step: the cell's [`Cell::step_forward`] (one recurrent GEMM `W_hh h_{t−1}` for
//! all its gates, then element-wise work). Backward, per step: [`Cell::step_backward`] (element-
//! wise work, one GEMM `W_hhᵀ d`), and after the loop the parameter gradients of all steps as
//! one GEMM per weight matrix:
//!
//! ```text
//! dW_ih += d_ih Xᵀ      db_ih += d_ih 1      dX = W_ihᵀ d_ih
//! dW_hh += d_hh H_prevᵀ (Cell::recurrent_param_grads)
//! ```
//!
//! These sums over (step, sequence) are the per-step sums of the textbook BPTT in another
//! order (`proofs/engine.md`). Nothing inside the time loop allocates; a [`Tape`] allocates
//! only when it first sees a larger shape (`tests/allocations.rs`).
//!
//! ```
//! use bptt::nn::engine::{self, Inputs, MatRef, Tape, Upstream, Want};
//! use bptt::nn::cell::{Cell, CellFamily};
//! use bptt::nn::cells::lstm::Lstm;
//! use nalgebra::DMatrix;
//!
//! let cell = Lstm::<f64>::pytorch_init(3, 4, (), &mut bptt::rng::stream(1, &[]));
//! let (steps, batch) = (5, 2);
//! let x = DMatrix::from_fn(3, steps * batch, |i, j| ((i + j) as f64).sin());
//! let s0 = DMatrix::zeros(cell.state_size(), batch);
//! let mut tape = Tape::default();
//! engine::forward(&cell, Inputs::Dense(MatRef::from(&x)), MatRef::from(&s0), &mut tape, None)
//!     .unwrap();
//! // ∂(sum of h_T)/∂everything
//! let d_last = DMatrix::from_element(4, batch, 1.0);
//! let up = Upstream { d_last: Some(MatRef::from(&d_last)), ..Upstream::default() };
//! let mut grads = cell.params().zeros_like();
//! engine::backward(&cell, Inputs::Dense(MatRef::from(&x)), &mut tape, &up,
//!     Default::default(), Want::STATES, Some(grads.as_mut_slice()), None).unwrap();
//! assert!(grads.norm() > 0.0);
//! assert_eq!(tape.d_state(0).rows(), 8); // ∂L/∂[h_0; c_0]
//! ```

pub mod fastmath;
pub mod mat;

pub use mat::{MatMut, MatRef, Op, gemm};

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::cell::Cell;
use crate::nn::cell::{BIAS_IH, WEIGHT_HH, WEIGHT_IH};
use crate::nn::sequence::Truncation;

/// The inputs of a sequence, all steps at once.
#[derive(Clone, Copy, Debug)]
pub enum Inputs<'a, T> {
    /// `D × T·B`, column `t·B + b` is `x_t` of sequence b.
    Dense(MatRef<'a, T>),
    /// One symbol per (step, sequence), `ids[t·B + b] < vocab`: a one-hot input of size
    /// `vocab` whose projection is a gather of `W_ih`'s columns (no GEMM with one-hot columns)
    /// and whose weight gradient is a scatter-add.
    Tokens { ids: &'a [usize], vocab: usize },
}

impl<T: Copy> Inputs<'_, T> {
    /// D, the input size.
    pub fn size(&self) -> usize {
        match self {
            Inputs::Dense(x) => x.rows(),
            Inputs::Tokens { vocab, .. } => *vocab,
        }
    }
    /// T·B, the number of columns.
    pub fn columns(&self) -> usize {
        match self {
            Inputs::Dense(x) => x.cols(),
            Inputs::Tokens { ids, .. } => ids.len(),
        }
    }
    /// Columns `start .. start + n` (e.g. a chunk of steps: `start = t₀·B`, `n = len·B`).
    ///
    /// # Panics
    /// If the range is out of bounds.
    #[must_use]
    pub fn col_block(self, start: usize, n: usize) -> Self {
        match self {
            Inputs::Dense(x) => Inputs::Dense(x.col_block(start, n)),
            Inputs::Tokens { ids, vocab } => Inputs::Tokens {
                ids: &ids[start..start + n],
                vocab,
            },
        }
    }
}

/// Upstream gradients for [`backward`]; every field optional.
#[derive(Clone, Copy, Debug)]
pub struct Upstream<'a, T> {
    /// `∂L/∂h_{t+1}` for every step, `H × T·B` (column block t for step t's output).
    pub d_outputs: Option<MatRef<'a, T>>,
    /// `∂L/∂h_T` of the last output only, `H × B` (added to `d_outputs`' last block).
    pub d_last: Option<MatRef<'a, T>>,
    /// `∂L/∂s_T`, `S × B`.
    pub d_final: Option<MatRef<'a, T>>,
}

impl<T> Default for Upstream<'_, T> {
    fn default() -> Self {
        Upstream {
            d_outputs: None,
            d_last: None,
            d_final: None,
        }
    }
}

/// What [`backward`] computes besides `∂L/∂s_0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// Parameter gradients (needs `grads`).
    pub params: bool,
    /// `∂L/∂X` (needs `dx`; dense inputs only).
    pub inputs: bool,
    /// Record `∂L/∂s_k` for every k = 0..=T ([`Tape::d_state`]).
    pub states: bool,
}

impl Want {
    /// Parameter gradients only (training).
    pub const PARAMS: Want = Want {
        params: true,
        inputs: false,
        states: false,
    };
    /// Parameter gradients and every state gradient.
    pub const STATES: Want = Want {
        params: true,
        inputs: false,
        states: true,
    };
    /// Every state gradient, no parameter gradients (the spectral sweep).
    pub const STATES_ONLY: Want = Want {
        params: false,
        inputs: false,
        states: true,
    };
    /// Everything.
    pub const ALL: Want = Want {
        params: true,
        inputs: true,
        states: true,
    };
}

/// The workspace of one sequence-level pass: every slab the forward pass saves and the backward
/// pass reads, sized for (cell, T, B) on first use and reused while the shapes fit.
#[derive(Clone, Debug)]
pub struct Tape<T: RealField + Copy> {
    steps: usize,
    batch: usize,
    hidden: usize,
    /// `s_0 … s_T`, S × (T+1)·B.
    states: DMatrix<T>,
    /// The cell's per-step values, R × T·B.
    slab: DMatrix<T>,
    /// `∂L/∂P` per step, G·H × T·B (× B when no parameter or input gradient is wanted).
    d_ih: DMatrix<T>,
    /// `∂L/∂(recurrent GEMM output)` where it differs from `d_ih`.
    d_hh: DMatrix<T>,
    /// Running `∂L/∂s_t` and `∂L/∂s_{t−1}`, S × B.
    ds: DMatrix<T>,
    ds_prev: DMatrix<T>,
    /// `∂L/∂s_0 … ∂L/∂s_T`, S × (T+1)·B, when recorded.
    d_states: DMatrix<T>,
    /// Whether the last backward pass recorded `d_states`.
    states_recorded: bool,
    /// `W_hhᵀ`, H × G·H, transposed once per backward pass.
    w_hh_t: DMatrix<T>,
    /// Bias of the input projection and the row sums of `d_ih` and `d_hh` (G·H each).
    bias: Vec<T>,
    sums_ih: Vec<T>,
    sums_hh: Vec<T>,
}

impl<T: RealField + Copy> Default for Tape<T> {
    fn default() -> Self {
        let e = || DMatrix::zeros(0, 0);
        Tape {
            steps: 0,
            batch: 0,
            hidden: 0,
            states: e(),
            slab: e(),
            d_ih: e(),
            d_hh: e(),
            ds: e(),
            ds_prev: e(),
            d_states: e(),
            states_recorded: false,
            w_hh_t: e(),
            bias: Vec::new(),
            sums_ih: Vec::new(),
            sums_hh: Vec::new(),
        }
    }
}

/// Reshape `m` to `rows × cols`, reusing its storage (no copy; reallocating only when the
/// capacity is too small). The entries are unspecified afterwards: every user overwrites them.
pub(crate) fn ensure<T: RealField + Copy>(m: &mut DMatrix<T>, rows: usize, cols: usize) {
    if m.shape() != (rows, cols) {
        let taken = std::mem::replace(m, DMatrix::zeros(0, 0));
        let mut data: Vec<T> = taken.data.into();
        data.resize(rows * cols, T::zero());
        *m = DMatrix::from_vec(rows, cols, data);
    }
}

impl<T: RealField + Copy> Tape<T> {
    /// T, the number of steps of the last forward pass.
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// B, the batch of the last forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// `s_k`, S × B (k = 0..=T).
    pub fn state(&self, k: usize) -> MatRef<'_, T> {
        MatRef::from(&self.states).col_block(k * self.batch, self.batch)
    }
    /// Every state `s_0 … s_T`, S × (T+1)·B.
    pub fn states(&self) -> MatRef<'_, T> {
        MatRef::from(&self.states)
    }
    /// The outputs `h_1 … h_T`, H × T·B (rows 0..H of the states after s_0).
    pub fn outputs(&self) -> MatRef<'_, T> {
        MatRef::from(&self.states)
            .row_block(0, self.hidden)
            .col_block(self.batch, self.steps * self.batch)
    }
    /// The output `h_k`, H × B (k = 1..=T).
    pub fn output(&self, k: usize) -> MatRef<'_, T> {
        self.state(k).row_block(0, self.hidden)
    }
    /// The cell's saved values of every step, R × T·B.
    pub fn slab(&self) -> MatRef<'_, T> {
        MatRef::from(&self.slab)
    }
    /// `∂L/∂s_k` (S × B) from the last [`backward`] with [`Want::states`]; k = 0 is always
    /// available.
    pub fn d_state(&self, k: usize) -> MatRef<'_, T> {
        if self.states_recorded {
            MatRef::from(&self.d_states).col_block(k * self.batch, self.batch)
        } else {
            assert_eq!(k, 0, "state gradients were not recorded (Want::states)");
            MatRef::from(&self.ds)
        }
    }
    /// `∂L/∂P` of every step (the gradient of the input projection `W_ih x_t + b_ih`),
    /// G·H × T·B, from the last [`backward`] with parameter or input gradients.
    pub fn d_projection(&self) -> &DMatrix<T> {
        &self.d_ih
    }

    fn resize_forward<C: Cell<T>>(&mut self, cell: &C, steps: usize, batch: usize) {
        self.steps = steps;
        self.batch = batch;
        self.hidden = cell.hidden_size();
        self.states_recorded = false;
        ensure(&mut self.states, cell.state_size(), (steps + 1) * batch);
        ensure(&mut self.slab, cell.tape_rows(), steps * batch);
        self.bias.resize(cell.gate_rows(), T::zero());
        self.sums_ih.resize(cell.gate_rows(), T::zero());
        self.sums_hh.resize(cell.gate_rows(), T::zero());
    }
}

/// The running state gradients of the backward step into `s_{k−1}`: `(∂L/∂s_k, ∂L/∂s_{k−1})`
/// as views of the recorded `d_states` blocks k and k − 1 (`recorded`), or of the two
/// buffers `ds`, `ds_prev` (then the caller swaps them after the step). With k = T on entry
/// only the first is used.
#[allow(clippy::too_many_arguments)]
fn running<'a, T: RealField + Copy>(
    d_states: &'a mut DMatrix<T>,
    ds: &'a mut DMatrix<T>,
    ds_prev: &'a mut DMatrix<T>,
    recorded: bool,
    k: usize,
    block: usize,
    rows: usize,
    batch: usize,
) -> (MatMut<'a, T>, MatMut<'a, T>) {
    if recorded {
        let (lo, hi) = d_states.as_mut_slice().split_at_mut(k * block);
        let prev_start = k.saturating_sub(1) * block;
        (
            MatMut::new(&mut hi[..block], rows, batch, rows),
            MatMut::new(
                &mut lo[prev_start..],
                rows,
                if k == 0 { 0 } else { batch },
                rows,
            ),
        )
    } else {
        (MatMut::from(ds), MatMut::from(ds_prev))
    }
}

/// The forward pass: unroll `cell` over `x` (T·B columns) from `s0` (S × B), saving on `tape`
/// what [`backward`] needs.
///
/// `detach`: with `Some((truncation, fixed))` every cut of `truncation` reads the constant
/// `fixed[t]` as `s_{t}` instead of the computed state — the function whose exact gradient
/// truncated BPTT is (the gradient checker's oracle). `None`: plain unrolling.
pub fn forward<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    x: Inputs<'_, T>,
    s0: MatRef<'_, T>,
    tape: &mut Tape<T>,
    detach: Option<(Truncation, &[DMatrix<T>])>,
) -> Result<(), BpttError> {
    let batch = s0.cols();
    if batch == 0 {
        return Err(BpttError::Invalid("batch size must be at least 1".into()));
    }
    if s0.rows() != cell.state_size() {
        return Err(BpttError::Shape {
            what: "s0".into(),
            expected: (cell.state_size(), batch),
            got: (s0.rows(), s0.cols()),
        });
    }
    if x.size() != cell.input_size() || !x.columns().is_multiple_of(batch) {
        return Err(BpttError::Invalid(format!(
            "inputs: expected {} rows and a multiple of the batch {batch} columns, got {}x{}",
            cell.input_size(),
            x.size(),
            x.columns()
        )));
    }
    if let Inputs::Tokens { ids, vocab } = x
        && let Some(bad) = ids.iter().find(|&&i| i >= vocab)
    {
        return Err(BpttError::Invalid(format!(
            "token id {bad} out of range for a vocabulary of {vocab}"
        )));
    }
    let steps = x.columns() / batch;
    tape.resize_forward(cell, steps, batch);
    let gh = cell.gate_rows();
    let p = cell.params();
    // the input projection of every step at once: P = b 1ᵀ + W_ih X
    cell.projection_bias(&mut tape.bias);
    {
        let mut proj = MatMut::from(&mut tape.slab).row_block(0, gh);
        match x {
            Inputs::Dense(x) => {
                proj.fill_columns(&tape.bias);
                gemm(proj, true, Op::N(MatRef::from(&p[WEIGHT_IH])), Op::N(x))
            }
            Inputs::Tokens { ids, .. } => {
                // one-hot X: column j of W_ih X is column ids[j] of W_ih
                let w = MatRef::from(&p[WEIGHT_IH]);
                for (j, &id) in ids.iter().enumerate() {
                    let col = proj
                        .col_mut(j)
                        .iter_mut()
                        .zip(w.col(id).iter().zip(&tape.bias));
                    col.for_each(|(d, (w, b))| *d = *w + *b);
                }
            }
        }
    }
    MatMut::from(&mut tape.states)
        .col_block(0, batch)
        .copy_from(s0);
    let s_rows = cell.state_size();
    for t in 0..steps {
        let fixed = match detach {
            Some((tr, fixed)) if tr.cuts_at(t) => Some(fixed.get(t).ok_or_else(|| {
                BpttError::Invalid(format!(
                    "forward_detached: no fixed state for cut at step {t}"
                ))
            })?),
            _ => None,
        };
        let slab_t = MatMut::from(&mut tape.slab).col_block(t * batch, batch);
        // s_t is read, s_{t+1} written: adjacent, disjoint column blocks
        let (prev, next) = tape
            .states
            .as_mut_slice()
            .split_at_mut((t + 1) * batch * s_rows);
        let s_prev = match fixed {
            Some(f) => {
                crate::error::check_shape(|| format!("fixed state {t}"), f, s_rows, batch)?;
                MatRef::from(f)
            }
            None => MatRef::new(&prev[t * batch * s_rows..], s_rows, batch, s_rows),
        };
        let s_next = MatMut::new(&mut next[..batch * s_rows], s_rows, batch, s_rows);
        cell.step_forward(slab_t, s_prev, s_next);
    }
    Ok(())
}

/// Backpropagation through time over the pass saved on `tape` (by [`forward`] with the same
/// `cell` and `x`).
///
/// Walks the steps in reverse: the running `ds = ∂L/∂s_{t+1}` receives the upstream gradient
/// of the output `h_{t+1}`, is recorded (with [`Want::states`]), and goes through
/// [`Cell::step_backward`] to become `∂L/∂s_t`; at a cut of `truncation` nothing flows further
/// back. Then, with [`Want::params`], every parameter gradient of all steps is accumulated into
/// `grads` (one GEMM per weight matrix), and with [`Want::inputs`], `dx = W_ihᵀ d_ih` (D × T·B).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: RealField + Copy, C: Cell<T>>(
    cell: &C,
    x: Inputs<'_, T>,
    tape: &mut Tape<T>,
    up: &Upstream<'_, T>,
    truncation: Truncation,
    want: Want,
    grads: Option<&mut [DMatrix<T>]>,
    dx: Option<&mut DMatrix<T>>,
) -> Result<(), BpttError> {
    if let Truncation::Chunks(0) = truncation {
        return Err(BpttError::Invalid(
            "truncation length k1 must be at least 1".into(),
        ));
    }
    let (steps, batch) = (tape.steps, tape.batch);
    let (h, s_rows, gh) = (cell.hidden_size(), cell.state_size(), cell.gate_rows());
    if x.columns() != steps * batch || tape.slab.nrows() != cell.tape_rows() {
        return Err(BpttError::Invalid(
            "backward: the tape was not recorded for these inputs and this cell".into(),
        ));
    }
    let check = |name: &str, m: Option<MatRef<'_, T>>, rows: usize, cols: usize| match m {
        Some(m) if (m.rows(), m.cols()) != (rows, cols) => Err(BpttError::Shape {
            what: name.into(),
            expected: (rows, cols),
            got: (m.rows(), m.cols()),
        }),
        _ => Ok(()),
    };
    check("d_outputs", up.d_outputs, h, steps * batch)?;
    check("d_last", up.d_last, h, batch)?;
    check("d_final", up.d_final, s_rows, batch)?;
    let keep_all = want.params || want.inputs;
    if want.params && grads.is_none() || want.inputs && dx.is_none() {
        return Err(BpttError::Invalid(
            "backward: parameter or input gradients wanted without a place to put them".into(),
        ));
    }
    if want.inputs && matches!(x, Inputs::Tokens { .. }) {
        return Err(BpttError::Invalid(
            "backward: token inputs have no input gradient".into(),
        ));
    }
    let d_cols = if keep_all { steps * batch } else { batch };
    ensure(&mut tape.d_ih, gh, d_cols);
    let split = cell.split_recurrent_grad();
    ensure(&mut tape.d_hh, if split { gh } else { 0 }, d_cols);
    ensure(&mut tape.ds, s_rows, batch);
    ensure(&mut tape.ds_prev, s_rows, batch);
    if want.states {
        ensure(&mut tape.d_states, s_rows, (steps + 1) * batch);
    }
    // W_hhᵀ once for every step's GEMM
    {
        let w_hh = &cell.params()[WEIGHT_HH];
        ensure(&mut tape.w_hh_t, w_hh.ncols(), w_hh.nrows());
        w_hh.transpose_to(&mut tape.w_hh_t);
    }
    // the running ∂L/∂s_{t+1} and ∂L/∂s_t: with Want::states the recorded blocks themselves
    // (no copies), otherwise two S × B buffers swapped after every step
    let block = s_rows * batch;
    tape.states_recorded = want.states;
    let (ds_init, _) = running(
        &mut tape.d_states,
        &mut tape.ds,
        &mut tape.ds_prev,
        want.states,
        steps,
        block,
        s_rows,
        batch,
    );
    {
        let mut ds_init = ds_init;
        match up.d_final {
            Some(d) => ds_init.copy_from(d),
            None => ds_init.fill(T::zero()),
        }
    }
    for t in (0..steps).rev() {
        let col = if keep_all { t * batch } else { 0 };
        let (mut ds, mut ds_prev) = running(
            &mut tape.d_states,
            &mut tape.ds,
            &mut tape.ds_prev,
            want.states,
            t + 1,
            block,
            s_rows,
            batch,
        );
        // the loss reads h_{t+1} directly: add its gradient to the state's output rows
        {
            let mut dh = ds.reborrow().row_block(0, h);
            if let Some(d) = up.d_outputs {
                dh.add_assign(d.col_block(t * batch, batch));
            }
            if t + 1 == steps
                && let Some(d) = up.d_last
            {
                dh.add_assign(d);
            }
        }
        let states = MatRef::from(&tape.states);
        let d_hh = split.then(|| MatMut::from(&mut tape.d_hh).col_block(col, batch));
        cell.step_backward(
            ds.as_ref(),
            MatRef::from(&tape.w_hh_t),
            MatRef::from(&tape.slab).col_block(t * batch, batch),
            states.col_block(t * batch, batch),
            states.col_block((t + 1) * batch, batch),
            MatMut::from(&mut tape.d_ih).col_block(col, batch),
            d_hh,
            ds_prev.reborrow(),
        );
        if truncation.cuts_at(t) {
            // s_t is a detached chunk start: nothing flows further back
            ds_prev.fill(T::zero());
        }
        if !want.states {
            std::mem::swap(&mut tape.ds, &mut tape.ds_prev);
        }
    }
    let p = cell.params();
    if let Some(grads) = grads.filter(|_| want.params) {
        let d_ih = MatRef::from(&tape.d_ih);
        // dW_ih += d_ih Xᵀ over every (step, sequence) at once
        match x {
            Inputs::Dense(x) => gemm(
                MatMut::from(&mut grads[WEIGHT_IH]),
                true,
                Op::N(d_ih),
                Op::T(x),
            ),
            Inputs::Tokens { ids, .. } => {
                // one-hot X: a scatter-add of d_ih's columns into W_ih's
                let g = &mut grads[WEIGHT_IH];
                let rows = g.nrows();
                for (j, &id) in ids.iter().enumerate() {
                    let dst = &mut g.as_mut_slice()[id * rows..(id + 1) * rows];
                    for (d, v) in dst.iter_mut().zip(d_ih.col(j)) {
                        *d += *v;
                    }
                }
            }
        }
        // db_ih += d_ih 1; the recurrent bias's sums are the same where d_hh = d_ih
        mat::row_sums(d_ih, &mut tape.sums_ih);
        mat::add_to(grads[BIAS_IH].as_mut_slice(), &tape.sums_ih);
        let (d_hh, d_hh_sums) = if split {
            mat::row_sums(MatRef::from(&tape.d_hh), &mut tape.sums_hh);
            (MatRef::from(&tape.d_hh), &tape.sums_hh)
        } else {
            (d_ih, &tape.sums_ih)
        };
        let h_prev = MatRef::from(&tape.states)
            .row_block(0, h)
            .col_block(0, steps * batch);
        cell.recurrent_param_grads(d_hh, MatRef::from(&tape.slab), h_prev, d_hh_sums, grads);
    }
    if let Some(dx) = dx.filter(|_| want.inputs) {
        ensure(dx, cell.input_size(), steps * batch);
        // dX = W_ihᵀ d_ih, every step at once
        gemm(
            MatMut::from(dx),
            false,
            Op::T(MatRef::from(&p[WEIGHT_IH])),
            Op::N(MatRef::from(&tape.d_ih)),
        );
    }
    Ok(())
}
