//! The training core: one update of a vanilla RNN with a linear readout (Pascanu et al.'s
//! model) on a [`Batch`] — forward, loss, BPTT, Pascanu's Ω, global-norm clipping, the paper's
//! safety net and an optimizer step — through an allocation-free kernel, plus evaluation of
//! error rates on sequences of any length.
//!
//! Kernel (shapes: H hidden, D inputs, O outputs, B sequences, T steps; batch as columns, step
//! t of sequence b is column `t·B + b`):
//!
//! ```text
//! a   = W_ih X + (b_ih + b_hh)             H × (B·T)   one GEMM (or a gather for one-hot X)
//! a_t += W_hh h_{t−1};  h_t = σ(a_t)       per step: one H × H × B GEMM
//! y   = W_o h_T + b_o  (or W_o H for every-step targets), loss, dy
//! δ_T = W_oᵀ dy; per step backwards: da_t = δ_t ⊙ σ'(a_t), δ_{t−1} = W_hhᵀ da_t (+ upstream)
//! dW_hh = dA H_prevᵀ, dW_ih = dA Xᵀ        one GEMM each over all steps at once
//! ```
//!
//! Every gradient equals [`crate::Model::loss_and_grads`] (itself checked against finite
//! differences and the dual-number oracle) to 1e-12 relative: `tests/training.rs`.

use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::DMatrix;

use crate::cell::Cell;
use crate::cells::vanilla::{BIAS_HH, BIAS_IH, WEIGHT_HH, WEIGHT_IH};
use crate::clip::{Clip, clip_global_norm, global_norm};
use crate::omega::{self, Omega};
use crate::optim::OptimizerState;
use crate::readout::{BIAS, WEIGHT, softmax_cross_entropy};
use crate::sweep::{activate, backprop_activation, view};
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
    pub fn zeros_like(model: &RnnModel) -> Self {
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

/// Preallocated buffers of the kernel (one per worker thread), grown to the largest batch seen.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    /// Pre-activations `a_1..a_T`, H × (B·T): block t−1 is `a_t`.
    a: DMatrix<f64>,
    /// States `h_0..h_T`, H × (B·(T+1)): block t is `h_t`.
    h: DMatrix<f64>,
    /// `∂L/∂a_t` for every step, H × (B·T).
    da: DMatrix<f64>,
    /// Running `δ_t = ∂L/∂h_t`, H × B.
    dh: DMatrix<f64>,
    /// `W_hhᵀ`, H × H.
    w_t: DMatrix<f64>,
    /// `‖δ_t‖²` per column, B·T.
    delta_sq: Vec<f64>,
    /// Upstream `∂L/∂h_t` from per-step targets, H × (B·T).
    d_out: DMatrix<f64>,
}

fn gemm(
    dst: &mut [f64],
    rows: usize,
    cols: usize,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    acc: Accum,
) {
    faer::linalg::matmul::matmul(
        MatMut::from_column_major_slice_mut(dst, rows, cols),
        acc,
        a,
        b,
        1.0,
        Par::Seq,
    );
}

fn ensure(m: &mut DMatrix<f64>, rows: usize, cols: usize) {
    if m.shape() != (rows, cols) {
        *m = DMatrix::zeros(rows, cols);
    }
}

impl Workspace {
    fn resize(&mut self, hidden: usize, steps: usize, batch: usize) {
        ensure(&mut self.a, hidden, batch * steps);
        ensure(&mut self.h, hidden, batch * (steps + 1));
        ensure(&mut self.da, hidden, batch * steps);
        ensure(&mut self.dh, hidden, batch);
        ensure(&mut self.w_t, hidden, hidden);
        self.delta_sq.resize(batch * steps, 0.0);
    }

    /// Forward over the whole batch, keeping every `a_t` and `h_t` for the backward pass.
    fn forward(&mut self, cell: &VanillaRnn<f64>, batch: &Batch) -> Result<(), BpttError> {
        let p = cell.params();
        let (hid, steps, bsz) = (cell.hidden_size(), batch.steps, batch.batch);
        check_inputs(cell, batch)?;
        self.resize(hid, steps, bsz);
        let bias = &p[BIAS_IH] + &p[BIAS_HH];
        // a = W_ih X + b for all steps at once
        input_projection(
            &p[WEIGHT_IH],
            &bias,
            &batch.inputs,
            (0, steps * bsz),
            self.a.as_mut_slice(),
        );
        let block = hid * bsz;
        self.h.as_mut_slice()[..block].fill(0.0);
        let w = view(&p[WEIGHT_HH]);
        let act = cell.activation();
        for t in 0..steps {
            // a_{t+1} += W_hh h_t ; h_{t+1} = σ(a_{t+1})
            let (h_prev, h_next) =
                self.h.as_mut_slice()[t * block..(t + 2) * block].split_at_mut(block);
            let a_t = &mut self.a.as_mut_slice()[t * block..(t + 1) * block];
            let h_prev = MatRef::from_column_major_slice(&*h_prev, hid, bsz);
            gemm(a_t, hid, bsz, w, h_prev, Accum::Add);
            activate(act, a_t, h_next);
        }
        Ok(())
    }

