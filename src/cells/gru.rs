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
//! then the usual `dW += d(pre-activation) · inputᵀ` for each block.

use std::ops::Range;

use nalgebra::{DMatrix, RealField};

use crate::activation::sigmoid;
use crate::cell::affine;
use crate::rng::Rng;
use crate::{BpttError, Cell, Params};

/// Index of `weight_ih` (3H × D) in [`Gru::params`].
pub const WEIGHT_IH: usize = 0;
/// Index of `weight_hh` (3H × H).
pub const WEIGHT_HH: usize = 1;
/// Index of `bias_ih` (3H × 1).
pub const BIAS_IH: usize = 2;
/// Index of `bias_hh` (3H × 1).
pub const BIAS_HH: usize = 3;

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

/// What one step's backward pass needs (H × B unless noted).
#[derive(Clone, Debug)]
pub struct GruCache<T: RealField + Copy> {
    /// D × B.
    pub x: DMatrix<T>,
    pub h_prev: DMatrix<T>,
    pub r: DMatrix<T>,
    pub z: DMatrix<T>,
    pub n: DMatrix<T>,
    /// ResetAfter: `W_hn h + b_hn`; ResetBefore: `r ⊙ h_{t−1}`.
    pub hn: DMatrix<T>,
}

impl<T: RealField + Copy> Gru<T> {
    /// A GRU with all parameters zero.
    pub fn zeros(input_size: usize, hidden_size: usize, variant: GruVariant) -> Self {
        let params = crate::cell::gate_params(3, input_size, hidden_size);
        Gru { variant, params }
    }

    /// Load layer `layer` (direction `reverse`) of a PyTorch `nn.GRU` state_dict saved as
    /// safetensors: `weight_ih_l{layer}[_reverse]`, etc. Sizes are read from the tensors; a
    /// missing or mis-shaped tensor is an error naming it.
    pub fn from_state_dict(
        sd: &crate::import::StateDict,
        layer: usize,
        reverse: bool,
        variant: GruVariant,
    ) -> Result<Self, crate::BpttError> {
        let sfx = crate::import::suffix(layer, reverse);
        let (input, hidden) = sd.layer_sizes(&sfx, 3, "GRU")?;
        let mut cell = Self::zeros(input, hidden, variant);
        sd.load_params(&mut cell, &sfx)?;
        Ok(cell)
    }

    /// Every parameter drawn from U(−bound, bound).
    pub fn uniform(
        input_size: usize,
        hidden_size: usize,
        variant: GruVariant,
        bound: f64,
        rng: &mut Rng,
    ) -> Self {
        let mut cell = Self::zeros(input_size, hidden_size, variant);
        crate::cell::randomize(&mut cell.params, bound, rng);
        cell
    }

    /// PyTorch's default initialisation: every parameter from U(−1/√H, 1/√H).
    pub fn pytorch_init(
        input_size: usize,
        hidden_size: usize,
        variant: GruVariant,
        rng: &mut Rng,
    ) -> Self {
        Self::uniform(
            input_size,
            hidden_size,
            variant,
            crate::cell::pytorch_bound(hidden_size),
            rng,
        )
    }

    pub fn variant(&self) -> GruVariant {
        self.variant
    }
    /// `W_ih`, 3H × D.
    pub fn weight_ih(&self) -> &DMatrix<T> {
        &self.params[WEIGHT_IH]
    }
    /// `W_hh`, 3H × H.
    pub fn weight_hh(&self) -> &DMatrix<T> {
        &self.params[WEIGHT_HH]
    }
    /// `b_ih`, 3H × 1.
    pub fn bias_ih(&self) -> &DMatrix<T> {
        &self.params[BIAS_IH]
    }
    /// `b_hh`, 3H × 1.
    pub fn bias_hh(&self) -> &DMatrix<T> {
        &self.params[BIAS_HH]
    }
    /// Mutable recurrent block of one gate (the experiments rescale them).
    pub fn weight_hh_gate_mut(&mut self, gate: GruGate) -> nalgebra::DMatrixViewMut<'_, T> {
        let r = gate.rows(self.hidden_size());
        self.params[WEIGHT_HH].rows_mut(r.start, r.len())
    }
}

