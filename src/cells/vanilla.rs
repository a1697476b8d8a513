//! The vanilla (Elman) RNN cell, PyTorch's `nn.RNN`:
//!
//! ```text
//! a_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh        (H × B)
//! h_t = σ(a_t)
//! ```
//!
//! Backward, given `dh_t = ∂L/∂h_t` (derivation: `proofs/vanilla.md`):
//!
//! ```text
//! da_t      = dh_t ⊙ σ'(a_t)
//! dW_ih    += da_t x_tᵀ          db_ih += da_t 1
//! dW_hh    += da_t h_{t−1}ᵀ      db_hh += da_t 1
//! dx_t      = W_ihᵀ da_t
//! dh_{t−1}  = W_hhᵀ da_t
//! ```

use nalgebra::{DMatrix, RealField};

use crate::activation::Activation;
use crate::cell::affine;
use crate::rng::Rng;
use crate::{Cell, Params};

/// Index of `weight_ih` (H × D) in [`VanillaRnn::params`].
pub const WEIGHT_IH: usize = 0;
/// Index of `weight_hh` (H × H).
pub const WEIGHT_HH: usize = 1;
/// Index of `bias_ih` (H × 1).
pub const BIAS_IH: usize = 2;
/// Index of `bias_hh` (H × 1).
pub const BIAS_HH: usize = 3;

/// Vanilla RNN cell with activation σ ∈ {tanh, sigmoid, ReLU, identity}.
#[derive(Clone, Debug, PartialEq)]
pub struct VanillaRnn<T: RealField + Copy> {
    activation: Activation,
    params: Params<T>,
}

/// What one step's backward pass needs.
#[derive(Clone, Debug)]
pub struct VanillaCache<T: RealField + Copy> {
    /// `x_t`, D × B.
    pub x: DMatrix<T>,
    /// `h_{t−1}`, H × B.
    pub h_prev: DMatrix<T>,
    /// Pre-activation `a_t`, H × B.
    pub a: DMatrix<T>,
    /// `h_t = σ(a_t)`, H × B.
    pub h: DMatrix<T>,
}

impl<T: RealField + Copy> VanillaRnn<T> {
    /// A cell with all parameters zero.
    pub fn zeros(input_size: usize, hidden_size: usize, activation: Activation) -> Self {
        let params = crate::cell::gate_params(1, input_size, hidden_size);
        VanillaRnn { activation, params }
    }

    /// Load layer `layer` (direction `reverse`) of a PyTorch `nn.RNN` state_dict saved as
    /// safetensors: `weight_ih_l{layer}[_reverse]`, etc. Sizes are read from the tensors; a
    /// missing or mis-shaped tensor is an error naming it.
    pub fn from_state_dict(
        sd: &crate::import::StateDict,
        layer: usize,
        reverse: bool,
        activation: Activation,
    ) -> Result<Self, crate::BpttError> {
        let sfx = crate::import::suffix(layer, reverse);
        let (input, hidden) = sd.layer_sizes(&sfx, 1, "RNN")?;
        let mut cell = Self::zeros(input, hidden, activation);
        sd.load_params(&mut cell, &sfx)?;
        Ok(cell)
    }

    /// Every parameter drawn from U(−bound, bound).
    pub fn uniform(
        input_size: usize,
        hidden_size: usize,
        activation: Activation,
        bound: f64,
        rng: &mut Rng,
    ) -> Self {
        let mut cell = Self::zeros(input_size, hidden_size, activation);
        crate::cell::randomize(&mut cell.params, bound, rng);
        cell
    }

    /// PyTorch's default initialisation: every parameter from U(−1/√H, 1/√H).
    pub fn pytorch_init(
        input_size: usize,
        hidden_size: usize,
        activation: Activation,
        rng: &mut Rng,
    ) -> Self {
        let bound = crate::cell::pytorch_bound(hidden_size);
        Self::uniform(input_size, hidden_size, activation, bound, rng)
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// `W_ih`, H × D.
    pub fn weight_ih(&self) -> &DMatrix<T> {
        &self.params[WEIGHT_IH]
    }
    /// `W_hh`, H × H.
    pub fn weight_hh(&self) -> &DMatrix<T> {
        &self.params[WEIGHT_HH]
    }
    /// `b_ih`, H × 1.
    pub fn bias_ih(&self) -> &DMatrix<T> {
        &self.params[BIAS_IH]
    }
    /// `b_hh`, H × 1.
    pub fn bias_hh(&self) -> &DMatrix<T> {
        &self.params[BIAS_HH]
    }
    /// Mutable `W_hh` (the experiments rescale it to a target spectral radius).
    pub fn weight_hh_mut(&mut self) -> &mut DMatrix<T> {
        &mut self.params[WEIGHT_HH]
    }
}

impl<T: RealField + Copy> Cell<T> for VanillaRnn<T> {
    type Cache = VanillaCache<T>;

