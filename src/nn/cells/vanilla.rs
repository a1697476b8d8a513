//! The vanilla (Elman) RNN cell, PyTorch's `nn.RNN`:
//!
//! ```text
//! a_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh        (H × B)
//! h_t = σ(a_t)
//! ```
//!
//! Both biases only ever add: the engine's input projection carries `b_ih + b_hh`, so a step
//! is one GEMM `a_t = P_t + W_hh h_{t−1}` and one element-wise pass. Tape: `a_t` (H × B).
//!
//! Backward, given `dh_t = ∂L/∂h_t` (derivation: `proofs/vanilla.md`):
//!
//! ```text
//! da_t      = dh_t ⊙ σ'(a_t)                     (this step; d_ih = d_hh = da)
//! dh_{t−1}  = W_hhᵀ da_t
//! dW_ih    += dA Xᵀ    dW_hh += dA H_prevᵀ    db_ih, db_hh += dA 1    (engine, all steps)
//! ```

use nalgebra::RealField;

use crate::nn::activation::Activation;
use crate::nn::cell::{Cell, CellFamily};
pub use crate::nn::cell::{BIAS_HH, BIAS_IH, WEIGHT_HH, WEIGHT_IH};
use crate::nn::engine::mat::{sigmoid_into, tanh_into};
use crate::nn::engine::{MatMut, MatRef, Op, gemm};
use crate::nn::params::Params;

/// Vanilla RNN cell with activation σ ∈ {tanh, sigmoid, ReLU, identity}.
#[derive(Clone, Debug, PartialEq)]
pub struct VanillaRnn<T: RealField + Copy> {
    activation: Activation,
    params: Params<T>,
}

impl<T: RealField + Copy> VanillaRnn<T> {
    pub fn activation(&self) -> Activation {
        self.activation
    }
    }

/// `h = σ(a)` element-wise.
fn activate<T: RealField + Copy>(act: Activation, a: &[T], h: &mut [T]) {
    match act {
        Activation::Tanh => tanh_into(a, h),
        Activation::Sigmoid => sigmoid_into(a, h),
        Activation::Relu => h
            .iter_mut()
            .zip(a)
            .for_each(|(h, a)| *h = if *a > T::zero() { *a } else { T::zero() }),
        Activation::Identity => h.copy_from_slice(a),
    }
}

/// Backprop through σ: `da = g ⊙ σ'(a)`, σ' from the saved `a` and `h = σ(a)`.
fn backprop_activation<T: RealField + Copy>(
    act: Activation,
    g: &[T],
    a: &[T],
    h: &[T],
    da: &mut [T],
) {
    match act {
        // tanh' = 1 − h²
        Activation::Tanh => da
            .iter_mut()
            .zip(g.iter().zip(h))
            .for_each(|(d, (g, h))| *d = *g * (T::one() - *h * *h)),
        // σ' = h (1 − h)
        Activation::Sigmoid => da
            .iter_mut()
            .zip(g.iter().zip(h))
            .for_each(|(d, (g, h))| *d = *g * *h * (T::one() - *h)),
        Activation::Relu => da
            .iter_mut()
            .zip(g.iter().zip(a))
            .for_each(|(d, (g, a))| *d = if *a > T::zero() { *g } else { T::zero() }),
        Activation::Identity => da.copy_from_slice(g),
    }
}

impl<T: RealField + Copy> CellFamily<T> for VanillaRnn<T> {
    const GATES: usize = 1;
    const MODULE: &'static str = "RNN";
    type Config = Activation;
    fn from_parts(config: Activation, params: Params<T>) -> Self {
        VanillaRnn { activation: config, params }
    }
    fn config(&self) -> Activation {
        self.activation
    }
}

crate::nn::cell::rescalar_from_family!(VanillaRnn);

