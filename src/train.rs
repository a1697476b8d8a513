//! The training core: one update of a recurrent cell with a linear readout (Pascanu et al.'s
//! model when the cell is vanilla) on a [`Batch`] — the engine's forward pass, the loss, the
//! engine's BPTT, Pascanu's Ω, global-norm clipping, the paper's safety net and an optimizer
//! step — plus evaluation of error rates on sequences of any length.
//!
//! Shapes: H hidden, O outputs, B sequences, T steps; batch as columns, step t of sequence b is
//! column `t·B + b`. The cell's passes are [`crate::engine`]'s (symbols as token ids: a gather,
//! not a GEMM with one-hot columns); the readout adds
//!
//! ```text
//! y = W_o h_T + b_o 1ᵀ   (or W_o [h_1 … h_T] for every-step targets), loss, dy
//! dW_o += dy hᵀ,  db_o += dy 1,  ∂L/∂h = W_oᵀ dy   → the engine's upstream gradient
//! ```
//!
//! Every gradient equals [`crate::Model::loss_and_grads`] (itself checked against finite
//! differences and the dual-number oracle) to 1e-12 relative: `tests/training.rs`.

use nalgebra::{DMatrix, DVectorView};

use crate::cell::{Cell, WEIGHT_HH};
use crate::clip::{Clip, clip_global_norm, global_norm};
use crate::engine::mat::{add_to, row_sums};
use crate::engine::{self, MatMut, MatRef, Op, Tape, Upstream, Want, ensure, gemm};
use crate::omega::{self, Omega};
use crate::optim::OptimizerState;
use crate::readout::{BIAS, WEIGHT, softmax_cross_entropy, softmax_cross_entropy_into};
use crate::sequence::Truncation;
use crate::tasks::{Batch, Inputs, Target};
use crate::{BpttError, Model, Params, VanillaRnn};

/// The model trained on the pathological tasks: a vanilla cell and a linear readout.
pub type RnnModel = Model<f64, VanillaRnn<f64>>;

/// Gradients of an [`RnnModel`], shaped like its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Grads {
    pub cell: Params<f64>,
    pub readout: Params<f64>,
}

impl Grads {
    pub fn zeros_like<C: Cell<f64>>(model: &Model<f64, C>) -> Self {
        Grads {
            cell: model.cell.params().zeros_like(),
            readout: model.readout.params().zeros_like(),
        }
    }
}

/// The paper's safety net (its code, with clipping on): when the gradient norm is NaN, ∞ or
/// above 1e10, the update uses `0.02·W_hh` as the gradient of `W_hh` and zero for every other
/// parameter — it shrinks the recurrent matrix instead of applying a meaningless step.
pub const SAFETY_NORM: f64 = 1e10;
pub const SAFETY_SHRINK: f64 = 0.02;

/// How one update treats its gradient.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct UpdateRule {
    /// Global-norm clipping threshold (Pascanu et al. Algorithm 1), `None` for none.
    pub clip: Option<f64>,
    /// Weight α of Ω's gradient added to `∂L/∂W_hh` before clipping (0: Ω is only measured
    /// when `measure_omega`).
    pub alpha: f64,
    /// Bound on `‖δ_k‖²` below which Ω leaves a step out.
    pub omega_bound: f64,
    /// Apply the safety net ([`SAFETY_NORM`]).
    pub safety_net: bool,
    /// Compute Ω even when α = 0 (for the learning curves).
    pub measure_omega: bool,
}

/// What one update did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateRecord {
    pub loss: f64,
    /// Ω (0 when neither used nor measured).
    pub omega: f64,
    /// Norm of the full gradient (with α·∂Ω) before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
    /// The safety net replaced the gradient.
    pub safety: bool,
}

/// Preallocated buffers of one worker thread: the engine's tape and the readout's slabs,
/// grown to the largest batch seen and reused.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    tape: Tape<f64>,
    /// The initial state `s_0 = 0`, S × B, and the carried state of [`Self::evaluate`].
    s0: DMatrix<f64>,
    /// Readout outputs and their gradient, O × B (or O × T·B for every-step targets), and
    /// the readout bias gradient's row sums.
    y: DMatrix<f64>,
    dy: DMatrix<f64>,
    dy_sums: Vec<f64>,
    /// Upstream `∂L/∂h_T`, H × B, or every `∂L/∂h_t`, H × T·B.
    d_last: DMatrix<f64>,
    d_out: DMatrix<f64>,
    /// `‖δ_t‖²` per column, B·T (Ω's input).
    delta_sq: Vec<f64>,
    omega: omega::Scratch,
}