    /// Readout, loss and its gradient: accumulates the readout's gradients and leaves the
    /// upstream `∂L/∂h_T` in `dh` (last-step targets) or every `∂L/∂h_t` in `d_out`.
    fn loss(
        &mut self,
        readout: &crate::Readout<f64>,
        batch: &Batch,
        grads: &mut Params<f64>,
    ) -> Result<f64, BpttError> {
        let (hid, steps, bsz) = (self.dh.nrows(), batch.steps, batch.batch);
        let block = hid * bsz;
        let w_o = &readout.params()[WEIGHT];
        let last = MatRef::from_column_major_slice(&self.h.as_slice()[steps * block..], hid, bsz);
        match &batch.target {
            Target::Class(_) | Target::Value(_) => {
                let y = linear(readout, last);
                let (loss, dy) = match &batch.target {
                    Target::Class(c) => softmax_cross_entropy(&y, c)?,
                    Target::Value(v) => squared_error(&y, v)?,
                    Target::ClassEveryStep(_) => unreachable!(),
                };
                // dW_o += dy h_Tᵀ ; db_o += dy 1 ; δ_T = W_oᵀ dy
                let (o, _) = dy.shape();
                gemm(
                    grads[WEIGHT].as_mut_slice(),
                    o,
                    hid,
                    view(&dy),
                    last.transpose(),
                    Accum::Add,
                );
                grads[BIAS] += dy.column_sum();
                gemm(
                    self.dh.as_mut_slice(),
                    hid,
                    bsz,
                    view(w_o).transpose(),
                    view(&dy),
                    Accum::Replace,
                );
                Ok(loss)
            }
            Target::ClassEveryStep(c) => {
                // every h_1..h_T through the readout at once
                let hs =
                    MatRef::from_column_major_slice(&self.h.as_slice()[block..], hid, bsz * steps);
                let y = linear(readout, hs);
                let (loss, dy) = softmax_cross_entropy(&y, c)?;
                let o = dy.nrows();
                gemm(
                    grads[WEIGHT].as_mut_slice(),
                    o,
                    hid,
                    view(&dy),
                    hs.transpose(),
                    Accum::Add,
                );
                grads[BIAS] += dy.column_sum();
                ensure(&mut self.d_out, hid, bsz * steps);
                gemm(
                    self.d_out.as_mut_slice(),
                    hid,
                    bsz * steps,
                    view(w_o).transpose(),
                    view(&dy),
                    Accum::Replace,
                );
                self.dh.fill(0.0);
                Ok(loss)
            }
        }
    }

