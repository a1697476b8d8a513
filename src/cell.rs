//! The [`Cell`] abstraction: one recurrent step, forward and backward, generic over the scalar.
//!
//! Shapes (batch as columns, so `W · X` is one GEMM):
//! - input `x_t`: `D × B` (D = [`Cell::input_size`], B = batch);
//! - state `s_t`: `S × B` (S = [`Cell::state_size`]); the cell's *output* `h_t` is the first
//!   H = [`Cell::hidden_size`] rows of the state. For the vanilla cell and the GRU `s_t = h_t`;
//!   for the LSTM `s_t = [h_t; c_t]`.

use nalgebra::{DMatrix, DMatrixView, RealField};

use crate::Params;

/// One recurrent cell `s_t = f(s_{t−1}, x_t; θ)`.
///
/// Contract, checked for every implementation by the generic property tests in `tests/`:
/// [`Cell::step_backward`] returns exactly the vector–Jacobian products of
/// [`Cell::step_forward`] (w.r.t. `x_t`, `s_{t−1}`, and every parameter, accumulated into
/// `grads`), to finite-difference accuracy in f64.
pub trait Cell<T: RealField + Copy>: Clone + Send + Sync {
    /// Everything the backward pass of one step needs, saved by the forward pass.
    type Cache: Clone + Send + Sync;

    /// A short human-readable name, e.g. `"rnn-tanh"`.
    fn name(&self) -> String;
    /// D, the size of `x_t`.
    fn input_size(&self) -> usize;
    /// H, the size of the output `h_t`.
    fn hidden_size(&self) -> usize;
    /// S, the size of the recurrent state (H, or 2H for the LSTM).
    fn state_size(&self) -> usize {
        self.hidden_size()
    }
    /// Names of the state's row blocks, for reports (`["h"]`, or `["h", "c"]` for the LSTM).
    fn state_names(&self) -> Vec<&'static str> {
        vec!["h"]
    }

    /// The parameters, named and shaped as PyTorch names and shapes them.
    fn params(&self) -> &Params<T>;
    /// Mutable parameters (names and shapes must not change).
    fn params_mut(&mut self) -> &mut Params<T>;
    /// Number of trainable scalars.
    fn parameter_count(&self) -> usize {
        self.params().scalar_count()
    }

    /// One step forward: `(s_t, cache) = step_forward(x_t, s_{t−1})`.
    /// `x`: `D × B`; `s_prev`: `S × B`; returns `S × B`. Shapes are the caller's responsibility
    /// (the sequence functions in [`crate::sequence`] validate them once up front).
    fn step_forward(&self, x: &DMatrix<T>, s_prev: &DMatrix<T>) -> (DMatrix<T>, Self::Cache);

    /// One step backward: given `ds = ∂L/∂s_t` (`S × B`) and the step's cache, accumulate
    /// `∂L/∂θ` into `grads` (shaped like [`Cell::params`]) and return
    /// `(dx, ds_prev) = (∂L/∂x_t, ∂L/∂s_{t−1})`.
    fn step_backward(
        &self,
        ds: &DMatrix<T>,
        cache: &Self::Cache,
        grads: &mut Params<T>,
    ) -> (DMatrix<T>, DMatrix<T>);

    /// Append to `out` the sign (`a > 0`) of every argument of a non-differentiable point
    /// (ReLU pre-activations). The gradient checker compares these patterns between perturbed
    /// forward passes to detect kinks. Smooth cells append nothing (the default).
    fn kink_pattern(&self, _cache: &Self::Cache, _out: &mut Vec<bool>) {}

    /// How much the backward pass of this step amplifies rounding errors beyond plain products:
    /// σ' computed from a saturated saved output (`1 − h²` as h → ±1, `h(1 − h)` as h → 1, as
    /// PyTorch computes them) has relative error `κ·ε`. Returns max κ over the step (1 when no
    /// unit saturates); the dual-number oracle scales its 1e-12 tolerance by it.
    fn conditioning(&self, _cache: &Self::Cache) -> f64 {
        1.0
    }
}

