//! The [`Cell`] abstraction: one recurrent step, forward and backward, over views into the
//! engine's workspaces (see [`crate::nn::engine`]), generic over the scalar.
//!
//! Shapes (batch as columns, so `W · X` is one GEMM):
//! - input `x_t`: `D × B` (D = [`Cell::input_size`], B = batch);
//! - state `s_t`: `S × B` (S = [`Cell::state_size`]); the cell's *output* `h_t` is the first
//!   H = [`Cell::hidden_size`] rows of the state. For the vanilla cell and the GRU `s_t = h_t`;
//!   for the LSTM `s_t = [h_t; c_t]`.
//! - the step's tape columns: `R × B` (R = [`Cell::tape_rows`]); rows `0..G·H`
//!   ([`Cell::gate_rows`]) hold the input projection `W_ih x_t + b` when the step starts.
//!
//! Every cell has PyTorch's four parameters at the same indices: [`WEIGHT_IH`], [`WEIGHT_HH`],
//! [`BIAS_IH`], [`BIAS_HH`].

use nalgebra::{DMatrix, RealField};

use crate::nn::engine::{MatMut, MatRef, Op, gemm};
use crate::nn::params::Params;

/// Index of `weight_ih` (G·H × D) in every cell's [`Cell::params`].
pub const WEIGHT_IH: usize = 0;
/// Index of `weight_hh` (G·H × H).
pub const WEIGHT_HH: usize = 1;
/// Index of `bias_ih` (G·H × 1).
pub const BIAS_IH: usize = 2;
/// Index of `bias_hh` (G·H × 1).
pub const BIAS_HH: usize = 3;

/// One recurrent cell `s_t = f(s_{t−1}, x_t; θ)`, as the engine runs it: the input projection
/// of all steps is the engine's (one GEMM); the cell does the rest of a step.
///
/// Contract, checked for every implementation by the generic property tests in `tests/`:
/// [`Cell::step_backward`] and [`Cell::recurrent_param_grads`] give exactly the vector–Jacobian
/// products of [`Cell::step_forward`] (w.r.t. the projection, `s_{t−1}`, and `W_hh`, `b_hh`),
/// to finite-difference accuracy and to 1e-12 against the dual-number forward mode in f64.
pub trait Cell<T: RealField + Copy>: Clone + Send + Sync {
    /// A short human-readable name, e.g. `"rnn-tanh"`.
    fn name(&self) -> String;
    /// D, the size of `x_t`.
    fn input_size(&self) -> usize {
        self.params()[WEIGHT_IH].ncols()
    }
    /// H, the size of the output `h_t`.
    fn hidden_size(&self) -> usize {
        self.params()[WEIGHT_HH].ncols()
    }
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

    /// G·H, the rows of the input projection (of `W_ih`).
    fn gate_rows(&self) -> usize {
        self.params()[WEIGHT_IH].nrows()
    }
    /// R ≥ G·H, the rows the cell keeps per (step, sequence) on the tape.
    fn tape_rows(&self) -> usize;
    /// The bias of the input projection (G·H): `b_ih`, plus those blocks of `b_hh` that the
    /// cell folds into it (where `b_hh` only ever adds to `b_ih`).
    fn projection_bias(&self, out: &mut [T]);
    /// Whether the gradient of the recurrent GEMM's output differs from the projection's
    /// (the GRU's reset-after `n` block): then the engine keeps both.
    fn split_recurrent_grad(&self) -> bool {
        false
    }