/// A batch's inputs as the engine reads them: symbols by index, dense inputs as a view.
fn engine_inputs(inputs: &Inputs) -> engine::Inputs<'_, f64> {
    match inputs {
        Inputs::OneHot { dim, symbols } => engine::Inputs::Tokens {
            ids: symbols,
            vocab: *dim,
        },
        Inputs::Dense(x) => engine::Inputs::Dense(MatRef::from(x)),
    }
}

impl Workspace {
    /// The loss and every parameter gradient, accumulated into `grads` (zero it first):
    /// the engine's forward pass, the readout and loss, the engine's backward pass.
    pub fn loss_and_grads<C: Cell<f64>>(
        &mut self,
        model: &Model<f64, C>,
        batch: &Batch,
        grads: &mut Grads,
    ) -> Result<f64, BpttError> {
        self.loss_and_grads_with(model, batch, grads, false)
    }

    fn loss_and_grads_with<C: Cell<f64>>(
        &mut self,
        model: &Model<f64, C>,
        batch: &Batch,
        grads: &mut Grads,
        with_delta: bool,
    ) -> Result<f64, BpttError> {
        let cell = &model.cell;
        check_inputs(cell, batch)?;
        let (hid, steps, bsz) = (cell.hidden_size(), batch.steps, batch.batch);
        ensure(&mut self.s0, cell.state_size(), bsz);
        self.s0.fill(0.0);
        let x = engine_inputs(&batch.inputs);
        engine::forward(cell, x, MatRef::from(&self.s0), &mut self.tape, None)?;
        let loss = self.loss(&model.readout, batch, &mut grads.readout)?;
        let every_step = matches!(batch.target, Target::ClassEveryStep(_));
        let up = Upstream {
            d_outputs: every_step.then(|| MatRef::from(&self.d_out)),
            d_last: (!every_step).then(|| MatRef::from(&self.d_last)),
            d_final: None,
        };
        let want = if with_delta {
            Want::STATES
        } else {
            Want::PARAMS
        };
        engine::backward(
            cell,
            x,
            &mut self.tape,
            &up,
            Truncation::Full,
            want,
            Some(grads.cell.as_mut_slice()),
            None,
        )?;
        if with_delta {
            // ‖δ_k‖², k = 1..=T, column by column (Ω's normalisation)
            self.delta_sq.resize(steps * bsz, 0.0);
            for k in 1..=steps {
                let d = self.tape.d_state(k);
                for b in 0..bsz {
                    self.delta_sq[(k - 1) * bsz + b] =
                        DVectorView::from_slice(&d.col(b)[..hid], hid).norm_squared();
                }
            }
        }
        Ok(loss)
    }

    /// Readout, loss and its gradient: accumulates the readout's gradients and leaves the
    /// upstream `∂L/∂h_T` in `d_last` (last-step targets) or every `∂L/∂h_t` in `d_out`.
    fn loss(
        &mut self,
        readout: &crate::Readout<f64>,
        batch: &Batch,
        grads: &mut Params<f64>,
    ) -> Result<f64, BpttError> {
        let steps = batch.steps;
        let w_o = MatRef::from(&readout.params()[WEIGHT]);
        let (h, d_h) = match &batch.target {
            Target::Class(_) | Target::Value(_) => (self.tape.output(steps), &mut self.d_last),
            // every h_1..h_T through the readout at once
            Target::ClassEveryStep(_) => (self.tape.outputs(), &mut self.d_out),
        };
        linear(readout, h, &mut self.y);
        let dy = &mut self.dy;
        let loss = match &batch.target {
            Target::Class(c) | Target::ClassEveryStep(c) => {
                softmax_cross_entropy_into(&self.y, c, dy)?
            }
            Target::Value(v) => squared_error_into(&self.y, v, dy)?,
        };
        // dW_o += dy hᵀ ; db_o += dy 1 ; ∂L/∂h = W_oᵀ dy
        let dy = MatRef::from(&*dy);
        gemm(MatMut::from(&mut grads[WEIGHT]), true, Op::N(dy), Op::T(h));
        self.dy_sums.resize(dy.rows(), 0.0);
        row_sums(dy, &mut self.dy_sums);
        add_to(grads[BIAS].as_mut_slice(), &self.dy_sums);
        ensure(d_h, h.rows(), h.cols());
        gemm(MatMut::from(d_h), false, Op::T(w_o), Op::N(dy));
        Ok(loss)
    }

    /// After [`Self::update`] with Ω used or measured: the frozen `u_k = σ'(a_k) ⊙ δ_k`
    /// (H × B·T, the engine's `∂L/∂P`) and `‖δ_k‖²` of the last batch, Ω's inputs.
    pub fn omega_inputs(&self) -> (&DMatrix<f64>, &[f64]) {
        (self.tape.d_projection(), &self.delta_sq)
    }