/// κ of `1 − h²` computed from a rounded `h = tanh(a)`: `1 + 2h²/(1 − h²)`, max over `hs`.
pub fn tanh_conditioning<'a, T: RealField + Copy>(hs: impl IntoIterator<Item = &'a T>) -> f64 {
    hs.into_iter().fold(1.0, |k, &h| {
        let h2: f64 = nalgebra::try_convert(h * h).unwrap_or(0.0);
        k.max(1.0 + 2.0 * h2 / (1.0 - h2).max(f64::MIN_POSITIVE))
    })
}

/// κ of `s(1 − s)` computed from a rounded `s = sigmoid(a)`: `1 + s/(1 − s)`, max over `ss`.
pub fn sigmoid_conditioning<'a, T: RealField + Copy>(ss: impl IntoIterator<Item = &'a T>) -> f64 {
    ss.into_iter().fold(1.0, |k, &s| {
        let s: f64 = nalgebra::try_convert(s).unwrap_or(0.0);
        k.max(1.0 + s.abs() / (1.0 - s).max(f64::MIN_POSITIVE))
    })
}

/// PyTorch's four parameters of a cell with `gates` gate blocks, all zero: `weight_ih`
/// (G·H × D), `weight_hh` (G·H × H), `bias_ih`, `bias_hh` (G·H × 1).
pub(crate) fn gate_params<T: RealField + Copy>(
    gates: usize,
    input: usize,
    hidden: usize,
) -> Params<T> {
    let mut params = Params::new();
    params.push("weight_ih", DMatrix::zeros(gates * hidden, input));
    params.push("weight_hh", DMatrix::zeros(gates * hidden, hidden));
    params.push("bias_ih", DMatrix::zeros(gates * hidden, 1));
    params.push("bias_hh", DMatrix::zeros(gates * hidden, 1));
    params
}

/// Redraw every entry of `params` from U(−bound, bound), matrix by matrix in order.
pub(crate) fn randomize<T: RealField + Copy>(
    params: &mut Params<T>,
    bound: f64,
    rng: &mut crate::rng::Rng,
) {
    for m in params.tensors_mut() {
        *m = crate::rng::uniform_matrix(rng, m.nrows(), m.ncols(), bound);
    }
}

/// PyTorch's default initialisation bound 1/√H.
pub(crate) fn pytorch_bound(hidden: usize) -> f64 {
    1.0 / (hidden.max(1) as f64).sqrt()
}

/// A cell that can be rebuilt over another scalar type with given parameters (same names,
/// order and shapes): runs the *same* generic forward code on dual numbers (the exact
/// forward-mode oracle of `crate::oracle`) or in f32 (precision checks).
pub trait Rescalar<T: RealField + Copy>: Cell<T> {
    /// The same cell over scalar `U`.
    type With<U: RealField + Copy>: Cell<U>;
    /// This cell's configuration with `params` (shaped like [`Cell::params`]).
    fn with_params<U: RealField + Copy>(&self, params: Params<U>) -> Self::With<U>;
}

/// `W x + b 1ᵀ` (`b` a column, broadcast over the batch), computed as PyTorch's `addmm`: the
/// bias first, then one GEMM accumulated onto it. Cells add the input-side and recurrent-side
/// results (`igates + hgates`) in PyTorch's grouping, so float64 results agree with PyTorch to
/// the last few bits.
pub fn affine<T: RealField + Copy>(
    w: DMatrixView<'_, T>,
    x: &DMatrix<T>,
    b: DMatrixView<'_, T>,
) -> DMatrix<T> {
    let mut out = DMatrix::from_fn(w.nrows(), x.ncols(), |i, _| b[(i, 0)]);
    out.gemm(T::one(), &w, x, T::one());
    out
}
