//! The minimal gated unit (MGU; Zhou, Wu, Zhang & Zhou 2016, "Minimal gated unit for recurrent
//! neural networks"): one gate `f` that both forgets and resets. Gate order f, n in the stacked
//! parameters, PyTorch naming (`weight_ih` 2H × D, `weight_hh` 2H × H, `bias_ih`, `bias_hh`):
//!
//! ```text
//! f   = sigmoid(W_if x + b_if + W_hf h_{t−1} + b_hf)        forget gate
//! n   = tanh(W_in x + b_in + W_hn (f ⊙ h_{t−1}) + b_hn)     candidate
//! h_t = (1 − f) ⊙ h_{t−1} + f ⊙ n
//! ```
//!
//! No cell state: `s_t = h_t`. Both biases only add, so the engine's input projection carries
//! `b_ih + b_hh`. Tape per step: `[f; n; f ⊙ h_{t−1}]` (3H rows). Backward, given
//! `dh = ∂L/∂h_t` (derivation: `proofs/mgu.md`):
//!
//! ```text
//! dn = dh ⊙ f      dA_n = dn ⊙ (1 − n²)      d(f ⊙ h) = W_hnᵀ dA_n
//! df = dh ⊙ (n − h_{t−1}) + d(f ⊙ h) ⊙ h_{t−1}      dA_f = df ⊙ f(1 − f)
//! dh_{t−1} = dh ⊙ (1 − f) + d(f ⊙ h) ⊙ f + W_hfᵀ dA_f
//! dW_hf += dA_f H_prevᵀ    dW_hn += dA_n (F ⊙ H_prev)ᵀ    (all steps at once)
//! ```

use nalgebra::{DMatrix, RealField};

use crate::nn::cell::{BIAS_HH, Cell, CellFamily, WEIGHT_HH};
use crate::nn::engine::mat::{add_to, sigmoid_in_place, tanh_in_place};
use crate::nn::engine::{MatMut, MatRef, Op, gemm};
use crate::nn::params::Params;

/// Minimal gated unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Mgu<T: RealField + Copy> {
    params: Params<T>,
}

impl<T: RealField + Copy> CellFamily<T> for Mgu<T> {
    const GATES: usize = 2;
    const MODULE: &'static str = "MGU";
    type Config = ();
    fn from_parts((): (), params: Params<T>) -> Self {
        Mgu { params }
    }
    fn config(&self) {}
}

crate::nn::cell::rescalar_from_family!(Mgu);

