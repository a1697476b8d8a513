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
//! The state is `s_t = [h_t; c_t]` (2H × B). Backward, given `dh_t` and `dc_t` (derivation:
//! `proofs/lstm.md`):
//!
//! ```text
//! do   = dh ⊙ tanh(c_t)
//! dc  ← dc + dh ⊙ o ⊙ (1 − tanh²(c_t))          total gradient of c_t
//! df   = dc ⊙ c_{t−1}     di = dc ⊙ g     dg = dc ⊙ i     dc_{t−1} = dc ⊙ f
//! dA_i = di ⊙ i(1−i)  dA_f = df ⊙ f(1−f)  dA_g = dg ⊙ (1−g²)  dA_o = do ⊙ o(1−o)
//! dW_ih += dA x_tᵀ   dW_hh += dA h_{t−1}ᵀ   db_ih += dA 1   db_hh += dA 1
//! dx_t = W_ihᵀ dA    dh_{t−1} = W_hhᵀ dA
//! ```

use std::ops::Range;

use nalgebra::{DMatrix, RealField};

use crate::activation::sigmoid;
use crate::cell::affine;
use crate::rng::Rng;
use crate::{Cell, Params};

/// Index of `weight_ih` (4H × D) in [`Lstm::params`].
pub const WEIGHT_IH: usize = 0;
/// Index of `weight_hh` (4H × H).
pub const WEIGHT_HH: usize = 1;
/// Index of `bias_ih` (4H × 1).
pub const BIAS_IH: usize = 2;
/// Index of `bias_hh` (4H × 1).
pub const BIAS_HH: usize = 3;

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

/// What one step's backward pass needs (every matrix H × B except `x`, D × B).
#[derive(Clone, Debug)]
pub struct LstmCache<T: RealField + Copy> {
    pub x: DMatrix<T>,
    pub h_prev: DMatrix<T>,
    pub c_prev: DMatrix<T>,
    pub i: DMatrix<T>,
    pub f: DMatrix<T>,
    pub g: DMatrix<T>,
    pub o: DMatrix<T>,
    /// `tanh(c_t)`.
    pub tanh_c: DMatrix<T>,
}

impl<T: RealField + Copy> Lstm<T> {
    /// An LSTM with all parameters zero.
    pub fn zeros(input_size: usize, hidden_size: usize) -> Self {
        let params = crate::cell::gate_params(4, input_size, hidden_size);
        Lstm { params }
    }

    /// Load layer `layer` (direction `reverse`) of a PyTorch `nn.LSTM` state_dict saved as
    /// safetensors: `weight_ih_l{layer}[_reverse]`, etc. Sizes are read from the tensors; a
    /// missing or mis-shaped tensor is an error naming it.
    pub fn from_state_dict(
        sd: &crate::import::StateDict,
        layer: usize,
        reverse: bool,
    ) -> Result<Self, crate::BpttError> {
        let sfx = crate::import::suffix(layer, reverse);
        let (input, hidden) = sd.layer_sizes(&sfx, 4, "LSTM")?;
        let mut cell = Self::zeros(input, hidden);
        sd.load_params(&mut cell, &sfx)?;
        Ok(cell)
    }

    /// Every parameter drawn from U(−bound, bound).
    pub fn uniform(input_size: usize, hidden_size: usize, bound: f64, rng: &mut Rng) -> Self {
        let mut cell = Self::zeros(input_size, hidden_size);
        crate::cell::randomize(&mut cell.params, bound, rng);
        cell
    }