    /// [`Self::loss_and_grads`], also recording Ω's inputs ([`Self::omega_inputs`]).
    pub fn loss_grads_and_omega_inputs<C: Cell<f64>>(
        &mut self,
        model: &Model<f64, C>,
        batch: &Batch,
        grads: &mut Grads,
    ) -> Result<f64, BpttError> {
        self.loss_and_grads_with(model, batch, grads, true)
    }

    /// One training update: gradients, Ω (α·∂Ω/∂W_hh added to `∂L/∂W_hh`), the norm before
    /// clipping, clipping, the safety net, the optimizer step.
    pub fn update<C: Cell<f64>>(
        &mut self,
        model: &mut Model<f64, C>,
        batch: &Batch,
        rule: &UpdateRule,
        optimizer: &mut OptimizerState,
        grads: &mut Grads,
    ) -> Result<UpdateRecord, BpttError> {
        grads.cell.scale_mut(0.0);
        grads.readout.scale_mut(0.0);
        let with_omega = rule.alpha != 0.0 || rule.measure_omega;
        if with_omega && !model.cell.omega_applies() {
            return Err(BpttError::Invalid(format!(
                "Pascanu's Ω is defined for vanilla cells, not {}",
                model.cell.name()
            )));
        }
        let loss = self.loss_and_grads_with(model, batch, grads, with_omega)?;
        let mut om = Omega {
            value: 0.0,
            used: 0.0,
        };
        if with_omega {
            let target = (rule.alpha != 0.0).then_some((&mut grads.cell[WEIGHT_HH], rule.alpha));
            om = omega::penalty_with(
                &mut self.omega,
                &model.cell.params()[WEIGHT_HH],
                self.tape.d_projection(),
                &self.delta_sq,
                rule.omega_bound,
                target,
            )?;
        }
        let norm = global_norm(&[&grads.cell, &grads.readout]);
        let mut clipped = false;
        if let Some(threshold) = rule.clip {
            let c = clip_global_norm(&mut [&mut grads.cell, &mut grads.readout], threshold)?;
            clipped = matches!(c, Clip::Rescaled { .. });
        }
        // NaN, ∞ or above the bound
        let safety = rule.safety_net && safety_net_triggered(norm);
        if safety {
            // the paper's code: g(W_hh) = 0.02·W_hh, every other gradient 0
            grads.cell.scale_mut(0.0);
            grads.readout.scale_mut(0.0);
            grads.cell[WEIGHT_HH].copy_from(&model.cell.params()[WEIGHT_HH]);
            grads.cell[WEIGHT_HH] *= SAFETY_SHRINK;
        }
        optimizer.step(
            &mut [model.cell.params_mut(), model.readout.params_mut()],
            &[&grads.cell, &grads.readout],
        );
        Ok(UpdateRecord {
            loss,
            omega: om.value,
            grad_norm: norm,
            clipped,
            safety,
        })
    }

    /// Evaluate `model` on `batch` without keeping the whole history (any length): the engine
    /// runs over chunks of steps with the state carried from one chunk to the next. Returns
    /// the number of sequences it gets wrong (see [`crate::tasks::count_errors`]) and the mean
    /// loss.
    pub fn evaluate<C: Cell<f64>>(
        &mut self,
        model: &Model<f64, C>,
        batch: &Batch,
    ) -> Result<(usize, f64), BpttError> {
        let cell = &model.cell;
        check_inputs(cell, batch)?;
        let (steps, bsz) = (batch.steps, batch.batch);
        // a chunk's tape holds about EVAL_ENTRIES numbers
        let per_step = (cell.tape_rows() + cell.state_size()) * bsz;
        let chunk = (EVAL_ENTRIES / per_step.max(1)).clamp(1, steps);
        let s_rows = cell.state_size();
        ensure(&mut self.s0, s_rows, bsz);
        self.s0.fill(0.0);
        let mut wrong = vec![false; bsz];
        let mut loss = 0.0;
        let mut t0 = 0;
        while t0 < steps {
            let len = chunk.min(steps - t0);
            let cols = t0 * bsz..(t0 + len) * bsz;
            let x = match &batch.inputs {
                Inputs::OneHot { dim, symbols } => engine::Inputs::Tokens {
                    ids: &symbols[cols.clone()],
                    vocab: *dim,
                },
                Inputs::Dense(x) => {
                    engine::Inputs::Dense(MatRef::from(x).col_block(cols.start, len * bsz))
                }
            };
            engine::forward(cell, x, MatRef::from(&self.s0), &mut self.tape, None)?;
            if let Target::ClassEveryStep(c) = &batch.target {
                for t in 1..=len {
                    linear(&model.readout, self.tape.output(t), &mut self.y);
                    let step = t0 + t - 1;
                    let classes = &c[step * bsz..(step + 1) * bsz];
                    loss += softmax_cross_entropy(&self.y, classes)?.0 / steps as f64;
                    for (b, w) in wrong.iter_mut().enumerate() {
                        *w |= crate::tasks::argmax(self.y.column(b)) != classes[b];
                    }
                }
            }
            // carry s_{t0+len} into the next chunk
            MatMut::from(&mut self.s0).copy_from(self.tape.state(len));
            t0 += len;
        }
        match &batch.target {
            Target::Class(_) | Target::Value(_) => {
                linear(
                    &model.readout,
                    MatRef::from(&self.s0).row_block(0, cell.hidden_size()),
                    &mut self.y,
                );
                let errors = crate::tasks::count_errors(&batch.target, &self.y, bsz);
                loss = match &batch.target {
                    Target::Class(c) => softmax_cross_entropy(&self.y, c)?.0,
                    Target::Value(v) => squared_error(&self.y, v)?.0,
                    Target::ClassEveryStep(_) => unreachable!(),
                };
                Ok((errors, loss))
            }
            Target::ClassEveryStep(_) => Ok((wrong.iter().filter(|&&w| w).count(), loss)),
        }
    }
}