impl<T: RealField + Copy> Cell<T> for VanillaRnn<T> {
    fn name(&self) -> String {
        format!("rnn-{}", self.activation.name())
    }
    fn params(&self) -> &Params<T> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }
    fn tape_rows(&self) -> usize {
        self.hidden_size()
    }
    fn projection_bias(&self, out: &mut [T]) {
        crate::nn::cell::folded_bias(&self.params, out);
    }

    fn step_forward(&self, tape: MatMut<'_, T>, h_prev: MatRef<'_, T>, h: MatMut<'_, T>) {
        let (mut a, mut h) = (tape, h);
        // a = P + W_hh h_prev  (P = W_ih x + b_ih + b_hh, from the engine)
        gemm(
            a.reborrow(),
            true,
            Op::N(MatRef::from(self.weight_hh())),
            Op::N(h_prev),
        );
        // h = σ(a), over the whole block at once when its columns are adjacent
        let act = self.activation;
        match (a.contiguous_mut(), h.contiguous_mut()) {
            (Some(a), Some(h)) => activate(act, a, h),
            _ => {
                for j in 0..a.cols() {
                    activate(act, a.col_mut(j), h.col_mut(j));
                }
            }
        }
    }

    fn step_backward(
        &self,
        dh: MatRef<'_, T>,
        w_hh_t: MatRef<'_, T>,
        tape: MatRef<'_, T>,
        _h_prev: MatRef<'_, T>,
        h: MatRef<'_, T>,
        d_ih: MatMut<'_, T>,
        _d_hh: Option<MatMut<'_, T>>,
        dh_prev: MatMut<'_, T>,
    ) {
        let mut da = d_ih;
        let act = self.activation;
        // backprop through σ: da = dh ⊙ σ'(a), over the whole block when it is contiguous
        match (
            dh.contiguous(),
            tape.contiguous(),
            h.contiguous(),
            da.contiguous_mut(),
        ) {
            (Some(g), Some(a), Some(h), Some(d)) => backprop_activation(act, g, a, h, d),
            _ => {
                for j in 0..da.cols() {
                    backprop_activation(act, dh.col(j), tape.col(j), h.col(j), da.col_mut(j));
                }
            }
        }
        // dh_prev = W_hhᵀ da
        gemm(dh_prev, false, Op::N(w_hh_t), Op::N(da.as_ref()));
    }

    fn conditioning(&self, _tape: MatRef<'_, T>, states: MatRef<'_, T>) -> f64 {
        let hs = crate::nn::cell::entries(states, 0..self.hidden_size());
        match self.activation {
            Activation::Tanh => crate::nn::cell::tanh_conditioning(hs),
            Activation::Sigmoid => crate::nn::cell::sigmoid_conditioning(hs),
            Activation::Relu | Activation::Identity => 1.0,
        }
    }

    fn omega_applies(&self) -> bool {
        true
    }

    fn has_kinks(&self) -> bool {
        self.activation.has_kink()
    }

    fn derivative_bound(&self) -> Option<f64> {
        Some(self.activation.gamma())
    }

    fn elementwise_activation(&self) -> Option<Activation> {
        Some(self.activation)
    }

    fn kink_pattern(&self, tape: MatRef<'_, T>, out: &mut Vec<bool>) {
        if self.activation.has_kink() {
            out.extend(crate::nn::cell::entries(tape, 0..tape.rows()).map(|&a| a > T::zero()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, uniform_matrix};

    #[test]
    fn names_and_shapes_follow_pytorch() {
        let cell: VanillaRnn<f64> =
            VanillaRnn::pytorch_init(3, 4, Activation::Tanh, &mut stream(1, &[]));
        let names: Vec<_> = cell
            .params()
            .iter()
            .map(|(n, m)| (n.to_string(), m.shape()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("weight_ih".into(), (4, 3)),
                ("weight_hh".into(), (4, 4)),
                ("bias_ih".into(), (4, 1)),
                ("bias_hh".into(), (4, 1)),
            ]
        );
        assert_eq!(cell.parameter_count(), 4 * 3 + 4 * 4 + 4 + 4);
        assert!(
            cell.params()
                .iter()
                .all(|(_, m)| m.iter().all(|x| x.abs() <= 0.5))
        );
    }

    #[test]
    fn forward_matches_the_equation_column_by_column() {
        let mut rng = stream(2, &[]);
        let cell: VanillaRnn<f64> = VanillaRnn::uniform(3, 4, Activation::Sigmoid, 1.0, &mut rng);
        let x = uniform_matrix::<f64>(&mut rng, 3, 2, 1.0);
        let h = uniform_matrix::<f64>(&mut rng, 4, 2, 1.0);
        let out = crate::nn::sequence::step(&cell, &x, &h).unwrap();
        for b in 0..2 {
            let a = cell.weight_ih() * x.column(b)
                + cell.bias_ih()
                + cell.weight_hh() * h.column(b)
                + cell.bias_hh();
            for i in 0..4 {
                let expected = 1.0 / (1.0 + (-a[i]).exp());
                approx::assert_relative_eq!(
                    out[(i, b)],
                    expected,
                    epsilon = 1e-15,
                    max_relative = 1e-14
                );
            }
        }
    }
}
