//! The GRU cell (Cho et al. 2014), in both formulations, PyTorch names, shapes and gate order
//! r, z, n:
//!
//! ```text
//! r   = sigmoid(W_ir x + b_ir + W_hr h + b_hr)         reset gate
//! z   = sigmoid(W_iz x + b_iz + W_hz h + b_hz)         update gate
//! n   = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      ResetAfter  (PyTorch, cuDNN, Keras)
//! n   = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)      ResetBefore (Cho et al. 2014, v3)
//! h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
//! ```
//!
//! No cell state: `s_t = h_t`. Backward, given `dh = ∂L/∂h_t` (derivation: `proofs/gru.md`):
//!
//! ```text
//! dn = dh ⊙ (1 − z)      dz = dh ⊙ (h_{t−1} − n)      dh_{t−1} = dh ⊙ z  (+ below)
//! dA_n = dn ⊙ (1 − n²)   dA_z = dz ⊙ z(1 − z)
//! ResetAfter:  dr = dA_n ⊙ (W_hn h + b_hn);  d(W_hn h + b_hn) = dA_n ⊙ r
//! ResetBefore: d(r ⊙ h) = W_hnᵀ dA_n;  dr = d(r ⊙ h) ⊙ h_{t−1};  dh_{t−1} += d(r ⊙ h) ⊙ r
//! dA_r = dr ⊙ r(1 − r)
//! ```
//!
//! then the usual `dW += d(pre-activation) · inputᵀ` for each block, for all steps at once
//! (the engine; for ResetBefore the `n` block's recurrent input is `r ⊙ h`).
//!
//! Engine layout per step (tape rows): ResetAfter `[r; z; hn; n]` with `hn = W_hn h + b_hn`
//! (one `3H × H` GEMM gives the recurrent parts of all three gates); ResetBefore
//! `[r; z; n; r ⊙ h]` (a `2H × H` GEMM for r, z, then `H × H` for `W_hn (r ⊙ h)`). The bias
//! blocks of `b_hh` that only add are folded into the engine's input projection.

use std::ops::Range;

use nalgebra::{DMatrix, RealField};

use crate::error::BpttError;
use crate::nn::cell::{Cell, CellFamily};
pub use crate::nn::cell::{BIAS_HH, BIAS_IH, WEIGHT_HH, WEIGHT_IH};
use crate::nn::engine::mat::{add_to, sigmoid_in_place, tanh_in_place};
use crate::nn::engine::{MatMut, MatRef, Op, gemm};
use crate::nn::params::Params;

/// The three gate blocks of the GRU's stacked matrices, in PyTorch order r, z, n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GruGate {
    Reset,
    Update,
    New,
}

impl GruGate {
    pub const ALL: [GruGate; 3] = [GruGate::Reset, GruGate::Update, GruGate::New];

    /// The rows of this gate's block in a 3H-row matrix.
    pub fn rows(self, hidden: usize) -> Range<usize> {
        let k = self as usize;
        k * hidden..(k + 1) * hidden
    }
}

/// Where the reset gate acts in the candidate `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GruVariant {
    /// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`: PyTorch, cuDNN, Keras `reset_after=True`.
    ResetAfter,
    /// `n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)`: Cho et al. 2014 (arXiv 1406.1078 v3).
    ResetBefore,
}

impl GruVariant {
    pub fn name(self) -> &'static str {
        match self {
            GruVariant::ResetAfter => "gru",
            GruVariant::ResetBefore => "gru-reset-before",
        }
    }
}

impl std::str::FromStr for GruVariant {
    type Err = BpttError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gru" | "reset-after" | "gru-reset-after" => Ok(GruVariant::ResetAfter),
            "reset-before" | "gru-reset-before" => Ok(GruVariant::ResetBefore),
            other => Err(BpttError::Invalid(format!(
                "unknown GRU variant '{other}' (expected gru-reset-after or gru-reset-before)"
            ))),
        }
    }
}

/// GRU cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Gru<T: RealField + Copy> {
    variant: GruVariant,
    params: Params<T>,
}