impl<T: RealField + Copy> Cell<T> for Mgu<T> {
    fn name(&self) -> String {
        "mgu".into()
    }
    fn params(&self) -> &Params<T> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }
    fn tape_rows(&self) -> usize {
        3 * self.hidden_size()
    }
    fn projection_bias(&self, out: &mut [T]) {
        crate::nn::cell::folded_bias(&self.params, out);
    }

    fn step_forward(&self, tape: MatMut<'_, T>, h_prev: MatRef<'_, T>, h: MatMut<'_, T>) {
        let hd = self.hidden_size();
        let (mut tape, mut h) = (tape, h);
        let w_hh = MatRef::from(self.weight_hh());
        // f = sigmoid(P_f + W_hf h_prev)
        gemm(
            tape.reborrow().row_block(0, hd),
            true,
            Op::N(w_hh.row_block(0, hd)),
            Op::N(h_prev),
        );
        // fh = f ⊙ h_prev, built in h (free until the end of the step) and kept on the tape
        for j in 0..tape.cols() {
            let col = tape.col_mut(j);
            sigmoid_in_place(&mut col[..hd]);
            let (hp, fh) = (h_prev.col(j), h.col_mut(j));
            for k in 0..hd {
                fh[k] = col[k] * hp[k];
            }
            col[2 * hd..].copy_from_slice(fh);
        }
        // n = tanh(P_n + W_hn (f ⊙ h_prev))
        gemm(
            tape.reborrow().row_block(hd, hd),
            true,
            Op::N(w_hh.row_block(hd, hd)),
            Op::N(h.as_ref()),
        );
        for j in 0..tape.cols() {
            tanh_in_place(&mut tape.col_mut(j)[hd..2 * hd]);
        }
        // h = (1 − f) ⊙ h_prev + f ⊙ n, as h_prev + f ⊙ (n − h_prev)
        for j in 0..tape.cols() {
            let (col, hp) = (tape.col(j), h_prev.col(j));
            let (f, n) = (&col[..hd], &col[hd..2 * hd]);
            for (k, h) in h.col_mut(j).iter_mut().enumerate() {
                *h = hp[k] + f[k] * (n[k] - hp[k]);
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
        _d_hh: Option<MatMut<'_, T>>,
        dh_prev: MatMut<'_, T>,
    ) {
        let one = T::one();
        let hd = self.hidden_size();
        let (mut d, mut dh_prev) = (d_ih, dh_prev);
        // backprop through h = h_prev + f ⊙ (n − h_prev) into n, then through tanh
        for j in 0..d.cols() {
            let (col, g) = (tape.col(j), dh.col(j));
            let (f, n) = (&col[..hd], &col[hd..2 * hd]);
            let dj = d.col_mut(j);
            for k in 0..hd {
                dj[hd + k] = g[k] * f[k] * (one - n[k] * n[k]);
            }
        }
        // d(f ⊙ h) = W_hnᵀ dA_n, into dh_prev as scratch
        gemm(
            dh_prev.reborrow(),
            false,
            Op::N(w_hh_t.col_block(hd, hd)),
            Op::N(d.as_ref().row_block(hd, hd)),
        );
        for j in 0..d.cols() {
            let (col, g, hp) = (tape.col(j), dh.col(j), h_prev.col(j));
            let (f, n) = (&col[..hd], &col[hd..2 * hd]);
            let (dj, p) = (d.col_mut(j), dh_prev.col_mut(j));
            for k in 0..hd {
                let d_fh = p[k];
                // f enters twice: as the mixing weight and inside f ⊙ h_prev
                let df = g[k] * (n[k] - hp[k]) + d_fh * hp[k];
                // backprop through the gate's sigmoid
                dj[k] = df * f[k] * (one - f[k]);
                p[k] = g[k] * (one - f[k]) + d_fh * f[k];
            }
        }
        // dh_prev += W_hfᵀ dA_f
        gemm(
            dh_prev,
            true,
            Op::N(w_hh_t.col_block(0, hd)),
            Op::N(d.as_ref().row_block(0, hd)),
        );
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
        let mut dw = MatMut::from(&mut grads[WEIGHT_HH]);
        // the f block reads h_{t−1}; the n block reads f ⊙ h_{t−1}
        gemm(
            dw.reborrow().row_block(0, hd),
            true,
            Op::N(d_hh.row_block(0, hd)),
            Op::T(h_prev),
        );
        gemm(
            dw.row_block(hd, hd),
            true,
            Op::N(d_hh.row_block(hd, hd)),
            Op::T(tape.row_block(2 * hd, hd)),
        );
        add_to(grads[BIAS_HH].as_mut_slice(), d_hh_sums);
    }

    fn conditioning(&self, tape: MatRef<'_, T>, _states: MatRef<'_, T>) -> f64 {
        use crate::nn::cell::{entries, sigmoid_conditioning, tanh_conditioning};
        let hd = self.hidden_size();
        sigmoid_conditioning(entries(tape, 0..hd)).max(tanh_conditioning(entries(tape, hd..2 * hd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step against the equations of Zhou et al. (2016), written out with nalgebra.
    #[test]
    fn forward_matches_the_equations_column_by_column() {
        let mut rng = crate::rng::stream(21, &[]);
        let cell = Mgu::<f64>::uniform(3, 4, (), 0.8, &mut rng);
        let x = crate::rng::uniform_matrix(&mut rng, 3, 2, 1.0);
        let h_prev = crate::rng::uniform_matrix(&mut rng, 4, 2, 1.0);
        let got = crate::nn::sequence::step(&cell, &x, &h_prev).unwrap();
        let (w_ih, w_hh) = (cell.weight_ih(), cell.weight_hh());
        let (b_ih, b_hh) = (cell.bias_ih(), cell.bias_hh());
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        for j in 0..2 {
            let (xj, hj) = (x.column(j), h_prev.column(j));
            let a_f = w_ih.rows(0, 4) * xj + b_ih.rows(0, 4) + w_hh.rows(0, 4) * hj + b_hh.rows(0, 4);
            let f = a_f.map(sigmoid);
            let fh = f.component_mul(&hj);
            let a_n = w_ih.rows(4, 4) * xj + b_ih.rows(4, 4) + w_hh.rows(4, 4) * fh + b_hh.rows(4, 4);
            let n = a_n.map(f64::tanh);
            let want = (f.map(|v| 1.0 - v)).component_mul(&hj) + f.component_mul(&n);
            approx::assert_relative_eq!(
                got.column(j).into_owned(),
                want,
                epsilon = 1e-15,
                max_relative = 1e-14
            );
        }
        assert_eq!(cell.parameter_count(), 2 * 4 * (3 + 4 + 2));
    }
}