    /// PyTorch's default initialisation: every parameter from U(−1/√H, 1/√H).
    pub fn pytorch_init(input_size: usize, hidden_size: usize, rng: &mut Rng) -> Self {
        Self::uniform(
            input_size,
            hidden_size,
            crate::cell::pytorch_bound(hidden_size),
            rng,
        )
    }

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
    pub fn weight_ih(&self) -> &DMatrix<T> {
        &self.params[WEIGHT_IH]
    }
    /// `W_hh`, 4H × H.
    pub fn weight_hh(&self) -> &DMatrix<T> {
        &self.params[WEIGHT_HH]
    }
    /// `b_ih`, 4H × 1.
    pub fn bias_ih(&self) -> &DMatrix<T> {
        &self.params[BIAS_IH]
    }
    /// `b_hh`, 4H × 1.
    pub fn bias_hh(&self) -> &DMatrix<T> {
        &self.params[BIAS_HH]
    }
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

/// Rows of `m` belonging to `gate`, as an owned H × B matrix.
fn block<T: RealField + Copy>(m: &DMatrix<T>, gate: LstmGate, hidden: usize) -> DMatrix<T> {
    let r = gate.rows(hidden);
    m.rows(r.start, r.len()).into_owned()
}

impl<T: RealField + Copy> Cell<T> for Lstm<T> {
    type Cache = LstmCache<T>;

