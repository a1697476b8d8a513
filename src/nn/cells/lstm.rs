//! The LSTM cell, PyTorch's `nn.LSTM` (Hochreiter & Schmidhuber 1997, with a forget gate):
//!
//! ```text
//! A   = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh          (4H × B, gate blocks i, f, g, o)
//! i   = sigmoid(A_i)     input gate
//! f   = sigmoid(A_f)     forget gate
//! g   = tanh(A_g)        candidate cell
//! o   = sigmoid(A_o)     output gate
//! c_t = f ⊙ c_{t−1} + i ⊙ g
//! h_t = o ⊙ tanh(c_t)
//! ```
//!
//! The state is `s_t = [h_t; c_t]` (2H × B). The engine's projection carries `b_ih + b_hh`;
//! a step is one `4H × H` GEMM for all four gates and one element-wise pass. Tape per step:
//! the activated gates `[i; f; g; o]` and `tanh(c_t)` (5H × B).
//!
//! Backward, given `dh_t` and `dc_t` (derivation: `proofs/lstm.md`):
//!
//! ```text
//! do   = dh ⊙ tanh(c_t)
//! dc  ← dc + dh ⊙ o ⊙ (1 − tanh²(c_t))          total gradient of c_t
//! df   = dc ⊙ c_{t−1}     di = dc ⊙ g     dg = dc ⊙ i     dc_{t−1} = dc ⊙ f
//! dA_i = di ⊙ i(1−i)  dA_f = df ⊙ f(1−f)  dA_g = dg ⊙ (1−g²)  dA_o = do ⊙ o(1−o)
//! dh_{t−1} = W_hhᵀ dA                                          (this step)
//! dW_ih += dA Xᵀ   dW_hh += dA H_prevᵀ   db_ih, db_hh += dA 1   (engine, all steps)
//! ```

use std::ops::Range;

use nalgebra::{DMatrix, RealField};

use crate::nn::cell::{Cell, CellFamily};
pub use crate::nn::cell::{BIAS_HH, BIAS_IH, WEIGHT_HH, WEIGHT_IH};
use crate::nn::engine::mat::{sigmoid_in_place, tanh_in_place, tanh_into};
use crate::nn::engine::{MatMut, MatRef, Op, gemm};
use crate::nn::params::Params;
use crate::rng::Rng;

/// The four gate blocks of the LSTM's stacked matrices, in PyTorch order i, f, g, o.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LstmGate {
    Input,
    Forget,
    Cell,
    Output,
}

impl LstmGate {
    /// All gates in PyTorch's row order.
    pub const ALL: [LstmGate; 4] = [
        LstmGate::Input,
        LstmGate::Forget,
        LstmGate::Cell,
        LstmGate::Output,
    ];

    /// The rows of this gate's block in a 4H-row matrix.
    pub fn rows(self, hidden: usize) -> Range<usize> {
        let k = self as usize;
        k * hidden..(k + 1) * hidden
    }
}

/// LSTM cell with PyTorch's parameter names, shapes and gate order.
#[derive(Clone, Debug, PartialEq)]
pub struct Lstm<T: RealField + Copy> {
    params: Params<T>,
}

impl<T: RealField + Copy> Lstm<T> {
    /// Set the forget-gate bias: `b_ih[f] = value`, `b_hh[f] = 0`, so the effective forget
    /// bias is `value` (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1.0).
    pub fn with_forget_bias(mut self, value: f64) -> Self {
        let rows = LstmGate::Forget.rows(self.hidden_size());
        let v: T = nalgebra::convert(value);
        self.params[BIAS_IH]
            .rows_mut(rows.start, rows.len())
            .fill(v);
        self.params[BIAS_HH]
            .rows_mut(rows.start, rows.len())
            .fill(T::zero());
        self
    }

    /// Chrono initialisation (Tallec & Ollivier 2018): `b_f ~ log U[1, T_max − 1]` and
    /// `b_i = −b_f`, so the forget gates' characteristic forgetting times spread over
    /// `[1, T_max]`. The biases are put in `bias_ih`; the `bias_hh` blocks of i and f are zeroed.
    pub fn with_chrono_init(mut self, t_max: f64, rng: &mut Rng) -> Self {
        use rand::RngExt;
        assert!(
            t_max > 2.0,
            "chrono initialisation needs T_max > 2, got {t_max}"
        );
        let h = self.hidden_size();
        let (fr, ir) = (LstmGate::Forget.rows(h), LstmGate::Input.rows(h));
        for k in 0..h {
            let b_f: f64 = rng.random_range(1.0..(t_max - 1.0)).ln();
            self.params[BIAS_IH][(fr.start + k, 0)] = nalgebra::convert(b_f);
            self.params[BIAS_IH][(ir.start + k, 0)] = nalgebra::convert(-b_f);
            self.params[BIAS_HH][(fr.start + k, 0)] = T::zero();
            self.params[BIAS_HH][(ir.start + k, 0)] = T::zero();
        }
        self
    }