impl<T: RealField + Copy> Gru<T> {
    pub fn variant(&self) -> GruVariant {
        self.variant
    }
    /// Mutable recurrent block of one gate (the experiments rescale them).
    pub fn weight_hh_gate_mut(&mut self, gate: GruGate) -> nalgebra::DMatrixViewMut<'_, T> {
        let r = gate.rows(self.hidden_size());
        self.params[WEIGHT_HH].rows_mut(r.start, r.len())
    }
}

impl<T: RealField + Copy> Gru<T> {
    /// Tape rows of the candidate `n` (`[r; z; hn; n]` or `[r; z; n; r ⊙ h]`).
    fn n_rows(&self) -> Range<usize> {
        let hd = self.hidden_size();
        match self.variant {
            GruVariant::ResetAfter => 3 * hd..4 * hd,
            GruVariant::ResetBefore => 2 * hd..3 * hd,
        }
    }
}

impl<T: RealField + Copy> CellFamily<T> for Gru<T> {
    const GATES: usize = 3;
    const MODULE: &'static str = "GRU";
    type Config = GruVariant;
    fn from_parts(config: GruVariant, params: Params<T>) -> Self {
        Gru { variant: config, params }
    }
    fn config(&self) -> GruVariant {
        self.variant
    }
}

crate::nn::cell::rescalar_from_family!(Gru);