    fn name(&self) -> String {
        "lstm".into()
    }
    fn input_size(&self) -> usize {
        self.params[WEIGHT_IH].ncols()
    }
    fn hidden_size(&self) -> usize {
        self.params[WEIGHT_HH].ncols()
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

    fn step_forward(&self, x: &DMatrix<T>, s_prev: &DMatrix<T>) -> (DMatrix<T>, LstmCache<T>) {
        let hidden = self.hidden_size();
        let h_prev = s_prev.rows(0, hidden).into_owned();
        let c_prev = s_prev.rows(hidden, hidden).into_owned();
        // A = (W_ih x + b_ih 1ᵀ) + (W_hh h_prev + b_hh 1ᵀ): all four gates, one GEMM per side
        let a = affine(self.weight_ih().as_view(), x, self.bias_ih().as_view())
            + affine(
                self.weight_hh().as_view(),
                &h_prev,
                self.bias_hh().as_view(),
            );
        let i = block(&a, LstmGate::Input, hidden).map(sigmoid);
        let f = block(&a, LstmGate::Forget, hidden).map(sigmoid);
        let g = block(&a, LstmGate::Cell, hidden).map(|v| v.tanh());
        let o = block(&a, LstmGate::Output, hidden).map(sigmoid);
        // c = f ⊙ c_prev + i ⊙ g ;  h = o ⊙ tanh(c)
        let c = f.component_mul(&c_prev) + i.component_mul(&g);
        let tanh_c = c.map(|v| v.tanh());
        let h = o.component_mul(&tanh_c);
        let mut s = DMatrix::zeros(2 * hidden, x.ncols());
        s.rows_mut(0, hidden).copy_from(&h);
        s.rows_mut(hidden, hidden).copy_from(&c);
        let cache = LstmCache {
            x: x.clone(),
            h_prev,
            c_prev,
            i,
            f,
            g,
            o,
            tanh_c,
        };
        (s, cache)
    }

    fn step_backward(
        &self,
        ds: &DMatrix<T>,
        cache: &LstmCache<T>,
        grads: &mut Params<T>,
    ) -> (DMatrix<T>, DMatrix<T>) {
        let (one, zero) = (T::one(), T::zero());
        let hidden = self.hidden_size();
        let batch = ds.ncols();
        let dh = ds.rows(0, hidden);
        let LstmCache {
            x,
            h_prev,
            c_prev,
            i,
            f,
            g,
            o,
            tanh_c,
        } = cache;
        // h = o ⊙ tanh(c): to the output gate, and through tanh into the cell state
        let d_o = dh.component_mul(tanh_c);
        let dc =
            ds.rows(hidden, hidden) + dh.zip_zip_map(o, tanh_c, |d, o, t| d * o * (one - t * t));
        // c = f ⊙ c_prev + i ⊙ g
        let d_f = dc.component_mul(c_prev);
        let d_i = dc.component_mul(g);
        let d_g = dc.component_mul(i);
        let dc_prev = dc.component_mul(f);
        // backprop through the gate non-linearities into the stacked pre-activation dA (4H × B)
        let mut da = DMatrix::zeros(4 * hidden, batch);
        let sig_back = |d: &DMatrix<T>, y: &DMatrix<T>| d.zip_map(y, |d, y| d * y * (one - y));
        da.rows_mut(LstmGate::Input.rows(hidden).start, hidden)
            .copy_from(&sig_back(&d_i, i));
        da.rows_mut(LstmGate::Forget.rows(hidden).start, hidden)
            .copy_from(&sig_back(&d_f, f));
        da.rows_mut(LstmGate::Cell.rows(hidden).start, hidden)
            .copy_from(&d_g.zip_map(g, |d, g| d * (one - g * g)));
        da.rows_mut(LstmGate::Output.rows(hidden).start, hidden)
            .copy_from(&sig_back(&d_o, o));
        // dW_ih += dA xᵀ, dW_hh += dA h_prevᵀ, biases += batch sum of dA
        for b in 0..batch {
            grads[WEIGHT_IH].ger(one, &da.column(b), &x.column(b), one);
            grads[WEIGHT_HH].ger(one, &da.column(b), &h_prev.column(b), one);
        }
        let db = da.column_sum();
        grads[BIAS_IH].column_mut(0).add_assign(&db);
        grads[BIAS_HH].column_mut(0).add_assign(&db);
        // dx = W_ihᵀ dA ; dh_prev = W_hhᵀ dA ; ds_prev = [dh_prev; dc_prev]
        let mut dx = DMatrix::zeros(self.input_size(), batch);
        dx.gemm_tr(one, self.weight_ih(), &da, zero);
        let mut ds_prev = DMatrix::zeros(2 * hidden, batch);
        ds_prev
            .rows_mut(0, hidden)
            .gemm_tr(one, self.weight_hh(), &da, zero);
        ds_prev.rows_mut(hidden, hidden).copy_from(&dc_prev);
        (dx, ds_prev)
    }

    fn conditioning(&self, c: &LstmCache<T>) -> f64 {
        use crate::cell::{sigmoid_conditioning, tanh_conditioning};
        let gates = sigmoid_conditioning(c.i.iter().chain(c.f.iter()).chain(c.o.iter()));
        gates.max(tanh_conditioning(c.g.iter().chain(c.tanh_c.iter())))
    }
}

impl<T: RealField + Copy> crate::cell::Rescalar<T> for Lstm<T> {
    type With<U: RealField + Copy> = Lstm<U>;
    fn with_params<U: RealField + Copy>(&self, params: Params<U>) -> Lstm<U> {
        assert_eq!(
            params.names(),
            self.params.names(),
            "with_params: parameter names differ"
        );
        Lstm { params }
    }
}

use std::ops::AddAssign;

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
        let cell = Lstm::<f64>::zeros(5, 3);
        assert_eq!(cell.weight_ih().shape(), (12, 5));
        assert_eq!(cell.parameter_count(), 4 * 3 * (5 + 3 + 2));
    }

    #[test]
    fn initialisations_set_the_documented_biases() {
        let mut rng = stream(4, &[]);
        let cell = Lstm::<f64>::pytorch_init(2, 4, &mut rng).with_forget_bias(1.0);
        let f = LstmGate::Forget.rows(4);
        assert!(
            f.clone()
                .all(|r| cell.bias_ih()[r] == 1.0 && cell.bias_hh()[r] == 0.0)
        );
        assert!(cell.weight_hh().iter().all(|w| w.abs() <= 0.5));
        let cell = Lstm::<f64>::zeros(2, 64).with_chrono_init(100.0, &mut rng);
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
        let cell = Lstm::<f64>::zeros(1, 2);
        let s_prev = DMatrix::from_column_slice(4, 1, &[0.3, -0.2, 0.8, -1.0]);
        let (s, _) = cell.step_forward(&DMatrix::from_element(1, 1, 0.5), &s_prev);
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