    /// `W_ih`, 4H × D.
        /// `W_hh`, 4H × H.
        /// `b_ih`, 4H × 1.
        /// `b_hh`, 4H × 1.
        /// The recurrent block `W_h·` of one gate, H × H.
    pub fn weight_hh_gate(&self, gate: LstmGate) -> DMatrix<T> {
        let r = gate.rows(self.hidden_size());
        self.params[WEIGHT_HH].rows(r.start, r.len()).into_owned()
    }
    /// Mutable recurrent block of one gate (the experiments rescale them).
    pub fn weight_hh_gate_mut(&mut self, gate: LstmGate) -> nalgebra::DMatrixViewMut<'_, T> {
        let r = gate.rows(self.hidden_size());
        self.params[WEIGHT_HH].rows_mut(r.start, r.len())
    }
}

impl<T: RealField + Copy> CellFamily<T> for Lstm<T> {
    const GATES: usize = 4;
    const MODULE: &'static str = "LSTM";
    type Config = ();
    fn from_parts((): (), params: Params<T>) -> Self {
        Lstm { params }
    }
    fn config(&self) {}
}

crate::nn::cell::rescalar_from_family!(Lstm);

impl<T: RealField + Copy> Cell<T> for Lstm<T> {
    fn name(&self) -> String {
        "lstm".into()
    }
    fn state_size(&self) -> usize {
        2 * self.hidden_size()
    }
    fn state_names(&self) -> Vec<&'static str> {
        vec!["h", "c"]
    }
    fn params(&self) -> &Params<T> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }
    fn tape_rows(&self) -> usize {
        5 * self.hidden_size()
    }
    fn projection_bias(&self, out: &mut [T]) {
        crate::nn::cell::folded_bias(&self.params, out);
    }

    fn step_forward(&self, tape: MatMut<'_, T>, s_prev: MatRef<'_, T>, s: MatMut<'_, T>) {
        let hd = self.hidden_size();
        let (mut tape, mut s) = (tape, s);
        // A = P + W_hh h_prev: all four gates in one GEMM
        gemm(
            tape.reborrow().row_block(0, 4 * hd),
            true,
            Op::N(MatRef::from(self.weight_hh())),
            Op::N(s_prev.row_block(0, hd)),
        );
        for j in 0..tape.cols() {
            let col = tape.col_mut(j);
            let (gates, tanh_c) = col.split_at_mut(4 * hd);
            // i, f = σ(A_i), σ(A_f); g = tanh(A_g); o = σ(A_o)
            sigmoid_in_place(&mut gates[..2 * hd]);
            tanh_in_place(&mut gates[2 * hd..3 * hd]);
            sigmoid_in_place(&mut gates[3 * hd..]);
            let (i, rest) = gates.split_at(hd);
            let (f, rest) = rest.split_at(hd);
            let (g, o) = rest.split_at(hd);
            let c_prev = &s_prev.col(j)[hd..];
            let (h, c) = s.col_mut(j).split_at_mut(hd);
            // c = f ⊙ c_prev + i ⊙ g ;  h = o ⊙ tanh(c)
            for k in 0..hd {
                c[k] = f[k] * c_prev[k] + i[k] * g[k];
            }
            tanh_into(c, tanh_c);
            for k in 0..hd {
                h[k] = o[k] * tanh_c[k];
            }
        }
    }

    fn step_backward(
        &self,
        ds: MatRef<'_, T>,
        w_hh_t: MatRef<'_, T>,
        tape: MatRef<'_, T>,
        s_prev: MatRef<'_, T>,
        _s: MatRef<'_, T>,
        d_ih: MatMut<'_, T>,
        _d_hh: Option<MatMut<'_, T>>,
        ds_prev: MatMut<'_, T>,
    ) {
        let one = T::one();
        let hd = self.hidden_size();
        let (mut da, mut ds_prev) = (d_ih, ds_prev);
        for j in 0..da.cols() {
            let col = tape.col(j);
            let (i, f, g, o, tanh_c) = (
                &col[..hd],
                &col[hd..2 * hd],
                &col[2 * hd..3 * hd],
                &col[3 * hd..4 * hd],
                &col[4 * hd..],
            );
            let (dh, dc_next) = ds.col(j).split_at(hd);
            let (dc_next, tanh_c) = (&dc_next[..hd], &tanh_c[..hd]);
            let c_prev = &s_prev.col(j)[hd..2 * hd];
            let dc_prev = &mut ds_prev.col_mut(j)[hd..2 * hd];
            // the four gate blocks of dA, each of length H (lets the loop drop bounds checks)
            let (da_i, rest) = da.col_mut(j).split_at_mut(hd);
            let (da_f, rest) = rest.split_at_mut(hd);
            let (da_g, da_o) = rest.split_at_mut(hd);
            let da_o = &mut da_o[..hd];
            for k in 0..hd {
                // h = o ⊙ tanh(c): to the output gate, and through tanh into the cell state
                let d_o = dh[k] * tanh_c[k];
                let dc = dc_next[k] + dh[k] * o[k] * (one - tanh_c[k] * tanh_c[k]);
                // c = f ⊙ c_prev + i ⊙ g
                let (d_f, d_i, d_g) = (dc * c_prev[k], dc * g[k], dc * i[k]);
                dc_prev[k] = dc * f[k];
                // backprop through the gate non-linearities into dA (4H × B)
                da_i[k] = d_i * i[k] * (one - i[k]);
                da_f[k] = d_f * f[k] * (one - f[k]);
                da_g[k] = d_g * (one - g[k] * g[k]);
                da_o[k] = d_o * o[k] * (one - o[k]);
            }
        }
        // dh_prev = W_hhᵀ dA
        gemm(
            ds_prev.row_block(0, hd),
            false,
            Op::N(w_hh_t),
            Op::N(da.as_ref()),
        );
    }

    fn conditioning(&self, tape: MatRef<'_, T>, _states: MatRef<'_, T>) -> f64 {
        use crate::nn::cell::{entries, sigmoid_conditioning, tanh_conditioning};
        let hd = self.hidden_size();
        let gates =
            sigmoid_conditioning(entries(tape, 0..2 * hd).chain(entries(tape, 3 * hd..4 * hd)));
        gates.max(tanh_conditioning(
            entries(tape, 2 * hd..3 * hd).chain(entries(tape, 4 * hd..5 * hd)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn gate_blocks_follow_pytorch_order() {
        assert_eq!(LstmGate::Input.rows(3), 0..3);
        assert_eq!(LstmGate::Forget.rows(3), 3..6);
        assert_eq!(LstmGate::Cell.rows(3), 6..9);
        assert_eq!(LstmGate::Output.rows(3), 9..12);
        let cell = Lstm::<f64>::zeros(5, 3, ());
        assert_eq!(cell.weight_ih().shape(), (12, 5));
        assert_eq!(cell.parameter_count(), 4 * 3 * (5 + 3 + 2));
    }

    #[test]
    fn initialisations_set_the_documented_biases() {
        let mut rng = stream(4, &[]);
        let cell = Lstm::<f64>::pytorch_init(2, 4, (), &mut rng).with_forget_bias(1.0);
        let f = LstmGate::Forget.rows(4);
        assert!(
            f.clone()
                .all(|r| cell.bias_ih()[r] == 1.0 && cell.bias_hh()[r] == 0.0)
        );
        assert!(cell.weight_hh().iter().all(|w| w.abs() <= 0.5));
        let cell = Lstm::<f64>::zeros(2, 64, ()).with_chrono_init(100.0, &mut rng);
        let (f, i) = (LstmGate::Forget.rows(64), LstmGate::Input.rows(64));
        for (fr, ir) in f.zip(i) {
            let b_f = cell.bias_ih()[fr];
            assert!(b_f >= 0.0 && b_f <= 99f64.ln(), "{b_f}");
            assert_eq!(cell.bias_ih()[ir], -b_f);
        }
    }

    #[test]
    fn zero_weights_give_the_textbook_values() {
        // all pre-activations 0: i = f = o = 1/2, g = 0, so c = c_prev / 2, h = tanh(c)/2
        let cell = Lstm::<f64>::zeros(1, 2, ());
        let s_prev = DMatrix::from_column_slice(4, 1, &[0.3, -0.2, 0.8, -1.0]);
        let s =
            crate::nn::sequence::step(&cell, &DMatrix::from_element(1, 1, 0.5), &s_prev).unwrap();
        approx::assert_relative_eq!(s[(2, 0)], 0.4, epsilon = 1e-16, max_relative = 1e-15);
        approx::assert_relative_eq!(
            s[(0, 0)],
            0.4f64.tanh() / 2.0,
            epsilon = 1e-16,
            max_relative = 1e-15
        );
        approx::assert_relative_eq!(s[(3, 0)], -0.5, epsilon = 1e-16, max_relative = 1e-15);
    }
}