    fn name(&self) -> String {
        format!("rnn-{}", self.activation.name())
    }
    fn input_size(&self) -> usize {
        self.params[WEIGHT_IH].ncols()
    }
    fn hidden_size(&self) -> usize {
        self.params[WEIGHT_HH].nrows()
    }
    fn params(&self) -> &Params<T> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }

    fn step_forward(&self, x: &DMatrix<T>, h_prev: &DMatrix<T>) -> (DMatrix<T>, VanillaCache<T>) {
        // a = (W_ih x + b_ih 1ᵀ) + (W_hh h_prev + b_hh 1ᵀ), in PyTorch's grouping
        let a = affine(self.weight_ih().as_view(), x, self.bias_ih().as_view())
            + affine(self.weight_hh().as_view(), h_prev, self.bias_hh().as_view());
        let act = self.activation;
        let h = a.map(|v| act.value(v));
        let cache = VanillaCache {
            x: x.clone(),
            h_prev: h_prev.clone(),
            a,
            h: h.clone(),
        };
        (h, cache)
    }

    fn step_backward(
        &self,
        dh: &DMatrix<T>,
        cache: &VanillaCache<T>,
        grads: &mut Params<T>,
    ) -> (DMatrix<T>, DMatrix<T>) {
        let (one, zero) = (T::one(), T::zero());
        let act = self.activation;
        // backprop through σ: da = dh ⊙ σ'(a)
        let da = dh.zip_zip_map(&cache.a, &cache.h, |g, a, h| g * act.derivative(a, h));
        // dW_ih += da xᵀ, dW_hh += da h_prevᵀ: one rank-1 update per sequence of the batch
        for b in 0..da.ncols() {
            grads[WEIGHT_IH].ger(one, &da.column(b), &cache.x.column(b), one);
            grads[WEIGHT_HH].ger(one, &da.column(b), &cache.h_prev.column(b), one);
        }
        // both biases receive the batch sum of da
        let db = da.column_sum();
        grads[BIAS_IH].column_mut(0).add_assign(&db);
        grads[BIAS_HH].column_mut(0).add_assign(&db);
        // dx = W_ihᵀ da, dh_prev = W_hhᵀ da
        let mut dx = DMatrix::zeros(self.input_size(), da.ncols());
        dx.gemm_tr(one, self.weight_ih(), &da, zero);
        let mut dh_prev = DMatrix::zeros(self.hidden_size(), da.ncols());
        dh_prev.gemm_tr(one, self.weight_hh(), &da, zero);
        (dx, dh_prev)
    }

    fn conditioning(&self, cache: &VanillaCache<T>) -> f64 {
        match self.activation {
            Activation::Tanh => crate::cell::tanh_conditioning(cache.h.iter()),
            Activation::Sigmoid => crate::cell::sigmoid_conditioning(cache.h.iter()),
            Activation::Relu | Activation::Identity => 1.0,
        }
    }

    fn kink_pattern(&self, cache: &VanillaCache<T>, out: &mut Vec<bool>) {
        if self.activation.has_kink() {
            out.extend(cache.a.iter().map(|&a| a > T::zero()));
        }
    }
}

impl<T: RealField + Copy> crate::cell::Rescalar<T> for VanillaRnn<T> {
    type With<U: RealField + Copy> = VanillaRnn<U>;
    fn with_params<U: RealField + Copy>(&self, params: Params<U>) -> VanillaRnn<U> {
        assert_eq!(
            params.names(),
            self.params.names(),
            "with_params: parameter names differ"
        );
        VanillaRnn {
            activation: self.activation,
            params,
        }
    }
}

use std::ops::AddAssign;

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
        let (out, _) = cell.step_forward(&x, &h);
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