/// Numbers a chunk of [`Workspace::evaluate`] keeps (≈ 32 MB in f64).
const EVAL_ENTRIES: usize = 1 << 22;

fn check_inputs<C: Cell<f64>>(cell: &C, batch: &Batch) -> Result<(), BpttError> {
    let d = cell.input_size();
    let cols = batch.steps * batch.batch;
    let ok = match &batch.inputs {
        Inputs::OneHot { dim, symbols } => {
            *dim == d && symbols.len() == cols && symbols.iter().all(|&s| s < d)
        }
        Inputs::Dense(x) => x.shape() == (d, cols),
    };
    if ok && batch.steps > 0 && batch.batch > 0 {
        Ok(())
    } else {
        Err(BpttError::Invalid(format!(
            "a batch of {} steps × {} sequences with {}-dimensional inputs does not fit a cell with {d} inputs",
            batch.steps,
            batch.batch,
            batch.inputs.dim()
        )))
    }
}

/// `y = W_o h + b_o 1ᵀ` into `y` (O × cols of `h`).
fn linear(readout: &crate::Readout<f64>, h: MatRef<'_, f64>, y: &mut DMatrix<f64>) {
    let p = readout.params();
    ensure(y, p[WEIGHT].nrows(), h.cols());
    MatMut::from(&mut *y).fill_columns(p[BIAS].as_slice());
    gemm(
        MatMut::from(y),
        true,
        Op::N(MatRef::from(&p[WEIGHT])),
        Op::N(h),
    );
}

/// The paper's regression loss: squared error summed over outputs, mean over the batch:
/// `L = (1/B) Σ_b ‖y_b − t_b‖²`, `∂L/∂y = 2 (y − t)/B`.
pub fn squared_error(y: &DMatrix<f64>, t: &DMatrix<f64>) -> Result<(f64, DMatrix<f64>), BpttError> {
    let mut dy = DMatrix::zeros(0, 0);
    let loss = squared_error_into(y, t, &mut dy)?;
    Ok((loss, dy))
}

/// [`squared_error`] writing `∂L/∂y` into `dy` (reusing its storage); returns `L`.
pub fn squared_error_into(
    y: &DMatrix<f64>,
    t: &DMatrix<f64>,
    dy: &mut DMatrix<f64>,
) -> Result<f64, BpttError> {
    if y.shape() != t.shape() {
        return Err(BpttError::shape("regression target", y.shape(), t.shape()));
    }
    let b = y.ncols() as f64;
    ensure(dy, y.nrows(), y.ncols());
    // diff = y − t first (its squared norm is the loss), then scaled in place
    dy.copy_from(y);
    *dy -= t;
    let loss = dy.norm_squared() / b;
    *dy *= 2.0 / b;
    Ok(loss)
}

/// Whether the paper code's safety net takes over: a gradient norm that is NaN, ∞ or above
/// [`SAFETY_NORM`] (its code: `isnan | isinf | norm < 0 | norm > 1e10`).
pub fn safety_net_triggered(norm: f64) -> bool {
    norm.is_nan() || norm > SAFETY_NORM
}