    /// One step forward. `tape`: `R × B`, rows `0..G·H` hold `P_t = W_ih x_t + b` on entry; the
    /// step leaves there what [`Cell::step_backward`] reads. `s_prev`: `S × B`; writes `s`.
    fn step_forward(&self, tape: MatMut<'_, T>, s_prev: MatRef<'_, T>, s: MatMut<'_, T>);

    /// One step backward: given `ds = ∂L/∂s_t` (`S × B`) and the step's tape, `s_{t−1}` and
    /// `s_t`, write `d_ih = ∂L/∂P_t` (`G·H × B`), `d_hh` = ∂L/∂ of the recurrent GEMM's output
    /// (when [`Cell::split_recurrent_grad`]; otherwise it equals `d_ih`) and
    /// `ds_prev = ∂L/∂s_{t−1}` (`S × B`). `w_hh_t` is `W_hhᵀ` (`H × G·H`), transposed once per
    /// backward pass by the engine: a GEMM with a stored transpose is 10–25 % faster than with
    /// a transposed view at these sizes (faer 0.24, n = 50…128).
    #[allow(clippy::too_many_arguments)]
    fn step_backward(
        &self,
        ds: MatRef<'_, T>,
        w_hh_t: MatRef<'_, T>,
        tape: MatRef<'_, T>,
        s_prev: MatRef<'_, T>,
        s: MatRef<'_, T>,
        d_ih: MatMut<'_, T>,
        d_hh: Option<MatMut<'_, T>>,
        ds_prev: MatMut<'_, T>,
    );

    /// The recurrent parameters' gradients of every step at once: `dW_hh += D H_prevᵀ`,
    /// `db_hh += D 1` for `D` = `d_hh` (G·H × T·B) and `H_prev` = `[h_0 … h_{T−1}]` (H × T·B);
    /// `tape` is every step's tape (R × T·B) for cells whose recurrent operand is not `h`;
    /// `d_hh_sums` = `D 1`, the row sums the engine has already formed (they are the bias
    /// gradient of the input projection too, where `d_hh = d_ih`).
    fn recurrent_param_grads(
        &self,
        d_hh: MatRef<'_, T>,
        _tape: MatRef<'_, T>,
        h_prev: MatRef<'_, T>,
        d_hh_sums: &[T],
        grads: &mut [DMatrix<T>],
    ) {
        gemm(
            MatMut::from(&mut grads[WEIGHT_HH]),
            true,
            Op::N(d_hh),
            Op::T(h_prev),
        );
        crate::nn::engine::mat::add_to(grads[BIAS_HH].as_mut_slice(), d_hh_sums);
    }

    /// Append to `out` the sign (`a > 0`) of every argument of a non-differentiable point
    /// (ReLU pre-activations) over the tape of every step. The gradient checker compares these
    /// patterns between perturbed forward passes to detect kinks. Smooth cells append nothing.
    fn kink_pattern(&self, _tape: MatRef<'_, T>, _out: &mut Vec<bool>) {}

    /// How much the backward pass amplifies rounding errors beyond plain products: σ'
    /// computed from a saturated saved output (`1 − h²` as h → ±1, `h(1 − h)` as h → 1, as
    /// PyTorch computes them) has relative error `κ·ε`. Returns max κ over every step's tape
    /// and the states `s_1 … s_T` (1 when no unit saturates); the dual-number oracle scales its
    /// 1e-12 tolerance by it.
    fn conditioning(&self, _tape: MatRef<'_, T>, _states: MatRef<'_, T>) -> f64 {
        1.0
    }

    /// Whether the step has kinks (points where it is not differentiable, e.g. ReLU at 0):
    /// then [`Cell::kink_pattern`] reports them and finite differences must avoid them.
    fn has_kinks(&self) -> bool {
        false
    }

    /// γ = sup |σ'| of the step's one nonlinearity where `∂h_t/∂h_{t−1} = diag(σ'(a_t)) W_hh`
    /// (the vanilla cell): Pascanu et al.'s bound `‖∂h_t/∂h_k‖ ≤ (γ σ_max(W_hh))^{t−k}`.
    /// `None` for cells the bound does not cover (the gated ones).
    fn derivative_bound(&self) -> Option<f64> {
        None
    }

    /// The one element-wise activation σ of `h_t = σ(W_ih x_t + b + W_hh h_{t−1})` (the vanilla
    /// cell), the setting of the mean-field theory ([`crate::numerics::meanfield`]). `None` for the
    /// gated cells.
    fn elementwise_activation(&self) -> Option<crate::nn::activation::Activation> {
        None
    }

    /// Whether Pascanu's Ω ([`crate::train::omega`]) is defined for this cell: `h = σ(P + W_hh h_prev)`
    /// with the engine's `∂L/∂P` equal to `σ'(a) ⊙ δ` (the vanilla cell).
    fn omega_applies(&self) -> bool {
        false
    }
}

/// `out = b_ih + b_hh`: the projection bias of a cell whose recurrent bias only ever adds.
pub(crate) fn folded_bias<T: RealField + Copy>(params: &Params<T>, out: &mut [T]) {
    for ((o, bi), bh) in out
        .iter_mut()
        .zip(params[BIAS_IH].iter())
        .zip(params[BIAS_HH].iter())
    {
        *o = *bi + *bh;
    }
}

/// Every entry of the rows `rows` of `m`, column by column.
pub(crate) fn entries<'a, T: Copy>(
    m: MatRef<'a, T>,
    rows: std::ops::Range<usize>,
) -> impl Iterator<Item = &'a T> {
    (0..m.cols()).flat_map(move |j| m.col(j)[rows.clone()].iter())
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
fn gate_params<T: RealField + Copy>(gates: usize, input: usize, hidden: usize) -> Params<T> {
    let mut params = Params::new();
    // the order fixes WEIGHT_IH, WEIGHT_HH, BIAS_IH, BIAS_HH
    params.push("weight_ih", DMatrix::zeros(gates * hidden, input));
    params.push("weight_hh", DMatrix::zeros(gates * hidden, hidden));
    params.push("bias_ih", DMatrix::zeros(gates * hidden, 1));
    params.push("bias_hh", DMatrix::zeros(gates * hidden, 1));
    params
}

/// A cell that can be rebuilt over another scalar type with given parameters (same names,
/// order and shapes): runs the *same* generic forward code on dual numbers (the exact
/// forward-mode oracle of `crate::verify::oracle`) or in f32 (precision checks).
pub trait Rescalar<T: RealField + Copy>: Cell<T> {
    /// The same cell over scalar `U`.
    type With<U: RealField + Copy>: Cell<U>;
    /// This cell's configuration with `params` (shaped like [`Cell::params`]).
    fn with_params<U: RealField + Copy>(&self, params: Params<U>) -> Self::With<U>;
}

/// What every shipped cell shares beyond [`Cell`]: it is fixed by its sizes and a
/// configuration (the activation, the GRU variant; `()` where there is none) and holds
/// PyTorch's four parameters `weight_ih` (G·H × D), `weight_hh` (G·H × H), `bias_ih`,
/// `bias_hh` (G·H × 1). Implementing it is three items; constructors, the safetensors loader,
/// accessors come with it, the same for every cell, and [`Rescalar`] with one
/// `rescalar_from_family!(Cell)` line.
///
/// ```
/// use bptt::nn::activation::Activation;
/// use bptt::nn::cell::{Cell, CellFamily};
/// use bptt::nn::cells::lstm::Lstm;
/// use bptt::nn::cells::vanilla::VanillaRnn;
///
/// let mut rng = bptt::rng::stream(7, &[]);
/// let rnn = VanillaRnn::<f64>::pytorch_init(3, 5, Activation::Tanh, &mut rng);
/// let lstm = Lstm::<f32>::uniform(3, 5, (), 0.1, &mut rng);
/// assert_eq!(rnn.weight_hh().shape(), (5, 5));
/// assert_eq!(lstm.weight_ih().shape(), (4 * 5, 3));
/// assert_eq!(lstm.parameter_count(), 4 * 5 * (3 + 5 + 2));
/// ```
pub trait CellFamily<T: RealField + Copy>: Cell<T> + Sized {
    /// G, the gate blocks stacked in the parameters (1 vanilla, 2 MGU, 3 GRU, 4 LSTM).
    const GATES: usize;
    /// PyTorch's module (`"RNN"`, `"LSTM"`, `"GRU"`), for messages of the loader.
    const MODULE: &'static str;
    /// What, beside the sizes, fixes the cell (not trained).
    type Config: Copy + std::fmt::Debug + Send + Sync + 'static;