impl<T: RealField + Copy> Cell<T> for Gru<T> {
    fn name(&self) -> String {
        self.variant.name().into()
    }
    fn params(&self) -> &Params<T> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }
    fn tape_rows(&self) -> usize {
        4 * self.hidden_size()
    }
    fn projection_bias(&self, out: &mut [T]) {
        let hd = self.hidden_size();
        // b_hr, b_hz only add; so does b_hn for ResetBefore (outside the product with r)
        let folded = match self.variant {
            GruVariant::ResetAfter => 2 * hd,
            GruVariant::ResetBefore => 3 * hd,
        };
        for (k, o) in out.iter_mut().enumerate() {
            let bi = self.bias_ih()[k];
            *o = if k < folded {
                bi + self.bias_hh()[k]
            } else {
                bi
            };
        }
    }
    fn split_recurrent_grad(&self) -> bool {
        self.variant == GruVariant::ResetAfter
    }

    fn step_forward(&self, tape: MatMut<'_, T>, h_prev: MatRef<'_, T>, h: MatMut<'_, T>) {
        let hd = self.hidden_size();
        let (mut tape, mut h) = (tape, h);
        let w_hh = MatRef::from(self.weight_hh());
        match self.variant {
            GruVariant::ResetAfter => {
                // move P_n below, put b_hn in its place: one GEMM then gives
                // [P_r + W_hr h; P_z + W_hz h; hn = b_hn + W_hn h]
                let b_hn = &self.bias_hh().as_slice()[2 * hd..];
                for j in 0..tape.cols() {
                    let col = tape.col_mut(j);
                    col.copy_within(2 * hd..3 * hd, 3 * hd);
                    col[2 * hd..3 * hd].copy_from_slice(b_hn);
                }
                gemm(
                    tape.reborrow().row_block(0, 3 * hd),
                    true,
                    Op::N(w_hh),
                    Op::N(h_prev),
                );
                for j in 0..tape.cols() {
                    let col = tape.col_mut(j);
                    sigmoid_in_place(&mut col[..2 * hd]);
                    // n = tanh(P_n + r ⊙ hn)
                    let (rzh, n) = col.split_at_mut(3 * hd);
                    for k in 0..hd {
                        n[k] += rzh[k] * rzh[2 * hd + k];
                    }
                    tanh_in_place(n);
                }
            }
            GruVariant::ResetBefore => {
                gemm(
                    tape.reborrow().row_block(0, 2 * hd),
                    true,
                    Op::N(w_hh.row_block(0, 2 * hd)),
                    Op::N(h_prev),
                );
                // rh = r ⊙ h_prev, built in h (free until the end of the step) and kept on the
                // tape; then n = tanh(P_n + W_hn (r ⊙ h))
                for j in 0..tape.cols() {
                    let col = tape.col_mut(j);
                    sigmoid_in_place(&mut col[..2 * hd]);
                    let (hp, rh) = (h_prev.col(j), h.col_mut(j));
                    for k in 0..hd {
                        rh[k] = col[k] * hp[k];
                    }
                    col[3 * hd..].copy_from_slice(rh);
                }
                gemm(
                    tape.reborrow().row_block(2 * hd, hd),
                    true,
                    Op::N(w_hh.row_block(2 * hd, hd)),
                    Op::N(h.as_ref()),
                );
                for j in 0..tape.cols() {
                    tanh_in_place(&mut tape.col_mut(j)[2 * hd..3 * hd]);
                }
            }
        }
        // h = (1 − z) ⊙ n + z ⊙ h_prev, evaluated as PyTorch does: n + z ⊙ (h_prev − n)
        let nr = self.n_rows();
        for j in 0..tape.cols() {
            let col = tape.col(j);
            let (z, n, hp) = (&col[hd..2 * hd], &col[nr.clone()], h_prev.col(j));
            for (k, h) in h.col_mut(j).iter_mut().enumerate() {
                *h = n[k] + z[k] * (hp[k] - n[k]);
            }
        }
    }

    fn step_backward(
        &self,
        dh: MatRef<'_, T>,
        w_hh_t: MatRef<'_, T>,
        tape: MatRef<'_, T>,
        h_prev: MatRef<'_, T>,
        _h: MatRef<'_, T>,
        d_ih: MatMut<'_, T>,
        d_hh: Option<MatMut<'_, T>>,
        dh_prev: MatMut<'_, T>,
    ) {
        let one = T::one();
        let hd = self.hidden_size();
        let nr = self.n_rows();
        let (mut dgi, mut dh_prev) = (d_ih, dh_prev);
        // h = (1 − z) ⊙ n + z ⊙ h_prev: into n and z, and directly into h_prev
        for j in 0..dgi.cols() {
            let (col, g, hp) = (tape.col(j), dh.col(j), h_prev.col(j));
            let (z, n) = (&col[hd..2 * hd], &col[nr.clone()]);
            let d = dgi.col_mut(j);
            for k in 0..hd {
                let dn = g[k] * (one - z[k]);
                let dz = g[k] * (hp[k] - n[k]);
                // backprop through tanh and the update gate's sigmoid
                d[2 * hd + k] = dn * (one - n[k] * n[k]);
                d[hd + k] = dz * z[k] * (one - z[k]);
            }
        }
        match self.variant {
            GruVariant::ResetAfter => {
                let mut dgh = d_hh.expect("ResetAfter keeps the recurrent gradient apart");
                for j in 0..dgi.cols() {
                    let (col, g) = (tape.col(j), dh.col(j));
                    let (r, z, hn) = (&col[..hd], &col[hd..2 * hd], &col[2 * hd..3 * hd]);
                    let (d, e) = (dgi.col_mut(j), dgh.col_mut(j));
                    for k in 0..hd {
                        let da_n = d[2 * hd + k];
                        // n_pre = P_n + r ⊙ hn, hn = W_hn h + b_hn
                        let dr = da_n * hn[k];
                        d[k] = dr * r[k] * (one - r[k]);
                        e[k] = d[k];
                        e[hd + k] = d[hd + k];
                        e[2 * hd + k] = da_n * r[k];
                    }
                    let p = dh_prev.col_mut(j);
                    for k in 0..hd {
                        p[k] = g[k] * z[k];
                    }
                }
                // dh_prev += W_hhᵀ [dA_r; dA_z; d_hn]
                gemm(dh_prev, true, Op::N(w_hh_t), Op::N(dgh.as_ref()));
            }
            GruVariant::ResetBefore => {
                // d(r ⊙ h) = W_hnᵀ dA_n, into dh_prev as scratch
                gemm(
                    dh_prev.reborrow(),
                    false,
                    Op::N(w_hh_t.col_block(2 * hd, hd)),
                    Op::N(dgi.as_ref().row_block(2 * hd, hd)),
                );
                for j in 0..dgi.cols() {
                    let (col, g, hp) = (tape.col(j), dh.col(j), h_prev.col(j));
                    let (r, z) = (&col[..hd], &col[hd..2 * hd]);
                    let (d, p) = (dgi.col_mut(j), dh_prev.col_mut(j));
                    for k in 0..hd {
                        let d_rh = p[k];
                        let dr = d_rh * hp[k];
                        d[k] = dr * r[k] * (one - r[k]);
                        p[k] = g[k] * z[k] + d_rh * r[k];
                    }
                }
                // dh_prev += W_h{r,z}ᵀ [dA_r; dA_z]
                gemm(
                    dh_prev,
                    true,
                    Op::N(w_hh_t.col_block(0, 2 * hd)),
                    Op::N(dgi.as_ref().row_block(0, 2 * hd)),
                );
            }
        }
    }

    fn recurrent_param_grads(
        &self,
        d_hh: MatRef<'_, T>,
        tape: MatRef<'_, T>,
        h_prev: MatRef<'_, T>,
        d_hh_sums: &[T],
        grads: &mut [DMatrix<T>],
    ) {
        let hd = self.hidden_size();
        let dw = MatMut::from(&mut grads[WEIGHT_HH]);
        match self.variant {
            GruVariant::ResetAfter => gemm(dw, true, Op::N(d_hh), Op::T(h_prev)),
            GruVariant::ResetBefore => {
                let mut dw = dw;
                // r, z blocks read h_{t−1}; the n block reads r ⊙ h_{t−1}
                gemm(
                    dw.reborrow().row_block(0, 2 * hd),
                    true,
                    Op::N(d_hh.row_block(0, 2 * hd)),
                    Op::T(h_prev),
                );
                gemm(
                    dw.row_block(2 * hd, hd),
                    true,
                    Op::N(d_hh.row_block(2 * hd, hd)),
                    Op::T(tape.row_block(3 * hd, hd)),
                );
            }
        }
        add_to(grads[BIAS_HH].as_mut_slice(), d_hh_sums);
    }

    fn conditioning(&self, tape: MatRef<'_, T>, _states: MatRef<'_, T>) -> f64 {
        use crate::nn::cell::{entries, sigmoid_conditioning, tanh_conditioning};
        let hd = self.hidden_size();
        sigmoid_conditioning(entries(tape, 0..2 * hd))
            .max(tanh_conditioning(entries(tape, self.n_rows())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_parameter_count() {
        let cell = Gru::<f64>::zeros(5, 3, GruVariant::ResetAfter);
        assert_eq!(cell.weight_ih().shape(), (9, 5));
        assert_eq!(cell.weight_hh().shape(), (9, 3));
        assert_eq!(cell.parameter_count(), 3 * 3 * (5 + 3 + 2));
        assert_eq!(GruGate::New.rows(3), 6..9);
        assert_eq!(
            "gru-reset-before".parse::<GruVariant>().unwrap(),
            GruVariant::ResetBefore
        );
    }

    #[test]
    fn variants_differ_only_through_the_reset_gate() {
        // with b_hn = 0 and r ≡ 1 the two formulations coincide
        let mut rng = crate::rng::stream(9, &[]);
        let mut a = Gru::<f64>::uniform(2, 3, GruVariant::ResetAfter, 0.7, &mut rng);
        a.params_mut()[BIAS_HH].rows_mut(6, 3).fill(0.0);
        a.params_mut()[BIAS_IH].rows_mut(0, 3).fill(60.0); // r = sigmoid(≈60) = 1 in f64
        let mut b = a.clone();
        b.variant = GruVariant::ResetBefore;
        let x = DMatrix::from_element(2, 1, 0.3);
        let h = DMatrix::from_column_slice(3, 1, &[0.1, -0.4, 0.9]);
        approx::assert_relative_eq!(
            crate::nn::sequence::step(&a, &x, &h).unwrap(),
            crate::nn::sequence::step(&b, &x, &h).unwrap(),
            epsilon = 1e-15,
            max_relative = 1e-14
        );
        // and differ otherwise
        a.params_mut()[BIAS_IH].rows_mut(0, 3).fill(0.0);
        b.params_mut()[BIAS_IH].rows_mut(0, 3).fill(0.0);
        assert!(
            (crate::nn::sequence::step(&a, &x, &h).unwrap()
                - crate::nn::sequence::step(&b, &x, &h).unwrap())
            .amax()
                > 1e-3
        );
    }
}