impl<T: RealField + Copy> Cell<T> for Gru<T> {
    type Cache = GruCache<T>;

    fn name(&self) -> String {
        self.variant.name().into()
    }
    fn input_size(&self) -> usize {
        self.params[WEIGHT_IH].ncols()
    }
    fn hidden_size(&self) -> usize {
        self.params[WEIGHT_HH].ncols()
    }
    fn params(&self) -> &Params<T> {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params<T> {
        &mut self.params
    }

    fn step_forward(&self, x: &DMatrix<T>, h_prev: &DMatrix<T>) -> (DMatrix<T>, GruCache<T>) {
        let hidden = self.hidden_size();
        let (rr, zr, nr) = (
            GruGate::Reset.rows(hidden),
            GruGate::Update.rows(hidden),
            GruGate::New.rows(hidden),
        );
        let (w_hh, b_hh) = (self.weight_hh(), self.bias_hh());
        // input side for all three gates: gi = W_ih x + b_ih 1ᵀ (3H × B)
        let gi = affine(self.weight_ih().as_view(), x, self.bias_ih().as_view());
        // recurrent side of r and z: gh = W_h{r,z} h + b_h{r,z} (2H × B)
        let gh = affine(w_hh.rows(0, 2 * hidden), h_prev, b_hh.rows(0, 2 * hidden));
        let r = (gi.rows(rr.start, hidden) + gh.rows(rr.start, hidden)).map(sigmoid);
        let z = (gi.rows(zr.start, hidden) + gh.rows(zr.start, hidden)).map(sigmoid);
        let (w_hn, b_hn) = (w_hh.rows(nr.start, hidden), b_hh.rows(nr.start, hidden));
        let (n_pre, hn) = match self.variant {
            GruVariant::ResetAfter => {
                // hn = W_hn h + b_hn ;  n = tanh(gi_n + r ⊙ hn)
                let hn = affine(w_hn, h_prev, b_hn);
                (gi.rows(nr.start, hidden) + r.component_mul(&hn), hn)
            }
            GruVariant::ResetBefore => {
                // hn = r ⊙ h ;  n = tanh(gi_n + W_hn hn + b_hn)
                let hn = r.component_mul(h_prev);
                (gi.rows(nr.start, hidden) + affine(w_hn, &hn, b_hn), hn)
            }
        };
        let n = n_pre.map(|v| v.tanh());
        // h = (1 − z) ⊙ n + z ⊙ h_prev, evaluated as PyTorch does: n + z ⊙ (h_prev − n)
        let h = n.zip_zip_map(&z, h_prev, |n, z, h| n + z * (h - n));
        let cache = GruCache {
            x: x.clone(),
            h_prev: h_prev.clone(),
            r,
            z,
            n,
            hn,
        };
        (h, cache)
    }

    fn step_backward(
        &self,
        dh: &DMatrix<T>,
        cache: &GruCache<T>,
        grads: &mut Params<T>,
    ) -> (DMatrix<T>, DMatrix<T>) {
        let (one, zero) = (T::one(), T::zero());
        let hidden = self.hidden_size();
        let batch = dh.ncols();
        let nr = GruGate::New.rows(hidden);
        let GruCache {
            x,
            h_prev,
            r,
            z,
            n,
            hn,
        } = cache;
        // h = (1 − z) ⊙ n + z ⊙ h_prev
        let dn = dh.zip_map(z, |d, z| d * (one - z));
        let dz = dh.zip_zip_map(h_prev, n, |d, h, n| d * (h - n));
        let mut dh_prev = dh.component_mul(z);
        // backprop through tanh and the update gate's sigmoid
        let da_n = dn.zip_map(n, |d, n| d * (one - n * n));
        let da_z = dz.zip_map(z, |d, z| d * z * (one - z));
        let w_hn = self.weight_hh().rows(nr.start, hidden);
        // the reset gate, and the recurrent pre-activation gradient of the n block
        let (dr, d_hn_block, hn_input) = match self.variant {
            GruVariant::ResetAfter => {
                // n_pre = gi_n + r ⊙ hn, hn = W_hn h + b_hn
                (da_n.component_mul(hn), da_n.component_mul(r), h_prev)
            }
            GruVariant::ResetBefore => {
                // n_pre = gi_n + W_hn (r ⊙ h) + b_hn
                let mut d_rh = DMatrix::zeros(hidden, batch);
                d_rh.gemm_tr(one, &w_hn, &da_n, zero);
                dh_prev += d_rh.component_mul(r);
                (d_rh.component_mul(h_prev), da_n.clone(), hn)
            }
        };
        let da_r = dr.zip_map(r, |d, r| d * r * (one - r));
        // stacked pre-activation gradients: input side [dA_r; dA_z; dA_n], recurrent side
        // [dA_r; dA_z; d_hn_block] (the n block's recurrent input is h or r ⊙ h)
        let mut dgi = DMatrix::zeros(3 * hidden, batch);
        dgi.rows_mut(0, hidden).copy_from(&da_r);
        dgi.rows_mut(hidden, hidden).copy_from(&da_z);
        dgi.rows_mut(nr.start, hidden).copy_from(&da_n);
        let mut dgh = dgi.clone();
        dgh.rows_mut(nr.start, hidden).copy_from(&d_hn_block);
        for b in 0..batch {
            grads[WEIGHT_IH].ger(one, &dgi.column(b), &x.column(b), one);
            grads[WEIGHT_HH].rows_mut(0, 2 * hidden).ger(
                one,
                &dgh.rows(0, 2 * hidden).column(b),
                &h_prev.column(b),
                one,
            );
            grads[WEIGHT_HH].rows_mut(nr.start, hidden).ger(
                one,
                &d_hn_block.column(b),
                &hn_input.column(b),
                one,
            );
        }
        grads[BIAS_IH].column_mut(0).add_assign(&dgi.column_sum());
        grads[BIAS_HH].column_mut(0).add_assign(&dgh.column_sum());
        // dx = W_ihᵀ dgi ; dh_prev += W_h{r,z}ᵀ [dA_r; dA_z] (+ W_hnᵀ d_hn for ResetAfter)
        let mut dx = DMatrix::zeros(self.input_size(), batch);
        dx.gemm_tr(one, self.weight_ih(), &dgi, zero);
        let rec_rows = match self.variant {
            GruVariant::ResetAfter => 3 * hidden,
            GruVariant::ResetBefore => 2 * hidden,
        };
        dh_prev.gemm_tr(
            one,
            &self.weight_hh().rows(0, rec_rows),
            &dgh.rows(0, rec_rows),
            one,
        );
        (dx, dh_prev)
    }

    fn conditioning(&self, c: &GruCache<T>) -> f64 {
        use crate::cell::{sigmoid_conditioning, tanh_conditioning};
        sigmoid_conditioning(c.r.iter().chain(c.z.iter())).max(tanh_conditioning(c.n.iter()))
    }
}

impl<T: RealField + Copy> crate::cell::Rescalar<T> for Gru<T> {
    type With<U: RealField + Copy> = Gru<U>;
    fn with_params<U: RealField + Copy>(&self, params: Params<U>) -> Gru<U> {
        assert_eq!(
            params.names(),
            self.params.names(),
            "with_params: parameter names differ"
        );
        Gru {
            variant: self.variant,
            params,
        }
    }
}

use std::ops::AddAssign;

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
            a.step_forward(&x, &h).0,
            b.step_forward(&x, &h).0,
            epsilon = 1e-15,
            max_relative = 1e-14
        );
        // and differ otherwise
        a.params_mut()[BIAS_IH].rows_mut(0, 3).fill(0.0);
        b.params_mut()[BIAS_IH].rows_mut(0, 3).fill(0.0);
        assert!((a.step_forward(&x, &h).0 - b.step_forward(&x, &h).0).amax() > 1e-3);
    }
}