    /// BPTT from the upstream left by [`Self::loss`]; accumulates the cell's gradients and
    /// fills `da` and `delta_sq` (what Ω needs).
    fn backward(&mut self, cell: &VanillaRnn<f64>, batch: &Batch, grads: &mut Params<f64>) {
        let p = cell.params();
        let (hid, steps, bsz) = (cell.hidden_size(), batch.steps, batch.batch);
        let block = hid * bsz;
        let every_step = matches!(batch.target, Target::ClassEveryStep(_));
        self.w_t.copy_from(&p[WEIGHT_HH].transpose());
        let act = cell.activation();
        for k in (1..=steps).rev() {
            if every_step {
                // δ_k += ∂L/∂h_k from the readout at step k
                let up = &self.d_out.as_slice()[(k - 1) * block..k * block];
                self.dh
                    .as_mut_slice()
                    .iter_mut()
                    .zip(up)
                    .for_each(|(d, u)| *d += u);
            }
            for (b, col) in self.dh.column_iter().enumerate() {
                self.delta_sq[(k - 1) * bsz + b] = col.norm_squared();
            }
            // backprop through σ: da_k = δ_k ⊙ σ'(a_k)
            let a_k = &self.a.as_slice()[(k - 1) * block..k * block];
            let h_k = &self.h.as_slice()[k * block..(k + 1) * block];
            let da_k = &mut self.da.as_mut_slice()[(k - 1) * block..k * block];
            backprop_activation(act, self.dh.as_slice(), a_k, h_k, da_k);
            if k > 1 {
                // δ_{k−1} = W_hhᵀ da_k
                let da_k = MatRef::from_column_major_slice(&*da_k, hid, bsz);
                gemm(
                    self.dh.as_mut_slice(),
                    hid,
                    bsz,
                    view(&self.w_t),
                    da_k,
                    Accum::Replace,
                );
            }
        }
        // parameter gradients of all steps at once: dW_hh += dA [h_0 … h_{T−1}]ᵀ
        let da = view(&self.da);
        let h_prev =
            MatRef::from_column_major_slice(&self.h.as_slice()[..block * steps], hid, bsz * steps);
        gemm(
            grads[WEIGHT_HH].as_mut_slice(),
            hid,
            hid,
            da,
            h_prev.transpose(),
            Accum::Add,
        );
        match &batch.inputs {
            Inputs::OneHot { symbols, .. } => {
                // dW_ih[:, s] += da column by column (X is one-hot)
                for (j, &s) in symbols.iter().enumerate() {
                    let mut col = grads[WEIGHT_IH].column_mut(s);
                    col += self.da.column(j);
                }
            }
            Inputs::Dense(x) => {
                let d = x.nrows();
                gemm(
                    grads[WEIGHT_IH].as_mut_slice(),
                    hid,
                    d,
                    da,
                    view(x).transpose(),
                    Accum::Add,
                );
            }
        }
        let db = self.da.column_sum();
        grads[BIAS_IH] += &db;
        grads[BIAS_HH] += &db;
    }

    /// The loss and every parameter gradient, accumulated into `grads` (zero it first).
    pub fn loss_and_grads(
        &mut self,
        model: &RnnModel,
        batch: &Batch,
        grads: &mut Grads,
    ) -> Result<f64, BpttError> {
        self.forward(&model.cell, batch)?;
        let loss = self.loss(&model.readout, batch, &mut grads.readout)?;
        self.backward(&model.cell, batch, &mut grads.cell);
        Ok(loss)
    }

    /// After [`Self::loss_and_grads`]: the frozen `u_k = σ'(a_k) ⊙ δ_k` (H × B·T) and
    /// `‖δ_k‖²` of the last batch, Ω's inputs.
    pub fn omega_inputs(&self) -> (&DMatrix<f64>, &[f64]) {
        (&self.da, &self.delta_sq)
    }