    /// The cell of configuration `config` with parameters `params` (PyTorch's four, in order).
    fn from_parts(config: Self::Config, params: Params<T>) -> Self;
    /// Its configuration.
    fn config(&self) -> Self::Config;

    /// A cell with all parameters zero.
    #[must_use]
    fn zeros(input_size: usize, hidden_size: usize, config: Self::Config) -> Self {
        Self::from_parts(config, gate_params(Self::GATES, input_size, hidden_size))
    }

    /// Every parameter drawn from U(−bound, bound), matrix by matrix in parameter order.
    #[must_use]
    fn uniform(
        input_size: usize,
        hidden_size: usize,
        config: Self::Config,
        bound: f64,
        rng: &mut crate::rng::Rng,
    ) -> Self {
        let mut cell = Self::zeros(input_size, hidden_size, config);
        for m in cell.params_mut().tensors_mut() {
            *m = crate::rng::uniform_matrix(rng, m.nrows(), m.ncols(), bound);
        }
        cell
    }

    /// PyTorch's default initialisation: every parameter from U(−1/√H, 1/√H).
    #[must_use]
    fn pytorch_init(
        input_size: usize,
        hidden_size: usize,
        config: Self::Config,
        rng: &mut crate::rng::Rng,
    ) -> Self {
        let bound = 1.0 / (hidden_size.max(1) as f64).sqrt();
        Self::uniform(input_size, hidden_size, config, bound, rng)
    }