    /// One training update: gradients, Ω (α·∂Ω/∂W_hh added to `∂L/∂W_hh`), the norm before
    /// clipping, clipping, the safety net, the optimizer step.
    pub fn update(
        &mut self,
        model: &mut RnnModel,
        batch: &Batch,
        rule: &UpdateRule,
        optimizer: &mut OptimizerState,
        grads: &mut Grads,
    ) -> Result<UpdateRecord, BpttError> {
        grads.cell.scale_mut(0.0);
        grads.readout.scale_mut(0.0);
        let loss = self.loss_and_grads(model, batch, grads)?;
        let mut om = Omega {
            value: 0.0,
            used: 0.0,
        };
        if rule.alpha != 0.0 || rule.measure_omega {
            let target = (rule.alpha != 0.0).then_some((&mut grads.cell[WEIGHT_HH], rule.alpha));
            om = omega::penalty(
                &model.cell.params()[WEIGHT_HH],
                &self.da,
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

    /// Evaluate `model` on `batch` without keeping the history (any length): the number of
    /// sequences it gets wrong (see [`crate::tasks::count_errors`]) and the mean loss.
    pub fn evaluate(&mut self, model: &RnnModel, batch: &Batch) -> Result<(usize, f64), BpttError> {
        let cell = &model.cell;
        check_inputs(cell, batch)?;
        let p = cell.params();
        let (hid, steps, bsz) = (cell.hidden_size(), batch.steps, batch.batch);
        let bias = &p[BIAS_IH] + &p[BIAS_HH];
        let mut h = DMatrix::zeros(hid, bsz);
        let mut a = DMatrix::zeros(hid, bsz);
        let mut wrong = vec![false; bsz];
        let mut loss = 0.0;
        let w = view(&p[WEIGHT_HH]);
        for t in 0..steps {
            // a = W_ih x_t + b + W_hh h ; h = σ(a)
            input_projection(
                &p[WEIGHT_IH],
                &bias,
                &batch.inputs,
                (t * bsz, bsz),
                a.as_mut_slice(),
            );
            gemm(a.as_mut_slice(), hid, bsz, w, view(&h), Accum::Add);
            activate(cell.activation(), a.as_slice(), h.as_mut_slice());
            if let Target::ClassEveryStep(c) = &batch.target {
                let y = linear(&model.readout, view(&h));
                let classes = &c[t * bsz..(t + 1) * bsz];
                loss += softmax_cross_entropy(&y, classes)?.0 / steps as f64;
                for (b, w) in wrong.iter_mut().enumerate() {
                    *w |= crate::tasks::argmax(y.column(b)) != classes[b];
                }
            }
        }
        match &batch.target {
            Target::Class(_) | Target::Value(_) => {
                let y = linear(&model.readout, view(&h));
                let errors = crate::tasks::count_errors(&batch.target, &y, bsz);
                loss = match &batch.target {
                    Target::Class(c) => softmax_cross_entropy(&y, c)?.0,
                    Target::Value(v) => squared_error(&y, v)?.0,
                    Target::ClassEveryStep(_) => unreachable!(),
                };
                Ok((errors, loss))
            }
            Target::ClassEveryStep(_) => Ok((wrong.iter().filter(|&&w| w).count(), loss)),
        }
    }
}

fn check_inputs(cell: &VanillaRnn<f64>, batch: &Batch) -> Result<(), BpttError> {
    let d = cell.input_size();
    let cols = batch.steps * batch.batch;
    let ok = match &batch.inputs {
        Inputs::OneHot { dim, symbols } => {
            *dim == d && symbols.len() == cols && symbols.iter().all(|&s| s < d)
        }
        Inputs::Dense(x) => x.shape() == (d, cols),
    };
    if ok && batch.steps > 0 {
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

/// `out = W_ih X + b 1ᵀ` over the `cols` columns of the inputs from column `start` on (H × cols;
/// borrowed, no copy), a gather of columns of `W_ih` for one-hot `X`.
fn input_projection(
    w_ih: &DMatrix<f64>,
    bias: &DMatrix<f64>,
    inputs: &Inputs,
    (start, cols): (usize, usize),
    out: &mut [f64],
) {
    let hid = w_ih.nrows();
    let b = bias.as_slice();
    match inputs {
        Inputs::OneHot { symbols, .. } => {
            for (col, &s) in out.chunks_exact_mut(hid).zip(&symbols[start..start + cols]) {
                let w = &w_ih.as_slice()[s * hid..(s + 1) * hid];
                col.iter_mut()
                    .zip(w.iter().zip(b))
                    .for_each(|(o, (w, b))| *o = w + b);
            }
        }
        Inputs::Dense(x) => {
            for col in out.chunks_exact_mut(hid) {
                col.copy_from_slice(b);
            }
            let d = x.nrows();
            let x = MatRef::from_column_major_slice(
                &x.as_slice()[start * d..(start + cols) * d],
                d,
                cols,
            );
            gemm(out, hid, cols, view(w_ih), x, Accum::Add);
        }
    }
}

/// `y = W_o h + b_o 1ᵀ`.
fn linear(readout: &crate::Readout<f64>, h: MatRef<'_, f64>) -> DMatrix<f64> {
    let p = readout.params();
    let mut y = DMatrix::zeros(p[WEIGHT].nrows(), h.ncols());
    for mut col in y.column_iter_mut() {
        col.copy_from(&p[BIAS].column(0));
    }
    let (o, n) = y.shape();
    gemm(y.as_mut_slice(), o, n, view(&p[WEIGHT]), h, Accum::Add);
    y
}

/// The paper's regression loss: squared error summed over outputs, mean over the batch:
/// `L = (1/B) Σ_b ‖y_b − t_b‖²`, `∂L/∂y = 2 (y − t)/B`.
pub fn squared_error(y: &DMatrix<f64>, t: &DMatrix<f64>) -> Result<(f64, DMatrix<f64>), BpttError> {
    if y.shape() != t.shape() {
        return Err(BpttError::shape("regression target", y.shape(), t.shape()));
    }
    let b = y.ncols() as f64;
    let diff = y - t;
    Ok((diff.norm_squared() / b, diff * (2.0 / b)))
}

/// Whether the paper code's safety net takes over: a gradient norm that is NaN, ∞ or above
/// [`SAFETY_NORM`] (its code: `isnan | isinf | norm < 0 | norm > 1e10`).
pub fn safety_net_triggered(norm: f64) -> bool {
    norm.is_nan() || norm > SAFETY_NORM
}