    /// Load layer `layer` (direction `reverse`) of a PyTorch `nn.RNN` / `nn.LSTM` / `nn.GRU`
    /// state_dict saved as safetensors: `weight_ih_l{layer}[_reverse]`, etc. Sizes are read
    /// from the tensors; a missing or mis-shaped tensor is an error naming it.
    fn from_state_dict(
        sd: &crate::nn::import::StateDict,
        layer: usize,
        reverse: bool,
        config: Self::Config,
    ) -> Result<Self, crate::error::BpttError> {
        let sfx = crate::nn::import::suffix(layer, reverse);
        let (input, hidden) = sd.layer_sizes(&sfx, Self::GATES, Self::MODULE)?;
        let mut cell = Self::zeros(input, hidden, config);
        sd.load_params(&mut cell, &sfx)?;
        Ok(cell)
    }

    /// `W_ih`, G·H × D.
    fn weight_ih(&self) -> &DMatrix<T> {
        &self.params()[WEIGHT_IH]
    }
    /// `W_hh`, G·H × H.
    fn weight_hh(&self) -> &DMatrix<T> {
        &self.params()[WEIGHT_HH]
    }
    /// `b_ih`, G·H × 1.
    fn bias_ih(&self) -> &DMatrix<T> {
        &self.params()[BIAS_IH]
    }
    /// `b_hh`, G·H × 1.
    fn bias_hh(&self) -> &DMatrix<T> {
        &self.params()[BIAS_HH]
    }
    /// Mutable `W_hh` (the experiments rescale it to a target spectral radius).
    fn weight_hh_mut(&mut self) -> &mut DMatrix<T> {
        &mut self.params_mut()[WEIGHT_HH]
    }
}

/// [`Rescalar`] for a [`CellFamily`] cell: the same configuration, new parameters.
/// `rescalar_from_family!(Lstm);` in the cell's file.
macro_rules! rescalar_from_family {
    ($cell:ident) => {
        impl<T: RealField + Copy> $crate::nn::cell::Rescalar<T> for $cell<T> {
            type With<U: RealField + Copy> = $cell<U>;
            fn with_params<U: RealField + Copy>(&self, params: Params<U>) -> $cell<U> {
                assert_eq!(
                    params.names(),
                    self.params().names(),
                    "with_params: parameter names differ"
                );
                <$cell<U> as $crate::nn::cell::CellFamily<U>>::from_parts(self.config(), params)
            }
        }
    };
}
pub(crate) use rescalar_from_family;
